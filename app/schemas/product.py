from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping
from decimal import ROUND_CEILING, Decimal
from typing import Any

import marshmallow as ma
from flask import current_app
from marshmallow import ValidationError, fields, post_load, validate, validates_schema

from app.models.product import MAX_STOCK
from app.models.types import CENT, INTEGER_MAX
from app.schemas.common import (
    ChangeSchema,
    Money,
    NoControl,
    NonBlank,
    PageQuerySchema,
    QueryBoolean,
    StrictInt,
    dump_money,
    page_schema,
)
from app.utils.money import exponent

SORTS = (
    "name",
    "-name",
    "price",
    "-price",
    "rating",
    "-rating",
    "created_at",
    "-created_at",
    "relevance",
)


class NoUnsafeUrlCharacters(validate.Validator):
    """No character a URL may never hold (RFC 3986: space, `"`, `<`, `>`,
    `\\`, `^`, backtick, `{`, `|`, `}`, controls): written into a page as is,
    `...jpg"onerror="...` would leave the attribute it is put in."""

    error = "Not a valid URL: percent-encode spaces, quotes and angle brackets."
    UNSAFE = frozenset(' "<>\\^`{|}')

    def __call__(self, value: str) -> str:
        if any(char in self.UNSAFE or unicodedata.category(char) == "Cc" for char in value):
            raise ValidationError(self.error)
        return value


class Price(Money):
    """A product's price: also a whole number of the shop currency's minor
    units (no 1500.50 in JPY: such an order could never be charged)."""

    def _deserialize(self, value, attr, data, **kwargs) -> Decimal:
        amount = super()._deserialize(value, attr, data, **kwargs)
        currency = current_app.config["SHOP_CURRENCY"]
        places = exponent(currency)
        if places < 2 and amount != amount.quantize(Decimal(1).scaleb(-places)):
            raise ValidationError(f"{currency} has no amounts finer than {places} decimal places.")
        return amount


class Rating(fields.Decimal):
    """A rating bound: a number in plain ASCII notation (`4`, `4.5`, `4.`,
    `0.45e1`). Decimal() also reads Arabic-Indic or fullwidth digits and
    surrounding spaces (`٣`, `" 1"`), which no other number here takes
    (found by review)."""

    NOTATION = re.compile(r"([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?")

    def _deserialize(self, value, attr, data, **kwargs) -> Decimal:
        if isinstance(value, str) and not self.NOTATION.fullmatch(value):
            raise self.make_error("invalid")
        return super()._deserialize(value, attr, data, **kwargs)


class ProductSchema(ma.Schema):
    id = fields.Integer(dump_only=True, metadata={"example": 1})
    name = fields.String(
        required=True,
        validate=[validate.Length(1, 200), NonBlank(), NoControl()],
        metadata={"example": "Phone X"},
    )
    description = fields.String(
        validate=[validate.Length(max=5000), NoControl(allowed="\t\n\r")],
        metadata={"example": "A 6.1-inch phone with a very good camera."},
    )
    price = Price(required=True, metadata={"example": 699.99})
    # An admin sets at most MAX_STOCK, but a cancel still puts its units back
    # (up to the column's INTEGER_MAX): an answer's maximum is that one.
    stock = StrictInt(
        required=True,
        validate=validate.Range(0, MAX_STOCK),
        metadata={"example": 25, "response_maximum": INTEGER_MAX},
    )
    # As the filter takes it (1 to 80): every stored category can be chosen.
    category = fields.String(
        allow_none=True,
        validate=[validate.Length(1, 80), NoControl()],
        metadata={"example": "Phones"},
    )
    image_url = fields.URL(
        allow_none=True,
        schemes={"http", "https"},
        require_tld=False,
        validate=[validate.Length(max=500), NoUnsafeUrlCharacters()],
        metadata={"example": "https://example.com/images/phone-x.jpg"},
    )
    low_stock_threshold = StrictInt(
        validate=validate.Range(0, MAX_STOCK),
        metadata={"description": "At or below this stock the product is low (default 5)."},
    )
    rating_average = fields.Decimal(
        dump_only=True,
        places=2,
        allow_none=True,
        metadata={"description": "Mean review rating, two decimals; null with no reviews."},
    )
    rating_count = fields.Integer(dump_only=True, metadata={"description": "Number of reviews."})
    created_at = fields.DateTime(dump_only=True)
    updated_at = fields.DateTime(dump_only=True)


class ProductUpdateSchema(ProductSchema, ChangeSchema):
    """Any subset of the writable fields (loaded with partial=True)."""

    OPENAPI_EXAMPLE = {"price": "649.99", "stock": 30}


ProductPageSchema = page_schema(ProductSchema, "ProductPageSchema")

TWO_PLACES = Decimal("0.01")


def _two_places(value) -> Decimal | None:
    """What `fields.Decimal(places=2)` dumps."""
    if value is None:
        return None
    number = Decimal(str(value))
    return number.quantize(TWO_PLACES) if number.is_finite() else number


