"""Money in a payment provider's minor units (cents, yen), exactly: Decimal in,
int out, never through a float."""

from __future__ import annotations

from decimal import Decimal

# ISO 4217 exponents that are not 2.
_ZERO_DECIMAL = "BIF CLP DJF GNF ISK JPY KMF KRW MGA PYG RWF UGX VND VUV XAF XOF XPF"
_THREE_DECIMAL = "BHD IQD JOD KWD LYD OMR TND"
_EXPONENTS = {
    **dict.fromkeys(_ZERO_DECIMAL.split(), 0),
    **dict.fromkeys(_THREE_DECIMAL.split(), 3),
}


def exponent(currency: str) -> int:
    """Digits after the decimal point in `currency` (USD 2, JPY 0, KWD 3)."""
    return _EXPONENTS.get(currency.upper(), 2)


def to_minor_units(amount: Decimal, currency: str, digits: int | None = None) -> int:
    """12.34 USD -> 1234; 500 JPY -> 500. An amount finer than the currency's
    minor unit (0.50 JPY) is a ValueError, never rounded away silently.
    `digits`: a provider's own exponent for the currency, where it differs
    from ISO 4217's (Stripe's ISK)."""
    if not isinstance(amount, Decimal):
        raise TypeError(f"money must be a Decimal, not {type(amount).__name__}")
    scaled = amount.scaleb(exponent(currency) if digits is None else digits)
    if scaled != scaled.to_integral_value():
        raise ValueError(f"{amount} {currency} is not a whole number of minor units")
    return int(scaled)


def from_minor_units(minor: int, currency: str) -> Decimal:
    """1234 USD -> Decimal('12.34')."""
    return Decimal(minor).scaleb(-exponent(currency))
