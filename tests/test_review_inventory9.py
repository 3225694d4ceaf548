"""Review round 9 of inventory: the low-stock alert along every path that
lowers or raises stock (checkout, cancel, the payment-timeout sweep, a paid
order's refunding cancel, adjustments, product PUTs), once per crossing and
re-armed by a rise; deleted products and a threshold of 0; the report and
the ledger (sums, reasons, actors, order, pages); bad adjustment and
threshold input; and crossings both ways under concurrent requests."""

from __future__ import annotations

from collections import Counter
from datetime import timedelta

import pytest
from sqlalchemy import text

from app.extensions import db as _db
from app.models.product import MAX_STOCK, STOCK_COLUMN_MAX
from app.models.types import utcnow
from app.services.payment_timeouts import cancel_expired_orders
from tests.helpers import (
    auth,
    buyers_with_carts,
    order_for,
    pay,
    race,
    scalar,
    stock,
)
from tests.test_review_inventory8 import (
    alerts,
    server,  # noqa: F401 - its gunicorn: 2 workers, 6 threads
)

# --- helpers ---------------------------------------------------------------------------


def ledger(product_id: int) -> list[dict]:
    with _db.engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT delta, stock_after, reason, order_id, actor_id, note, low_stock_alert "
                "FROM stock_movements WHERE product_id = :p ORDER BY id"
            ),
            {"p": product_id},
        ).mappings()
        return [{**row, "low_stock_alert": bool(row["low_stock_alert"])} for row in rows]


def check_ledger(product_id: int, threshold: int) -> int:
    """Each stock_after is the running sum of the deltas, never below 0, the
    last one the product's stock; a movement is marked as the alert exactly
    when it took the stock from above the threshold to at or below it.
    Returns the number of alerts."""
    running, marked = 0, 0
    for n, move in enumerate(ledger(product_id)):
        before, running = running, running + move["delta"]
        assert move["stock_after"] == running >= 0, (n, move)
        assert move["low_stock_alert"] == (n > 0 and before > threshold >= running), (n, move)
        marked += move["low_stock_alert"]
    assert running == scalar("SELECT stock FROM products WHERE id = :i", i=product_id)
    return marked


def adjust(client, token, product_id, delta, **extra):
    body = {"delta": delta, **extra}
    return client.post(f"/api/products/{product_id}/stock", json=body, headers=auth(token))


def put(client, token, product_id, **body):
    return client.put(f"/api/products/{product_id}", json=body, headers=auth(token))


def cancel(client, token, order_id):
    return client.post(f"/api/orders/{order_id}/cancel", headers=auth(token))


def outbox_rows() -> int:
    return scalar("SELECT count(*) FROM outbox")


RACE_ADDRESS = {"shipping_address": "1 Race Rd"}


def checkouts(live, tokens) -> list:
    """For `race`: each token's checkout through gunicorn."""
    return [lambda t=t: live.request("POST", "/api/orders", RACE_ADDRESS, t) for t in tokens]


def cancels(live, owners, placed) -> list:
    """For `race`: each owner's cancel of the order `placed` answered them."""
    return [
        lambda t=t, o=body["id"]: live.request("POST", f"/api/orders/{o}/cancel", None, t)
        for t, (_, body) in zip(owners, placed, strict=True)
    ]


# --- every path down and up: one alert per crossing, re-armed by a rise ----------------


