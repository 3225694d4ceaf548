"""All models, imported here so Alembic and the app see the whole schema."""

from app.models.account_token import AccountToken
from app.models.cart import Cart, CartItem
from app.models.idempotency import IdempotencyKey
from app.models.inventory import STOCK_REASONS, StockMovement
from app.models.order import ORDER_STATUSES, Order, OrderItem, OrderStatus, OrderStatusEvent
from app.models.outbox import OutboxMessage, PeriodicJobRun
from app.models.payment import PAYMENT_STATUSES, Payment, PaymentEvent
from app.models.product import Product
from app.models.review import Review
from app.models.token import RevokedToken
from app.models.user import User

__all__ = [
    "ORDER_STATUSES",
    "PAYMENT_STATUSES",
    "STOCK_REASONS",
    "AccountToken",
    "Cart",
    "CartItem",
    "IdempotencyKey",
    "Order",
    "OrderItem",
    "OrderStatus",
    "OrderStatusEvent",
    "OutboxMessage",
    "Payment",
    "PaymentEvent",
    "PeriodicJobRun",
    "Product",
    "Review",
    "RevokedToken",
    "StockMovement",
    "User",
]
