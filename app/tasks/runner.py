"""Background work, one transaction per step: deliver outbox rows, run
periodic jobs. Called by the Celery tasks, the embedded thread and the CLI."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from flask import current_app
from sqlalchemy.exc import SQLAlchemyError

from app.db import unit_of_work
from app.extensions import db
from app.services import mail, outbox
from app.services.background import PERIODIC_JOBS

log = logging.getLogger(__name__)
MAX_BATCH = 20
# Seconds (at most a tenth of the lease) an email's send leaves before its
# claim's lease ends, to record the outcome while the claim is still its own.
LEASE_MARGIN = 5.0


def deliver_one(message_id: int | None = None) -> bool:
    """Claim one due outbox row (or that one), deliver it, record the outcome.
    False when there was nothing to claim."""
    return deliver_batch(1, message_id) > 0


def batch_size() -> int:
    """Rows claimed at once: as many as can be delivered, each within
    MAIL_TIMEOUT, in half the lease (so no other worker takes one over while
    this one still works through them): 6 with the defaults."""
    config = current_app.config
    fits = config["OUTBOX_LEASE"] / (2 * max(config["MAIL_TIMEOUT"], 1))
    return max(1, min(MAX_BATCH, int(fits)))


def deliver_batch(
    limit: int, message_id: int | None = None, stopping: Callable[[], bool] | None = None
) -> int:
    """Claim up to `limit` due rows in one transaction (the claim was 1.3 ms
    of an email's 4.2 ms of worker CPU), then deliver them one by one, each
    recorded as soon as it is sent: a row sent early in a batch must not wait
    for a slow later one while its lease runs out (another worker would send
    it again). A task's effects commit with its own completion. Every
    outcome applies only to this worker's claim of the row (its id and
    attempt, read at the claim: the rows leave the session, so a rollback
    never reloads another worker's claim into them). No row is started once
    half the lease has gone (a relay slow on every SMTP command outlasts
    MAIL_TIMEOUT per email), or once `stopping()` says the process leaves:
    the rest go back to the queue. An email's send ends before the lease
    does (`LEASE_MARGIN`), or fails (a retry later): past it another worker
    may claim the row. A 5xx refusal of the recipient or the message is not
    retried. Returns how many rows were claimed."""
    started = time.monotonic()
    with unit_of_work():
        messages = outbox.claim_due(limit, message_id)
        for message in messages:
            db.session.expunge(message)
    lease = current_app.config["OUTBOX_LEASE"]
    deadline = started + lease - min(LEASE_MARGIN, lease / 10)
    for index, message in enumerate(messages):
        leaving = stopping is not None and stopping()
        if index and (leaving or time.monotonic() - started > lease / 2):
            with unit_of_work():
                outbox.release(*messages[index:])
            break
        try:
            if message.kind == "email":
                # Outside any transaction: SMTP may be slow.
                outbox.send_email(message, deadline)
            else:
                with unit_of_work():  # the task's effects and its completion, together
                    outbox.run_task(message)
                    outbox.complete_task(message)
        except outbox.LeaseExpired as error:
            log.warning("%s: its effects were rolled back", error)
        except Exception as error:  # noqa: BLE001 - retried (unless permanent), then logged
            permanent = message.kind == "email" and mail.is_permanent(error)
            with unit_of_work():
                outbox.mark_failed_attempt(message, error, permanent=permanent)
        else:
            if message.kind == "email":
                _record_sent(message)
    return len(messages)


def _record_sent(message) -> None:
    """Mark a delivered email sent, trying once more on a new connection. A
    database error here is no failed attempt: counted as one, a delivered
    email was sent again, or marked `failed` (found by review). If the mark
    still fails, the row's lease runs out and it is sent again (at least once)."""
    for attempt in (1, 2):
        try:
            with unit_of_work():
                if not outbox.mark_sent(message):
                    log.warning("outbox email %s was claimed again meanwhile", message.id)
            return
        except SQLAlchemyError:
            if attempt == 2:
                log.exception("outbox email %s was sent but not recorded as sent", message.id)


def drain(
    limit: int | None = None,
    budget: float | None = None,
    stopping: Callable[[], bool] | None = None,
) -> int:
    """Deliver due rows until none is left (or `limit` rows, or `budget`
    seconds, or `stopping()` says so between two batches: a batch is always
    recorded as sent before the caller stops)."""
    done = 0
    started = time.monotonic()
    size = batch_size()
    while limit is None or done < limit:
        if budget is not None and time.monotonic() - started > budget:
            break
        if stopping is not None and stopping():
            break
        claimed = deliver_batch(size if limit is None else min(size, limit - done), None, stopping)
        if not claimed:
            break
        done += claimed
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


def run_due_jobs(next_try: dict[str, float]) -> None:
    """`run_job` for each job whose turn may have come. `next_try` (the
    caller's, by job name: monotonic seconds) keeps a worker from asking again
    too soon: not before the interval after a run it started, nor within a
    tenth of it (at most 5 s) after finding the job started elsewhere. The
    embedded worker ticks once per order placed, and each ask is a write
    transaction per job - on SQLite the one write lock checkouts queue for."""
    for name, job in list(PERIODIC_JOBS.items()):
        now = time.monotonic()
        if now < next_try.get(name, 0.0):
            continue
        interval = job.interval()
        if run_job(name):
            next_try[name] = now + interval - min(interval * 0.1, 1.0)
        else:
            next_try[name] = now + (min(interval * 0.1, 5.0) if interval > 0 else 5.0)
