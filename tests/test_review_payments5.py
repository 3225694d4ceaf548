"""Review of payments and the order workflow (session 14): each test is a bug
found by probing, fixed with it."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import create_engine, text

from app.db import unit_of_work
from app.models.types import utcnow
from app.services.payment_providers import make_provider
from app.services.payment_timeouts import cancel_expired_orders
from tests.helpers import DATABASE_URL, IS_POSTGRES, order_for, pay, scalar, stock
from tests.test_payments_stripe import (
    STRIPE_CONFIG,
    RecordingHTTPClient,
    card_declined,
    intent,
    invalid_request,
)


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


def test_a_pay_after_its_intent_was_cancelled_at_stripe_makes_a_new_one(
    make_app, buyer, make_product
):
    """A PaymentIntent cancelled at Stripe (its dashboard or API) can never be
    confirmed: the shop kept confirming it on every pay, Stripe answered
    `payment_intent_unexpected_state`, the lookup found it `canceled`, and
    the customer got a 502 "try again" on each pay until the payment
    timeout. Now a new intent takes its place, under the attempt's create
    key, and its confirm under a key of its own (the attempt's confirm key
    already holds Stripe's refusal); it is the one recorded."""
    http = RecordingHTTPClient()
    app = make_app("testing", STRIPE_CONFIG)
    app.extensions["payment_provider"] = make_provider(app.config, http_client=http)
    client = app.test_client()
    _, token = buyer
    order = order_for(client, token, (make_product(price="19.99", stock=3), 1))
    http.answers = [(200, intent("requires_payment_method")), (402, card_declined())]
    assert pay(client, token, order["id"]).status_code == 402
    cancelled = invalid_request(
        "payment_intent_unexpected_state", "This PaymentIntent's status is canceled."
    )
    http.answers = [
        (400, cancelled),
        (200, intent("canceled", "pi_1")),
        (200, intent("requires_payment_method", "pi_2")),
        (200, intent("succeeded", "pi_2")),
    ]
    del http.requests[:]

    response = pay(client, token, order["id"])

    assert response.status_code == 200, response.get_json()
    calls = [(r["method"], r["path"], r["headers"].get("Idempotency-Key")) for r in http.requests]
    n = order["id"]
    assert calls == [
        ("POST", "/v1/payment_intents/pi_1/confirm", f"order-{n}-attempt-2"),
        ("GET", "/v1/payment_intents/pi_1", None),
        ("POST", "/v1/payment_intents", f"order-{n}-intent-2"),
        ("POST", "/v1/payment_intents/pi_2/confirm", f"order-{n}-attempt-2-after-pi_1"),
    ]
    assert scalar("SELECT payment_status FROM orders") == "paid"
    assert scalar("SELECT intent_id FROM payments WHERE status = 'succeeded'") == "pi_2"
    assert scalar("SELECT count(*) FROM payments WHERE intent_id = 'pi_2'") == 1
