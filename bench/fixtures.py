"""Benchmark data, made in-process against DATABASE_URL (run by bench/run.py).

python bench/fixtures.py setup BUYERS   -> JSON on stdout: tokens and ids
python bench/fixtures.py refill         -> every buyer's cart: 3 fresh lines
"""

from __future__ import annotations

import json
import random
import sys
from pathlib import Path
from types import SimpleNamespace

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from flask import current_app
from flask_jwt_extended import create_access_token
from sqlalchemy import delete, insert, select, update
from werkzeug.security import generate_password_hash

from app import create_app
from app.db import unit_of_work, vacuum_analyze
from app.extensions import db
from app.models import Cart, CartItem, Product, User
from app.services.orders import place_order

HOT_PRODUCTS = 1000  # products 1..1000 get unlimited stock for the order runs
PASSWORD = "bench-password-1"  # noqa: S105


def token(user_id: int) -> str:
    return create_access_token(identity=SimpleNamespace(id=user_id))


def make_users(prefix: str, count: int) -> list[int]:
    password_hash = generate_password_hash(
        PASSWORD, method=current_app.config["PASSWORD_HASH_METHOD"]
    )
    rows = [
        {
            "username": f"{prefix}{n}",
            "email": f"{prefix}{n}@bench.example",
            "password_hash": password_hash,
        }
        for n in range(count)
    ]
    db.session.execute(insert(User), rows)
    ids = list(
        db.session.scalars(
            select(User.id).where(User.username.like(f"{prefix}%")).order_by(User.id)
        )
    )
    db.session.execute(insert(Cart), [{"user_id": uid} for uid in ids])
    return ids


def fill(user_ids: list[int], lines: int, rng: random.Random) -> None:
    carts = dict(
        db.session.execute(select(Cart.user_id, Cart.id).where(Cart.user_id.in_(user_ids))).all()
    )
    db.session.execute(delete(CartItem).where(CartItem.cart_id.in_(carts.values())))
    rows = []
    for uid in user_ids:
        for product_id in rng.sample(range(1, HOT_PRODUCTS + 1), lines):
            rows.append(
                {"cart_id": carts[uid], "product_id": product_id, "quantity": rng.randint(1, 3)}
            )
    db.session.execute(insert(CartItem), rows)


def setup(buyers: int) -> dict:
    rng = random.Random(7)
    with unit_of_work():
        db.session.execute(update(Product).where(Product.id <= HOT_PRODUCTS).values(stock=10**9))
        (reader,) = make_users("reader", 1)
        (orderer,) = make_users("orderer", 1)
        buyer_ids = make_users("buyer", buyers)
        fill([reader], 10, rng)
        fill([orderer], 3, rng)
        fill(buyer_ids, 3, rng)
    with unit_of_work():
        order = place_order(db.session.get(User, orderer), "1 Benchmark Road, Testville")
    # The steady state autovacuum keeps a shop in: the stock updates above left
    # dead rows and unanalysed tables behind.
    vacuum_analyze()
    return {
        "reader_token": token(reader),
        "orderer_token": token(orderer),
        "order_id": order.id,
        "product_id": 5000,
        "buyer_ids": buyer_ids,
        "buyer_tokens": [token(uid) for uid in buyer_ids],
    }


@unit_of_work()
def refill() -> None:
    ids = list(db.session.scalars(select(User.id).where(User.username.like("buyer%"))))
    fill(ids, 3, random.Random())


if __name__ == "__main__":
    app = create_app()
    with app.app_context():
        if sys.argv[1] == "setup":
            print(json.dumps(setup(int(sys.argv[2]))))
        else:
            refill()
