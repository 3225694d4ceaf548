from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from app.extensions import db
from app.models.types import UTCDateTime, utcnow


class IdempotencyKey(db.Model):
    """A client's Idempotency-Key: claimed while running, then the answer."""

    __tablename__ = "idempotency_keys"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    key: Mapped[str] = mapped_column(String(255))
    fingerprint: Mapped[str] = mapped_column(String(64))
    # Which request holds the claim: a retry that takes an abandoned claim over
    # gets a new token, and the first request can then no longer commit.
    claim_token: Mapped[str | None] = mapped_column(String(32))
    response_status: Mapped[int | None]  # None while the first request runs
    response_body: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)

    __table_args__ = (UniqueConstraint("user_id", "key"),)
