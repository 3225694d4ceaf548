"""Inventory (admin): stock adjustments, the stock ledger, the low-stock report."""

from flask_jwt_extended import current_user

from app.schemas.common import PageQuerySchema
from app.schemas.inventory import StockAdjustmentSchema, StockMovementPageSchema
from app.schemas.product import ProductPageSchema, ProductSchema
from app.services import inventory
from app.web.blueprint import Blueprint

blp = Blueprint("inventory", __name__, description="Inventory (admin)")


@blp.route("/products/<int:product_id>/stock", methods=["POST"])
@blp.private(admin=True)
@blp.arguments(StockAdjustmentSchema)
@blp.response(200, ProductSchema)
@blp.alt_response(404, description="No such product")
@blp.alt_response(409, description="The stock would go below zero (`insufficient_stock`)")
def adjust_stock(data, product_id):
    """Add `delta` to a product's stock atomically (admin)."""
    return inventory.adjust_stock(product_id, data["delta"], data.get("note"), current_user)


@blp.route("/products/<int:product_id>/stock-movements", methods=["GET"])
@blp.private(admin=True)
@blp.arguments(PageQuerySchema, location="query", as_kwargs=False)
@blp.response(200, StockMovementPageSchema)
@blp.alt_response(404, description="No such product")
def stock_movements(args, product_id):
    """A page of a product's stock ledger, newest first (admin)."""
    return inventory.stock_movements(product_id, args)


@blp.route("/inventory/low-stock", methods=["GET"])
@blp.private(admin=True)
@blp.arguments(PageQuerySchema, location="query", as_kwargs=False)
@blp.response(200, ProductPageSchema)
def low_stock(args):
    """A page of live products at or below their threshold, lowest stock first (admin)."""
    return inventory.low_stock(args)
