"""Review of payments, round 8: a second charge of a paid order, partial
refunds, and events racing cancels and the payment timeout (Stripe faked at
the library's HTTP boundary; webhooks signed with the test secret)."""

from __future__ import annotations

import logging
from datetime import timedelta
from decimal import Decimal

import pytest
from sqlalchemy import text

from app.db import unit_of_work
from app.extensions import db
from app.models.types import utcnow
from app.services.payment_timeouts import cancel_expired_orders
from tests.helpers import IS_POSTGRES, auth, order_for, pay, race, scalar, stock
from tests.test_payments_stripe import (  # noqa: F401 - fixtures
    deliver,
    event,
    intent,
    signed,
    stripe_app,
    stripe_client,
    stripe_http,
    succeeded,
)

REFUNDED = {"id": "re_1", "object": "refund", "status": "succeeded"}
SERVER_ERROR = {"error": {"type": "api_error", "message": "An unknown error occurred"}}


def _paid(client, http, token, product, quantity=2):
    """An order of `quantity` units of `product`, paid synchronously by pi_1."""
    order = order_for(client, token, (product, quantity))
    amount = int(product.price * 100) * quantity
    http.answers = [
        (200, intent("requires_payment_method", amount=amount)),
        (200, intent("succeeded", amount=amount)),
    ]
    assert pay(client, token, order["id"]).status_code == 200
    return order


def _second(order_id, intent_id="pi_2", event_id="evt_dup", amount=3998, currency="usd"):
    obj = {
        **intent("succeeded", intent_id, amount=amount),
        "amount_received": amount,
        "currency": currency,
        "metadata": {"order_id": str(order_id)},
    }
    return event("payment_intent.succeeded", obj, event_id)


def refunded_charge(order_id, refunded, amount=3998, intent_id="pi_1") -> dict:
    """A `charge.refunded` event's object: `refunded` of the charge's `amount`
    (minor units) given back so far."""
    return {
        "id": "ch_1",
        "object": "charge",
        "payment_intent": intent_id,
        "amount": amount,
        "currency": "usd",
        "amount_refunded": refunded,
        "refunded": refunded >= amount,
        "metadata": {"order_id": str(order_id)},
    }


def _refund_event(order_id, refunded, event_id, amount=3998, intent_id="pi_1"):
    return event(
        "charge.refunded", refunded_charge(order_id, refunded, amount, intent_id), event_id
    )


def _refund_calls(http):
    return [r for r in http.requests if r["path"] == "/v1/refunds"]


def _payments(client, admin, order_id):
    response = client.get(f"/api/orders/{order_id}/payments", headers=auth(admin))
    assert response.status_code == 200, response.get_json()
    return response.get_json()


# --- a second PaymentIntent succeeding for a paid order -------------------------------


