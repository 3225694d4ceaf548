"""Payments: /api/orders/<id>/pay and the provider's webhook."""

from flask import request
from flask_jwt_extended import current_user

from app.errors import ValidationFailed
from app.schemas.order import OrderSchema
from app.schemas.payment import (
    OrderPaymentsSchema,
    PaySchema,
    WebhookAckSchema,
    WebhookEventSchema,
)
from app.services import payments
from app.web.blueprint import Blueprint

blp = Blueprint("payments", __name__, description="Paying for orders; provider webhooks")

SIGNATURE_HEADER = {
    "in": "header",
    "name": "Stripe-Signature",
    "required": True,
    "schema": {"type": "string"},
    "description": "Stripe's signature of the raw body (t=<unix time>,v1=<HMAC-SHA256>)",
}


@blp.route("/orders/<int:order_id>/pay", methods=["POST"])
@blp.private
@blp.arguments(PaySchema)
@blp.response(200, OrderSchema)
@blp.alt_response(402, description="The payment was declined; the order is unchanged")
@blp.alt_response(404, description="No such order of the caller's")
@blp.alt_response(
    409,
    description="Already paid, not pending, or outside the amounts the provider charges",
)
@blp.alt_response(502, description="The payment provider failed; nothing was charged")
def pay_order(data, order_id):
    """Pay a pending order in full: it becomes paid and processing."""
    return payments.pay_order(current_user, order_id, data["payment_method"])


@blp.route("/orders/<int:order_id>/payments", methods=["GET"])
@blp.private(admin=True)
@blp.response(200, OrderPaymentsSchema)
@blp.alt_response(404, description="No such order")
def order_payments(order_id):
    """An order's payment attempts, with what was refunded of each (admin)."""
    return payments.order_payments(order_id)


@blp.route("/payments/webhook", methods=["POST"])
@blp.unlimited  # the provider's retries must never be throttled away
# The body is documented, not parsed before the view: the signature over its
# raw bytes is checked first (a forged `{}` is a 400, not a 422 listing the
# fields an event needs), then the shape (`WebhookEventSchema`, a 422).
@blp.doc(
    parameters=[SIGNATURE_HEADER],
    requestBody={
        "required": True,
        "content": {"application/json": {"schema": WebhookEventSchema}},
    },
)
@blp.response(200, WebhookAckSchema)
@blp.alt_response(400, description="The signature does not verify")
@blp.alt_response(404, description="The configured provider sends no webhooks")
@blp.alt_response(409, description="A refund that arrived before its payment: sent again later")
@blp.alt_response(422, description="A verified event of the wrong shape")
@blp.alt_response(502, description="A refund it needs failed; the event was not applied")
def webhook():
    """Apply a signed provider event once, however often it is delivered."""

    def check_shape(event: object) -> None:
        if not isinstance(event, dict):
            raise ValidationFailed(errors={"_schema": ["Invalid input type."]})
        errors = WebhookEventSchema().validate(event)
        if errors:
            raise ValidationFailed(errors=errors)

    payments.handle_webhook(
        request.get_data(), request.headers.get("Stripe-Signature"), check_shape
    )
    return {"received": True}
