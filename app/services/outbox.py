"""The transactional outbox. `queue_email` and `queue_task` add a row to the
caller's transaction (committed by its unit of work, or rolled back with it);
workers claim due rows, deliver them and record the outcome.

Claiming moves a row's `available_at` one lease ahead (`OUTBOX_LEASE`): the
claim is one UPDATE whose subquery picks the row `FOR UPDATE SKIP LOCKED` on
PostgreSQL (concurrent workers skip each other's rows instead of waiting), and
SQLite runs writers one at a time. A worker that dies after claiming leaves the
row to be claimed again when the lease ends: delivery is at least once."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

from flask import current_app
from sqlalchemy import func, insert, or_, select, tuple_, update

from app.db import upsert
from app.extensions import db
from app.models import OutboxMessage, PeriodicJobRun
from app.models.types import utcnow
from app.services import mail
from app.services.background import TASK_HANDLERS

log = logging.getLogger(__name__)

# session.info key: the ids to hand to the workers once the transaction
# commits, each with the savepoint it was queued in (None: none).
AFTER_COMMIT = "outbox_after_commit"


def _after_commit(message_id: int) -> None:
    savepoint = db.session().get_nested_transaction()
    db.session.info.setdefault(AFTER_COMMIT, []).append((message_id, savepoint))


# One INSERT ... RETURNING id, built once. An OutboxMessage added to the
# session was flushed by the ORM's unit of work at commit: 0.62 ms of a
# 3.2 ms checkout on SQLite (`bench/profile.py checkout`), with the write lock
# held; this statement runs in a fraction of that.
_INSERT = insert(OutboxMessage.__table__).returning(OutboxMessage.__table__.c.id)


def _queue(rows: list[dict[str, Any]]) -> list[int]:
    """Insert outbox rows (kind, topic, recipient, payload), in one statement
    however many (the ids come back in no set order: only one row's id is
    ever handed back, and SQLite sent one INSERT per row when asked for them
    in order)."""
    ids = list(db.session.scalars(_INSERT, rows))
    for message_id in ids:
        _after_commit(message_id)
    return ids


def queue_email(to: str, template: str, context: dict[str, Any]) -> int:
    """Record an email from `email/<template>.{subject.txt,txt,html}` in the
    current transaction (its row's id); it is sent after the commit, never
    before. The row keeps the template's name and `context` (as JSON:
    decimals as strings, which the `money` filter takes); the worker renders
    it when it delivers. Rendering the order confirmation's two bodies took
    0.5 ms of a 1.4 ms checkout transaction, with SQLite's write lock
    (PostgreSQL: the stock rows' locks) held."""
    return queue_emails([(to, template, context)])[0]


def queue_emails(emails: list[tuple[str, str, dict[str, Any]]]) -> list[int]:
    """`queue_email` for each (to, template, context), in one INSERT."""
    rows = []
    for to, template, context in emails:
        mail.check_template(template)
        payload = {"template": template, "context": mail.jsonable(context)}
        rows.append({"kind": "email", "topic": template, "recipient": to, "payload": payload})
    return _queue(rows) if rows else []


def queue_task(name: str, args: dict[str, Any]) -> int:
    """Record a task (a `@task_handler(name)`) to run after the commit (its
    row's id); `args` is JSON."""
    if name not in TASK_HANDLERS:
        raise LookupError(f"no task handler named {name!r}")
    payload = {"name": name, "args": args}
    return _queue([{"kind": "task", "topic": name, "recipient": None, "payload": payload}])[0]


def _due(now: datetime):
    return (OutboxMessage.status == "pending", OutboxMessage.available_at <= now)


def claim(message_id: int | None = None) -> OutboxMessage | None:
    """Take the next due row (or that one), leased for OUTBOX_LEASE seconds.
    The caller commits the claim before it delivers."""
    claimed = claim_due(1, message_id)
    return claimed[0] if claimed else None


def claim_due(limit: int, message_id: int | None = None) -> list[OutboxMessage]:
    """Take up to `limit` due rows (oldest first; or only that one) in one
    UPDATE, each leased for OUTBOX_LEASE seconds. The caller commits the
    claim before it delivers, and delivers them all within the lease."""
    now = utcnow()
    pick = select(OutboxMessage.id).where(*_due(now))
    if message_id is not None:
        pick = pick.where(OutboxMessage.id == message_id)
    # Picked once, in a CTE PostgreSQL must materialise: as an IN (subquery)
    # it planned a semi join that ran the subquery again for every row it
    # scanned, and SKIP LOCKED skipped the rows it had just claimed each time,
    # so claim_due(1) took 6 rows and claim_due(2) 24 - batches that outlived
    # their lease and were sent twice.
    pick = (
        pick.order_by(OutboxMessage.available_at, OutboxMessage.id)
        .limit(limit)
        .with_for_update(skip_locked=True)
        .cte("picked")
        .prefix_with("MATERIALIZED", dialect="postgresql")
    )
    lease = timedelta(seconds=current_app.config["OUTBOX_LEASE"])
    limit_attempts = current_app.config["MAIL_MAX_ATTEMPTS"]
    while True:
        claimed = db.session.scalars(
            update(OutboxMessage)
            .where(OutboxMessage.id.in_(select(pick.c.id)), *_due(now))
            .values(available_at=now + lease, attempts=OutboxMessage.attempts + 1)
            .returning(OutboxMessage)
            .execution_options(synchronize_session=False, populate_existing=True)
        ).all()
        # A row claimed more than MAIL_MAX_ATTEMPTS times had deliveries that
        # never recorded an outcome (a worker killed or hung while sending it,
        # each lease run out): it fails now, where it was claimed for ever.
        # The claim that finds it so is no attempt: the row keeps the
        # MAIL_MAX_ATTEMPTS it had (it showed one more, found by review).
        for message in claimed:
            if message.attempts > limit_attempts:
                mark_failed_attempt(
                    message,
                    LeaseExpired("no outcome recorded"),
                    permanent=True,
                    attempts=limit_attempts,
                )
        usable = [message for message in claimed if message.attempts <= limit_attempts]
        # A batch of such rows only is no sign that nothing is due: it read
        # as an empty claim, and `flask mail deliver` (any drain) stopped
        # there, leaving due emails behind it unsent (found by review). The
        # failed rows are no longer pending: the next claim takes others.
        if usable or not claimed:
            return sorted(usable, key=lambda message: (message.available_at, message.id))


class LeaseExpired(RuntimeError):
    """The row's lease ran out before its outcome was recorded: another
    worker has claimed it since (or will), and its outcome is that worker's."""


def _claimed_by(*messages: OutboxMessage):
    """The rows still held by these claims: pending, and claimed no time
    since (each claim counts one more attempt). One row, the usual case
    (every email is recorded as soon as it is sent), by plain equalities;
    several by `id IN` and a row-value IN: SQLite plans a row-value IN alone
    by the status index, a scan of every pending row, so recording one email
    as sent cost 1 ms with 2,200 emails queued (0.006 ms by primary key)."""
    if len(messages) == 1:
        held = (OutboxMessage.id == messages[0].id, OutboxMessage.attempts == messages[0].attempts)
    else:
        held = (
            OutboxMessage.id.in_([message.id for message in messages]),
            tuple_(OutboxMessage.id, OutboxMessage.attempts).in_(
                [(message.id, message.attempts) for message in messages]
            ),
        )
    return (*held, OutboxMessage.status == "pending")


def due_ids(grace: float, limit: int = 1000) -> list[int]:
    """Pending rows never tried and due for at least `grace` seconds (their
    enqueue was lost), and rows tried before and due now (a retry, or a
    lease run out). The grace is for a new row's enqueue after its commit,
    which may still be on its way; a retry has no other enqueue, and the
    grace held it back that much past its backoff (found by review)."""
    now = utcnow()
    cutoff = now - timedelta(seconds=grace)
    return list(
        db.session.scalars(
            select(OutboxMessage.id)
            .where(
                *_due(now),
                or_(OutboxMessage.available_at <= cutoff, OutboxMessage.attempts > 0),
            )
            .order_by(OutboxMessage.available_at, OutboxMessage.id)
            .limit(limit)
        )
    )


def send_email(message: OutboxMessage, deadline: float | None = None) -> None:
    """Deliver a claimed email row through the configured backend (no database
    work), rendering it first (a row queued before rendering moved to the
    worker holds the rendered subject, text and HTML); by `deadline`
    (time.monotonic(): before the claim's lease ends) if given."""
    payload = message.payload
    if "template" in payload:
        payload = mail.render(payload["template"], payload["context"])
    mail.send(
        message.recipient or "",
        payload,
        mail.message_id(message.id, message.created_at.timestamp()),
        deadline,
    )


def run_task(message: OutboxMessage) -> None:
    """Run a claimed task row's handler in the caller's transaction."""
    name = message.payload["name"]
    handler = TASK_HANDLERS.get(name)
    if handler is None:
        raise LookupError(f"no task handler named {name!r}")
    handler(message.payload.get("args") or {})


def mark_sent(*messages: OutboxMessage) -> int:
    """Record these claimed rows as sent; how many were still this claim's
    (a row another worker claimed after the lease ran out is not)."""
    return db.session.execute(
        update(OutboxMessage)
        .where(*_claimed_by(*messages))
        .values(status="sent", sent_at=utcnow(), last_error=None)
        .execution_options(synchronize_session=False)
    ).rowcount


def complete_task(message: OutboxMessage) -> None:
    """Record a task row as done, in the transaction of the task's effects:
    raises LeaseExpired (rolling the effects back) when the row is no longer
    this claim's - another worker runs it, and its effects happen once."""
    if not mark_sent(message):
        raise LeaseExpired(f"outbox task {message.id} was claimed again before it finished")


def release(*messages: OutboxMessage) -> None:
    """Hand claimed rows this worker did not start back to the queue, due now
    (their claim not counted as an attempt)."""
    db.session.execute(
        update(OutboxMessage)
        .where(*_claimed_by(*messages))
        .values(available_at=utcnow(), attempts=OutboxMessage.attempts - 1)
        .execution_options(synchronize_session=False)
    )


def backoff(attempts: int) -> float:
    """Seconds before retry number `attempts` (1, 2, ...): doubling, capped."""
    config = current_app.config
    return min(config["MAIL_RETRY_BACKOFF"] * 2 ** (attempts - 1), config["MAIL_RETRY_BACKOFF_MAX"])


def mark_failed_attempt(
    message: OutboxMessage,
    error: BaseException,
    permanent: bool = False,
    attempts: int | None = None,
) -> str:
    """Schedule the retry after a failed attempt, or give up after
    MAIL_MAX_ATTEMPTS (or at once for a `permanent` failure, one a retry
    would repeat); returns the new status. `attempts`: the count to record
    instead of the claim's."""
    reason = f"{type(error).__name__}: {error}"[:2000]
    values: dict[str, Any] = {"last_error": reason}
    if attempts is not None:
        values["attempts"] = attempts
    failed = permanent or message.attempts >= current_app.config["MAIL_MAX_ATTEMPTS"]
    if failed:
        values["status"] = "failed"
    else:
        delay = backoff(message.attempts)
        values["available_at"] = utcnow() + timedelta(seconds=delay)
    recorded = db.session.execute(
        update(OutboxMessage)
        .where(*_claimed_by(message))
        .values(**values)
        .execution_options(synchronize_session=False)
    ).rowcount
    what = (message.kind, message.id, message.topic, values.get("attempts", message.attempts))
    if not recorded:  # another worker's claim now: its outcome, not this one's
        log.warning("outbox %s %s (%s) attempt %s failed after its lease: %s", *what, reason)
        return "pending"
    if failed:
        log.error("outbox %s %s (%s) failed after %s attempts: %s", *what, reason)
    else:
        log.warning(
            "outbox %s %s (%s) attempt %s failed, retry in %.1f s: %s", *what, delay, reason
        )
    return values.get("status", "pending")


def failed_messages(limit: int = 100) -> list[OutboxMessage]:
    return list(
        db.session.scalars(
            select(OutboxMessage)
            .where(OutboxMessage.status == "failed")
            .order_by(OutboxMessage.id)
            .limit(limit)
        )
    )


def retry_failed(ids: list[int] | None = None) -> list[int]:
    """Put failed rows (all, or these ids) back in the queue with fresh attempts.
    One UPDATE ... RETURNING: the failed ids, read first and sent back as one
    bind parameter each, made `--all` after a long outage (more than 65,535
    failed rows) a query PostgreSQL refuses, and nothing was retried (found
    by review)."""
    stmt = update(OutboxMessage).where(OutboxMessage.status == "failed")
    if ids:
        stmt = stmt.where(OutboxMessage.id.in_(ids))
    chosen = sorted(
        db.session.scalars(
            stmt.values(status="pending", attempts=0, available_at=utcnow())
            .returning(OutboxMessage.id)
            .execution_options(synchronize_session=False)
        )
    )
    for message_id in chosen:
        _after_commit(message_id)
    return chosen


def counts() -> dict[str, int]:
    rows = db.session.execute(
        select(OutboxMessage.status, func.count()).group_by(OutboxMessage.status)
    )
    return {status: count for status, count in rows}


def start_periodic_run(name: str, interval: float) -> bool:
    """Compare-and-set the job's last start: True for exactly one caller per
    interval, whichever worker or process asks."""
    now = utcnow()
    db.session.execute(
        upsert(PeriodicJobRun)
        .values(name=name, last_run_at=datetime.fromtimestamp(0, now.tzinfo))
        .on_conflict_do_nothing(index_elements=["name"])
    )
    # A tick may come a little early (timer jitter): allow 10 %, at most 1 s.
    slack = min(interval * 0.1, 1.0)
    started = db.session.execute(
        update(PeriodicJobRun)
        .where(
            PeriodicJobRun.name == name,
            PeriodicJobRun.last_run_at <= now - timedelta(seconds=interval - slack),
        )
        .values(last_run_at=now)
        .execution_options(synchronize_session=False)
    ).rowcount
    return started == 1
