"""Orders: /api/orders."""

from flask_jwt_extended import current_user

from app.schemas.order import (
    OrderCreateSchema,
    OrderPageSchema,
    OrderQuerySchema,
    OrderSchema,
    OrderUpdateSchema,
    UserOrdersQuerySchema,
    dump_order,
)
from app.services import orders
from app.web.blueprint import Blueprint
from app.web.idempotency import idempotent
from app.web.openapi import IDEMPOTENCY_KEY_PARAMETER

blp = Blueprint("orders", __name__, description="Orders and their status workflow")


@blp.route("", methods=["GET"])
@blp.private
@blp.arguments(OrderQuerySchema, location="query")
@blp.response(200, OrderPageSchema)
@blp.alt_response(403, description="all=true needs an admin")
def list_orders(args):
    """The caller's orders, newest first (admins: all=true for everyone's)."""
    return orders.list_orders(current_user, args)


@blp.route("", methods=["POST"])
@blp.defer_write_lock
@blp.private
@blp.doc(parameters=[IDEMPOTENCY_KEY_PARAMETER])
@idempotent
@blp.arguments(OrderCreateSchema)
@blp.response(201, OrderSchema)
@blp.alt_response(
    409,
    description="`empty_cart`; `out_of_stock`: a line asks for more than is left; "
    "`idempotency_in_flight`: the key's first request still runs",
)
def place_order(data):
    """Place an order from the caller's cart (honours an Idempotency-Key header)."""
    return orders.place_order(current_user, data["shipping_address"])


@blp.route("/<int:order_id>", methods=["GET"])
@blp.private
@blp.response(200, OrderSchema, dump=dump_order)
@blp.alt_response(404, description="No such order of the caller's")
def get_order(order_id):
    """One order (its owner or an admin)."""
    return orders.read_order(current_user, order_id)


@blp.route("/<int:order_id>", methods=["PUT"])
@blp.private
@blp.arguments(OrderUpdateSchema)
@blp.response(200, OrderSchema)
@blp.alt_response(403, description="The owner may only cancel; other moves need an admin")
@blp.alt_response(404, description="No such order of the caller's")
@blp.alt_response(
    409,
    description="`invalid_transition`: the workflow forbids this change; `order_not_pending`: "
    "the address changes only while pending; `stock_limit`: a cancel would pass a stock's maximum",
)
@blp.alt_response(502, description="Cancelling: the refund failed, nothing changed")
def update_order(data, order_id):
    """Move the status (admin; the owner may only cancel) or change the address while pending."""
    return orders.update_order(current_user, order_id, data)


@blp.route("/<int:order_id>/cancel", methods=["POST"])
@blp.private
@blp.response(200, OrderSchema)
@blp.alt_response(404, description="No such order of the caller's")
@blp.alt_response(
    409,
    description="`invalid_transition`: already shipped, delivered or cancelled; "
    "`stock_limit`: putting the items back would pass a stock's maximum",
)
@blp.alt_response(502, description="The refund failed; the order was not cancelled")
def cancel_order(order_id):
    """Cancel a pending or processing order, refund it if paid, restock its items."""
    return orders.cancel_order(current_user, order_id)


@blp.route("/user/<int:user_id>", methods=["GET"])
@blp.private(admin=True)
@blp.arguments(UserOrdersQuerySchema, location="query")
@blp.response(200, OrderPageSchema)
@blp.alt_response(404, description="No such user")
def user_orders(args, user_id):
    """A page of one user's orders (admin)."""
    return orders.user_orders(args, user_id)
