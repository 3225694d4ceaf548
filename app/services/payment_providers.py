"""Payment providers behind one small interface: `test` (no network, decided
by Stripe's test payment method names) and `stripe` (the official library).

The services speak to a provider only through `charge`, `refund` and
`parse_webhook`, in minor units; nothing outside this module knows Stripe."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any, Protocol

import stripe
from flask import current_app

from app.errors import (
    InvalidWebhook,
    NotFound,
    PaymentProviderError,
    RefundFailed,
    ValidationFailed,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Charge:
    """What one attempt to charge came to."""

    succeeded: bool
    intent_id: str | None
    message: str = ""


@dataclass(frozen=True)
class WebhookEvent:
    """A verified provider event, reduced to what the shop acts on."""

    id: str
    type: str
    intent_id: str | None
    order_id: int | None
    fully_refunded: bool = False


class PaymentProvider(Protocol):
    name: str

    def charge(
        self,
        *,
        order_id: int,
        amount: int,
        currency: str,
        payment_method: str,
        intent_id: str | None,
        attempt: int,
    ) -> Charge: ...

    def refund(self, *, order_id: int, intent_id: str, amount: int) -> str: ...

    def parse_webhook(self, payload: bytes, signature: str | None) -> WebhookEvent: ...


def _unknown_method(payment_method: str) -> ValidationFailed:
    return ValidationFailed(
        errors={"payment_method": [f"Unknown payment method '{payment_method[:100]}'."]}
    )


class TestProvider:
    """Deterministic and offline, with the outcomes of Stripe's test cards."""

    __test__ = False  # not a pytest class
    name = "test"
    OUTCOMES = {"pm_card_visa": True, "pm_card_chargeDeclined": False}

    def charge(self, *, order_id, amount, currency, payment_method, intent_id, attempt) -> Charge:
        if payment_method not in self.OUTCOMES:
            raise _unknown_method(payment_method)
        intent_id = intent_id or f"pi_test_order_{order_id}"
        if self.OUTCOMES[payment_method]:
            return Charge(True, intent_id)
        return Charge(False, intent_id, "Your card was declined.")

    def refund(self, *, order_id, intent_id, amount) -> str:
        return f"re_test_order_{order_id}"

    def parse_webhook(self, payload, signature) -> WebhookEvent:
        raise NotFound("The test payment provider sends no webhooks")


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
                raise _unknown_method(payment_method)
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

    def parse_webhook(self, payload, signature) -> WebhookEvent:
        try:
            # The library's own check: HMAC-SHA256 over "<t>.<body>", and the
            # timestamp within the tolerance (replays of old events fail).
            event = stripe.Webhook.construct_event(
                payload.decode("utf-8"), signature or "", self.webhook_secret, self.tolerance
            )
        except (stripe.SignatureVerificationError, ValueError, UnicodeDecodeError):
            raise InvalidWebhook("The Stripe-Signature header does not verify")
        obj: dict[str, Any] = json.loads(payload)["data"]["object"]
        if event["type"].startswith("charge."):
            intent_id = obj.get("payment_intent")
        else:
            intent_id = obj.get("id")
        order_id = (obj.get("metadata") or {}).get("order_id")
        return WebhookEvent(
            id=event["id"],
            type=event["type"],
            intent_id=intent_id if isinstance(intent_id, str) else None,
            order_id=int(order_id) if str(order_id or "").isdigit() else None,
            fully_refunded=bool(obj.get("refunded")),
        )


def make_provider(config, *, http_client: stripe.HTTPClient | None = None) -> PaymentProvider:
    """The provider PAYMENT_PROVIDER names."""
    name = config.get("PAYMENT_PROVIDER", "test")
    if name == "test":
        return TestProvider()
    if name == "stripe":
        return StripeProvider(
            config.get("STRIPE_SECRET_KEY", ""),
            config.get("STRIPE_WEBHOOK_SECRET", ""),
            tolerance=config.get("STRIPE_WEBHOOK_TOLERANCE", 300),
            http_client=http_client,
        )
    raise RuntimeError(f"unknown PAYMENT_PROVIDER {name!r}: use 'test' or 'stripe'")


def get_provider() -> PaymentProvider:
    """This app's provider, made once."""
    extensions = current_app.extensions
    if "payment_provider" not in extensions:
        extensions["payment_provider"] = make_provider(current_app.config)
    return extensions["payment_provider"]
