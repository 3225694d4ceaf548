"""The emails the shop sends about orders and accounts: one call per event,
each recording an outbox row in the caller's transaction."""

from __future__ import annotations

from collections.abc import Iterable
from decimal import Decimal
from typing import Any

from flask import current_app
from sqlalchemy import select

from app.extensions import db
from app.models import Order, User
from app.services.outbox import queue_email, queue_emails

STATUS_TEMPLATES = {
    "processing": "order_processing",
    "shipped": "order_shipped",
    "delivered": "order_delivered",
    "cancelled": "order_cancelled",
}


def _order_context(order: Order, user: User, items: Iterable[Any]) -> dict[str, Any]:
    lines = [
        {
            "name": _get(item, "product_name"),
            "quantity": _get(item, "quantity"),
            "unit_price": _get(item, "unit_price"),
            "subtotal": _get(item, "subtotal"),
        }
        for item in items
    ]
    return {
        "user": {"username": user.username},
        "order": {
            "id": order.id,
            "status": order.status,
            "total": order.total_amount,
            "shipping_address": order.shipping_address,
            "currency": getattr(order, "currency", None) or current_app.config["SHOP_CURRENCY"],
            "payment_status": getattr(order, "payment_status", None),
            "lines": lines,
        },
        "orders_url": f"{current_app.config['FRONTEND_URL']}/orders/{order.id}",
    }


def _get(item: Any, name: str) -> Any:
    return item[name] if isinstance(item, dict) else getattr(item, name)


def order_placed(order: Order, user: User, items: Iterable[Any]) -> None:
    """Queue the order confirmation (`items`: order items, or their row dicts)."""
    queue_email(user.email, "order_placed", _order_context(order, user, items))


def order_status_changed(order: Order, refunded: Decimal | None = None) -> None:
    """Queue the email for the order's new status, if that status has one;
    `refunded`: what the change gave back (a cancel's refund), which is the
    order's total unless partial refunds were made before it (the email said
    the total, as if all of it were given back now; found by review)."""
    template = STATUS_TEMPLATES.get(order.status)
    if template is None:
        return
    user = db.session.get(User, order.user_id)
    if user is not None:
        context = _order_context(order, user, order.items)
        if refunded is not None:
            context["refund"] = {"amount": refunded}
        queue_email(user.email, template, context)


def late_payment_refunded(order: Order) -> None:
    """Queue the email telling the customer that money which arrived after
    their order was cancelled went back (the cancellation email, sent
    before, said nothing of it)."""
    user = db.session.get(User, order.user_id)
    if user is not None:
        queue_email(user.email, "order_refunded", _order_context(order, user, order.items))


def second_payment_refunded(order: Order) -> None:
    """Queue the email telling the customer that a second payment of the
    order (charged twice: their statement shows both) went back in full."""
    user = db.session.get(User, order.user_id)
    if user is not None:
        context = _order_context(order, user, order.items)
        context["refund"] = {"amount": order.total_amount}
        queue_email(user.email, "second_payment_refunded", context)


def low_stock(*products: Any) -> None:
    """Queue the low-stock alert for each of `products` to every admin (the
    admins read once)."""
    admins = db.session.scalars(select(User).where(User.is_admin).order_by(User.id)).all()
    emails = []
    for product in products:
        snapshot = {
            "id": product.id,
            "name": product.name,
            "stock": product.stock,
            "low_stock_threshold": product.low_stock_threshold,
        }
        for admin in admins:
            context = {"user": {"username": admin.username}, "product": snapshot}
            emails.append((admin.email, "low_stock", context))
    queue_emails(emails)