def _iso(value) -> str | None:
    return None if value is None else value.isoformat()


def dump_product(row: Mapping[str, Any]) -> dict[str, Any]:
    """`ProductSchema().dump(row)` for a row of the products table (a mapping),
    without Marshmallow's per-field machinery: 20 products in ~0.05 ms
    instead of ~0.4 ms. tests/test_product_dump.py holds the two equal."""
    return {
        "id": row["id"],
        "name": row["name"],
        "description": row["description"],
        "price": dump_money(row["price"]),
        "stock": row["stock"],
        "category": row["category"],
        "image_url": row["image_url"],
        "low_stock_threshold": row["low_stock_threshold"],
        "rating_average": _two_places(row["rating_average"]),
        "rating_count": row["rating_count"],
        "created_at": _iso(row["created_at"]),
        "updated_at": _iso(row["updated_at"]),
    }


def dump_product_page(page: Mapping[str, Any]) -> dict[str, Any]:
    """`ProductPageSchema().dump(page)` for a page of product rows."""
    return {
        "page": page["page"],
        "per_page": page["per_page"],
        "total": page["total"],
        "pages": page["pages"],
        "items": [dump_product(row) for row in page["items"]],
    }


class ProductFilterSchema(ma.Schema):
    """The catalog's filters, shared by the list and its facets."""

    IN_QUERY = True  # documented as query text (app.web.openapi.money2properties)

    category = fields.String(validate=validate.Length(1, 80))
    q = fields.String(
        validate=validate.Length(max=200),
        metadata={
            "description": "Full-text search over name, description and category: every "
            'word must match (stemmed), the last also as a prefix; "a phrase" in order; '
            "-word excludes. Any text up to 200 characters; one with no words (empty,"
            " blank, punctuation only) matches nothing."
        },
    )
    # Examples the server takes: without them a client generator made its
    # own (Postman's collection sent `min_price=404691.44534278987`, a 422;
    # found by review). The whole range, so that a request built from them
    # (Swagger UI's "Try it out" fills them in) still lists every product.
    min_price = Money(metadata={"example": "0"})
    max_price = Money(metadata={"example": "1000000"})
    in_stock = QueryBoolean(
        metadata={"description": "true: only products with stock; false: no filter"}
    )
    min_rating = Rating(
        validate=validate.Range(1, 5),
        metadata={"description": "Only products rated at least this (1-5); unrated never match."},
    )

    @validates_schema
    def price_range(self, data, **kwargs):
        low, high = data.get("min_price"), data.get("max_price")
        if low is not None and high is not None and low > high:
            raise ValidationError("Must not be above max_price.", "min_price")

    @post_load
    def min_rating_in_cents(self, data, **kwargs):
        # An average has two decimals, so "at least 4.001" is "at least 4.01":
        # as given, 4.0000000000000000001 became 4.0 on SQLite (a float),
        # listing products rated 4.00, and one with over 16,383 decimals was a
        # 500 on PostgreSQL (its numeric holds no more; found by review).
        if data.get("min_rating") is not None:
            data["min_rating"] = data["min_rating"].quantize(CENT, rounding=ROUND_CEILING)
        return data


class ProductQuerySchema(PageQuerySchema, ProductFilterSchema):
    sort = fields.String(
        validate=validate.OneOf(SORTS),
        metadata={
            "description": "Default: relevance with q, else -created_at; ties by id. "
            "rating / -rating: unrated products last either way."
        },
    )

    @validates_schema
    def relevance_needs_q(self, data, **kwargs):
        if data.get("sort") == "relevance" and "q" not in data:
            raise ValidationError("relevance needs a search (q).", "sort")


class CountSchema(ma.Schema):
    value = fields.String(required=True)
    count = fields.Integer(required=True)


class PriceRangeSchema(ma.Schema):
    min = Money(allow_none=True)
    max = Money(allow_none=True)


class RatingCountSchema(ma.Schema):
    min_rating = fields.Integer(required=True)
    count = fields.Integer(required=True)


class FacetsSchema(ma.Schema):
    total = fields.Integer(metadata={"description": "Matching live products"})
    categories = fields.List(
        fields.Nested(CountSchema),
        metadata={"description": "Ignoring the category filter; by count, then value"},
    )
    price = fields.Nested(
        PriceRangeSchema,
        metadata={"description": "Never null: `min` and `max` are both null when nothing matches"},
    )
    in_stock = fields.Integer(metadata={"description": "Matching products with stock"})
    ratings = fields.List(
        fields.Nested(RatingCountSchema),
        metadata={"description": "Products rated at least 4, 3, 2 and 1 stars"},
    )


class SuggestQuerySchema(ma.Schema):
    q = fields.String(
        required=True,
        validate=[validate.Length(1, 100), NonBlank()],
        # An example: a generator ignoring the pattern sent `q= ` (a 422).
        metadata={"description": "What has been typed so far", "example": "pho"},
    )


class SuggestionsSchema(ma.Schema):
    suggestions = fields.List(fields.String(), metadata={"description": "Best first, at most 10"})
