from __future__ import annotations

import marshmallow as ma
from marshmallow import ValidationError, fields, validate, validates_schema

from app.models.product import MAX_STOCK
from app.schemas.common import (
    ChangeSchema,
    Money,
    NonBlank,
    PageQuerySchema,
    StrictInt,
    page_schema,
)

SORTS = ("name", "-name", "price", "-price", "rating", "-rating", "created_at", "-created_at")


class ProductSchema(ma.Schema):
    id = fields.Integer(dump_only=True)
    name = fields.String(required=True, validate=[validate.Length(1, 200), NonBlank()])
    description = fields.String(validate=validate.Length(max=5000))
    price = Money(required=True)
    stock = StrictInt(required=True, validate=validate.Range(0, MAX_STOCK))
    category = fields.String(allow_none=True, validate=validate.Length(max=80))
    image_url = fields.URL(
        allow_none=True,
        schemes={"http", "https"},
        require_tld=False,
        validate=validate.Length(max=500),
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


ProductPageSchema = page_schema(ProductSchema, "ProductPageSchema")


class ProductQuerySchema(PageQuerySchema):
    category = fields.String(validate=validate.Length(1, 80))
    q = fields.String(validate=validate.Length(1, 200), metadata={"description": "search"})
    min_price = Money()
    max_price = Money()
    in_stock = fields.Boolean(metadata={"description": "true: only products with stock"})
    min_rating = fields.Decimal(
        validate=validate.Range(1, 5),
        metadata={"description": "Only products rated at least this (1-5); unrated never match."},
    )
    sort = fields.String(
        load_default="-created_at",
        validate=validate.OneOf(SORTS),
        metadata={"description": "rating / -rating: unrated products last either way."},
    )

    @validates_schema
    def price_range(self, data, **kwargs):
        low, high = data.get("min_price"), data.get("max_price")
        if low is not None and high is not None and low > high:
            raise ValidationError("Must not be above max_price.", "min_price")
