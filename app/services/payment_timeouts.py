"""Abandoned checkouts: a pending order left unpaid past ORDER_PAYMENT_TIMEOUT
is cancelled through the ordinary cancel path, so its stock comes back, its
history records it, and the customer gets the cancellation email (queued in
the same transaction). A periodic job every ORDER_PAYMENT_SWEEP_INTERVAL
seconds, and `flask cancel-expired-orders`."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from flask import current_app
from sqlalchemy import select, text
from sqlalchemy.exc import OperationalError

from app.db import unit_of_work
from app.errors import ApiError
from app.extensions import db
from app.models import Order, OrderStatus
from app.models.types import utcnow
from app.services import orders
from app.services.background import periodic
from app.services.orders import lock_order

log = logging.getLogger(__name__)
BATCH = 500
# How long one order's cancel waits on a row lock (its products, locked in id
# order to restock them) before the order is left to a later run, on
# PostgreSQL: a checkout or a stock change holds a product for milliseconds.
LOCK_WAIT_MS = 2000
# PostgreSQL's SQLSTATEs of a wait given up on one order: lock_timeout
# (lock_not_available), statement_timeout (query_canceled), a deadlock.
GAVE_UP_WAITING = frozenset({"55P03", "57014", "40P01"})


def expired_order_ids(now: datetime | None = None, after: int = 0) -> list[int]:
    """Ids of pending, unpaid orders older than the timeout (none when it is
    0), the first BATCH past the id `after`."""
    timeout = current_app.config.get("ORDER_PAYMENT_TIMEOUT", 0)
    if timeout <= 0:
        return []
    cutoff = (now or utcnow()) - timedelta(seconds=timeout)
    return list(
        db.session.scalars(
            select(Order.id)
            .where(
                Order.status == OrderStatus.PENDING,
                Order.payment_status == "unpaid",
                Order.created_at < cutoff,
                Order.id > after,
            )
            .order_by(Order.id)
            .limit(BATCH)
        )
    )


def cancel_expired_orders(now: datetime | None = None) -> list[Order]:
    """Cancel every expired order and restock it, each order in a transaction
    of its own; an order that a racing pay or cancel moved first is left
    alone. Returns the orders cancelled. (All in one transaction, the sweep
    held the products of every order so far while it locked the next
    order's: products out of id order across orders, which deadlocked with
    a checkout or a cancel locking them in id order.) Batch after batch, by
    id: taking the first batch again each time, as many orders it could not
    cancel (a restock past the stock's maximum) kept every later one from
    ever being cancelled (found by review)."""
    cancelled: list[Order] = []
    batch = expired_order_ids(now)
    while batch:
        cancelled += _cancel_each(batch)
        # A short batch was the last one there was.
        batch = expired_order_ids(now, batch[-1]) if len(batch) == BATCH else []
    return cancelled


def _cancel_each(order_ids: list[int]) -> list[Order]:
    cancelled = []
    for order_id in order_ids:
        try:
            with unit_of_work():  # commits this order's cancel (and what came before)
                _bound_lock_waits()
                # An order whose row is locked is being paid, cancelled or
                # changed right now: left to a later sweep. Waited for, a pay
                # held up by its provider made the lock wait pass the statement
                # timeout, and the sweep ended there, every later order of it
                # left uncancelled (found by review).
                order = lock_order(order_id, skip_locked=True)
                if (
                    order is None
                    or order.status != OrderStatus.PENDING
                    or order.payment_status != "unpaid"
                ):
                    continue
                orders.change_status(order, OrderStatus.CANCELLED)
        except ApiError as error:  # moved by a racing pay or cancel, or refused
            log.info("order %s not cancelled by the payment timeout: %s", order_id, error)
            continue
        except OperationalError as error:
            # A row of the order (a product another transaction holds) stayed
            # locked: the whole order rolled back, none of its lines
            # restocked, and it is left to a later run. Raised, it ended the
            # sweep, and every run started at that order again: one locked
            # product kept every later expired order, and its stock, from
            # being cancelled (found by review). Anything else (a connection
            # lost) still ends the run.
            if getattr(error.orig, "sqlstate", None) not in GAVE_UP_WAITING:
                raise
            reason = (str(error.orig).splitlines() or ["a lock wait given up"])[0]
            log.warning("order %s left to a later sweep: %s", order_id, reason)
            continue
        log.info("order %s cancelled: unpaid after the payment timeout", order.id)
        cancelled.append(order)
    return cancelled


def _bound_lock_waits() -> None:
    """On PostgreSQL, this order's transaction waits at most LOCK_WAIT_MS for
    each lock (SET LOCAL: it ends with the transaction). SQLite's writer
    holds the whole database from BEGIN: nothing to bound there."""
    if db.session.get_bind().dialect.name == "postgresql":
        db.session.execute(text(f"SET LOCAL lock_timeout = {int(LOCK_WAIT_MS)}"))


@periodic("orders.payment_timeout", every="ORDER_PAYMENT_SWEEP_INTERVAL")
def sweep_expired_orders() -> None:
    """The periodic job (on a worker, or the embedded thread)."""
    cancel_expired_orders()
