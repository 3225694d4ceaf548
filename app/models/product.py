from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from sqlalchemy import CheckConstraint, Index, Integer, Numeric, String, Text, func, text
from sqlalchemy.orm import Mapped, mapped_column

from app.extensions import db
from app.models.types import INTEGER_MAX, MoneyColumn, UTCDateTime, as_created, utcnow

# What an admin may set. The column (INTEGER) holds up to 2**31 - 1; the
# headroom lets cancelled orders put their units back without overflowing,
# and a restore that would still pass the column's maximum is refused (409).
MAX_STOCK = 1_000_000_000
STOCK_COLUMN_MAX = INTEGER_MAX

WHERE_NOT_DELETED = {
    "sqlite_where": text("deleted_at IS NULL"),
    "postgresql_where": text("deleted_at IS NULL"),
}
WHERE_DELETED = {
    "sqlite_where": text("deleted_at IS NOT NULL"),
    "postgresql_where": text("deleted_at IS NOT NULL"),
}


class Product(db.Model):
    __tablename__ = "products"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(Text, default="", server_default="")
    price: Mapped[Decimal] = mapped_column(MoneyColumn())
    stock: Mapped[int] = mapped_column(Integer, default=0)
    # At or below this, the product is low on stock (report, alert). New
    # products get LOW_STOCK_THRESHOLD from the config (catalog service).
    low_stock_threshold: Mapped[int] = mapped_column(Integer, default=5, server_default="5")
    category: Mapped[str | None] = mapped_column(String(80))
    image_url: Mapped[str | None] = mapped_column(String(500))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=as_created, onupdate=utcnow)
    # Soft delete: orders keep pointing at the row; the catalog hides it.
    deleted_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # The reviews' aggregate, kept on the row so the catalog sorts and filters
    # on it without an aggregate per product. services.reviews moves all three
    # in one UPDATE in the review's transaction; the average is derived from
    # the exact sum and count there (rounded half up), NULL with no reviews.
    rating_count: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    rating_sum: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    rating_average: Mapped[Decimal | None] = mapped_column(Numeric(3, 2))

    __table_args__ = (
        CheckConstraint("stock >= 0", name="stock_non_negative"),
        CheckConstraint("price >= 0", name="price_non_negative"),
        CheckConstraint("low_stock_threshold >= 0", name="low_stock_threshold_non_negative"),
        CheckConstraint(
            "rating_count >= 0 AND rating_sum BETWEEN rating_count AND 5 * rating_count",
            name="rating_totals",
        ),
        # One index per sort key, with id as the tie-breaker the list uses, over
        # the live catalog only: the list's page and COUNT walk them without
        # touching deleted rows (or any row, for the count).
        Index("ix_products_created_at_id", "created_at", "id", **WHERE_NOT_DELETED),
        Index("ix_products_price_id", "price", "id", **WHERE_NOT_DELETED),
        Index("ix_products_name_id", "name", "id", **WHERE_NOT_DELETED),
        # The low-stock report walks the live catalog from the lowest stock up.
        Index("ix_products_stock_id", "stock", "id", **WHERE_NOT_DELETED),
        Index("ix_products_category_lower", func.lower(category)),
        # Covers the facets' GROUP BY category (price range, stock and rating counts).
        Index(
            "ix_products_facets",
            "category",
            "price",
            "stock",
            "rating_average",
            **WHERE_NOT_DELETED,
        ),
        # `sort=rating` (ASC NULLS LAST is this index's order on PostgreSQL) and
        # `sort=-rating` on SQLite (DESC NULLS LAST is its backward scan there).
        # PostgreSQL's `-rating` has its own index, made in the migration
        # (see DATABASE_SPECIFIC_INDEXES).
        Index("ix_products_rating_average_id", "rating_average", "id", **WHERE_NOT_DELETED),
        # The deleted products alone: SQLite counts the live catalog as all rows
        # minus these, both from b-tree pages (services.catalog.LIVE_TOTAL).
        Index("ix_products_deleted_at", "deleted_at", **WHERE_DELETED),
    )

    def __repr__(self) -> str:
        return f"<Product {self.id} {self.name!r}>"
