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


def cancel_expired_in_a_cli_process(**settings: str) -> str:
    """`flask cancel-expired-orders` in a process of its own, on the suite's
    database, with the embedded background thread (no Redis) and these
    settings; its output (it must succeed)."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    from tests.helpers import DATABASE_URL

    env = {
        **os.environ,
        "FLASK_APP": "app:create_app",
        "FLASK_CONFIG": "testing",
        "TEST_DATABASE_URL": DATABASE_URL,
        "DATABASE_URL": DATABASE_URL,
        "BACKGROUND_MODE": "thread",
        "LOG_LEVEL": "WARNING",
        **settings,
    }
    env.pop("REDIS_URL", None)
    done = subprocess.run(
        [str(Path(sys.executable).with_name("flask")), "cancel-expired-orders"],
        cwd=Path(__file__).resolve().parents[1],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout
