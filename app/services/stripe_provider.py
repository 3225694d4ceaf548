"""The `stripe` payment provider, on the official library (imported only
when PAYMENT_PROVIDER=stripe: `payment_providers.make_provider`)."""

from __future__ import annotations

import json
import logging

import stripe

from app.errors import InvalidWebhook, PaymentProviderError, RefundFailed, ValidationFailed
from app.models.types import INTEGER_MAX
from app.services.payment_providers import Charge, WebhookEvent, unknown_method

log = logging.getLogger("app.services.payment_providers")


class StripeProvider:
    """One PaymentIntent per order, confirmed once per attempt; every call
    carries an idempotency key, so a retried call never charges twice."""

    name = "stripe"

    def __init__(
        self,
        secret_key: str,
        webhook_secret: str,
        *,
        tolerance: int = 300,
        http_client: stripe.HTTPClient | None = None,
    ):
        if not secret_key or not webhook_secret:
            raise RuntimeError(
                "PAYMENT_PROVIDER=stripe needs STRIPE_SECRET_KEY and STRIPE_WEBHOOK_SECRET"
            )
        self.client = stripe.StripeClient(
            secret_key, http_client=http_client, max_network_retries=2
        )
        self.webhook_secret = webhook_secret
        self.tolerance = tolerance

    def charge(self, *, order_id, amount, currency, payment_method, intent_id, attempt) -> Charge:
        intents = self.client.v1.payment_intents
        try:
            if intent_id is None:
                intent = intents.create(
                    params={
                        "amount": amount,
                        "currency": currency.lower(),
                        "metadata": {"order_id": str(order_id)},
                        "payment_method_types": ["card"],
                    },
                    options={"idempotency_key": f"order-{order_id}-intent"},
                )
                intent_id = intent.id
            intent = intents.confirm(
                intent_id,
                params={"payment_method": payment_method},
                options={"idempotency_key": f"order-{order_id}-attempt-{attempt}"},
            )
        except stripe.CardError as error:
            return Charge(False, intent_id, error.user_message or "Your card was declined.")
        except stripe.InvalidRequestError as error:
            if error.code == "payment_intent_unexpected_state" and intent_id:
                # Charged before, but our answer was lost (a crash before commit).
                intent = intents.retrieve(intent_id)
                if intent.status == "succeeded":
                    return Charge(True, intent.id)
            if error.param == "payment_method" or error.code == "resource_missing":
                raise unknown_method(payment_method)
            log.warning("stripe refused the payment of order %s: %s", order_id, error)
            raise PaymentProviderError("The payment provider refused the request")
        except stripe.StripeError as error:
            log.warning("stripe failed for order %s: %s", order_id, error)
            raise PaymentProviderError("The payment provider could not be reached; try again")
        if intent.status == "succeeded":
            return Charge(True, intent.id)
        # requires_action (3-D Secure) needs the customer in a browser: not this flow.
        return Charge(False, intent.id, f"The payment was not completed ({intent.status})")

    def refund(self, *, order_id, intent_id, amount) -> str:
        try:
            refund = self.client.v1.refunds.create(
                params={
                    "payment_intent": intent_id,
                    "amount": amount,
                    "metadata": {"order_id": str(order_id)},
                },
                options={"idempotency_key": f"order-{order_id}-refund"},
            )
        except stripe.StripeError as error:
            log.warning("stripe refund of order %s failed: %s", order_id, error)
            detail = getattr(error, "user_message", None) or "the payment provider refused it"
            raise RefundFailed(f"The refund failed ({detail}); the order was not cancelled")
        if refund.status in ("failed", "canceled"):
            raise RefundFailed(f"The refund {refund.status}; the order was not cancelled")
        return refund.id

    def parse_webhook(self, payload, signature, check_shape) -> WebhookEvent:
        try:
            # The library's own check: HMAC-SHA256 over "<t>.<body>", and the
            # timestamp within the tolerance (replays of old events fail).
            text = payload.decode("utf-8")
            stripe.WebhookSignature.verify_header(
                text, signature or "", self.webhook_secret, self.tolerance
            )
        except (stripe.SignatureVerificationError, UnicodeDecodeError):
            raise InvalidWebhook("The Stripe-Signature header does not verify")
        # Signed, then parsed and checked here: the library's `construct_event`
        # raised an AttributeError (a 500) for a signed body that is no object.
        try:
            event = json.loads(text)
        except ValueError:
            raise InvalidWebhook("The signed body is not JSON") from None
        check_shape(event)
        obj = (event.get("data") or {}).get("object")
        if not isinstance(obj, dict):
            raise ValidationFailed(errors={"data": ["An event's data holds its object."]})
        if event["type"].startswith("charge."):
            intent_id = obj.get("payment_intent")
        else:
            intent_id = obj.get("id")
        metadata = obj.get("metadata")
        order_id = metadata.get("order_id") if isinstance(metadata, dict) else None
        amount = obj.get("amount_received", obj.get("amount"))
        currency = obj.get("currency")
        return WebhookEvent(
            id=event["id"],
            type=event["type"],
            intent_id=intent_id if isinstance(intent_id, str) else None,
            order_id=_order_id(order_id),
            fully_refunded=bool(obj.get("refunded")),
            amount=amount if isinstance(amount, int) and not isinstance(amount, bool) else None,
            currency=currency.lower() if isinstance(currency, str) else None,
        )


def _order_id(value) -> int | None:
    """The shop's order id a signed event's metadata names, or None: ASCII
    digits within the column's range only (`"²".isdigit()` is true, and a
    20-digit id overflowed the query: each was a 500; found by review)."""
    text = str(value) if isinstance(value, (str, int)) and not isinstance(value, bool) else ""
    if not (text.isascii() and text.isdigit()) or len(text) > 10:
        return None
    number = int(text)
    return number if 0 < number <= INTEGER_MAX else None
