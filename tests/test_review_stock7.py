"""Review round 7 of the stock area: the cart, inventory administration
(adjustments, the ledger, low-stock alerts, soft deletes and the carts that
hold a deleted product) and the admin order workflow."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest
from sqlalchemy import text

from app.extensions import db as _db
from tests.helpers import DATABASE_URL, IS_POSTGRES, auth, fill_cart, scalar
from tests.live import gunicorn


def _plan(db, sql: str, **params) -> str:
    """The database's plan for `sql`, as one string. PostgreSQL plans a
    sequential scan of a test's few rows whatever the indexes, so there it
    is asked for the plan it would take over a table large enough to need
    one (sequential scans priced out)."""
    with db.engine.connect() as conn:
        if IS_POSTGRES:
            conn.exec_driver_sql("SET LOCAL enable_seqscan = off")  # this transaction only
            rows = conn.execute(text(f"EXPLAIN {sql}"), params).scalars()
        else:
            rows = (row[-1] for row in conn.execute(text(f"EXPLAIN QUERY PLAN {sql}"), params))
        plan = "\n".join(rows)
        conn.rollback()
    return plan


def test_a_product_delete_finds_its_cart_lines_by_index(
    client, db, buyer, admin_token, make_product
):
    """A product's delete takes it out of every cart (`DELETE FROM cart_items
    WHERE product_id = ...`), as a hard delete's ON DELETE CASCADE does, and
    `cart_items` had no index on `product_id` (only `(cart_id, product_id)`):
    each delete read every line of every cart in the shop while it held the
    product's row lock (SQLite: the database's write lock). 1,000,000 cart
    lines: 86 ms on PostgreSQL for a product in no cart (found by review)."""
    _user, token = buyer
    kept, gone = make_product(), make_product()
    fill_cart(client, token, (kept, 1), (gone, 2))
    plan = _plan(db, "DELETE FROM cart_items WHERE product_id = :p", p=gone.id)
    assert "ix_cart_items_product_id" in plan, plan
    assert client.delete(f"/api/products/{gone.id}", headers=auth(admin_token)).status_code == 204
    lines = client.get("/api/cart", headers=auth(token)).get_json()["items"]
    assert [(line["product_id"], line["quantity"]) for line in lines] == [(kept.id, 1)]
    assert scalar("SELECT count(*) FROM cart_items WHERE product_id = :p", p=gone.id) == 0


@pytest.fixture(scope="module")
def server(app):
    with gunicorn(DATABASE_URL, workers=2, threads=4) as live:
        yield live


@pytest.mark.server
def test_racing_changes_of_one_cart_line_and_its_stock_stay_consistent(
    server, make_user, login, admin_token, make_product
):
    """One line raced by its owner (adds, quantity changes, removes,
    checkouts) while an admin adjusts and sets the product's stock: every
    answer is one the API documents (never a 5xx, a deadlock's 503
    included), the cart keeps at most one line of the product, and the
    product's ledger adds up to its stock with each `stock_after` the
    running sum (checked, found fine, by review)."""
    product = make_product(stock=500, low_stock_threshold=5)
    token = login(make_user())["access_token"]

    def line_id() -> int | None:
        items = server.request("GET", "/api/cart", token=token)[1].get("items") or []
        return items[0]["id"] if items else None

    def act(n: int):
        kind = n % 8
        if kind in (0, 1):
            return server.request(
                "POST", "/api/cart", {"product_id": product.id, "quantity": 2}, token
            )
        if kind in (2, 3):
            item = line_id()
            body = {"quantity": 1 + n % 4}
            return server.request("PUT", f"/api/cart/{item or 1}", body, token)
        if kind == 4:
            return server.request("DELETE", f"/api/cart/{line_id() or 1}", token=token)
        if kind == 5:
            return server.request("POST", "/api/orders", {"shipping_address": "1 Race Road"}, token)
        if kind == 6:
            delta = {"delta": -1 if n % 3 else 3, "note": "count"}
            return server.request("POST", f"/api/products/{product.id}/stock", delta, admin_token)
        return server.request("PUT", f"/api/products/{product.id}", {"stock": 400 + n}, admin_token)

    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(act, range(160)))
    unexpected = [
        (n, status, body)
        for n, (status, body) in enumerate(answers)
        if status not in (200, 201, 404, 409)
    ]
    assert unexpected == []
    assert scalar("SELECT count(*) FROM cart_items WHERE product_id = :p", p=product.id) <= 1
    running = 0
    for delta, after in _ledger(product.id):
        running += delta
        assert after == running
    assert running == scalar("SELECT stock FROM products WHERE id = :p", p=product.id)


def _ledger(product_id: int) -> list:
    with _db.engine.connect() as conn:
        return conn.execute(
            text(
                "SELECT delta, stock_after FROM stock_movements WHERE product_id = :p ORDER BY id"
            ),
            {"p": product_id},
        ).all()
