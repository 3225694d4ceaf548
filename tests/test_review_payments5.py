"""Review of payments and the order workflow (session 14): each test is a bug
found by probing, fixed with it."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import create_engine, text

from app.db import unit_of_work
from app.models.types import utcnow
from app.services.payment_timeouts import cancel_expired_orders
from tests.helpers import DATABASE_URL, IS_POSTGRES, order_for, scalar, stock


def _expire_every_order(db) -> None:
    db.session.execute(
        text("UPDATE orders SET created_at = :at"), {"at": utcnow() - timedelta(hours=2)}
    )
    db.session.commit()


@pytest.mark.skipif(not IS_POSTGRES, reason="row locks: SQLite runs one writer at a time")
def test_an_order_being_paid_does_not_stop_the_payment_timeout_sweep(
    db, make_app, client, buyer, make_product
):
    """The sweep waited for the row lock of every expired order. One held by
    a pay whose provider call is slow (Stripe's client waits up to 80 s, with
    two retries) made that wait pass the statement timeout: the sweep raised
    there (QueryCanceled) and every later expired order stayed pending,
    holding its stock, for as long as the pay held the lock. Now an order
    whose row is locked is left to a later sweep and the others are
    cancelled at once."""
    _, token = buyer
    product = make_product(stock=10)
    busy = order_for(client, token, (product, 1))
    abandoned = order_for(client, token, (product, 2))
    _expire_every_order(db)
    other = create_engine(DATABASE_URL)
    try:
        with other.connect() as conn, conn.begin():
            # What a pay holds while its provider answers (orders.lock_order).
            conn.execute(
                text("SELECT id FROM orders WHERE id = :i FOR NO KEY UPDATE"), {"i": busy["id"]}
            )
            # A short statement timeout: the wait fails at once, not after 30 s.
            sweeper = make_app("testing", {"DB_STATEMENT_TIMEOUT_MS": 500})
            with sweeper.app_context(), unit_of_work():
                cancelled = [order.id for order in cancel_expired_orders()]
    finally:
        other.dispose()

    assert cancelled == [abandoned["id"]]
    assert scalar("SELECT status FROM orders WHERE id = :i", i=abandoned["id"]) == "cancelled"
    assert scalar("SELECT status FROM orders WHERE id = :i", i=busy["id"]) == "pending"
    assert stock(product) == 9
    # Once the pay is done (here: the lock let go), the next sweep takes it.
    assert [order.id for order in cancel_expired_orders()] == [busy["id"]]
    db.session.commit()
    assert stock(product) == 10
