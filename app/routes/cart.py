"""The caller's cart: /api/cart."""

from flask_jwt_extended import current_user

from app.schemas.cart import CartAddSchema, CartSchema, CartUpdateSchema, dump_cart
from app.services import cart as carts
from app.web.blueprint import Blueprint

blp = Blueprint("cart", __name__, description="The signed-in user's shopping cart")

CART_CONFLICT = (
    "The line would pass the stock left (`out_of_stock`), or a cart limit (`cart_limit`:"
    f" {carts.MAX_LINE_QUANTITY} units a line, {carts.MAX_CART_LINES} products a cart)"
)


@blp.route("", methods=["GET"])
@blp.private
@blp.response(200, CartSchema, dump=dump_cart)
def get_cart():
    """The caller's cart with its lines and totals."""
    return carts.read_cart(current_user)


@blp.route("", methods=["POST"])
@blp.private
@blp.arguments(CartAddSchema)
@blp.response(201, CartSchema, dump=dump_cart)
@blp.alt_response(404, description="No such product")
@blp.alt_response(409, description=CART_CONFLICT)
def add_item(data):
    """Add a product, or more of it, to the cart."""
    return carts.add_item(current_user, data["product_id"], data["quantity"])


@blp.route("/<int:item_id>", methods=["PUT"])
@blp.private
@blp.arguments(CartUpdateSchema)
@blp.response(200, CartSchema, dump=dump_cart)
@blp.alt_response(404, description="No such item in the caller's cart")
@blp.alt_response(409, description=CART_CONFLICT)
def update_item(data, item_id):
    """Set a line's quantity."""
    return carts.update_item(current_user, item_id, data["quantity"])


@blp.route("/<int:item_id>", methods=["DELETE"])
@blp.private
@blp.response(200, CartSchema, dump=dump_cart)
@blp.alt_response(404, description="No such item in the caller's cart")
def remove_item(item_id):
    """Remove a line."""
    return carts.remove_item(current_user, item_id)


@blp.route("/clear", methods=["DELETE"])
@blp.private
@blp.response(200, CartSchema, dump=dump_cart)
def clear_cart():
    """Empty the cart."""
    return carts.clear_cart(current_user)