def test_every_path_down_alerts_once_and_every_path_up_re_arms(
    client, make_user, login, buyer, make_product
):
    """10 of 5: a checkout takes it to 5 (alert), a cancel back to 10
    (re-armed), the payment-timeout sweep's cancel, a paid order's refunding
    cancel, an adjustment and a PUT each raise it again, and the next drop by
    each lowering path (checkout, adjustment, PUT of stock, PUT of the
    threshold) alerts again: one email per admin per crossing."""
    admin = make_user(admin=True)
    admin_token = login(admin)["access_token"]
    _, token = buyer
    product = make_product(stock=10, low_stock_threshold=5)
    pid = product.id

    def crossings() -> int:
        return len([a for a in alerts(product) if a["to"] == admin.email])

    first = order_for(client, token, (product, 5))  # 10 -> 5: down
    assert crossings() == 1
    assert cancel(client, token, first["id"]).status_code == 200  # 5 -> 10: re-armed
    assert crossings() == 1

    expiring = order_for(client, token, (product, 6))  # 10 -> 4: down
    assert crossings() == 2
    _db.session.execute(
        text("UPDATE orders SET created_at = :at WHERE id = :id"),
        {"at": utcnow() - timedelta(days=1), "id": expiring["id"]},
    )
    _db.session.commit()
    assert [o.id for o in cancel_expired_orders()] == [expiring["id"]]  # 4 -> 10
    _db.session.commit()
    assert stock(product) == 10 and crossings() == 2

    paid = order_for(client, token, (product, 7))  # 10 -> 3: down
    assert pay(client, token, paid["id"]).status_code == 200
    assert crossings() == 3
    refunded = cancel(client, token, paid["id"])  # refunds, 3 -> 10
    assert refunded.status_code == 200, refunded.get_json()
    assert refunded.get_json()["payment_status"] == "refunded"
    assert crossings() == 3

    assert adjust(client, admin_token, pid, -5).status_code == 200  # 10 -> 5: down
    assert crossings() == 4
    assert adjust(client, admin_token, pid, 1).status_code == 200  # 6: re-armed
    assert put(client, admin_token, pid, stock=2).status_code == 200  # 6 -> 2: down
    assert crossings() == 5
    assert put(client, admin_token, pid, stock=9).status_code == 200  # re-armed
    assert put(client, admin_token, pid, low_stock_threshold=9).status_code == 200  # down
    assert crossings() == 6
    assert put(client, admin_token, pid, low_stock_threshold=8).status_code == 200  # re-armed
    assert crossings() == 6
    assert adjust(client, admin_token, pid, -1).status_code == 200  # 9 -> 8 of 8: down
    assert crossings() == 7

    assert [(a["stock"], a["low_stock_threshold"]) for a in alerts(product)] == [
        (5, 5),
        (4, 5),
        (3, 5),
        (5, 5),
        (2, 5),
        (9, 9),
        (8, 8),
    ]
    # The ledger: every move, its reason, its order or admin; the threshold
    # changes moved no stock and are not in it.
    moves = ledger(pid)
    assert [(m["reason"], m["delta"], m["stock_after"]) for m in moves] == [
        ("created", 10, 10),
        ("order", -5, 5),
        ("cancel", 5, 10),
        ("order", -6, 4),
        ("cancel", 6, 10),
        ("order", -7, 3),
        ("cancel", 7, 10),
        ("adjustment", -5, 5),
        ("adjustment", 1, 6),
        ("adjustment", -4, 2),
        ("adjustment", 7, 9),
        ("adjustment", -1, 8),
    ]
    by_order = [m["order_id"] for m in moves if m["reason"] in ("order", "cancel")]
    assert by_order == [first["id"]] * 2 + [expiring["id"]] * 2 + [paid["id"]] * 2
    assert {m["actor_id"] for m in moves if m["reason"] == "adjustment"} == {admin.id}
    assert [m["stock_after"] for m in moves if m["low_stock_alert"]] == [5, 4, 3, 5, 2, 8]


def test_a_put_of_stock_and_threshold_together_is_judged_before_and_after(
    client, admin_token, make_product
):
    product = make_product(stock=10, low_stock_threshold=5)
    # Above before (10 of 5), above after (60 of 50): nothing.
    assert put(client, admin_token, product.id, stock=60, low_stock_threshold=50).status_code == 200
    assert alerts(product) == []
    # Above before, low after by both at once (30 of 40): one alert.
    assert put(client, admin_token, product.id, stock=30, low_stock_threshold=40).status_code == 200
    assert [(a["stock"], a["low_stock_threshold"]) for a in alerts(product)] == [(30, 40)]
    # Low before, low after: nothing more.
    assert put(client, admin_token, product.id, stock=1, low_stock_threshold=2).status_code == 200
    assert len(alerts(product)) == 1
    moves = ledger(product.id)
    assert sum(m["delta"] for m in moves) == stock(product) == 1
    # The stock-moving PUT that made it low carries the alert mark.
    assert [m["stock_after"] for m in moves if m["low_stock_alert"]] == [30]


