"""Helpers for the review tests: orders made straight in the database (the
workflow has its own tests), in any status."""

from __future__ import annotations

from decimal import Decimal

from app.extensions import db
from app.models import Order, OrderItem


def give_order(user, product, status: str = "delivered") -> None:
    """`user` has an order in `status` holding one unit of `product`."""
    order = Order(
        user_id=user.id,
        status=status,
        shipping_address="1 Review Road",
        total_amount=Decimal(product.price),
    )
    order.items.append(
        OrderItem(
            product_id=product.id,
            product_name=product.name,
            unit_price=product.price,
            quantity=1,
            subtotal=product.price,
        )
    )
    db.session.add(order)
    db.session.commit()
    db.session.expunge_all()
