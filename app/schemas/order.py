from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import marshmallow as ma
from marshmallow import fields, validate

from app.models import ORDER_STATUSES, PAYMENT_STATUSES
from app.schemas.common import (
    ChangeSchema,
    Money,
    NoControl,
    NonBlank,
    PageQuerySchema,
    QueryBoolean,
    page_schema,
)
from app.schemas.dumping import integer, iso_datetime, money, string

# Line breaks and tabs are an address's own; other control characters
# (terminal escapes, bells) are refused as in every other text (found by review).
ADDRESS_RULES = [validate.Length(5, 500), NonBlank(), NoControl(allowed="\t\n\r")]


class OrderItemSchema(ma.Schema):
    id = fields.Integer()
    product_id = fields.Integer(allow_none=True)
    product_name = fields.String()
    unit_price = Money()
    quantity = fields.Integer()
    subtotal = Money()


def Status(**kwargs) -> fields.String:  # noqa: N802
    """An order status: one of `OrderStatus` (an enum in the OpenAPI document)."""
    return fields.String(validate=validate.OneOf(ORDER_STATUSES), **kwargs)


class StatusEventSchema(ma.Schema):
    status = Status()
    at = fields.DateTime()


class OrderSchema(ma.Schema):
    id = fields.Integer()
    user_id = fields.Integer()
    status = Status()
    total_amount = Money()
    currency = fields.String(metadata={"description": "ISO 4217 code (SHOP_CURRENCY)"})
    payment_status = fields.String(validate=validate.OneOf(PAYMENT_STATUSES))
    shipping_address = fields.String()
    items = fields.List(fields.Nested(OrderItemSchema))
    status_history = fields.List(fields.Nested(StatusEventSchema))
    created_at = fields.DateTime()
    updated_at = fields.DateTime()


OrderPageSchema = page_schema(OrderSchema, "OrderPageSchema")


def _dump_item(item: Mapping[str, Any] | None) -> dict[str, Any] | None:
    if item is None:
        return None
    return {
        "id": integer(item["id"]),
        "product_id": integer(item["product_id"]),
        "product_name": string(item["product_name"]),
        "unit_price": money(item["unit_price"]),
        "quantity": integer(item["quantity"]),
        "subtotal": money(item["subtotal"]),
    }


def _dump_event(event: Mapping[str, Any] | None) -> dict[str, Any] | None:
    if event is None:
        return None
    return {"status": string(event["status"]), "at": iso_datetime(event["at"])}


def dump_order(order: Mapping[str, Any]) -> dict[str, Any]:
    """`OrderSchema().dump(order)` of an order mapping (`services.orders.read_order`),
    precompiled: the schema's field-by-field walk was most of the time spent
    turning an order into JSON."""
    items, history = order["items"], order["status_history"]
    return {
        "id": integer(order["id"]),
        "user_id": integer(order["user_id"]),
        "status": string(order["status"]),
        "total_amount": money(order["total_amount"]),
        "currency": string(order["currency"]),
        "payment_status": string(order["payment_status"]),
        "shipping_address": string(order["shipping_address"]),
        "items": None if items is None else [_dump_item(item) for item in items],
        "status_history": None if history is None else [_dump_event(e) for e in history],
        "created_at": iso_datetime(order["created_at"]),
        "updated_at": iso_datetime(order["updated_at"]),
    }


class OrderCreateSchema(ma.Schema):
    shipping_address = fields.String(
        required=True,
        validate=ADDRESS_RULES,
        metadata={"example": "221B Baker Street, London NW1 6XE"},
    )


class OrderUpdateSchema(ChangeSchema):
    OPENAPI_EXAMPLE = {"status": "processing"}

    status = Status()
    shipping_address = fields.String(validate=ADDRESS_RULES)


class OrderQuerySchema(PageQuerySchema):
    status = Status()
    all = QueryBoolean(load_default=False, metadata={"description": "admins: every user's"})


class UserOrdersQuerySchema(PageQuerySchema):
    status = Status()
