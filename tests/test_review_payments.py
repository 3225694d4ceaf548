"""Review of payments (Stripe provider at the library's HTTP boundary, no
network). Each test fails on the current code because of a defect."""

from __future__ import annotations

import json

from app.services.payment_providers import make_provider
from tests.helpers import auth, order_for, pay, scalar, stock
from tests.test_payments_stripe import (
    STRIPE_CONFIG,
    RecordingHTTPClient,
    deliver,
    event,
    intent,
    signed,
)

SERVER_ERROR = {"error": {"type": "api_error", "message": "An unknown error occurred"}}


class IdempotentStripe(RecordingHTTPClient):
    """Stripe's v1 idempotency layer in front of the canned answers
    (https://docs.stripe.com/idempotency): the first answer to a key is saved
    and every later request with that key gets it again, "including 500
    errors"; the same key with other parameters is an idempotency_error."""

    def __init__(self):
        super().__init__()
        self.saved: dict[str, tuple[str | None, tuple]] = {}

    def request(self, method, url, headers, post_data=None, *, _usage=None):
        key = (headers or {}).get("Idempotency-Key")
        if key in self.saved:
            form, answer = self.saved[key]
            self.requests.append({"method": method.upper(), "path": url, "replayed": key})
            if form != post_data:
                error = {"error": {"type": "idempotency_error", "message": "Keys reused"}}
                return json.dumps(error), 400, {}
            return answer
        answer = super().request(method, url, headers, post_data, _usage=_usage)
        if key:
            self.saved[key] = (post_data, answer)
        return answer


def stripe_app_with(make_app, http, **config):
    app = make_app("testing", {**STRIPE_CONFIG, **config})
    app.extensions["payment_provider"] = make_provider(app.config, http_client=http)
    return app


def _paid_order(make_app, buyer, make_product):
    """An order of 2 units paid through Stripe (behind `IdempotentStripe`)."""
    http = IdempotentStripe()
    client = stripe_app_with(make_app, http).test_client()
    _, token = buyer
    product = make_product(price="19.99", stock=5)
    order = order_for(client, token, (product, 2))
    http.answers = [
        (200, intent("requires_payment_method", amount=3998)),
        (200, intent("succeeded", amount=3998)),
    ]
    assert pay(client, token, order["id"]).status_code == 200
    return http, client, token, product, order


# --- money: ISK in Stripe's units ---------------------------------------------------


def test_isk_is_sent_to_stripe_in_its_two_decimal_units(make_app, buyer, make_product):
    """README: `total_amount` becomes the provider's minor units by the
    currency's exponent, exactly. Stripe keeps ISK a two-decimal currency in
    its API ("an ISK amount of `100` will continue to represent 1 krona",
    support.stripe.com/questions/deprecation-of-fractional-isk-charges-and-refunds;
    amounts must be multiples of 100). app/utils/money.py lists ISK among the
    zero-decimal currencies, so a 4,500 ISK order is sent as amount=4500:
    Stripe charges 45 ISK, a hundredth of the order."""
    http = RecordingHTTPClient()
    client = stripe_app_with(make_app, http, SHOP_CURRENCY="ISK").test_client()
    _, token = buyer
    order = order_for(client, token, (make_product(price="1500"), 3))
    http.answers = [
        (200, intent("requires_payment_method", amount=450000)),
        (200, intent("succeeded", amount=450000)),
    ]

    assert pay(client, token, order["id"]).status_code == 200

    create = http.requests[0]
    assert create["form"]["currency"] == "isk"
    assert create["form"]["amount"] == "450000"  # 4,500.00 ISK in Stripe's units


def test_a_stripe_isk_payment_of_the_right_amount_pays_the_order(make_app, buyer, make_product):
    """API.md: the webhook applies `payment_intent.succeeded` to the order.
    Stripe reports a 4,500 ISK PaymentIntent as amount 450000 (ISK is
    two-decimal in Stripe's API); `_pays_in_full` compares it with
    `to_minor_units` (4500), calls it another amount and pays nothing: the
    money is taken and the order stays unpaid (same root cause as above)."""
    http = RecordingHTTPClient()
    client = stripe_app_with(make_app, http, SHOP_CURRENCY="ISK").test_client()
    _, token = buyer
    order = order_for(client, token, (make_product(price="1500"), 3))
    obj = {
        **intent("succeeded", "pi_isk", amount=450000),
        "amount_received": 450000,
        "currency": "isk",
        "metadata": {"order_id": str(order["id"])},
    }
    payload = event("payment_intent.succeeded", obj, "evt_isk")

    assert deliver(client, payload, signed(payload)).status_code == 200

    assert scalar("SELECT payment_status FROM orders") == "paid"
    assert scalar("SELECT status FROM orders") == "processing"


# --- a Stripe server error is replayed for ever under the same idempotency key ------


def test_a_pay_that_met_a_stripe_server_error_can_be_tried_again(make_app, buyer, make_product):
    """README: a provider that fails is a 502 `payment_provider_error`
    ("could not be reached; try again"), nothing changed. But nothing is
    recorded either, so the next pay is attempt 1 again and confirms with the
    same key `order-<id>-attempt-1`: Stripe replays the saved 500 for that key
    (for 24 hours, "including 500 errors"), and with another card it answers
    an idempotency_error. The customer can never pay; the payment timeout
    cancels the order. (A new key is safe: one PaymentIntent succeeds at most
    once, and confirming a succeeded one is handled.)"""
    http = IdempotentStripe()
    client = stripe_app_with(make_app, http).test_client()
    _, token = buyer
    order = order_for(client, token, (make_product(price="19.99"), 1))
    http.answers = [(200, intent("requires_payment_method")), (500, SERVER_ERROR)]
    first = pay(client, token, order["id"])
    assert first.status_code == 502
    assert first.get_json()["code"] == "payment_provider_error"

    http.answers = [(200, intent("succeeded"))]  # Stripe is fine again
    retry = pay(client, token, order["id"])

    assert retry.status_code == 200, retry.get_json()
    assert scalar("SELECT payment_status FROM orders") == "paid"


