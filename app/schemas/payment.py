from __future__ import annotations

import marshmallow as ma
from marshmallow import fields, validate

from app.models.payment import ATTEMPT_STATUSES, PAYMENT_STATUSES
from app.schemas.common import Money, NonBlank


class PaySchema(ma.Schema):
    payment_method = fields.String(
        required=True,
        validate=[validate.Length(1, 255), NonBlank()],
        metadata={
            "description": "A provider payment method id; with the test provider "
            "`pm_card_visa` succeeds and `pm_card_chargeDeclined` is declined",
            "example": "pm_card_visa",
        },
    )


class WebhookAckSchema(ma.Schema):
    received = fields.Boolean()


class WebhookEventSchema(ma.Schema):
    """The shape of a Stripe event; what it says is trusted only once the
    signature over the raw body verifies."""

    class Meta:
        unknown = ma.INCLUDE  # Stripe adds fields; they are signed with the rest

    id = fields.String(required=True, metadata={"example": "evt_1Nq2"})
    type = fields.String(required=True, metadata={"example": "payment_intent.succeeded"})
    data = fields.Dict(metadata={"description": "`object`: the PaymentIntent or Charge"})


class PaymentSchema(ma.Schema):
    """One attempt to charge an order, as an admin sees it."""

    id = fields.Integer()
    provider = fields.String()
    intent_id = fields.String(allow_none=True)
    amount = Money()
    amount_refunded = Money(
        metadata={"description": "Given back so far (partial refunds made at the provider)"}
    )
    currency = fields.String()
    status = fields.String(validate=validate.OneOf(ATTEMPT_STATUSES))
    attempt = fields.Integer()
    failure_message = fields.String(allow_none=True)
    created_at = fields.DateTime()


class OrderPaymentsSchema(ma.Schema):
    order_id = fields.Integer()
    currency = fields.String()
    payment_status = fields.String(validate=validate.OneOf(PAYMENT_STATUSES))
    amount_refunded = Money(
        metadata={"description": "The sum given back of every payment (refunds in full or part)"}
    )
    payments = fields.List(fields.Nested(PaymentSchema))
