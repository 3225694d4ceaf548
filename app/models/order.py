from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from enum import StrEnum

from flask import current_app
from sqlalchemy import CheckConstraint, ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.extensions import db
from app.models.payment import PAYMENT_STATUSES
from app.models.types import MoneyColumn, UTCDateTime, as_created, utcnow


class OrderStatus(StrEnum):
    """An order's statuses: the database constraint, the schemas (and so the
    OpenAPI enum) and the workflow (`app.services.workflow`) all come from here."""

    PENDING = "pending"
    PROCESSING = "processing"
    SHIPPED = "shipped"
    DELIVERED = "delivered"
    CANCELLED = "cancelled"


ORDER_STATUSES = tuple(status.value for status in OrderStatus)
_STATUS_CHECK = "status IN (" + ", ".join(f"'{s}'" for s in ORDER_STATUSES) + ")"
_PAYMENT_CHECK = "payment_status IN (" + ", ".join(f"'{s}'" for s in PAYMENT_STATUSES) + ")"


def shop_currency() -> str:
    """The currency new orders are priced in (SHOP_CURRENCY)."""
    return current_app.config.get("SHOP_CURRENCY", "USD") if current_app else "USD"


class Order(db.Model):
    __tablename__ = "orders"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    status: Mapped[str] = mapped_column(String(20), default=OrderStatus.PENDING.value)
    total_amount: Mapped[Decimal] = mapped_column(MoneyColumn(14))
    shipping_address: Mapped[str] = mapped_column(String(500))
    currency: Mapped[str] = mapped_column(String(3), default=shop_currency, server_default="USD")
    payment_status: Mapped[str] = mapped_column(
        String(20), default="unpaid", server_default="unpaid"
    )
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=as_created, onupdate=utcnow)

    items: Mapped[list[OrderItem]] = relationship(
        cascade="all, delete-orphan", passive_deletes=True, order_by="OrderItem.id"
    )
    # In the order the changes were made: each is a compare-and-set on the
    # order's row, so a later change's event gets a later id. Not by `at`,
    # the clock of the host that made the change: one host ahead of another
    # put "processing" after "shipped" (found by review).
    status_history: Mapped[list[OrderStatusEvent]] = relationship(
        cascade="all, delete-orphan",
        passive_deletes=True,
        order_by="OrderStatusEvent.id",
    )

    __table_args__ = (
        CheckConstraint(_STATUS_CHECK, name="status_known"),
        CheckConstraint(_PAYMENT_CHECK, name="payment_status_known"),
        Index("ix_orders_user_id_created_at", "user_id", "created_at"),
        Index("ix_orders_status", "status"),
    )


class OrderItem(db.Model):
    __tablename__ = "order_items"

    id: Mapped[int] = mapped_column(primary_key=True)
    order_id: Mapped[int] = mapped_column(ForeignKey("orders.id", ondelete="CASCADE"), index=True)
    # Products are only soft-deleted, so this stays set; name and price are
    # copies taken at ordering time so later edits never change the order.
    product_id: Mapped[int | None] = mapped_column(
        ForeignKey("products.id", ondelete="SET NULL"), index=True
    )
    product_name: Mapped[str] = mapped_column(String(200))
    unit_price: Mapped[Decimal] = mapped_column(MoneyColumn())
    quantity: Mapped[int]
    subtotal: Mapped[Decimal] = mapped_column(MoneyColumn())

    __table_args__ = (CheckConstraint("quantity >= 1", name="quantity_positive"),)


class OrderStatusEvent(db.Model):
    __tablename__ = "order_status_history"

    id: Mapped[int] = mapped_column(primary_key=True)
    order_id: Mapped[int] = mapped_column(ForeignKey("orders.id", ondelete="CASCADE"), index=True)
    status: Mapped[str] = mapped_column(String(20))
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
