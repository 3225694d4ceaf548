"""Reliability (issue 13) on the in-process app: stock limits, bad input that
must never reach a 500, tokens, logs and headers."""

from __future__ import annotations

import pytest
from sqlalchemy import text

from app.models.product import MAX_STOCK, STOCK_COLUMN_MAX
from tests.helpers import SHIPPING, auth, fill_cart, place_order, scalar, stock

# --- cancel never overflows stock -------------------------------------------------


@pytest.fixture
def buyer(make_user, login):
    user = make_user()
    return user, login(user)["access_token"]


def test_stock_above_the_cap_is_422(client, admin_token, make_product):
    product = make_product(stock=1)
    for body, status in (({"stock": MAX_STOCK}, 200), ({"stock": MAX_STOCK + 1}, 422)):
        response = client.put(f"/api/products/{product.id}", json=body, headers=auth(admin_token))
        assert response.status_code == status, response.get_json()


def test_cancel_restores_above_the_cap(client, db, buyer, admin_token, make_product):
    _, token = buyer
    product = make_product(stock=10)
    fill_cart(client, token, (product, 4))
    order = place_order(client, token).get_json()
    client.put(f"/api/products/{product.id}", json={"stock": MAX_STOCK}, headers=auth(admin_token))
    response = client.post(f"/api/orders/{order['id']}/cancel", headers=auth(token))
    assert response.status_code == 200, response.get_json()
    assert stock(product) == MAX_STOCK + 4


def test_cancel_that_would_overflow_the_column_is_409_and_changes_nothing(
    client, db, buyer, make_product
):
    _, token = buyer
    safe = make_product(stock=10)
    full = make_product(stock=10)
    fill_cart(client, token, (safe, 1), (full, 4))
    order = place_order(client, token).get_json()
    # Only a value written before the cap existed can be this close to the column's end.
    with db.engine.begin() as conn:
        conn.execute(
            text("UPDATE products SET stock = :s WHERE id = :i"),
            {"s": STOCK_COLUMN_MAX - 3, "i": full.id},
        )
    response = client.post(f"/api/orders/{order['id']}/cancel", headers=auth(token))
    assert response.status_code == 409, response.get_json()
    assert "maximum" in response.get_json()["message"]
    assert response.get_json()["code"] == "stock_limit"
    assert scalar("SELECT status FROM orders WHERE id = :i", i=order["id"]) == "pending"
    assert stock(safe) == 9 and stock(full) == STOCK_COLUMN_MAX - 3
    put = client.put(
        f"/api/orders/{order['id']}", json={"status": "cancelled"}, headers=auth(token)
    )
    assert put.status_code == 409


def test_checkout_orders_and_removes_exactly_the_lines_read(client, buyer, make_product):
    _, token = buyer
    a, b = make_product(stock=5), make_product(stock=5)
    fill_cart(client, token, (a, 1), (b, 2))
    assert place_order(client, token, SHIPPING).status_code == 201
    assert scalar("SELECT count(*) FROM cart_items") == 0
    again = place_order(client, token, SHIPPING)
    assert again.status_code == 409
    assert again.get_json()["message"] == "Your cart is empty"