def test_a_second_charge_of_a_paid_order_is_refunded_once(
    stripe_client,  # noqa: F811 - the imported fixture
    stripe_http,  # noqa: F811
    buyer,
    make_product,
    make_user,
    login,
    caplog,
):
    """Before: the success of another PaymentIntent for an order already paid
    was ignored (`payment_status != "unpaid"`: return): the customer paid
    twice and nobody knew. Now it is refunded through the provider (once,
    however often the event, or another event of that intent, arrives) and
    logged; the order stays paid by its first payment."""
    _, token = buyer
    admin = login(make_user(admin=True))["access_token"]
    product = make_product(price="19.99", stock=5)
    order = _paid(stripe_client, stripe_http, token, product)
    paid = stripe_client.get(f"/api/orders/{order['id']}", headers=auth(token)).get_json()
    stripe_http.answers = [(200, {**REFUNDED, "id": "re_dup"})]
    payload = _second(order["id"])

    with caplog.at_level(logging.WARNING, logger="app.services.payments"):
        for _ in range(3):
            assert deliver(stripe_client, payload, signed(payload)).status_code == 200
    # Another event of the same intent (Stripe sends one per occurrence).
    again = _second(order["id"], event_id="evt_dup_2")
    assert deliver(stripe_client, again, signed(again)).status_code == 200

    refunds = _refund_calls(stripe_http)
    assert len(refunds) == 1
    assert refunds[0]["form"]["payment_intent"] == "pi_2"
    assert refunds[0]["form"]["amount"] == "3998"
    assert any("pi_2" in r.getMessage() and "refunding" in r.getMessage() for r in caplog.records)
    after = stripe_client.get(f"/api/orders/{order['id']}", headers=auth(token)).get_json()
    assert after == paid  # still paid and processing, by pi_1
    seen = _payments(stripe_client, admin, order["id"])
    assert seen["payment_status"] == "paid"
    assert seen["amount_refunded"] == Decimal("39.98")
    assert [
        (p["intent_id"], p["status"], p["amount"], p["amount_refunded"]) for p in seen["payments"]
    ] == [
        ("pi_1", "succeeded", Decimal("39.98"), 0),
        ("pi_2", "refunded", Decimal("39.98"), Decimal("39.98")),
    ]
    # Stripe's own charge.refunded for that refund leaves the order alone,
    # and a cancel still refunds pi_1, in full.
    dup_refund = _refund_event(order["id"], 3998, "evt_dup_refunded", intent_id="pi_2")
    assert deliver(stripe_client, dup_refund, signed(dup_refund)).status_code == 200
    assert scalar("SELECT payment_status FROM orders") == "paid"
    stripe_http.answers = [(200, REFUNDED)]
    cancelled = stripe_client.post(f"/api/orders/{order['id']}/cancel", headers=auth(token))
    assert cancelled.status_code == 200, cancelled.get_json()
    assert cancelled.get_json()["payment_status"] == "refunded"
    last = _refund_calls(stripe_http)[-1]["form"]
    assert (last["payment_intent"], last["amount"]) == ("pi_1", "3998")
    assert stock(product) == 5


def test_a_failed_refund_of_a_second_charge_is_tried_again_on_redelivery(
    stripe_client,  # noqa: F811
    stripe_http,  # noqa: F811
    buyer,
    make_product,
):
    _, token = buyer
    order = _paid(stripe_client, stripe_http, token, make_product(price="19.99", stock=5))
    payload = _second(order["id"])
    stripe_http.answers = [(500, SERVER_ERROR)] * 3  # the library retries twice
    response = deliver(stripe_client, payload, signed(payload))
    assert response.status_code == 502
    assert scalar("SELECT count(*) FROM payment_events") == 0
    assert scalar("SELECT count(*) FROM payments WHERE intent_id = 'pi_2'") == 0

    stripe_http.answers = [(200, REFUNDED)]
    assert deliver(stripe_client, payload, signed(payload)).status_code == 200
    assert scalar("SELECT status FROM payments WHERE intent_id = 'pi_2'") == "refunded"
    assert scalar("SELECT payment_status FROM orders") == "paid"


def test_a_second_charge_of_a_cancelled_refunded_order_is_refunded(
    stripe_client,  # noqa: F811
    stripe_http,  # noqa: F811
    buyer,
    make_product,
):
    _, token = buyer
    order = _paid(stripe_client, stripe_http, token, make_product(price="19.99", stock=5))
    stripe_http.answers = [(200, REFUNDED)]
    assert (
        stripe_client.post(f"/api/orders/{order['id']}/cancel", headers=auth(token)).status_code
        == 200
    )
    stripe_http.answers = [(200, {**REFUNDED, "id": "re_2"})]
    payload = _second(order["id"])
    assert deliver(stripe_client, payload, signed(payload)).status_code == 200
    assert [r["form"]["payment_intent"] for r in _refund_calls(stripe_http)] == ["pi_1", "pi_2"]
    assert scalar("SELECT status FROM orders") == "cancelled"
    assert scalar("SELECT payment_status FROM orders") == "refunded"


def test_a_second_charge_of_another_amount_is_left_to_a_person(
    stripe_client,  # noqa: F811
    stripe_http,  # noqa: F811
    buyer,
    make_product,
    caplog,
):
    """As for an unpaid order: a payment the shop never asked for is not the
    order's; it is logged, not refunded automatically."""
    _, token = buyer
    order = _paid(stripe_client, stripe_http, token, make_product(price="19.99", stock=5))
    payload = _second(order["id"], "pi_cent", amount=1)
    with caplog.at_level(logging.WARNING, logger="app.services.payments"):
        assert deliver(stripe_client, payload, signed(payload)).status_code == 200
    assert _refund_calls(stripe_http) == []
    assert any("not applied" in r.getMessage() for r in caplog.records)
    assert scalar("SELECT count(*) FROM payments") == 1


