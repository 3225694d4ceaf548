"""Helpers and constants shared by the test modules (fixtures are in
conftest.py). Importing this decides the test database, before `config` is
imported: SQLite in a temporary directory (removed at exit) unless
TEST_DATABASE_URL names one."""

from __future__ import annotations

import atexit
import os
import shutil
import subprocess
import sys
import tempfile
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

os.environ["FLASK_CONFIG"] = "testing"
# The in-process test app keeps revocations in the database; tests that need
# Redis (and the scale-out servers) get this URL explicitly.
REDIS_URL = os.environ.pop("REDIS_URL", None)
if not os.environ.get("TEST_DATABASE_URL"):
    _tmp = tempfile.mkdtemp(prefix="shop-test-")
    atexit.register(shutil.rmtree, _tmp, ignore_errors=True)
    os.environ["TEST_DATABASE_URL"] = f"sqlite:///{_tmp}/test.db"

from sqlalchemy import insert, text  # noqa: E402 - after the environment is set

from app.extensions import db  # noqa: E402
from app.models import Cart, CartItem  # noqa: E402

DATABASE_URL = os.environ["TEST_DATABASE_URL"]
IS_POSTGRES = DATABASE_URL.startswith("postgresql")
PASSWORD = "correct-horse-9"
SHIPPING = {"shipping_address": "221B Baker Street, London"}
VISA = {"payment_method": "pm_card_visa"}  # the test provider's card that pays


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def scalar(sql: str, **params):
    """A value straight from the database, bypassing the ORM's identity map."""
    with db.engine.connect() as conn:
        return conn.execute(text(sql), params).scalar()


def stock(product) -> int:
    return scalar("SELECT stock FROM products WHERE id = :i", i=product.id)


def add_to_cart(client, token, product_id, quantity=None):
    body = {"product_id": product_id}
    if quantity is not None:
        body["quantity"] = quantity
    return client.post("/api/cart", json=body, headers=auth(token))


def fill_cart(client, token, *lines):
    """Put each (product, quantity) in the caller's cart through the API."""
    for product, quantity in lines:
        response = add_to_cart(client, token, product.id, quantity)
        assert response.status_code == 201, response.get_json()


def place_order(client, token, body=SHIPPING, **headers):
    return client.post("/api/orders", json=body, headers={**auth(token), **headers})


def order_for(client, token, *lines) -> dict:
    """A pending order of `lines` [(product, quantity)], placed through the API."""
    fill_cart(client, token, *lines)
    response = place_order(client, token)
    assert response.status_code == 201, response.get_json()
    return response.get_json()


def pay(client, token, order_id, body=VISA):
    return client.post(f"/api/orders/{order_id}/pay", json=body, headers=auth(token))


def buyers_with_carts(make_user, login, lines, count):
    """`count` users, each with `lines` [(product, quantity)] in their cart
    (written straight to the database: the races start from here)."""
    tokens = []
    for _ in range(count):
        user = make_user()
        cart_id = db.session.scalar(db.select(Cart.id).where(Cart.user_id == user.id))
        db.session.execute(
            insert(CartItem),
            [{"cart_id": cart_id, "product_id": p.id, "quantity": q} for p, q in lines],
        )
        db.session.commit()
        tokens.append(login(user)["access_token"])
    return tokens


def race(calls):
    """Run the callables at once (a barrier), return their results."""
    barrier = threading.Barrier(len(calls))

    def run(call):
        barrier.wait()
        return call()

    with ThreadPoolExecutor(len(calls)) as pool:
        return list(pool.map(run, calls))


def run_in_new_process(tmp_path, argv: list[str], **env: str) -> subprocess.CompletedProcess:
    """`python argv...` from the repository, on a new SQLite file under
    `tmp_path`, with no embedded worker and these variables set."""
    return subprocess.run(
        [sys.executable, *argv],
        env={
            **os.environ,
            "DATABASE_URL": f"sqlite:///{tmp_path / 'start.db'}",
            "BACKGROUND_MODE": "off",
            **env,
        },
        cwd=Path(__file__).resolve().parent.parent,
        capture_output=True,
        text=True,
        timeout=120,
    )


def start_up_error(tmp_path, config_name: str = "development", **env: str) -> str:
    """What `create_app(config_name)` printed when it refused these variables
    ("" if it started), in a process of its own on a new SQLite file."""
    code = f"from app import create_app; create_app({config_name!r})"
    result = run_in_new_process(tmp_path, ["-c", code], **env)
    return "" if result.returncode == 0 else result.stderr
