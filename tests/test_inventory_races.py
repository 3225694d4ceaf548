"""The stock ledger under concurrency, through real gunicorn processes (several
workers, several threads each) on the test database: SQLite by default,
PostgreSQL in CI's second leg."""

from __future__ import annotations

import random
import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import pytest
from sqlalchemy import text

from tests.helpers import DATABASE_URL, buyers_with_carts, race, scalar
from tests.live import gunicorn

pytestmark = pytest.mark.server
ADDRESS = {"shipping_address": "1 Race Track Road"}


@pytest.fixture(scope="module")
def server(app):
    with gunicorn(DATABASE_URL, workers=3, threads=4) as live:
        yield live


def ledger(db, product_id: int) -> list[tuple[int, int, bool]]:
    rows = db.session.execute(
        text(
            "SELECT delta, stock_after, low_stock_alert FROM stock_movements "
            "WHERE product_id = :p ORDER BY id"
        ),
        {"p": product_id},
    ).all()
    db.session.rollback()
    return [(delta, after, bool(alert)) for delta, after, alert in rows]


def check_ledger(db, product_id: int, threshold: int) -> int:
    """Sum of deltas == stock; each movement's stock_after is the running sum
    (ids follow the order in which the row lock serialized the moves); an alert
    exactly on each crossing from above the threshold to at or below it.
    Returns the number of alerts."""
    running = 0
    alerts = 0
    for n, (delta, after, alert) in enumerate(ledger(db, product_id)):
        before, running = running, running + delta
        assert after == running >= 0, (product_id, n)
        assert alert == (n > 0 and before > threshold >= after), (product_id, n)
        alerts += alert
    assert running == scalar("SELECT stock FROM products WHERE id = :i", i=product_id)
    return alerts


def test_ledger_adds_up_after_a_random_concurrent_mix(
    server, db, make_user, login, admin_token, make_product
):
    rng = random.Random(18)
    products = [make_product(stock=rng.randint(3, 25), low_stock_threshold=5) for _ in range(5)]
    ids = [p.id for p in products]
    buyers = [login(make_user())["access_token"] for _ in range(10)]
    admins = [admin_token] + [login(make_user(admin=True))["access_token"] for _ in range(1)]
    results: Counter = Counter()
    lock = threading.Lock()

    def note(kind: str, status: int) -> None:
        with lock:
            results[kind, status] += 1

    def shopper(token: str, seed: int) -> None:
        local = random.Random(seed)
        for _ in range(3):
            for product_id in local.sample(ids, local.randint(1, 3)):
                body = {"product_id": product_id, "quantity": local.randint(1, 3)}
                server.request("POST", "/api/cart", body, token)
            status, order = server.request("POST", "/api/orders", ADDRESS, token)
            note("order", status)
            if status == 409:
                server.request("DELETE", "/api/cart/clear", None, token)
            elif status == 201 and local.random() < 0.5:
                who = token if local.random() < 0.5 else admins[0]
                status, _ = server.request("POST", f"/api/orders/{order['id']}/cancel", None, who)
                note("cancel", status)

    def stock_keeper(token: str, seed: int) -> None:
        local = random.Random(seed)
        for _ in range(8):
            product_id = local.choice(ids)
            if local.random() < 0.75:
                body = {"delta": local.choice([-4, -2, -1, 1, 3, 6]), "note": "count"}
                status, _ = server.request("POST", f"/api/products/{product_id}/stock", body, token)
                note("adjust", status)
            else:
                body = {"stock": local.randint(0, 12)}
                status, _ = server.request("PUT", f"/api/products/{product_id}", body, token)
                note("put", status)

    calls = [lambda t=t, n=n: shopper(t, n) for n, t in enumerate(buyers)]
    calls += [lambda t=t, n=n: stock_keeper(t, 100 + n) for n, t in enumerate(admins)]
    with ThreadPoolExecutor(len(calls)) as pool:
        for future in [pool.submit(call) for call in calls]:
            future.result()

    assert {status for _, status in results} <= {200, 201, 409}, results
    assert results["order", 201] > 0 and results["adjust", 200] > 0, results
    for product_id in ids:
        check_ledger(db, product_id, threshold=5)
    # Each order line is one `order` movement, each cancelled line one `cancel`.
    assert scalar("SELECT count(*) FROM stock_movements WHERE reason = 'order'") == scalar(
        "SELECT count(*) FROM order_items"
    )
    assert scalar("SELECT count(*) FROM stock_movements WHERE reason = 'cancel'") == scalar(
        "SELECT count(*) FROM order_items i JOIN orders o ON o.id = i.order_id "
        "WHERE o.status = 'cancelled'"
    )
    assert results["cancel", 200] == scalar(
        "SELECT count(*) FROM orders WHERE status = 'cancelled'"
    )


