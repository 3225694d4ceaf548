from __future__ import annotations

import marshmallow as ma
from marshmallow import fields, validate

from app.models import ORDER_STATUSES, PAYMENT_STATUSES
from app.schemas.common import ChangeSchema, Money, NonBlank, PageQuerySchema, page_schema

ADDRESS_RULES = [validate.Length(5, 500), NonBlank()]


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
    all = fields.Boolean(load_default=False, metadata={"description": "admins: every user's"})


class UserOrdersQuerySchema(PageQuerySchema):
    status = Status()
