"""The `stripe` provider without network: webhook signatures computed here from
a test secret, and the library's calls checked at its HTTP-client boundary (a
stripe.HTTPClient that records each request and answers with canned JSON)."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from urllib.parse import parse_qsl, urlsplit

import pytest
import stripe

from app.services.payment_providers import make_provider
from tests.helpers import auth, order_for, pay, scalar, stock

SECRET = "whsec_test_0123456789abcdef"
STRIPE_CONFIG = {
    "PAYMENT_PROVIDER": "stripe",
    "STRIPE_SECRET_KEY": "sk_test_offline",
    "STRIPE_WEBHOOK_SECRET": SECRET,
}


class RecordingHTTPClient(stripe.HTTPClient):
    """Stripe's side of the wire: records what the library sends, answers
    with the next canned (status, JSON body)."""

    name = "recording"

    def __init__(self):
        super().__init__()
        self.requests: list[dict] = []
        self.answers: list[tuple[int, dict]] = []

    def request(self, method, url, headers, post_data=None, *, _usage=None):
        parts = urlsplit(url)
        self.requests.append(
            {
                "method": method.upper(),
                "path": parts.path,
                "headers": dict(headers or {}),
                "form": dict(parse_qsl(post_data or parts.query or "")),
            }
        )
        status, body = self.answers.pop(0)
        return json.dumps(body), status, {"Request-Id": f"req_{len(self.requests)}"}

    def request_stream(self, *args, **kwargs):
        raise NotImplementedError

    def close(self):
        pass


def intent(status: str, intent_id: str = "pi_1", amount: int = 1999) -> dict:
    return {"id": intent_id, "object": "payment_intent", "status": status, "amount": amount}


def invalid_request(code: str, message: str, **more) -> dict:
    """Stripe's body for a refused request (an `InvalidRequestError`)."""
    return {"error": {"type": "invalid_request_error", "code": code, "message": message, **more}}


def card_declined(intent_id: str = "pi_1") -> dict:
    return {
        "error": {
            "type": "card_error",
            "code": "card_declined",
            "decline_code": "generic_decline",
            "message": "Your card was declined.",
            "payment_intent": intent("requires_payment_method", intent_id),
        }
    }


@pytest.fixture
def stripe_http():
    return RecordingHTTPClient()


@pytest.fixture
def stripe_app(make_app, stripe_http):
    app = make_app("testing", STRIPE_CONFIG)
    app.extensions["payment_provider"] = make_provider(app.config, http_client=stripe_http)
    return app


@pytest.fixture
def stripe_client(stripe_app):
    return stripe_app.test_client()


# --- PaymentIntents and refunds, as the library sends them -------------------------


def test_pay_creates_one_intent_and_confirms_it(stripe_client, stripe_http, buyer, make_product):
    _, token = buyer
    order = order_for(stripe_client, token, (make_product(price="19.99"), 1))
    stripe_http.answers = [(200, intent("requires_payment_method")), (200, intent("succeeded"))]

    response = pay(stripe_client, token, order["id"])

    assert response.status_code == 200, response.get_json()
    assert response.get_json()["payment_status"] == "paid"
    create, confirm = stripe_http.requests
    assert (create["method"], create["path"]) == ("POST", "/v1/payment_intents")
    assert create["form"] == {
        "amount": "1999",
        "currency": "usd",
        "metadata[order_id]": str(order["id"]),
        "payment_method_types[0]": "card",
    }
    assert create["headers"]["Idempotency-Key"] == f"order-{order['id']}-intent"
    assert create["headers"]["Authorization"] == "Bearer sk_test_offline"
    assert (confirm["method"], confirm["path"]) == ("POST", "/v1/payment_intents/pi_1/confirm")
    assert confirm["form"] == {"payment_method": "pm_card_visa"}
    assert confirm["headers"]["Idempotency-Key"] == f"order-{order['id']}-attempt-1"
    assert scalar("SELECT intent_id FROM payments") == "pi_1"


