"""Races through real gunicorn processes (several workers, several threads
each) on the test database: SQLite by default, PostgreSQL in CI's second leg."""

from __future__ import annotations

from collections import Counter

import pytest

from tests.helpers import DATABASE_URL, SHIPPING, buyers_with_carts, race, scalar
from tests.live import gunicorn

pytestmark = pytest.mark.server


@pytest.fixture(scope="module")
def server(app):
    with gunicorn(DATABASE_URL, workers=3, threads=4) as live:
        yield live


def test_buyers_racing_for_fewer_units_never_oversell(server, db, make_user, login, make_product):
    product = make_product(stock=5, price="9.99")
    tokens = buyers_with_carts(make_user, login, [(product, 1)], 24)
    results = race([lambda t=t: server.request("POST", "/api/orders", SHIPPING, t) for t in tokens])
    statuses = Counter(status for status, _ in results)
    assert statuses == {201: 5, 409: 19}, statuses
    assert scalar("SELECT stock FROM products WHERE id = :i", i=product.id) == 0
    assert scalar("SELECT count(*) FROM orders") == 5
    assert scalar("SELECT coalesce(sum(quantity), 0) FROM order_items") == 5
    # The losers keep their carts; the winners' carts are empty.
    assert scalar("SELECT count(*) FROM cart_items") == 19


def test_multi_line_orders_are_all_or_nothing_under_contention(
    server, db, make_user, login, make_product
):
    a = make_product(stock=3)
    b = make_product(stock=100)
    c = make_product(stock=4)
    tokens = buyers_with_carts(make_user, login, [(b, 2), (a, 1), (c, 1)], 12)
    results = race([lambda t=t: server.request("POST", "/api/orders", SHIPPING, t) for t in tokens])
    statuses = Counter(status for status, _ in results)
    assert statuses == {201: 3, 409: 9}, statuses
    stocks = [scalar("SELECT stock FROM products WHERE id = :i", i=p.id) for p in (a, b, c)]
    assert stocks == [0, 94, 1]
    assert scalar("SELECT count(*) FROM order_items") == 9


def test_racing_cancels_restock_exactly_once(
    server, db, make_user, login, admin_token, make_product
):
    product = make_product(stock=10)
    (token,) = buyers_with_carts(make_user, login, [(product, 4)], 1)
    status, order = server.request("POST", "/api/orders", SHIPPING, token)
    assert status == 201
    calls = []
    for n in range(12):
        who = token if n % 2 else admin_token
        if n % 3:
            calls.append(
                lambda w=who: server.request("POST", f"/api/orders/{order['id']}/cancel", None, w)
            )
        else:
            calls.append(
                lambda w=who: server.request(
                    "PUT", f"/api/orders/{order['id']}", {"status": "cancelled"}, w
                )
            )
    statuses = Counter(status for status, _ in race(calls))
    assert statuses == {200: 1, 409: 11}, statuses
    assert scalar("SELECT stock FROM products WHERE id = :i", i=product.id) == 10
    assert scalar("SELECT count(*) FROM order_status_history WHERE status = 'cancelled'") == 1


def test_concurrent_requests_with_one_idempotency_key_create_one_order(
    server, db, make_user, login, make_product
):
    product = make_product(stock=50)
    (token,) = buyers_with_carts(make_user, login, [(product, 2)], 1)
    headers = {"Idempotency-Key": "one-click-checkout"}
    results = race(
        [lambda: server.request("POST", "/api/orders", SHIPPING, token, headers) for _ in range(10)]
    )
    statuses = Counter(status for status, _ in results)
    assert set(statuses) <= {201, 409}, statuses
    assert statuses[201] >= 1
    created = {body["id"] for status, body in results if status == 201}
    assert len(created) == 1
    assert scalar("SELECT count(*) FROM orders") == 1
    assert scalar("SELECT stock FROM products WHERE id = :i", i=product.id) == 48
    # Afterwards every retry replays the same order.
    status, body = server.request("POST", "/api/orders", SHIPPING, token, headers)
    assert status == 201 and body["id"] in created


def test_concurrent_adds_to_one_cart_through_the_server(server, db, make_user, login, make_product):
    product = make_product(stock=500)
    user = make_user()
    token = login(user)["access_token"]
    body = {"product_id": product.id, "quantity": 3}
    results = race([lambda: server.request("POST", "/api/cart", body, token) for _ in range(16)])
    assert Counter(status for status, _ in results) == {201: 16}
    assert scalar("SELECT count(*) FROM cart_items") == 1
    assert scalar("SELECT quantity FROM cart_items") == 48