def test_a_cancel_whose_refund_met_a_stripe_server_error_can_be_tried_again(
    make_app, buyer, make_product
):
    """README: a failed refund is a 502 `refund_failed` and the order is not
    cancelled, so the caller cancels again. Every refund of an order uses the
    one key `order-<id>-refund`, so Stripe replays the saved 500 to each
    retry (24 hours): the paid order cannot be cancelled and its stock stays
    held, though Stripe works again."""
    http, client, token, product, order = _paid_order(make_app, buyer, make_product)
    http.answers = [(500, SERVER_ERROR)]
    first = client.post(f"/api/orders/{order['id']}/cancel", headers=auth(token))
    assert first.status_code == 502
    assert first.get_json()["code"] == "refund_failed"

    http.answers = [(200, {"id": "re_1", "object": "refund", "status": "succeeded"})]
    retry = client.post(f"/api/orders/{order['id']}/cancel", headers=auth(token))

    assert retry.status_code == 200, retry.get_json()
    assert scalar("SELECT payment_status FROM orders") == "refunded"
    assert stock(product) == 5


# --- Stripe's wording reaches the client ---------------------------------------------


def test_a_refund_refused_by_stripe_answers_in_the_shops_words(make_app, buyer, make_product):
    """API.md: "Messages are the project's own words: no library wording
    reaches a client" (the pay path keeps Stripe's "Invalid API Key" out,
    test_provider_outage_on_pay_is_a_502_and_changes_nothing). The refund
    path puts `error.user_message` - for every Stripe error that is Stripe's
    own message, here its "Invalid API Key provided: sk_live_****" with the
    key's last characters - into the 502 `refund_failed` a customer sees."""
    http = RecordingHTTPClient()
    client = stripe_app_with(make_app, http).test_client()
    _, token = buyer
    order = order_for(client, token, (make_product(price="19.99", stock=5), 1))
    http.answers = [(200, intent("requires_payment_method")), (200, intent("succeeded"))]
    assert pay(client, token, order["id"]).status_code == 200
    bad_key = {
        "error": {
            "type": "invalid_request_error",
            "message": "Invalid API Key provided: sk_live_****4xYz",
        }
    }
    http.answers = [(401, bad_key)]

    response = client.post(f"/api/orders/{order['id']}/cancel", headers=auth(token))

    assert response.status_code == 502
    assert response.get_json()["code"] == "refund_failed"
    message = response.get_json()["message"]
    assert "API Key" not in message and "sk_live" not in message, message


def test_a_refund_stripe_already_made_completes_the_cancel(make_app, buyer, make_product):
    """Each cancel sends its refund under a new key; should an earlier one
    have been made at Stripe after all (its answer lost), Stripe refuses the
    second full refund as `charge_already_refunded`: that is the refund done,
    and the cancel goes through (refunded, stock back)."""
    http, client, token, product, order = _paid_order(make_app, buyer, make_product)
    refunded = {
        "error": {
            "type": "invalid_request_error",
            "code": "charge_already_refunded",
            "message": "Charge ch_1 has already been refunded.",
        }
    }
    http.answers = [(400, refunded)]

    response = client.post(f"/api/orders/{order['id']}/cancel", headers=auth(token))

    assert response.status_code == 200, response.get_json()
    assert response.get_json()["payment_status"] == "refunded"
    assert stock(product) == 5


UNEXPECTED_STATE = {
    "error": {
        "type": "invalid_request_error",
        "code": "payment_intent_unexpected_state",
        "message": "This PaymentIntent's status is succeeded.",
    }
}


def _intent_then_pay_lost(make_app, buyer, make_product):
    """An order whose first confirm met a Stripe 5xx (recorded, with its
    intent): the next pay confirms that intent again, which Stripe had in
    fact charged (its answer was lost)."""
    http = IdempotentStripe()
    client = stripe_app_with(make_app, http).test_client()
    _, token = buyer
    order = order_for(client, token, (make_product(price="19.99"), 1))
    http.answers = [(200, intent("requires_payment_method")), (500, SERVER_ERROR)]
    assert pay(client, token, order["id"]).status_code == 502
    return http, client, token, order


def test_a_confirm_of_an_intent_charged_before_pays_the_order(make_app, buyer, make_product):
    http, client, token, order = _intent_then_pay_lost(make_app, buyer, make_product)
    http.answers = [(400, UNEXPECTED_STATE), (200, intent("succeeded"))]

    response = pay(client, token, order["id"])

    assert response.status_code == 200, response.get_json()
    assert http.requests[-1]["method"] == "GET"  # the intent looked up, not charged again
    assert scalar("SELECT payment_status FROM orders") == "paid"


def test_a_failed_lookup_of_an_intent_charged_before_is_a_502(make_app, buyer, make_product):
    """The lookup after `payment_intent_unexpected_state` ran inside an except
    clause, so a Stripe error from it escaped every handler: a 500."""
    http, client, token, order = _intent_then_pay_lost(make_app, buyer, make_product)
    http.answers = [(400, UNEXPECTED_STATE), (500, SERVER_ERROR), (500, SERVER_ERROR)]
    http.answers += [(500, SERVER_ERROR)]

    response = pay(client, token, order["id"])

    assert response.status_code == 502, response.get_json()
    assert response.get_json()["code"] == "payment_provider_error"
    assert scalar("SELECT payment_status FROM orders") == "unpaid"