def test_a_decline_then_a_retry_reuses_the_intent_with_a_new_key(
    stripe_client, stripe_http, buyer, make_product
):
    _, token = buyer
    order = order_for(stripe_client, token, (make_product(price="19.99"), 1))
    stripe_http.answers = [(200, intent("requires_payment_method")), (402, card_declined())]

    declined = pay(stripe_client, token, order["id"], {"payment_method": "pm_card_chargeDeclined"})

    assert declined.status_code == 402
    assert declined.get_json()["message"] == "Your card was declined."
    assert scalar("SELECT payment_status FROM orders") == "unpaid"
    stripe_http.answers = [(200, intent("succeeded"))]
    assert pay(stripe_client, token, order["id"]).status_code == 200
    retry = stripe_http.requests[-1]
    assert retry["path"] == "/v1/payment_intents/pi_1/confirm"  # no second intent
    assert retry["headers"]["Idempotency-Key"] == f"order-{order['id']}-attempt-2"
    assert len(stripe_http.requests) == 3


def test_zero_decimal_currencies_are_sent_in_whole_units(
    make_app, stripe_http, buyer, make_product
):
    app = make_app("testing", {**STRIPE_CONFIG, "SHOP_CURRENCY": "JPY"})
    app.extensions["payment_provider"] = make_provider(app.config, http_client=stripe_http)
    client = app.test_client()
    _, token = buyer
    order = order_for(client, token, (make_product(price="1500"), 3))
    stripe_http.answers = [(200, intent("requires_payment_method")), (200, intent("succeeded"))]
    assert pay(client, token, order["id"]).status_code == 200
    assert stripe_http.requests[0]["form"]["amount"] == "4500"
    assert stripe_http.requests[0]["form"]["currency"] == "jpy"


def test_an_unknown_payment_method_is_a_422(stripe_client, stripe_http, buyer, make_product):
    _, token = buyer
    order = order_for(stripe_client, token, (make_product(), 1))
    missing = {
        "error": {
            "type": "invalid_request_error",
            "code": "resource_missing",
            "param": "payment_method",
            "message": "No such PaymentMethod: 'pm_nope'",
        }
    }
    stripe_http.answers = [(200, intent("requires_payment_method")), (400, missing)]
    response = pay(stripe_client, token, order["id"], {"payment_method": "pm_nope"})
    assert response.status_code == 422
    assert "payment_method" in response.get_json()["errors"]
    assert "No such" not in json.dumps(response.get_json())  # our words, not Stripe's


def test_cancel_refunds_through_the_library(stripe_client, stripe_http, buyer, make_product):
    _, token = buyer
    product = make_product(price="19.99", stock=5)
    order = order_for(stripe_client, token, (product, 2))
    stripe_http.answers = [
        (200, intent("requires_payment_method", amount=3998)),
        (200, intent("succeeded", amount=3998)),
    ]
    assert pay(stripe_client, token, order["id"]).status_code == 200
    stripe_http.answers = [(200, {"id": "re_1", "object": "refund", "status": "succeeded"})]

    response = stripe_client.post(f"/api/orders/{order['id']}/cancel", headers=auth(token))

    assert response.status_code == 200, response.get_json()
    assert response.get_json()["payment_status"] == "refunded"
    refund = stripe_http.requests[-1]
    assert (refund["method"], refund["path"]) == ("POST", "/v1/refunds")
    assert refund["form"] == {
        "payment_intent": "pi_1",
        "amount": "3998",
        "metadata[order_id]": str(order["id"]),
    }
    assert refund["headers"]["Idempotency-Key"].startswith(f"order-{order['id']}-refund-")
    assert stock(product) == 5


def test_a_failed_refund_leaves_the_order_as_it_was(
    stripe_client, stripe_http, buyer, make_product
):
    _, token = buyer
    product = make_product(price="19.99", stock=5)
    order = order_for(stripe_client, token, (product, 2))
    stripe_http.answers = [(200, intent("requires_payment_method")), (200, intent("succeeded"))]
    assert pay(stripe_client, token, order["id"]).status_code == 200
    refused = invalid_request(
        "charge_disputed", "Charge ch_1 has been charged back; cannot issue a refund."
    )
    stripe_http.answers = [(400, refused)]

    response = stripe_client.post(f"/api/orders/{order['id']}/cancel", headers=auth(token))

    assert response.status_code == 502
    body = response.get_json()
    assert body["code"] == "refund_failed"
    assert "not cancelled" in body["message"]
    assert scalar("SELECT status FROM orders") == "processing"
    assert scalar("SELECT payment_status FROM orders") == "paid"
    assert stock(product) == 3
    assert scalar("SELECT count(*) FROM order_status_history WHERE status = 'cancelled'") == 0