def test_a_threshold_of_zero_alerts_only_when_sold_out(client, buyer, admin_token, make_product):
    _, token = buyer
    product = make_product(stock=3, low_stock_threshold=0)
    order_for(client, token, (product, 2))  # 1 left: not low
    assert alerts(product) == []
    assert adjust(client, admin_token, product.id, -1).status_code == 200  # 0: sold out
    assert [(a["stock"], a["low_stock_threshold"]) for a in alerts(product)] == [(0, 0)]
    listed = client.get("/api/inventory/low-stock?per_page=100", headers=auth(admin_token))
    assert product.id in [p["id"] for p in listed.get_json()["items"]]
    assert check_ledger(product.id, threshold=0) == 1


def test_a_deleted_product_is_never_alerted_nor_reported(client, buyer, admin_token, make_product):
    """An order holds units of a product that is then deleted: cancelling it
    puts them back (the ledger says so), and nothing about the deleted
    product is alerted or listed."""
    _, token = buyer
    product = make_product(stock=8, low_stock_threshold=5)
    order = order_for(client, token, (product, 2))  # 6: above
    held = order_for(client, token, (product, 4))  # 2: low, alert
    assert len(alerts(product)) == 1
    response = client.delete(f"/api/products/{product.id}", headers=auth(admin_token))
    assert response.status_code == 204
    assert cancel(client, token, held["id"]).status_code == 200  # 6 again, deleted
    assert cancel(client, token, order["id"]).status_code == 200  # 8
    assert stock(product) == 8
    assert adjust(client, admin_token, product.id, -7).status_code == 404
    assert put(client, admin_token, product.id, low_stock_threshold=50).status_code == 404
    assert len(alerts(product)) == 1
    listed = client.get("/api/inventory/low-stock?per_page=100", headers=auth(admin_token))
    assert product.id not in [p["id"] for p in listed.get_json()["items"]]
    assert check_ledger(product.id, threshold=5) == 1
    moves = client.get(f"/api/products/{product.id}/stock-movements", headers=auth(admin_token))
    assert moves.status_code == 200
    assert [m["reason"] for m in moves.get_json()["items"]] == [
        "cancel",
        "cancel",
        "order",
        "order",
        "created",
    ]


# --- bad input: a clear 422, nothing written -------------------------------------------


@pytest.mark.parametrize(
    "delta",
    [
        "5",
        5.0,
        5.5,
        True,
        None,
        0,
        [],
        {},
        MAX_STOCK + 1,
        -MAX_STOCK - 1,
        2**31,
        -(2**31),
        2**63,
        10**30,
        -(10**30),
    ],
)
def test_bad_adjustment_deltas_are_422_and_write_nothing(client, admin_token, make_product, delta):
    product = make_product(stock=10, low_stock_threshold=5)
    before = outbox_rows()
    response = adjust(client, admin_token, product.id, delta)
    assert response.status_code == 422, response.get_json()
    body = response.get_json()
    assert body["code"] == "validation_failed" and "delta" in body["errors"]
    assert stock(product) == 10 and len(ledger(product.id)) == 1 and outbox_rows() == before


@pytest.mark.parametrize(
    "raw",
    [
        b'{"delta": 1e400}',
        b'{"delta": -1e400}',
        b'{"delta": NaN}',
        b'{"delta": Infinity}',
        b'{"delta": 1' + b"0" * 5000 + b"}",
        b'{"delta": 1,}',
        b"[1]",
        b'"delta"',
        b"",
    ],
)
def test_unparsable_or_non_object_adjustment_bodies_are_4xx_json(
    client, admin_token, make_product, raw
):
    product = make_product(stock=10, low_stock_threshold=5)
    response = client.post(
        f"/api/products/{product.id}/stock",
        data=raw,
        headers={**auth(admin_token), "Content-Type": "application/json"},
    )
    assert response.status_code in (400, 422), (response.status_code, response.data[:300])
    assert response.get_json()["code"] in ("bad_request", "validation_failed", "invalid_json")
    assert stock(product) == 10 and len(ledger(product.id)) == 1


