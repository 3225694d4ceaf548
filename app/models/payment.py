from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, CheckConstraint, ForeignKey, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from app.extensions import db
from app.models.types import UTCDateTime, utcnow

PAYMENT_STATUSES = ("unpaid", "paid", "refunded")  # of an order
ATTEMPT_STATUSES = ("succeeded", "failed", "refunded")  # of one payment attempt


class Payment(db.Model):
    """One attempt to charge an order; the succeeded one is what a refund returns."""

    __tablename__ = "payments"

    id: Mapped[int] = mapped_column(primary_key=True)
    order_id: Mapped[int] = mapped_column(ForeignKey("orders.id", ondelete="CASCADE"), index=True)
    provider: Mapped[str] = mapped_column(String(20))
    # The provider's id of the charge (a Stripe PaymentIntent: one per order).
    intent_id: Mapped[str | None] = mapped_column(String(255), index=True)
    amount: Mapped[int] = mapped_column(BigInteger)  # in the currency's minor unit
    # What the provider has given back of it so far (partial refunds made at
    # the provider; `amount` once refunded in full), in the same units.
    amount_refunded: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    currency: Mapped[str] = mapped_column(String(3))
    status: Mapped[str] = mapped_column(String(20))
    attempt: Mapped[int]
    failure_message: Mapped[str | None] = mapped_column(String(500))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)

    __table_args__ = (
        UniqueConstraint("order_id", "attempt"),
        CheckConstraint("amount >= 0", name="amount_non_negative"),
        CheckConstraint("attempt >= 1", name="attempt_positive"),
        CheckConstraint(
            "amount_refunded >= 0 AND amount_refunded <= amount", name="amount_refunded_in_range"
        ),
        CheckConstraint(
            "status IN (" + ", ".join(f"'{s}'" for s in ATTEMPT_STATUSES) + ")",
            name="status_known",
        ),
    )


class PaymentEvent(db.Model):
    """A provider webhook event already applied: a redelivery changes nothing."""

    __tablename__ = "payment_events"

    provider: Mapped[str] = mapped_column(String(20), primary_key=True)
    event_id: Mapped[str] = mapped_column(String(255), primary_key=True)
    type: Mapped[str] = mapped_column(String(100))
    received_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
