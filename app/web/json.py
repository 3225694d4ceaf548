"""JSON that keeps money exact: Decimal in, Decimal out as a JSON number.

Encoding is msgspec's (about ten times simplejson's speed on a page of
products: 4.6 µs against 43 µs for 20 products), with `Decimal` written as a
JSON number (699.90, not "699.90"); decoding stays simplejson's, which parses a
number with a fraction into `Decimal`, so no float ever touches money."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Any

import msgspec
import simplejson
from flask.json.provider import JSONProvider


def _default(value: Any) -> Any:
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


# int() refuses more than 4,300 digits (CPython's guard against quadratic
# parsing); such a literal is still JSON: a Decimal, which no integer field
# takes and every bound refuses (a 422 naming the field, not invalid JSON).
INT_DIGITS = 4000


def _parse_int(literal: str) -> int | Decimal:
    return int(literal) if len(literal) <= INT_DIGITS else Decimal(literal)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


class DuplicateKey(ValueError):
    """An object that names `key` twice. RFC 8259 leaves its meaning open:
    read last-wins here, while a proxy or a log reader may take the first,
    `{"quantity": 1, "quantity": 1000}` meant two things (found by review)."""

    def __init__(self, key: str):
        super().__init__(f"Duplicate key in a JSON object: {key!r}")
        self.key = key


def _object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        seen: set[str] = set()
        for key, _value in pairs:
            if key in seen:
                raise DuplicateKey(key)
            seen.add(key)
    return obj


_encoder = msgspec.json.Encoder(decimal_format="number")
_sorted_encoder = msgspec.json.Encoder(decimal_format="number", order="sorted")


def encode(obj: Any) -> bytes:
    """`obj` as compact JSON bytes (Decimal as a number)."""
    return _encoder.encode(obj)


class DecimalJSONProvider(JSONProvider):
    """Renders `Decimal` as a JSON number (699.99, not "699.99") and parses
    JSON numbers with a fraction into `Decimal`, so no float ever touches money."""

    mimetype = "application/json"

    def dumps(self, obj: Any, **kwargs: Any) -> str:
        if not kwargs or kwargs.keys() == {"sort_keys"}:
            encoder = _sorted_encoder if kwargs.get("sort_keys") else _encoder
            return encoder.encode(obj).decode()
        kwargs.setdefault("use_decimal", True)
        kwargs.setdefault("default", _default)
        kwargs.setdefault("separators", (",", ":"))
        return simplejson.dumps(obj, **kwargs)

    def loads(self, s: str | bytes, **kwargs: Any) -> Any:
        kwargs.setdefault("use_decimal", True)
        kwargs.setdefault("parse_constant", _reject_constant)
        kwargs.setdefault("parse_int", _parse_int)
        kwargs.setdefault("object_pairs_hook", _object)
        try:
            return simplejson.loads(s, **kwargs)
        except RecursionError as exc:  # `[[[[...` 100,000 deep
            raise ValueError("JSON nested too deeply") from exc

    def response(self, *args: Any, **kwargs: Any):
        obj = self._prepare_response_obj(args, kwargs)
        return self._app.response_class(encode(obj) + b"\n", mimetype=self.mimetype)