def test_adjustment_racing_checkouts_loses_nothing(
    server, db, make_user, login, admin_token, make_product
):
    product = make_product(stock=5, low_stock_threshold=2)
    tokens = buyers_with_carts(make_user, login, [(product, 1)], 5)
    calls = [lambda t=t: server.request("POST", "/api/orders", ADDRESS, t) for t in tokens]
    calls.append(
        lambda: server.request(
            "POST", f"/api/products/{product.id}/stock", {"delta": 10}, admin_token
        )
    )
    statuses = Counter(status for status, _ in race(calls))
    assert statuses == {201: 5, 200: 1}, statuses
    assert scalar("SELECT stock FROM products WHERE id = :i", i=product.id) == 10
    check_ledger(db, product.id, threshold=2)


def test_a_removal_racing_checkouts_never_goes_below_zero(
    server, db, make_user, login, admin_token, make_product
):
    product = make_product(stock=6, low_stock_threshold=0)
    tokens = buyers_with_carts(make_user, login, [(product, 2)], 3)
    calls = [lambda t=t: server.request("POST", "/api/orders", ADDRESS, t) for t in tokens]
    calls.append(
        lambda: server.request(
            "POST", f"/api/products/{product.id}/stock", {"delta": -3}, admin_token
        )
    )
    results = race(calls)
    taken = sum(2 for status, _ in results[:-1] if status == 201)
    removed = 3 if results[-1][0] == 200 else 0
    assert results[-1][0] in (200, 409)
    assert taken + removed <= 6
    assert scalar("SELECT stock FROM products WHERE id = :i", i=product.id) == 6 - taken - removed
    check_ledger(db, product.id, threshold=0)


def test_concurrent_checkouts_across_the_threshold_email_each_admin_once(
    server, db, make_user, login, make_product, smtp_server, deliver_outbox
):
    admins = [make_user(admin=True) for _ in range(2)]
    product = make_product(name="Hot Item", stock=12, low_stock_threshold=5)
    tokens = buyers_with_carts(make_user, login, [(product, 1)], 12)
    results = race([lambda t=t: server.request("POST", "/api/orders", ADDRESS, t) for t in tokens])
    assert Counter(status for status, _ in results) == {201: 12}
    assert check_ledger(db, product.id, threshold=5) == 1
    assert scalar("SELECT stock_after FROM stock_movements WHERE low_stock_alert") == 5
    deliver_outbox()
    alerts = [m for m in smtp_server.messages if "low stock" in m["Subject"]]
    assert sorted(m["To"] for m in alerts) == sorted(a.email for a in admins)
    assert all(
        m["Subject"] == f"Shop: low stock of Hot Item (#{product.id}): 5 left" for m in alerts
    )


def test_concurrent_adjustments_across_the_threshold_alert_once(
    server, db, make_user, login, make_product, smtp_server, deliver_outbox
):
    tokens = [login(make_user(admin=True))["access_token"] for _ in range(3)]
    product = make_product(stock=20, low_stock_threshold=10)
    url = f"/api/products/{product.id}/stock"
    calls = [
        lambda t=tokens[n % 3]: server.request("POST", url, {"delta": -2}, t) for n in range(9)
    ]
    assert Counter(status for status, _ in race(calls)) == {200: 9}
    assert check_ledger(db, product.id, threshold=10) == 1
    deliver_outbox()
    alerts = [m for m in smtp_server.messages if "low stock" in m["Subject"]]
    assert len(alerts) == 3  # one crossing, one email per admin
