"""Review of payments, round 7 (session 16): each test is a bug found by
probing, fixed with it."""

from __future__ import annotations

from tests.helpers import auth, order_for, pay, scalar, stock
from tests.test_payments_stripe import (  # noqa: F401 - fixtures
    deliver,
    event,
    intent,
    signed,
    stripe_app,
    stripe_client,
    stripe_http,
)


def test_the_refund_of_a_stray_payment_does_not_mark_the_paid_order_refunded(
    stripe_client,  # noqa: F811 - the imported fixture
    stripe_http,  # noqa: F811
    buyer,
    make_product,
):
    """README: the refund of a charge whose amount or currency is not the
    order's (a payment that paid nothing) "is acknowledged and changes
    nothing". That held only while the order was unpaid: once paid, such a
    refund (a stray 1-cent charge given back at Stripe) marked the order
    `refunded` while its 19.99 was still held, and cancelling it then refunded
    nothing, as it had no `paid` payment left to give back."""
    _, token = buyer
    product = make_product(price="19.99", stock=5)
    order = order_for(stripe_client, token, (product, 1))
    stripe_http.answers = [(200, intent("requires_payment_method")), (200, intent("succeeded"))]
    assert pay(stripe_client, token, order["id"]).status_code == 200
    metadata = {"order_id": str(order["id"])}
    strays = [
        # another amount, another currency, and another PaymentIntent than the one that paid
        {"payment_intent": "pi_cent", "amount": 1, "currency": "usd"},
        {"payment_intent": "pi_eur", "amount": 1999, "currency": "eur"},
        {"payment_intent": "pi_twice", "amount": 1999, "currency": "usd"},
    ]
    for n, stray in enumerate(strays):
        charge = {"id": f"ch_{n}", "object": "charge", "refunded": True, "metadata": metadata}
        refund = event("charge.refunded", {**charge, **stray}, f"evt_stray_{n}")
        assert deliver(stripe_client, refund, signed(refund)).status_code == 200
        assert scalar("SELECT payment_status FROM orders") == "paid"
        assert scalar("SELECT status FROM payments WHERE intent_id = 'pi_1'") == "succeeded"

    stripe_http.answers = [(200, {"id": "re_1", "object": "refund", "status": "succeeded"})]
    cancelled = stripe_client.post(f"/api/orders/{order['id']}/cancel", headers=auth(token))
    assert cancelled.status_code == 200, cancelled.get_json()
    assert cancelled.get_json()["payment_status"] == "refunded"
    refund_call = stripe_http.requests[-1]
    assert refund_call["path"] == "/v1/refunds"
    assert refund_call["form"]["payment_intent"] == "pi_1"
    assert refund_call["form"]["amount"] == "1999"
    assert stock(product) == 5

    # The refund of the payment that paid it still applies (once).
    real = {"id": "ch_real", "object": "charge", "payment_intent": "pi_1", "refunded": True}
    payload = event("charge.refunded", {**real, "amount": 1999, "currency": "usd"}, "evt_real")
    assert deliver(stripe_client, payload, signed(payload)).status_code == 200
    assert scalar("SELECT payment_status FROM orders") == "refunded"
