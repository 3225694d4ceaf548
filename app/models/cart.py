from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from sqlalchemy import CheckConstraint, ForeignKey, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.extensions import db
from app.models.product import Product
from app.models.types import UTCDateTime, utcnow

# Units of one product a cart line may hold: the schemas' bound and the cart rule's.
MAX_LINE_QUANTITY = 1000


class Cart(db.Model):
    __tablename__ = "carts"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)

    items: Mapped[list[CartItem]] = relationship(
        back_populates="cart",
        cascade="all, delete-orphan",
        passive_deletes=True,
        order_by="CartItem.id",
    )

    @property
    def total_items(self) -> int:
        return sum(item.quantity for item in self.items)

    @property
    def total(self) -> Decimal:
        return sum((item.subtotal for item in self.items), Decimal("0.00"))


class CartItem(db.Model):
    __tablename__ = "cart_items"

    id: Mapped[int] = mapped_column(primary_key=True)
    cart_id: Mapped[int] = mapped_column(ForeignKey("carts.id", ondelete="CASCADE"))
    # Indexed: a product's delete takes its lines out of every cart by
    # product (and a hard delete cascades the same way); the unique key below
    # leads with the cart, so each delete read every cart line (found by review).
    product_id: Mapped[int] = mapped_column(
        ForeignKey("products.id", ondelete="CASCADE"), index=True
    )
    quantity: Mapped[int]
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    cart: Mapped[Cart] = relationship(back_populates="items")
    # LEFT OUTER, not inner: an inner join nested under the cart's outer join made
    # SQLite materialize every cart line of every user on each cart read.
    product: Mapped[Product] = relationship(lazy="joined")

    __table_args__ = (
        UniqueConstraint("cart_id", "product_id"),
        CheckConstraint("quantity >= 1", name="quantity_positive"),
        # SQLite: never reuse a removed line's id (a retried DELETE or PUT of
        # it changed the next line added; migration f41b7d9e2c38).
        {"sqlite_autoincrement": True},
    )

    @property
    def unit_price(self) -> Decimal:
        return self.product.price

    @property
    def subtotal(self) -> Decimal:
        return self.product.price * self.quantity
