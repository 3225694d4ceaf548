"""Background work, one transaction per step: deliver outbox rows, run
periodic jobs. Called by the Celery tasks, the embedded thread and the CLI."""

from __future__ import annotations

import logging
import time

from app.db import unit_of_work
from app.services import outbox
from app.services.background import PERIODIC_JOBS

log = logging.getLogger(__name__)


def deliver_one(message_id: int | None = None) -> bool:
    """Claim one due outbox row (or that one), deliver it, record the outcome.
    False when there was nothing to claim."""
    with unit_of_work():
        message = outbox.claim(message_id)
    if message is None:
        return False
    try:
        if message.kind == "email":
            outbox.send_email(message)  # outside any transaction: SMTP may be slow
            with unit_of_work():
                outbox.mark_sent(message.id)
        else:
            with unit_of_work():  # the task's effects and its completion, together
                outbox.run_task(message)
                outbox.mark_sent(message.id)
    except Exception as error:  # noqa: BLE001 - any failure is retried, then logged
        with unit_of_work():
            outbox.mark_failed_attempt(message, error)
    return True


def drain(limit: int | None = None, budget: float | None = None) -> int:
    """Deliver due rows until none is left (or `limit` rows, or `budget` seconds)."""
    done = 0
    started = time.monotonic()
    while limit is None or done < limit:
        if budget is not None and time.monotonic() - started > budget:
            break
        if not deliver_one():
            break
        done += 1
    return done


def run_job(name: str) -> bool:
    """Run a periodic job if no worker has started it within its interval."""
    job = PERIODIC_JOBS[name]
    interval = job.interval()
    if interval <= 0:
        return False
    with unit_of_work():
        started = outbox.start_periodic_run(name, interval)
    if not started:
        return False
    try:
        with unit_of_work():
            job.run()
    except Exception:
        log.exception("periodic job %s failed", name)
        return False
    return True


def run_due_jobs() -> None:
    for name in list(PERIODIC_JOBS):
        run_job(name)
