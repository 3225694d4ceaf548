"""Payment providers behind one small interface: `test` (no network, decided
by Stripe's test payment method names) and `stripe` (the official library).

The services speak to a provider only through `charge`, `refund` and
`parse_webhook`, in minor units; nothing outside this module knows Stripe."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Protocol

from flask import current_app

from app.errors import NotFound, ValidationFailed
from app.utils.money import from_minor_units, to_minor_units

if TYPE_CHECKING:
    import stripe


@dataclass(frozen=True)
class Charge:
    """What one attempt to charge came to."""

    succeeded: bool
    intent_id: str | None
    message: str = ""


@dataclass(frozen=True)
class Refund:
    """What one refund gave back: `amount` in minor units, which is less than
    asked when the provider refunded only what the charge still held."""

    id: str
    amount: int


@dataclass(frozen=True)
class WebhookEvent:
    """A verified provider event, reduced to what the shop acts on."""

    id: str
    type: str
    intent_id: str | None
    order_id: int | None
    fully_refunded: bool = False
    # What the provider took (minor units, lower-case ISO code), where the
    # event says: a payment of another amount or currency pays no order.
    amount: int | None = None
    currency: str | None = None
    # A refund event's total given back so far (Stripe's cumulative
    # `amount_refunded`): below `amount`, a partial refund.
    amount_refunded: int | None = None


class PaymentProvider(Protocol):
    name: str

    def minor_units(self, amount: Decimal, currency: str) -> int:
        """`amount` in the provider's units of `currency` (a ValueError for
        an amount finer than them)."""

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

    def refund(self, *, order_id: int, intent_id: str, amount: int) -> Refund: ...

    def parse_webhook(
        self, payload: bytes, signature: str | None, check_shape: Callable[[Any], None]
    ) -> WebhookEvent: ...


def unknown_method(payment_method: str) -> ValidationFailed:
    return ValidationFailed(
        errors={"payment_method": [f"Unknown payment method '{payment_method[:100]}'."]}
    )


class TestProvider:
    """Deterministic and offline, with the outcomes of Stripe's test cards."""

    __test__ = False  # not a pytest class
    name = "test"
    OUTCOMES = {"pm_card_visa": True, "pm_card_chargeDeclined": False}

    def minor_units(self, amount: Decimal, currency: str) -> int:
        return to_minor_units(amount, currency)

    def charge(self, *, order_id, amount, currency, payment_method, intent_id, attempt) -> Charge:
        if payment_method not in self.OUTCOMES:
            raise unknown_method(payment_method)
        intent_id = intent_id or f"pi_test_order_{order_id}"
        if self.OUTCOMES[payment_method]:
            return Charge(True, intent_id)
        return Charge(False, intent_id, "Your card was declined.")

    def refund(self, *, order_id, intent_id, amount) -> Refund:
        return Refund(f"re_test_order_{order_id}", amount)

    def parse_webhook(self, payload, signature, check_shape) -> WebhookEvent:
        raise NotFound("The test payment provider sends no webhooks")


def make_provider(config, *, http_client: stripe.HTTPClient | None = None) -> PaymentProvider:
    """The provider PAYMENT_PROVIDER names."""
    name = config.get("PAYMENT_PROVIDER", "test")
    if name == "test":
        return TestProvider()
    if name == "stripe":
        # Imported only here: the library is 5 MB of every process's memory.
        from app.services.stripe_provider import StripeProvider

        return StripeProvider(
            config.get("STRIPE_SECRET_KEY", ""),
            config.get("STRIPE_WEBHOOK_SECRET", ""),
            tolerance=config.get("STRIPE_WEBHOOK_TOLERANCE", 300),
            http_client=http_client,
        )
    raise RuntimeError(f"unknown PAYMENT_PROVIDER {name!r}: use 'test' or 'stripe'")


def major_units(provider: str, minor: int, currency: str) -> Decimal:
    """An amount `provider` recorded in its units of `currency`, back as an
    amount, by that provider's rules whichever is configured now (Stripe's
    ISK is two-decimal where ISO 4217 gives it none: read by the configured
    test provider's rules, a Stripe payment showed 100 times its amount)."""
    if provider == "stripe":
        from app.services.stripe_provider import stripe_exponent

        return Decimal(minor).scaleb(-stripe_exponent(currency))
    return from_minor_units(minor, currency)


def get_provider() -> PaymentProvider:
    """This app's provider, made once."""
    extensions = current_app.extensions
    if "payment_provider" not in extensions:
        extensions["payment_provider"] = make_provider(current_app.config)
    return extensions["payment_provider"]
