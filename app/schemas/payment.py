from __future__ import annotations

import marshmallow as ma
from marshmallow import fields, validate

from app.schemas.common import NonBlank


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
