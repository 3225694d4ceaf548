"""Fields and schemas shared by every resource."""

from __future__ import annotations

import re
import unicodedata
from decimal import Decimal, InvalidOperation

import marshmallow as ma
from marshmallow import ValidationError, fields, post_load, validate, validates_schema

from app.models.types import CENT, INTEGER_MAX

MAX_PER_PAGE = 100
MONEY_STRING = re.compile(r"-?(0|[1-9][0-9]*)(\.[0-9]+)?", re.ASCII)
INTEGER = re.compile(r"-?(0|[1-9][0-9]*)", re.ASCII)  # as JSON writes one
HUGE_DIGITS = 100


def dump_money(value) -> Decimal | None:
    """An amount as the API renders it: a Decimal with two places (None stays None)."""
    return None if value is None else Decimal(value).quantize(CENT)


class Money(fields.Field):
    """An exact amount: a JSON number or numeric string with at most 2 decimals."""

    default_error_messages = {
        "invalid": "Not a valid amount.",
        "places": "At most two decimal places are allowed.",
        "range": "Must be between 0 and 1000000.",
    }

    def __init__(self, *, maximum: Decimal = Decimal("1000000"), **kwargs):
        self.maximum = maximum
        super().__init__(**kwargs)

    def _serialize(self, value, attr, obj, **kwargs):
        return dump_money(value)

    def _deserialize(self, value, attr, data, **kwargs) -> Decimal:
        if isinstance(value, bool) or not isinstance(value, (int, float, str, Decimal)):
            raise self.make_error("invalid")
        # Decimal() also reads fullwidth or Arabic-Indic digits, '1_0', '1e2',
        # ' 05', '+5' and '.5': a string is plain decimal notation only, the
        # document's pattern (openapi_contract.MONEY_PATTERN; found by review).
        if isinstance(value, str):
            if not MONEY_STRING.fullmatch(value):
                raise self.make_error("invalid")
            if len(value.partition(".")[2]) > 2:  # "5.000", as the pattern says
                raise self.make_error("places")
        try:
            amount = Decimal(value if isinstance(value, str) else str(value))
        except (InvalidOperation, ValueError):
            raise self.make_error("invalid") from None
        if not amount.is_finite():
            raise self.make_error("invalid")
        if amount < 0 or amount > self.maximum:
            raise self.make_error("range")
        if amount != amount.quantize(CENT):
            raise self.make_error("places")
        return amount.quantize(CENT) + 0  # + 0: "-0" is 0.00, not -0.00


class Integer(fields.Integer):
    """An integer; given as a string (a query parameter), in plain decimal
    notation, as the document's `type: integer` is written: ASCII digits,
    an optional `-`, no `+`, leading zero or surrounding space (`+1`, `01`,
    ` 1` were read as 1, where `min_price` and `min_rating` refused them;
    found by review). int() would also read fullwidth or Arabic-Indic
    digits and '1_0'."""

    def _deserialize(self, value, attr, data, **kwargs):
        if isinstance(value, str):
            if not INTEGER.fullmatch(value):
                raise self.make_error("invalid")
            sign, digits = ("-" if value.startswith("-") else ""), value.lstrip("-")
            if len(digits) > HUGE_DIGITS:  # past any bound; int() refuses 4,300 digits
                value = sign + "1" + "0" * HUGE_DIGITS
        return super()._deserialize(value, attr, data, **kwargs)


class QueryBoolean(fields.Boolean):
    """A boolean query parameter: `true` or `false`, as the OpenAPI document's
    `type: boolean` is written in a query. Marshmallow's own also took `yes`,
    `1`, `on`, `T`..., which the document does not offer (found by review)."""

    default_error_messages = {"invalid": "Must be true or false."}

    def __init__(self, **kwargs):
        super().__init__(truthy={"true"}, falsy={"false"}, **kwargs)


def StrictInt(**kwargs) -> fields.Integer:  # noqa: N802 - a field factory
    """A JSON integer: no strings, no fractions, no booleans."""
    return fields.Integer(strict=True, **kwargs)


def Id(**kwargs) -> fields.Integer:  # noqa: N802
    return fields.Integer(strict=True, validate=validate.Range(1, INTEGER_MAX), **kwargs)


class NonBlank(validate.Validator):
    """Some visible character: not only spaces, nor only invisible format
    characters (zero-width spaces, joiners)."""

    error = "Must not be blank."

    @staticmethod
    def visible(char: str) -> bool:
        return not (char.isspace() or unicodedata.category(char) == "Cf")

    def __call__(self, value: str) -> str:
        if not any(map(self.visible, value)):
            raise ma.ValidationError(self.error)
        return value


class NoControl(validate.Validator):
    """No control character (terminal escapes, bells, DEL...) but those in
    `allowed` (a description's line breaks and tabs)."""

    error = "Must not contain control characters."

    def __init__(self, allowed: str = ""):
        self.allowed = allowed

    def __call__(self, value: str) -> str:
        if any(unicodedata.category(c) == "Cc" and c not in self.allowed for c in value):
            raise ma.ValidationError(self.error)
        return value


class ChangeSchema(ma.Schema):
    """A change (PUT body): at least one field. An empty body or `{}` would
    change nothing and answer 200, hiding a client's mistake: a 422 instead.
    `NOT_CHANGES`: fields that change nothing by themselves (a body of only
    `current_password` was a 200 that changed nothing; found by review)."""

    NOT_CHANGES: tuple[str, ...] = ()

    @validates_schema
    def not_empty(self, data, **kwargs):
        if all(name in self.NOT_CHANGES for name in data):
            raise ValidationError("Give at least one field to change.", "_schema")


class PageQuerySchema(ma.Schema):
    page = Integer(load_default=1, validate=validate.Range(1, INTEGER_MAX))
    per_page = Integer(
        load_default=20,
        validate=validate.Range(min=1),
        metadata={"description": "Items per page; above 100 is clamped to 100."},
    )

    @post_load
    def clamp(self, data, **kwargs):
        data["per_page"] = min(data["per_page"], MAX_PER_PAGE)
        return data


class PageSchema(ma.Schema):
    page = fields.Integer()
    per_page = fields.Integer()
    total = fields.Integer()
    pages = fields.Integer()


def page_schema(item_schema: type[ma.Schema], name: str) -> type[ma.Schema]:
    """The page envelope of API.md around `item_schema`."""
    return type(name, (PageSchema,), {"items": fields.List(fields.Nested(item_schema))})


class MessageSchema(ma.Schema):
    message = fields.String()


class ErrorSchema(ma.Schema):
    code = fields.String(
        required=True,
        metadata={"example": "validation_failed"},  # described in app.web.openapi_contract
    )
    message = fields.String(
        required=True,
        metadata={
            "description": "For people; its wording may change.",
            "example": "Validation failed",
        },
    )
    errors = fields.Dict(
        keys=fields.String(),
        values=fields.List(fields.String()),
        metadata={
            "description": "Each offending field (or `_schema`) with its messages.",
            "example": {"price": ["Must be between 0 and 1000000."]},
        },
    )
    details = fields.Dict(
        keys=fields.String(),
        metadata={
            "description": (
                "Facts about the error, for some codes: `out_of_stock` {product_id, available}, "
                "`insufficient_stock` {product_id, available}, `invalid_transition` {from, to}, "
                "`duplicate` {field}."
            ),
        },
    )