# --- partial refunds ----------------------------------------------------------------


def test_a_partial_refund_keeps_the_order_paid_and_a_cancel_refunds_the_rest(
    stripe_client,  # noqa: F811
    stripe_http,  # noqa: F811
    buyer,
    make_product,
    make_user,
    login,
):
    """Before: `charge.refunded` with amount_refunded < amount was recorded
    and ignored, and a cancel then asked Stripe for the full amount, which it
    refuses for a charge partly refunded (a 502, the order never cancelled).
    Now the order stays paid and processing, the payment records what came
    back (the largest cumulative amount seen, whatever order the events came
    in), admins see it, and a cancel refunds only the rest."""
    _, token = buyer
    admin = login(make_user(admin=True))["access_token"]
    product = make_product(price="19.99", stock=5)
    order = _paid(stripe_client, stripe_http, token, product)
    paid = stripe_client.get(f"/api/orders/{order['id']}", headers=auth(token)).get_json()
    later = _refund_event(order["id"], 1500, "evt_partial_2")
    earlier = _refund_event(order["id"], 1000, "evt_partial_1")
    for payload in (later, later, earlier):  # a redelivery, then an older event late
        assert deliver(stripe_client, payload, signed(payload)).status_code == 200

    after = stripe_client.get(f"/api/orders/{order['id']}", headers=auth(token)).get_json()
    assert after == paid
    seen = _payments(stripe_client, admin, order["id"])
    assert seen["amount_refunded"] == 15
    assert seen["payments"][0]["amount_refunded"] == 15
    assert seen["payments"][0]["status"] == "succeeded"

    stripe_http.answers = [(200, REFUNDED)]
    cancelled = stripe_client.post(f"/api/orders/{order['id']}/cancel", headers=auth(token))
    assert cancelled.status_code == 200, cancelled.get_json()
    assert cancelled.get_json()["payment_status"] == "refunded"
    refund = _refund_calls(stripe_http)[-1]["form"]
    assert (refund["payment_intent"], refund["amount"]) == ("pi_1", "2498")
    assert _payments(stripe_client, admin, order["id"])["amount_refunded"] == Decimal("39.98")
    assert stock(product) == 5


def test_partial_refunds_that_add_up_to_the_charge_mark_the_order_refunded(
    stripe_client,  # noqa: F811
    stripe_http,  # noqa: F811
    buyer,
    make_product,
):
    _, token = buyer
    order = _paid(stripe_client, stripe_http, token, make_product(price="19.99", stock=5))
    partial = _refund_event(order["id"], 1000, "evt_p1")
    full = _refund_event(order["id"], 3998, "evt_p2")
    for payload in (partial, full, partial):  # the last: a late, older event
        assert deliver(stripe_client, payload, signed(payload)).status_code == 200
    assert scalar("SELECT payment_status FROM orders") == "refunded"
    assert scalar("SELECT status FROM orders") == "processing"  # an admin decides
    assert scalar("SELECT amount_refunded FROM payments") == 3998
    assert scalar("SELECT status FROM payments") == "refunded"


def test_a_partial_refund_before_its_payment_is_delivered_again_later(
    stripe_client,  # noqa: F811
    buyer,
    make_product,
):
    _, token = buyer
    order = order_for(stripe_client, token, (make_product(price="19.99", stock=5), 2))
    refund = _refund_event(order["id"], 1000, "evt_early", intent_id="pi_hook")
    assert deliver(stripe_client, refund, signed(refund)).status_code == 409
    paid = _second(order["id"], "pi_hook", "evt_paid")
    assert deliver(stripe_client, paid, signed(paid)).status_code == 200
    assert deliver(stripe_client, refund, signed(refund)).status_code == 200
    assert scalar("SELECT payment_status FROM orders") == "paid"
    assert scalar("SELECT amount_refunded FROM payments") == 1000


