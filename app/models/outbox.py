"""The transactional outbox: work recorded in the same transaction as the
change it reports, delivered afterwards by a worker (at least once)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, CheckConstraint, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from app.extensions import db
from app.models.types import UTCDateTime, utcnow

OUTBOX_KINDS = ("email", "task")
OUTBOX_STATUSES = ("pending", "sent", "failed")


class OutboxMessage(db.Model):
    """An email to send (`payload`: template, context - rendered by the worker
    that delivers it; rows from before: subject, text, html) or a task to run
    (`payload`: name, args). A worker claims a pending row by moving
    `available_at` one lease ahead, so a worker that dies leaves it to others."""

    __tablename__ = "outbox"

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(10))
    # What it is, for people: the template of an email or the name of a task.
    topic: Mapped[str] = mapped_column(String(80))
    recipient: Mapped[str | None] = mapped_column(String(254))
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(10), default="pending")
    attempts: Mapped[int] = mapped_column(default=0)
    available_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    __table_args__ = (
        CheckConstraint(
            "kind IN (" + ", ".join(f"'{k}'" for k in OUTBOX_KINDS) + ")", name="kind_known"
        ),
        CheckConstraint(
            "status IN (" + ", ".join(f"'{s}'" for s in OUTBOX_STATUSES) + ")",
            name="status_known",
        ),
        # Workers look for due pending rows; sent and failed ones stay out of the way.
        Index("ix_outbox_status_available_at", "status", "available_at"),
    )


class PeriodicJobRun(db.Model):
    """When each periodic job last started: a compare-and-set on this row lets
    every worker (and every embedded app process) tick, while a job runs at most
    once per interval across all of them."""

    __tablename__ = "periodic_job_runs"

    name: Mapped[str] = mapped_column(String(80), primary_key=True)
    last_run_at: Mapped[datetime] = mapped_column(UTCDateTime)