def test_provider_outage_on_pay_is_a_502_and_changes_nothing(
    stripe_client, stripe_http, buyer, make_product
):
    _, token = buyer
    order = order_for(stripe_client, token, (make_product(), 1))
    bad_key = {"error": {"type": "invalid_request_error", "message": "Invalid API Key"}}
    stripe_http.answers = [(401, bad_key)]
    response = pay(stripe_client, token, order["id"])
    assert response.status_code == 502
    assert "API Key" not in response.get_json()["message"]
    assert scalar("SELECT payment_status FROM orders") == "unpaid"
    # The attempt is recorded (failed), so the next one sends new keys.
    assert scalar("SELECT count(*) FROM payments WHERE status = 'failed'") == 1
    assert scalar("SELECT count(*) FROM payments") == 1


# --- webhooks -----------------------------------------------------------------------


def signed(payload: bytes, secret: str = SECRET, at: int | None = None) -> str:
    """A Stripe-Signature header computed as Stripe does: HMAC-SHA256 of "<t>.<body>"."""
    at = int(time.time()) if at is None else at
    digest = hmac.new(secret.encode(), f"{at}.".encode() + payload, hashlib.sha256).hexdigest()
    return f"t={at},v1={digest}"


def event(kind: str, obj: dict, event_id: str = "evt_1") -> bytes:
    body = {"id": event_id, "object": "event", "type": kind, "data": {"object": obj}}
    return json.dumps(body).encode()


def succeeded(order_id: int, intent_id: str = "pi_hook", event_id: str = "evt_1") -> bytes:
    obj = {**intent("succeeded", intent_id), "metadata": {"order_id": str(order_id)}}
    return event("payment_intent.succeeded", obj, event_id)


def deliver(client, payload: bytes, signature: str | None):
    headers = {"Content-Type": "application/json"}
    if signature is not None:
        headers["Stripe-Signature"] = signature
    return client.post("/api/payments/webhook", data=payload, headers=headers)


def test_a_signed_succeeded_event_pays_the_order(stripe_client, buyer, make_product):
    _, token = buyer
    order = order_for(stripe_client, token, (make_product(price="19.99"), 1))
    payload = succeeded(order["id"])

    response = deliver(stripe_client, payload, signed(payload))

    assert response.status_code == 200
    assert response.get_json() == {"received": True}
    assert scalar("SELECT payment_status FROM orders") == "paid"
    assert scalar("SELECT status FROM orders") == "processing"
    assert scalar("SELECT intent_id FROM payments") == "pi_hook"


@pytest.mark.parametrize("forgery", ["tampered", "wrong_secret", "old", "missing", "garbage"])
def test_unverified_events_are_400_and_change_nothing(stripe_client, buyer, make_product, forgery):
    _, token = buyer
    order = order_for(stripe_client, token, (make_product(), 1))
    payload = succeeded(order["id"])
    signature = {
        "tampered": signed(succeeded(order["id"] + 1)),  # signed another body
        "wrong_secret": signed(payload, secret="whsec_someone_else"),
        "old": signed(payload, at=int(time.time()) - 3600),  # past the 300 s tolerance
        "missing": None,
        "garbage": "t=abc,v1=zz",
    }[forgery]

    response = deliver(stripe_client, payload, signature)

    assert response.status_code == 400
    body = response.get_json()
    assert body["code"] == "invalid_signature"
    assert scalar("SELECT payment_status FROM orders") == "unpaid"
    assert scalar("SELECT count(*) FROM payment_events") == 0


def test_a_redelivered_event_is_applied_once(stripe_client, buyer, make_product):
    _, token = buyer
    order = order_for(stripe_client, token, (make_product(price="19.99"), 1))
    payload = succeeded(order["id"])
    for _ in range(3):
        assert deliver(stripe_client, payload, signed(payload)).status_code == 200
    assert scalar("SELECT count(*) FROM payment_events") == 1
    assert scalar("SELECT count(*) FROM payments") == 1
    assert scalar("SELECT count(*) FROM order_status_history WHERE status = 'processing'") == 1