def test_the_payments_view_is_for_admins(
    stripe_client,  # noqa: F811
    stripe_http,  # noqa: F811
    buyer,
    make_product,
    make_user,
    login,
):
    _, token = buyer
    admin = login(make_user(admin=True))["access_token"]
    order = _paid(stripe_client, stripe_http, token, make_product(price="19.99", stock=5))
    mine = stripe_client.get(f"/api/orders/{order['id']}/payments", headers=auth(token))
    assert (mine.status_code, mine.get_json()["code"]) == (403, "forbidden")
    missing = stripe_client.get("/api/orders/999999/payments", headers=auth(admin))
    assert (missing.status_code, missing.get_json()["code"]) == (404, "not_found")


def test_an_event_for_an_unknown_order_is_acknowledged_and_changes_nothing(
    stripe_client,  # noqa: F811
    stripe_http,  # noqa: F811
):
    for payload in (
        succeeded(999999, "pi_nobody", "evt_nobody"),
        _refund_event(999999, 1000, "evt_nobody_refund", intent_id="pi_nobody"),
    ):
        assert deliver(stripe_client, payload, signed(payload)).status_code == 200
    assert scalar("SELECT count(*) FROM payments") == 0
    assert stripe_http.requests == []


# --- races (PostgreSQL: real row locks) ---------------------------------------------


@pytest.mark.skipif(not IS_POSTGRES, reason="row locks: SQLite runs one writer at a time")
@pytest.mark.parametrize("run", range(3))
def test_a_cancel_racing_a_payment_success_ends_refunded_once(
    stripe_app,  # noqa: F811
    stripe_http,  # noqa: F811
    buyer,
    make_product,
    run,
):
    """Whichever takes the order's row first, the money comes back exactly
    once and the stock exactly once."""
    _, token = buyer
    product = make_product(price="19.99", stock=5)
    order = order_for(stripe_app.test_client(), token, (product, 2))
    stripe_http.answers = [(200, REFUNDED)]
    payload = _second(order["id"], "pi_hook", "evt_race")

    cancel, hook = race(
        [
            lambda: stripe_app.test_client().post(
                f"/api/orders/{order['id']}/cancel", headers=auth(token)
            ),
            lambda: deliver(stripe_app.test_client(), payload, signed(payload)),
        ]
    )

    assert cancel.status_code == 200, cancel.get_json()
    assert hook.status_code == 200, hook.get_json()
    assert scalar("SELECT status FROM orders") == "cancelled"
    assert scalar("SELECT payment_status FROM orders") == "refunded"
    refunds = _refund_calls(stripe_http)
    assert [r["form"]["payment_intent"] for r in refunds] == ["pi_hook"]
    assert scalar("SELECT status FROM payments") == "refunded"
    assert stock(product) == 5


@pytest.mark.skipif(not IS_POSTGRES, reason="row locks: SQLite runs one writer at a time")
@pytest.mark.parametrize("run", range(3))
def test_the_payment_timeout_racing_a_payment_success_is_consistent(
    db,
    stripe_app,  # noqa: F811
    stripe_http,  # noqa: F811
    buyer,
    make_product,
    run,
):
    """Either the sweep cancels first (the payment is then refunded) or the
    payment lands first (the sweep leaves the order alone): never a paid
    cancelled order, nor money kept for a cancelled one."""
    _, token = buyer
    product = make_product(price="19.99", stock=5)
    order = order_for(stripe_app.test_client(), token, (product, 2))
    db.session.execute(
        text("UPDATE orders SET created_at = :at"), {"at": utcnow() - timedelta(hours=2)}
    )
    db.session.commit()
    stripe_http.answers = [(200, REFUNDED)]
    payload = _second(order["id"], "pi_hook", "evt_race")

    def sweep():
        with stripe_app.app_context(), unit_of_work():
            return [o.id for o in cancel_expired_orders()]

    _, hook = race([sweep, lambda: deliver(stripe_app.test_client(), payload, signed(payload))])

    assert hook.status_code == 200, hook.get_json()
    status = scalar("SELECT status FROM orders")
    payment_status = scalar("SELECT payment_status FROM orders")
    refunds = _refund_calls(stripe_http)
    if status == "cancelled":
        assert payment_status == "refunded"
        assert [r["form"]["payment_intent"] for r in refunds] == ["pi_hook"]
        assert stock(product) == 5
    else:
        assert (status, payment_status) == ("processing", "paid")
        assert refunds == []
        assert stock(product) == 3
        assert cancel_expired_orders() == []


