"""The stock ledger: one row per change of a product's stock."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    Boolean,
    CheckConstraint,
    ForeignKey,
    Index,
    Integer,
    String,
    event,
    false,
    insert,
)
from sqlalchemy.orm import Mapped, mapped_column

from app.extensions import db
from app.models.order import Order
from app.models.types import UTCDateTime, utcnow

# created: initial stock; order: checkout; cancel: restock of a cancelled order
# (by anyone, or by the payment timeout); adjustment: an admin's correction.
STOCK_REASONS = ("created", "order", "cancel", "adjustment")
_REASON_CHECK = "reason IN (" + ", ".join(f"'{r}'" for r in STOCK_REASONS) + ")"
NOTE_MAX = 500


class StockMovement(db.Model):
    __tablename__ = "stock_movements"

    id: Mapped[int] = mapped_column(primary_key=True)
    product_id: Mapped[int] = mapped_column(ForeignKey("products.id", ondelete="CASCADE"))
    delta: Mapped[int] = mapped_column(Integer)
    stock_after: Mapped[int] = mapped_column(Integer)
    reason: Mapped[str] = mapped_column(String(20))
    order_id: Mapped[int | None] = mapped_column(ForeignKey("orders.id", ondelete="SET NULL"))
    actor_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    note: Mapped[str | None] = mapped_column(String(NOTE_MAX))
    # This movement took the stock from above the product's threshold to at or
    # below it, and so raised the low-stock alert, kept with the change that
    # caused it. A raised threshold that makes a product low alerts with no
    # movement (its stock did not change).
    low_stock_alert: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    __table_args__ = (
        CheckConstraint(_REASON_CHECK, name="reason_known"),
        CheckConstraint("stock_after >= 0", name="stock_after_non_negative"),
        # The ledger of one product, newest first (ids grow with time).
        Index("ix_stock_movements_product_id_id", "product_id", "id"),
        Index("ix_stock_movements_order_id", "order_id"),
    )

    def __repr__(self) -> str:
        return f"<StockMovement {self.id} product={self.product_id} {self.delta:+d} {self.reason}>"


# A checkout moves stock before its order has an id. Its movements wait on the
# order object and are written right after the order's INSERT, in the same
# flush and transaction, as one multi-row INSERT; if the order is never
# written (the checkout failed), neither are they.
_PENDING = "_pending_stock_movements"


def pending_movements(order: Order) -> list[dict]:
    """The movements waiting for `order` (not yet written) to get its id."""
    if _PENDING not in order.__dict__:
        order.__dict__[_PENDING] = []
    return order.__dict__[_PENDING]


@event.listens_for(Order, "after_insert")
def _write_pending_movements(_mapper, connection, order: Order) -> None:
    rows = order.__dict__.pop(_PENDING, None)
    if rows:
        connection.execute(
            insert(StockMovement.__table__), [{**row, "order_id": order.id} for row in rows]
        )