def test_events_for_an_order_the_sync_path_moved_change_nothing(
    stripe_client, stripe_http, buyer, make_product
):
    _, token = buyer
    order = order_for(stripe_client, token, (make_product(), 1))
    stripe_http.answers = [(200, intent("requires_payment_method")), (200, intent("succeeded"))]
    paid = pay(stripe_client, token, order["id"]).get_json()
    # Stripe's own event for the same payment, and a late failure of an earlier attempt.
    late = [
        succeeded(order["id"], "pi_1", "evt_ok"),
        event(
            "payment_intent.payment_failed",
            {**intent("requires_payment_method"), "metadata": {"order_id": str(order["id"])}},
            "evt_failed",
        ),
    ]
    for payload in late:
        assert deliver(stripe_client, payload, signed(payload)).status_code == 200
    after = stripe_client.get(f"/api/orders/{order['id']}", headers=auth(token)).get_json()
    assert after == paid
    assert scalar("SELECT count(*) FROM payments") == 1


def test_charge_refunded_marks_a_paid_order_refunded_once(
    stripe_client, stripe_http, buyer, make_product
):
    _, token = buyer
    order = order_for(stripe_client, token, (make_product(), 1))
    stripe_http.answers = [(200, intent("requires_payment_method")), (200, intent("succeeded"))]
    assert pay(stripe_client, token, order["id"]).status_code == 200
    # A refund made in the Stripe dashboard; the charge names its intent only.
    charge = {"id": "ch_1", "object": "charge", "payment_intent": "pi_1", "refunded": True}
    payload = event("charge.refunded", charge, "evt_refund")
    for _ in range(2):
        assert deliver(stripe_client, payload, signed(payload)).status_code == 200
    assert scalar("SELECT payment_status FROM orders") == "refunded"
    assert scalar("SELECT status FROM payments") == "refunded"
    assert scalar("SELECT count(*) FROM payment_events") == 1


def test_the_test_provider_has_no_webhook(client):
    payload = event("payment_intent.succeeded", intent("succeeded"))
    response = deliver(client, payload, signed(payload))
    assert response.status_code == 404
    for body in (b"{}", b"[]", b'{"id": 1}'):  # its shape is not looked at either
        assert deliver(client, body, signed(body)).status_code == 404


@pytest.mark.parametrize("body", [b"{}", b"[]", b'{"id": "evt_1"}', b"null", b"{not json"])
@pytest.mark.parametrize("signature", ["forged", "missing"])
def test_the_signature_is_checked_before_the_shape(stripe_client, body, signature):
    """An unsigned body is a 400 whatever it holds: a forged `{}` was a 422
    listing the fields an event needs, before any signature was looked at."""
    header = "t=1,v1=abc" if signature == "forged" else None
    response = deliver(stripe_client, body, header)
    assert response.status_code == 400, response.get_json()
    assert response.get_json()["code"] == "invalid_signature"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (b"{}", "id"),
        (b'{"id": "evt_1", "data": {"object": {}}}', "type"),
        (b"[]", "_schema"),
        (b'{"id": "evt_1", "type": "payment_intent.succeeded"}', "data"),
        (b'{"id": "evt_1", "type": "payment_intent.succeeded", "data": {"object": 3}}', "data"),
    ],
)
def test_a_verified_event_of_the_wrong_shape_is_a_422(stripe_client, body, field):
    response = deliver(stripe_client, body, signed(body))
    assert response.status_code == 422, response.get_json()
    assert field in response.get_json()["errors"]
    assert scalar("SELECT count(*) FROM payment_events") == 0