def test_a_refund_event_of_the_whole_charge_without_its_flag_refunds_the_order(
    stripe_client,  # noqa: F811
    stripe_http,  # noqa: F811
    buyer,
    make_product,
):
    """A charge.refunded naming the amount refunded but neither `refunded`
    nor the charge's `amount`: all of the payment came back, so the order is
    refunded (recorded as a partial refund of everything, a later cancel
    asked Stripe to refund 0)."""
    _, token = buyer
    order = _paid(stripe_client, stripe_http, token, make_product(price="19.99", stock=5))
    charge = {
        "id": "ch_1",
        "object": "charge",
        "payment_intent": "pi_1",
        "amount_refunded": 3998,
        "metadata": {"order_id": str(order["id"])},
    }
    payload = event("charge.refunded", charge, "evt_all")
    assert deliver(stripe_client, payload, signed(payload)).status_code == 200
    assert scalar("SELECT payment_status FROM orders") == "refunded"
    assert scalar("SELECT status FROM payments") == "refunded"
    assert scalar("SELECT amount_refunded FROM payments") == 3998


@pytest.mark.skipif(not IS_POSTGRES, reason="row locks: SQLite runs one writer at a time")
@pytest.mark.parametrize("run", range(3))
def test_a_pay_racing_the_webhook_of_its_own_intent_pays_once_and_refunds_nothing(
    stripe_app,  # noqa: F811
    stripe_http,  # noqa: F811
    buyer,
    make_product,
    run,
):
    """The synchronous pay and Stripe's event for the same PaymentIntent: one
    payment is recorded, whichever holds the order first; it is no second
    charge, so nothing is refunded."""
    _, token = buyer
    product = make_product(price="19.99", stock=5)
    order = order_for(stripe_app.test_client(), token, (product, 2))
    stripe_http.answers = [
        (200, intent("requires_payment_method", amount=3998)),
        (200, intent("succeeded", amount=3998)),
    ]
    payload = _second(order["id"], "pi_1", "evt_own")

    paid, hook = race(
        [
            lambda: pay(stripe_app.test_client(), token, order["id"]),
            lambda: deliver(stripe_app.test_client(), payload, signed(payload)),
        ]
    )

    assert hook.status_code == 200, hook.get_json()
    assert paid.status_code in (200, 409), paid.get_json()
    if paid.status_code == 409:
        assert paid.get_json()["code"] == "already_paid"
    assert (scalar("SELECT status FROM orders"), scalar("SELECT payment_status FROM orders")) == (
        "processing",
        "paid",
    )
    assert scalar("SELECT count(*) FROM payments") == 1
    assert _refund_calls(stripe_http) == []
    assert stock(product) == 3


def test_each_payment_is_read_back_by_the_rules_of_the_provider_that_recorded_it(
    client, buyer, make_product, make_user, login
):
    """Stripe counts ISK in hundredths where ISO 4217 gives it no decimals: a
    Stripe payment of 1,234 ISK is stored as 123400. Read back by the rules of
    the provider configured now (here the test provider, after a switch), the
    admin view showed 123,400 ISK."""
    _, token = buyer
    admin = login(make_user(admin=True))["access_token"]
    order = order_for(client, token, (make_product(price="10.00", stock=5), 1))
    for attempt, (provider, amount) in enumerate([("stripe", 123400), ("test", 1234)], 1):
        with unit_of_work():
            db.session.execute(
                text(
                    "INSERT INTO payments (order_id, provider, intent_id, amount, currency, "
                    "status, attempt, created_at, updated_at, amount_refunded) VALUES "
                    "(:o, :p, :i, :a, 'isk', 'failed', :n, :t, :t, 0)"
                ),
                {
                    "o": order["id"],
                    "p": provider,
                    "i": f"pi_{provider}",
                    "a": amount,
                    "n": attempt,
                    "t": utcnow(),
                },
            )
    shown = _payments(client, admin, order["id"])["payments"]
    assert [(p["provider"], Decimal(str(p["amount"]))) for p in shown] == [
        ("stripe", Decimal(1234)),
        ("test", Decimal(1234)),
    ]