@pytest.mark.parametrize(
    "value",
    ["3", 3.5, 3.0, True, None, -1, MAX_STOCK + 1, 2**31, -(2**31) - 1, 10**30, [], {}],
)
def test_bad_thresholds_are_422_and_write_nothing(client, admin_token, make_product, value):
    product = make_product(stock=10, low_stock_threshold=5)
    before = outbox_rows()
    for body in ({"low_stock_threshold": value}, {"low_stock_threshold": value, "stock": 1}):
        response = put(client, admin_token, product.id, **body)
        assert response.status_code == 422, response.get_json()
        assert "low_stock_threshold" in response.get_json()["errors"]
    created = client.post(
        "/api/products",
        json={"name": "Bad threshold", "price": "1.00", "stock": 1, "low_stock_threshold": value},
        headers=auth(admin_token),
    )
    assert created.status_code == 422, created.get_json()
    assert stock(product) == 10 and len(ledger(product.id)) == 1 and outbox_rows() == before
    assert scalar("SELECT low_stock_threshold FROM products WHERE id = :i", i=product.id) == 5


@pytest.mark.parametrize("value", [-1, MAX_STOCK + 1, 2**31, 2**63, "7", 7.5, None, True])
def test_bad_stock_in_a_put_is_422_and_writes_nothing(client, admin_token, make_product, value):
    product = make_product(stock=10, low_stock_threshold=5)
    response = put(client, admin_token, product.id, stock=value, low_stock_threshold=50)
    assert response.status_code == 422, response.get_json()
    assert stock(product) == 10 and len(ledger(product.id)) == 1
    assert scalar("SELECT low_stock_threshold FROM products WHERE id = :i", i=product.id) == 5
    assert alerts(product) == []


def test_adjustments_near_the_column_maximum_are_422_never_an_overflow(
    client, buyer, admin_token, make_product
):
    """A stock past MAX_STOCK (a cancel put units back past it) near the
    INTEGER maximum: an addition that would overflow INT4 is a 422, a
    removal still works; the ledger keeps adding up."""
    _, token = buyer
    product = make_product(stock=MAX_STOCK, low_stock_threshold=5)
    order = order_for(client, token, (product, 1))
    assert adjust(client, admin_token, product.id, 1).status_code == 200  # back at MAX_STOCK
    assert cancel(client, token, order["id"]).status_code == 200  # MAX_STOCK + 1
    assert stock(product) == MAX_STOCK + 1
    for delta in (1, MAX_STOCK):
        response = adjust(client, admin_token, product.id, delta)
        assert response.status_code == 422, response.get_json()
        assert "delta" in response.get_json()["errors"]
    # Straight to the column's edge (as only repeated cancels could get it):
    # a MAX_STOCK addition would overflow INTEGER if summed in SQL.
    _db.session.execute(
        text("UPDATE products SET stock = :s WHERE id = :i"),
        {"s": STOCK_COLUMN_MAX - 1, "i": product.id},
    )
    _db.session.commit()
    response = adjust(client, admin_token, product.id, MAX_STOCK)
    assert response.status_code == 422, response.get_json()
    response = put(client, admin_token, product.id, stock=MAX_STOCK)
    assert response.status_code == 200 and response.get_json()["stock"] == MAX_STOCK
    response = adjust(client, admin_token, product.id, -MAX_STOCK)
    assert response.status_code == 200 and response.get_json()["stock"] == 0
    too_many = adjust(client, admin_token, product.id, -1)
    assert too_many.status_code == 409 and too_many.get_json()["code"] == "insufficient_stock"
    assert too_many.get_json()["details"] == {"product_id": product.id, "available": 0}
    assert alerts(product)[-1]["stock"] == 0


# --- the report and the ledger pages ---------------------------------------------------