def test_money_arriving_for_a_cancelled_order_is_refunded(
    stripe_client, stripe_http, buyer, make_product
):
    _, token = buyer
    product = make_product(price="19.99", stock=5)
    order = order_for(stripe_client, token, (product, 1))
    assert (
        stripe_client.post(f"/api/orders/{order['id']}/cancel", headers=auth(token)).status_code
        == 200
    )
    payload = succeeded(order["id"], "pi_late", "evt_late")
    # The refund fails first: 502, the event is not recorded, so Stripe's retry counts.
    refused = {"error": {"type": "api_error", "message": "try later"}}
    stripe_http.answers = [(400, refused)]
    assert deliver(stripe_client, payload, signed(payload)).status_code == 502
    assert scalar("SELECT count(*) FROM payment_events") == 0
    assert scalar("SELECT count(*) FROM payments") == 0

    stripe_http.answers = [(200, {"id": "re_late", "object": "refund", "status": "succeeded"})]
    assert deliver(stripe_client, payload, signed(payload)).status_code == 200

    refund = stripe_http.requests[-1]
    assert refund["path"] == "/v1/refunds"
    assert refund["form"]["payment_intent"] == "pi_late"
    assert refund["form"]["amount"] == "1999"
    assert scalar("SELECT status FROM orders") == "cancelled"
    assert scalar("SELECT payment_status FROM orders") == "refunded"
    assert scalar("SELECT status FROM payments") == "refunded"
    assert stock(product) == 5
    # The customer hears of it: the cancellation email went out before the
    # money arrived, and said nothing of a refund (orders review, session 13).
    refunded = scalar(
        "SELECT payload FROM outbox WHERE topic = 'order_refunded' AND recipient = :to",
        to=buyer[0].email,
    )
    assert refunded is not None
    payload = json.loads(refunded) if isinstance(refunded, str) else refunded
    with stripe_client.application.app_context():
        from app.services.mail import render

        content = render(payload["template"], payload["context"])
    assert f"order #{order['id']} was refunded" in content["subject"]
    for body in (content["text"], content["html"]):
        assert "refunded in full" in body
        assert "Refunded: " in body and "19.99" in body.split("Refunded: ")[1][:20], body


# --- found by review: signed events the shop must not act on as they said --------


def test_a_succeeded_event_for_another_amount_or_currency_pays_nothing(
    stripe_client, buyer, make_product
):
    _, token = buyer
    order = order_for(stripe_client, token, (make_product(price="19.99", stock=5), 1))
    for event_id, amount, currency in (("evt_cent", 1, "usd"), ("evt_eur", 1999, "eur")):
        obj = {
            "id": "pi_other",
            "object": "payment_intent",
            "status": "succeeded",
            "amount": amount,
            "currency": currency,
            "metadata": {"order_id": str(order["id"])},
        }
        payload = event("payment_intent.succeeded", obj, event_id)
        assert deliver(stripe_client, payload, signed(payload)).status_code == 200
        assert scalar("SELECT payment_status FROM orders") == "unpaid"
        assert scalar("SELECT status FROM orders") == "pending"
    obj = {**intent("succeeded", "pi_right"), "currency": "USD"}
    payload = event("payment_intent.succeeded", {**obj, "metadata": {"order_id": str(order["id"])}})
    assert deliver(stripe_client, payload, signed(payload)).status_code == 200
    assert scalar("SELECT payment_status FROM orders") == "paid"


def test_a_refund_before_its_payment_is_delivered_again_not_lost(
    stripe_client, buyer, make_product
):
    """Events come in any order: a refund acknowledged before the success was
    lost (the order stayed paid). It is a 409, not recorded, until the
    success is in; the provider's redelivery then refunds."""
    _, token = buyer
    order = order_for(stripe_client, token, (make_product(price="19.99", stock=5), 1))
    charge = {
        "id": "ch_1",
        "object": "charge",
        "payment_intent": "pi_hook",
        "refunded": True,
        "metadata": {"order_id": str(order["id"])},
    }
    refund = event("charge.refunded", charge, "evt_refund")
    assert deliver(stripe_client, refund, signed(refund)).status_code == 409
    assert scalar("SELECT count(*) FROM payment_events") == 0
    paid = succeeded(order["id"], "pi_hook", "evt_paid")
    assert deliver(stripe_client, paid, signed(paid)).status_code == 200
    assert scalar("SELECT payment_status FROM orders") == "paid"
    assert deliver(stripe_client, refund, signed(refund)).status_code == 200
    assert scalar("SELECT payment_status FROM orders") == "refunded"


