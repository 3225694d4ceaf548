from __future__ import annotations

import marshmallow as ma
from marshmallow import fields, validate

from app.models.inventory import NOTE_MAX, STOCK_REASONS
from app.models.product import MAX_STOCK
from app.schemas.common import NoControl, StrictInt, page_schema


class NonZero(validate.Validator):
    error = "Must not be 0."

    def __call__(self, value: int) -> int:
        if value == 0:
            raise ma.ValidationError(self.error)
        return value


class StockAdjustmentSchema(ma.Schema):
    delta = StrictInt(
        required=True,
        validate=[validate.Range(-MAX_STOCK, MAX_STOCK), NonZero()],
        metadata={"description": "Units to add (positive) or remove (negative); not 0."},
    )
    note = fields.String(
        allow_none=True,
        validate=[validate.Length(max=NOTE_MAX), NoControl(allowed="\t\n\r")],
        metadata={"description": "Why, for the ledger (a delivery, a stock count...)."},
    )


class StockMovementSchema(ma.Schema):
    id = fields.Integer()
    product_id = fields.Integer()
    delta = fields.Integer()
    stock_after = fields.Integer()
    reason = fields.String(validate=validate.OneOf(STOCK_REASONS))
    order_id = fields.Integer(allow_none=True)
    actor_id = fields.Integer(allow_none=True)
    note = fields.String(allow_none=True)
    # True on the movement that took the product to or below its threshold
    # and sent the admins' low-stock email (README said the movement was
    # "marked as the alert", but the mark was only in the database).
    low_stock_alert = fields.Boolean()
    created_at = fields.DateTime()


StockMovementPageSchema = page_schema(StockMovementSchema, "StockMovementPageSchema")