def test_the_low_stock_report_is_ordered_paged_and_stable(client, admin_token, make_product):
    """Lowest stock first, ties by id; pages partition the list (no product
    twice, none missed); products above their threshold and deleted ones
    are not in it."""
    ours = [make_product(stock=s, low_stock_threshold=5) for s in (3, 0, 3, 5, 1, 3)]
    above = make_product(stock=6, low_stock_threshold=5)
    gone = make_product(stock=0, low_stock_threshold=5)
    client.delete(f"/api/products/{gone.id}", headers=auth(admin_token))

    full = client.get("/api/inventory/low-stock?per_page=100", headers=auth(admin_token))
    items = full.get_json()["items"]
    ids = [p["id"] for p in items]
    assert above.id not in ids and gone.id not in ids
    assert all(p["stock"] <= p["low_stock_threshold"] for p in items)
    assert [(p["stock"], p["id"]) for p in items] == sorted((p["stock"], p["id"]) for p in items)
    mine = [p["id"] for p in items if p["id"] in {o.id for o in ours}]
    expected = sorted(ours, key=lambda p: (p.stock, p.id))
    assert mine == [p.id for p in expected]

    total = full.get_json()["total"]
    paged = []
    for page in range(1, total // 2 + 2):
        body = client.get(
            f"/api/inventory/low-stock?per_page=2&page={page}", headers=auth(admin_token)
        ).get_json()
        assert body["total"] == total and body["pages"] == -(-total // 2)
        paged += [p["id"] for p in body["items"]]
    assert paged == ids


def test_the_ledger_pages_newest_first_without_gaps(client, admin_token, make_product):
    product = make_product(stock=1, low_stock_threshold=0)
    for n in range(1, 8):
        assert adjust(client, admin_token, product.id, n, note=f"n{n}").status_code == 200
    pages = []
    for page in (1, 2, 3, 4):
        body = client.get(
            f"/api/products/{product.id}/stock-movements?per_page=3&page={page}",
            headers=auth(admin_token),
        ).get_json()
        assert body["total"] == 8 and body["pages"] == 3
        pages.append([m["note"] for m in body["items"]])
    assert pages == [["n7", "n6", "n5"], ["n4", "n3", "n2"], ["n1", None], []]


def test_the_ledger_names_the_admin_of_each_change(client, make_user, login):
    """A product made through the API: its `created` movement names the admin
    who made it; each adjustment (the endpoint with its note, a PUT of
    stock without one) names the admin who made it; an answer's stock is
    the ledger's last stock_after."""
    first, second = make_user(admin=True), make_user(admin=True)
    one, two = login(first)["access_token"], login(second)["access_token"]
    made = client.post(
        "/api/products",
        json={"name": "Ledgered", "price": "2.00", "stock": 7, "low_stock_threshold": 2},
        headers=auth(one),
    )
    assert made.status_code == 201
    pid = made.get_json()["id"]
    assert adjust(client, two, pid, -3, note="Count\r\nshelf 4\t").get_json()["stock"] == 4
    assert put(client, one, pid, stock=11).get_json()["stock"] == 11
    moves = client.get(f"/api/products/{pid}/stock-movements", headers=auth(two)).get_json()
    assert [
        (m["reason"], m["delta"], m["stock_after"], m["actor_id"], m["note"], m["order_id"])
        for m in reversed(moves["items"])
    ] == [
        ("created", 7, 7, first.id, None, None),
        ("adjustment", -3, 4, second.id, "Count\r\nshelf 4\t", None),
        ("adjustment", 7, 11, first.id, None, None),
    ]
    assert check_ledger(pid, threshold=2) == 0


# --- concurrency: crossings both ways ----------------------------------------------------


@pytest.mark.server
def test_checkouts_and_cancels_racing_across_the_threshold_alert_once_per_crossing(
    server,  # noqa: F811 - the imported fixture
    client,
    make_user,
    login,
    make_product,
):
    """Pending orders being cancelled while new checkouts take the same
    product, the stock going across its threshold both ways in whatever
    order the row lock gives: every movement that took it from above to at
    or below is marked and emailed (one per admin), none other is, and the
    ledger adds up."""
    admins = [make_user(admin=True) for _ in range(2)]
    product = make_product(stock=12, low_stock_threshold=6)
    # Four pending orders of 2 each: the stock is 4 (low; no alert yet as
    # the first crossing happens here, from 6 to 4: one alert).
    owners = buyers_with_carts(make_user, login, [(product, 2)], 4)
    placed = [call() for call in checkouts(server, owners)]
    assert [status for status, _ in placed] == [201] * 4
    assert stock(product) == 4
    buyers = buyers_with_carts(make_user, login, [(product, 1)], 8)
    calls = cancels(server, owners, placed) + checkouts(server, buyers)
    results = race(calls)
    assert [status for status, _ in results[:4]] == [200] * 4
    sold = sum(status == 201 for status, _ in results[4:])
    assert set(status for status, _ in results[4:]) <= {201, 409}
    assert stock(product) == 12 - 8 + 8 - sold
    marked = check_ledger(product.id, threshold=6)
    emails = {a.email for a in admins}
    per_admin = Counter(a["to"] for a in alerts(product) if a["to"] in emails)
    assert per_admin == {a.email: marked for a in admins}
    assert marked >= 1


@pytest.mark.server
def test_every_stock_path_racing_near_the_threshold_alerts_exactly_the_crossings(
    server,  # noqa: F811 - the imported fixture
    make_user,
    login,
    make_product,
):
    """Checkouts, cancels, adjustments both ways and PUTs of an absolute
    stock, all at once on a product hovering around its threshold: whatever
    order the row lock gives them, the ledger adds up, each movement that
    took the stock from above the threshold to at or below is marked, no
    other is, and each admin got exactly one email per marked movement."""
    admins = [make_user(admin=True) for _ in range(2)]
    tokens = [login(a)["access_token"] for a in admins]
    product = make_product(stock=14, low_stock_threshold=5)
    owners = buyers_with_carts(make_user, login, [(product, 2)], 4)
    placed = [call() for call in checkouts(server, owners)]
    assert [status for status, _ in placed] == [201] * 4  # 14 -> 6: above still
    buyers = buyers_with_carts(make_user, login, [(product, 1)], 6)
    stock_url, url = f"/api/products/{product.id}/stock", f"/api/products/{product.id}"
    calls = cancels(server, owners, placed) + checkouts(server, buyers)
    calls += [
        lambda n=n: server.request("POST", stock_url, {"delta": (-2, 3)[n % 2]}, tokens[n % 2])
        for n in range(6)
    ]
    calls += [
        lambda n=n: server.request("PUT", url, {"stock": (4, 7)[n % 2]}, tokens[n % 2])
        for n in range(4)
    ]
    results = race(calls)
    statuses = [status for status, _ in results]
    assert statuses[:4] == [200] * 4
    assert set(statuses[4:10]) <= {201, 409}
    assert set(statuses[10:16]) <= {200, 409}
    assert statuses[16:] == [200] * 4
    marked = check_ledger(product.id, threshold=5)
    emails = {a.email for a in admins}
    per_admin = Counter(a["to"] for a in alerts(product) if a["to"] in emails)
    assert per_admin == ({a.email: marked for a in admins} if marked else {})
    alerted = [(a["stock"], a["low_stock_threshold"]) for a in alerts(product)]
    marks = [m["stock_after"] for m in ledger(product.id) if m["low_stock_alert"]]
    assert sorted(alerted) == sorted((after, 5) for after in marks for _ in admins)


@pytest.mark.server
def test_checkouts_of_several_products_at_once_alert_each_product_once(
    server,  # noqa: F811 - the imported fixture
    make_user,
    login,
    make_product,
):
    """Ten checkouts, each taking units of the same three products (of
    different thresholds), at once: each product crosses its threshold in
    exactly one of them, so each admin gets one email per product, naming
    the stock that checkout left."""
    admins = [make_user(admin=True) for _ in range(2)]
    products = [
        make_product(stock=20, low_stock_threshold=10),
        make_product(stock=30, low_stock_threshold=0),
        make_product(stock=25, low_stock_threshold=15),
    ]
    lines = list(zip(products, (2, 3, 1), strict=True))
    buyers = buyers_with_carts(make_user, login, lines, 10)
    calls = checkouts(server, buyers)
    assert Counter(status for status, _ in race(calls)) == {201: 10}
    emails = {a.email for a in admins}
    for product, threshold, left in zip(products, (10, 0, 15), (0, 0, 15), strict=True):
        assert stock(product) == left
        marked = check_ledger(product.id, threshold=threshold)
        assert marked == 1, product.id
        sent = [a for a in alerts(product) if a["to"] in emails]
        assert len(sent) == 2 * marked
        marks = [m["stock_after"] for m in ledger(product.id) if m["low_stock_alert"]]
        assert {a["stock"] for a in sent} == set(marks)
