"""Demo reviews for `flask seed`: a few customers who received some of the demo
catalog and rated it, written through the review service (so the verified-buyer
rule and the product aggregates hold as for any review)."""

from __future__ import annotations

import secrets
from datetime import timedelta
from decimal import Decimal

from sqlalchemy import select

from app.extensions import db
from app.models import Order, OrderItem, OrderStatus, OrderStatusEvent, Product
from app.models.types import utcnow
from app.services import auth as accounts
from app.services import reviews

WORKFLOW = (
    OrderStatus.PENDING,
    OrderStatus.PROCESSING,
    OrderStatus.SHIPPED,
    OrderStatus.DELIVERED,
)
# username, then (product name, rating, title, body) for each product received
DEMO_REVIEWS = {
    "demo_ada": [
        ("Aurora Wireless Headphones", 5, "Quiet bliss", "Noise cancelling is superb."),
        ("Glide Wireless Mouse", 4, "Nice and silent", "Wish it had one more button."),
        ("Cast Iron Skillet", 5, "A lifetime pan", ""),
    ],
    "demo_linus": [
        ("Aurora Wireless Headphones", 4, "Great sound", "A bit tight after two hours."),
        ("Vertex Mechanical Keyboard", 5, "Clicky", "Hot-swap sockets work well."),
        ("Lumen Smartphone X", 3, "Fine", "Battery could be better."),
    ],
    "demo_grace": [
        ("Lumen Smartphone X", 4, "Good value", ""),
        ("Trail Running Shoes", 5, "Grippy", "Held on wet rocks."),
        ("Cast Iron Skillet", 4, "Heavy but great", "Season it once more before use."),
    ],
}


def seed_demo_reviews() -> int:
    """Add the demo customers, their delivered orders and their reviews (not
    committed); returns the number of reviews. Products missing from the
    catalog are skipped."""
    by_name = {p.name: p for p in select_products()}
    count = 0
    for username, lines in DEMO_REVIEWS.items():
        received = [(by_name[name], *rest) for name, *rest in lines if name in by_name]
        if not received or accounts.find_by_username(username) is not None:
            continue
        # A random password: these accounts exist to have written reviews, nobody logs in.
        user = accounts.create_user(username, f"{username}@example.com", secrets.token_urlsafe(24))
        _delivered_order(user.id, [product for product, *_ in received])
        for product, rating, title, body in received:
            reviews.create_review(
                user, product.id, {"rating": rating, "title": title, "body": body}
            )
            count += 1
    return count


def select_products() -> list[Product]:
    return list(db.session.scalars(select(Product).where(Product.deleted_at.is_(None))))


def _delivered_order(user_id: int, products: list[Product]) -> None:
    start = utcnow() - timedelta(days=10)
    order = Order(
        user_id=user_id,
        status=OrderStatus.DELIVERED,
        shipping_address="1 Demo Street, Sampletown",
        total_amount=sum((p.price for p in products), Decimal("0.00")),
        created_at=start,
        # Changed last when it was delivered, its history's last event.
        updated_at=start + timedelta(days=2 * (len(WORKFLOW) - 1)),
    )
    for product in products:
        order.items.append(
            OrderItem(
                product_id=product.id,
                product_name=product.name,
                unit_price=product.price,
                quantity=1,
                subtotal=product.price,
            )
        )
    for day, status in enumerate(WORKFLOW):
        order.status_history.append(
            OrderStatusEvent(status=status, at=start + timedelta(days=2 * day))
        )
    db.session.add(order)
    db.session.flush()
