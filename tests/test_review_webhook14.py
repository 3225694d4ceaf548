"""A signed Stripe event whose strings no database can store: found by the
payments review (session 14)."""

from __future__ import annotations

import json

import pytest

from app.services.payment_providers import make_provider
from tests.helpers import order_for, scalar
from tests.test_payments_stripe import (
    STRIPE_CONFIG,
    RecordingHTTPClient,
    deliver,
    intent,
    signed,
)


@pytest.mark.parametrize(
    "where",
    ["event id", "event type", "intent id", "currency", "event id surrogate"],
)
def test_a_signed_event_with_a_nul_or_a_lone_surrogate_is_a_422_not_a_500(
    make_app, buyer, make_product, where
):
    """PostgreSQL refuses a NUL in text and no driver encodes a lone
    surrogate: an event id, type, intent id or currency carrying either was a
    500 (the webhook's body is parsed by the provider, not by the request
    parser that turns such input into a 422 everywhere else). Only a sender
    holding the webhook secret can send it, but a 500 is never the answer:
    a 422 naming the field, nothing recorded."""
    app = make_app("testing", STRIPE_CONFIG)
    app.extensions["payment_provider"] = make_provider(
        app.config, http_client=RecordingHTTPClient()
    )
    stripe_client = app.test_client()
    _, token = buyer
    order = order_for(stripe_client, token, (make_product(price="19.99", stock=3), 1))
    obj = {**intent("succeeded", "pi_hook"), "metadata": {"order_id": str(order["id"])}}
    body = {"id": "evt_1", "object": "event", "type": "payment_intent.succeeded"}
    bad = "x\u0000y" if "surrogate" not in where else "x\ud800y"
    if where.startswith("event id"):
        body["id"] = bad
    elif where == "event type":
        body["type"] = "payment_intent.succeeded" + bad
    elif where == "intent id":
        obj["id"] = bad
    else:
        obj["currency"] = bad
    body["data"] = {"object": obj}
    payload = json.dumps(body).encode()
    response = deliver(stripe_client, payload, signed(payload))
    assert response.status_code == 422, response.get_data(as_text=True)[:300]
    assert response.get_json()["code"] == "validation_failed"
    assert scalar("SELECT count(*) FROM payment_events") == 0
    assert scalar("SELECT payment_status FROM orders") == "unpaid"
