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

SORTS = ("name", "-name", "price", "-price", "created_at", "-created_at")


class ProductSchema(ma.Schema):
    id = fields.Integer(dump_only=True, metadata={"example": 1})
    name = fields.String(
        required=True,
        validate=[validate.Length(1, 200), NonBlank()],
        metadata={"example": "Phone X"},
    )
    description = fields.String(
        validate=validate.Length(max=5000),
        metadata={"example": "A 6.1-inch phone with a very good camera."},
    )
    price = Money(required=True, metadata={"example": 699.99})
    stock = StrictInt(
        required=True, validate=validate.Range(0, MAX_STOCK), metadata={"example": 25}
    )
    category = fields.String(
        allow_none=True, validate=validate.Length(max=80), metadata={"example": "Phones"}
    )
    image_url = fields.URL(
        allow_none=True,
        schemes={"http", "https"},
        require_tld=False,
        validate=validate.Length(max=500),
        metadata={"example": "https://example.com/images/phone-x.jpg"},
    )
    created_at = fields.DateTime(dump_only=True)
    updated_at = fields.DateTime(dump_only=True)


class ProductUpdateSchema(ProductSchema, ChangeSchema):
    """Any subset of the writable fields (loaded with partial=True)."""

    OPENAPI_EXAMPLE = {"price": "649.99", "stock": 30}


ProductPageSchema = page_schema(ProductSchema, "ProductPageSchema")


class ProductQuerySchema(PageQuerySchema):
    category = fields.String(validate=validate.Length(1, 80))
    q = fields.String(validate=validate.Length(1, 200), metadata={"description": "search"})
    min_price = Money()
    max_price = Money()
    in_stock = fields.Boolean(metadata={"description": "true: only products with stock"})
    sort = fields.String(load_default="-created_at", validate=validate.OneOf(SORTS))

    @validates_schema
    def price_range(self, data, **kwargs):
        low, high = data.get("min_price"), data.get("max_price")
        if low is not None and high is not None and low > high:
            raise ValidationError("Must not be above max_price.", "min_price")
