from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    CheckConstraint,
    ForeignKey,
    Index,
    SmallInteger,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.extensions import db
from app.models.types import UTCDateTime, as_created, utcnow
from app.models.user import User


class Review(db.Model):
    """One user's rating of one product (a verified buyer's, see services.reviews)."""

    __tablename__ = "reviews"

    id: Mapped[int] = mapped_column(primary_key=True)
    product_id: Mapped[int] = mapped_column(ForeignKey("products.id", ondelete="CASCADE"))
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    rating: Mapped[int] = mapped_column(SmallInteger)
    title: Mapped[str] = mapped_column(String(120), default="", server_default="")
    body: Mapped[str] = mapped_column(Text, default="", server_default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=as_created, onupdate=utcnow)

    user: Mapped[User] = relationship(lazy="raise")

    __table_args__ = (
        # The rule "one review per user and product" lives here, so two racing
        # posts cannot both get in.
        UniqueConstraint("user_id", "product_id", name="uq_reviews_user_id_product_id"),
        CheckConstraint("rating BETWEEN 1 AND 5", name="rating_range"),
        # A product's reviews in each list order, id breaking ties.
        Index("ix_reviews_product_id_created_at_id", "product_id", "created_at", "id"),
        Index("ix_reviews_product_id_rating_id", "product_id", "rating", "id"),
        # SQLite: never reuse a deleted review's id (the highest rowid was
        # reused, and a retried DELETE removed the next review; migration f40a6c8e1d27).
        {"sqlite_autoincrement": True},
    )

    def __repr__(self) -> str:
        return f"<Review {self.id} product={self.product_id} rating={self.rating}>"