def test_the_refund_of_a_payment_that_paid_nothing_is_acknowledged(
    stripe_client, buyer, make_product
):
    """A payment of another amount pays no order (left to a person); its
    refund, made at Stripe, answered 409 "deliver again later" on every
    delivery for good: the success it waited for had come and been declined.
    A refund whose charge could never pay the order is acknowledged and
    changes nothing; the order can still be paid."""
    _, token = buyer
    order = order_for(stripe_client, token, (make_product(price="19.99", stock=5), 1))
    metadata = {"order_id": str(order["id"])}
    cent = {**intent("succeeded", "pi_cent", amount=1), "metadata": metadata}
    paid = event("payment_intent.succeeded", cent, "evt_cent")
    assert deliver(stripe_client, paid, signed(paid)).status_code == 200
    charge = {
        "id": "ch_cent",
        "object": "charge",
        "payment_intent": "pi_cent",
        "amount": 1,
        "currency": "usd",
        "refunded": True,
        "metadata": metadata,
    }
    refund = event("charge.refunded", charge, "evt_cent_refund")
    assert deliver(stripe_client, refund, signed(refund)).status_code == 200
    assert scalar("SELECT count(*) FROM payment_events") == 2
    assert scalar("SELECT payment_status FROM orders") == "unpaid"
    assert scalar("SELECT status FROM orders") == "pending"
    right = succeeded(order["id"], "pi_right", "evt_right")
    assert deliver(stripe_client, right, signed(right)).status_code == 200
    assert scalar("SELECT payment_status FROM orders") == "paid"


@pytest.mark.parametrize(
    "metadata", [{"order_id": "\u00b2"}, {"order_id": "99999999999999999999"}, "order 1", [1]]
)
def test_a_signed_event_with_odd_metadata_is_no_500(stripe_client, metadata):
    obj = {**intent("succeeded", "pi_x"), "metadata": metadata}
    payload = event("payment_intent.succeeded", obj, "evt_odd")
    response = deliver(stripe_client, payload, signed(payload))
    assert response.status_code == 200, response.get_data(as_text=True)[:300]


def test_money_for_an_unpaid_order_an_admin_moved_along_is_kept(
    stripe_client, stripe_http, buyer, make_product, make_user, login
):
    """API.md: payment is no precondition of processing. Money that arrives
    for such an order pays it (it was refunded as if cancelled)."""
    _, token = buyer
    admin = login(make_user(admin=True))["access_token"]
    order = order_for(stripe_client, token, (make_product(price="19.99", stock=5), 1))
    moved = stripe_client.put(
        f"/api/orders/{order['id']}", json={"status": "processing"}, headers=auth(admin)
    )
    assert moved.status_code == 200, moved.get_json()
    payload = succeeded(order["id"], "pi_hook", "evt_paid")
    assert deliver(stripe_client, payload, signed(payload)).status_code == 200
    assert scalar("SELECT payment_status FROM orders") == "paid"
    assert scalar("SELECT status FROM orders") == "processing"
    assert not any(r["path"] == "/v1/refunds" for r in stripe_http.requests)


@pytest.mark.parametrize(
    ("price", "code", "stripes_words", "minor"),
    [
        ("0.10", "amount_too_small", "Amount must be at least $0.50 usd", "10"),
        # A product may cost 1,000,000 (API.md); Stripe charges 999,999.99 at most.
        ("1000000", "amount_too_large", "Amount must be no more than $999,999.99", "100000000"),
    ],
)
def test_a_total_stripe_never_charges_is_a_409_saying_so(
    stripe_client, stripe_http, buyer, make_product, price, code, stripes_words, minor
):
    """Stripe refuses to charge under its minimum (about 0.50) or above its
    maximum (999,999.99): a 502 "try again" sent the customer round until the
    payment timeout cancelled the order; now a 409 says the order cannot be
    paid online (orders review, session 13; the maximum, payments review,
    session 14). Nothing is charged or changed; the attempt is recorded."""
    _, token = buyer
    product = make_product(price=price, stock=5)
    order = order_for(stripe_client, token, (product, 1))
    refusal = invalid_request(code, stripes_words, param="amount")
    stripe_http.answers = [(400, refusal)]
    response = pay(stripe_client, token, order["id"])
    assert response.status_code == 409, response.get_json()
    body = response.get_json()
    assert body["code"] == code
    assert "$" not in body["message"]  # the shop's words
    assert stripe_http.requests[0]["form"]["amount"] == minor
    assert scalar("SELECT payment_status FROM orders") == "unpaid"
    assert scalar("SELECT status FROM orders") == "pending"
    assert stock(product) == 4
    assert scalar("SELECT count(*) FROM payments WHERE status = 'failed'") == 1
