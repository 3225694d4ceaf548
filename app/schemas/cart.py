from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import marshmallow as ma
from marshmallow import fields, validate

from app.models.product import MAX_STOCK
from app.schemas.common import Id, Money, StrictInt
from app.schemas.dumping import integer, money, string


def Quantity(**kwargs) -> fields.Integer:  # noqa: N802
    """From 1 up to the most stock a product can have: a quantity past the
    stock is the 409 naming the stock left (API.md), and past it but within
    the stock the 409 `cart_limit` (a line's MAX_LINE_QUANTITY). A line of
    MAX_LINE_QUANTITY plus this still fits the INTEGER column."""
    return StrictInt(validate=validate.Range(1, MAX_STOCK), **kwargs)


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


def _dump_product(product: Mapping[str, Any] | None) -> dict[str, Any] | None:
    if product is None:
        return None
    return {
        "id": integer(product["id"]),
        "name": string(product["name"]),
        "price": money(product["price"]),
        "image_url": string(product["image_url"]),
        "stock": integer(product["stock"]),
    }


def _dump_item(item: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "id": integer(item["id"]),
        "product_id": integer(item["product_id"]),
        "product": _dump_product(item["product"]),
        "quantity": integer(item["quantity"]),
        "unit_price": money(item["unit_price"]),
        "subtotal": money(item["subtotal"]),
    }


def dump_cart(cart: Mapping[str, Any]) -> dict[str, Any]:
    """`CartSchema().dump(cart)` of a cart mapping (`services.cart.read_cart`),
    precompiled: the schema's field-by-field walk was most of the time spent
    turning a cart into JSON."""
    items = cart["items"]
    return {
        "id": integer(cart["id"]),
        "items": None if items is None else [None if i is None else _dump_item(i) for i in items],
        "total_items": integer(cart["total_items"]),
        "total": money(cart["total"]),
    }


class CartAddSchema(ma.Schema):
    product_id = Id(required=True, metadata={"example": 1})
    quantity = Quantity(load_default=1, metadata={"example": 2})


class CartUpdateSchema(ma.Schema):
    quantity = Quantity(required=True, metadata={"example": 3})
