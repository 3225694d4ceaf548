from __future__ import annotations

import marshmallow as ma
from marshmallow import fields, validate

from app.models.cart import MAX_LINE_QUANTITY
from app.schemas.common import Id, Money, StrictInt


def Quantity(**kwargs) -> fields.Integer:  # noqa: N802
    return StrictInt(validate=validate.Range(1, MAX_LINE_QUANTITY), **kwargs)


class CartProductSchema(ma.Schema):
    id = fields.Integer()
    name = fields.String()
    price = Money()
    image_url = fields.String(allow_none=True)
    stock = fields.Integer()


class CartItemSchema(ma.Schema):
    id = fields.Integer()
    product_id = fields.Integer()
    product = fields.Nested(CartProductSchema)
    quantity = fields.Integer()
    unit_price = Money()
    subtotal = Money()


class CartSchema(ma.Schema):
    id = fields.Integer()
    items = fields.List(fields.Nested(CartItemSchema))
    total_items = fields.Integer()
    total = Money()


class CartAddSchema(ma.Schema):
    product_id = Id(required=True, metadata={"example": 1})
    quantity = Quantity(load_default=1, metadata={"example": 2})


class CartUpdateSchema(ma.Schema):
    quantity = Quantity(required=True, metadata={"example": 3})
