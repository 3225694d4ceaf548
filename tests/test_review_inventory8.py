"""Review round 8 of inventory: the low-stock alert by every path that can
make a product newly low (a sale, an adjustment, a PUT of `stock`, a PUT of
`low_stock_threshold`), once per crossing, re-armed when the product is
above its threshold again; adjustments at their limits; access and ids;
and the ledger and the alerts under real concurrent requests."""

from __future__ import annotations

import json
from collections import Counter

import pytest
from sqlalchemy import text

from app.extensions import db as _db
from app.models.product import MAX_STOCK
from tests.helpers import (
    DATABASE_URL,
    auth,
    buyers_with_carts,
    fill_cart,
    place_order,
    race,
    scalar,
    stock,
)
from tests.live import gunicorn


def alerts(product) -> list[dict]:
    """The low-stock emails queued for the product, oldest first: each
    admin's product snapshot (stock and threshold as the email names them)."""
    with _db.engine.connect() as conn:
        rows = conn.execute(
            text("SELECT recipient, payload FROM outbox WHERE topic = 'low_stock' ORDER BY id")
        ).all()
    found = []
    for recipient, payload in rows:
        if isinstance(payload, str):  # SQLite answers the JSON's text
            payload = json.loads(payload)
        snapshot = payload["context"]["product"]
        if snapshot["id"] == product.id:
            found.append({"to": recipient, **snapshot})
    return found


def put(client, token, product, **body):
    return client.put(f"/api/products/{product.id}", json=body, headers=auth(token))


def adjust(client, token, product, delta, **extra):
    body = {"delta": delta, **extra}
    return client.post(f"/api/products/{product.id}/stock", json=body, headers=auth(token))


def ledger(product_id: int) -> list[tuple[int, int, bool]]:
    with _db.engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT delta, stock_after, low_stock_alert FROM stock_movements "
                "WHERE product_id = :p ORDER BY id"
            ),
            {"p": product_id},
        ).all()
    return [(delta, after, bool(alert)) for delta, after, alert in rows]


def ledger_adds_up(product_id: int) -> bool:
    running = 0
    for delta, after, _ in ledger(product_id):
        running += delta
        if after != running or after < 0:
            return False
    return running == scalar("SELECT stock FROM products WHERE id = :i", i=product_id)


# --- the threshold as a path to "low" -------------------------------------------------


def test_raising_the_threshold_to_the_stock_alerts_every_admin_once(
    client, make_user, login, make_product
):
    """The known gap: a product at 8 with a threshold of 5 is not low; a PUT
    of a threshold of 10 makes it low (8 <= 10) and sent no alert, where
    selling it down to 5 did. Now it alerts once (each admin), names the new
    threshold, and stays quiet while the product stays low."""
    admins = [make_user(admin=True) for _ in range(2)]
    token = login(admins[0])["access_token"]
    product = make_product(stock=8, low_stock_threshold=5)

    response = put(client, token, product, low_stock_threshold=10)
    assert response.status_code == 200
    assert response.get_json()["low_stock_threshold"] == 10
    sent = alerts(product)
    assert sorted(a["to"] for a in sent) == sorted(a.email for a in admins)
    assert {(a["stock"], a["low_stock_threshold"]) for a in sent} == {(8, 10)}

    put(client, token, product, low_stock_threshold=12)  # still low: no second alert
    put(client, token, product, low_stock_threshold=8)  # 8 <= 8: still low
    assert len(alerts(product)) == 2
    put(client, token, product, low_stock_threshold=7)  # 8 > 7: above again, re-armed
    assert len(alerts(product)) == 2
    put(client, token, product, low_stock_threshold=8)  # at it again: a new crossing
    assert len(alerts(product)) == 4
    assert [(a["stock"], a["low_stock_threshold"]) for a in alerts(product)[2:]] == [(8, 8)] * 2
    # A threshold change moves no stock: the ledger has only the creation.
    assert ledger(product.id) == [(8, 8, False)]


def test_a_sale_after_a_threshold_alert_sends_no_second_one(
    client, buyer, admin_token, make_product
):
    _, token = buyer
    product = make_product(stock=9, low_stock_threshold=5)
    put(client, admin_token, product, low_stock_threshold=9)  # 9 <= 9: low, alert
    assert len(alerts(product)) == 1
    fill_cart(client, token, (product, 2))
    assert place_order(client, token).status_code == 201  # 7: still low
    assert adjust(client, admin_token, product, -3).status_code == 200  # 4: still low
    assert len(alerts(product)) == 1
    assert not any(alert for *_, alert in ledger(product.id))


def test_lowering_the_threshold_re_arms_the_alert_for_the_next_sale(
    client, buyer, admin_token, make_product
):
    _, token = buyer
    product = make_product(stock=7, low_stock_threshold=5)
    fill_cart(client, token, (product, 3))
    assert place_order(client, token).status_code == 201  # 4: crossing, alert
    assert len(alerts(product)) == 1
    put(client, admin_token, product, low_stock_threshold=2)  # 4 > 2: above again
    assert len(alerts(product)) == 1
    fill_cart(client, token, (product, 2))
    assert place_order(client, token).status_code == 201  # 2: a new crossing
    assert [(a["stock"], a["low_stock_threshold"]) for a in alerts(product)] == [(4, 5), (2, 2)]


@pytest.mark.parametrize(
    ("before", "body", "after", "alerted"),
    [
        # (stock, threshold) before, the PUT, (stock, threshold) after, alert?
        ((10, 5), {"low_stock_threshold": 10}, (10, 10), True),
        ((10, 5), {"low_stock_threshold": 9}, (10, 9), False),
        ((10, 5), {"stock": 8, "low_stock_threshold": 9}, (8, 9), True),
        ((10, 5), {"stock": 20, "low_stock_threshold": 50}, (20, 50), True),
        # The request as a whole decides, not its steps: above before, above after.
        ((10, 5), {"stock": 60, "low_stock_threshold": 50}, (60, 50), False),
        ((10, 5), {"stock": 3, "low_stock_threshold": 2}, (3, 2), False),
        # Low before and low after: no new crossing.
        ((3, 5), {"stock": 1, "low_stock_threshold": 2}, (1, 2), False),
        ((3, 5), {"low_stock_threshold": 4, "name": "Renamed"}, (3, 4), False),
        ((3, 5), {"stock": 3, "low_stock_threshold": 9}, (3, 9), False),
        # Unchanged stock given again with a raised threshold: the threshold crosses.
        ((10, 5), {"stock": 10, "low_stock_threshold": 10}, (10, 10), True),
        ((10, 5), {"name": "Renamed"}, (10, 5), False),
        ((0, 0), {"low_stock_threshold": 0, "description": "x"}, (0, 0), False),
    ],
)
def test_a_product_put_alerts_when_it_makes_the_product_newly_low(
    client, admin_token, make_product, before, body, after, alerted
):
    product = make_product(stock=before[0], low_stock_threshold=before[1])
    response = put(client, admin_token, product, **body)
    assert response.status_code == 200, response.get_json()
    answer = response.get_json()
    assert (answer["stock"], answer["low_stock_threshold"]) == after
    sent = alerts(product)
    assert len(sent) == (1 if alerted else 0)  # one admin
    if alerted:
        assert (sent[0]["stock"], sent[0]["low_stock_threshold"]) == after
    assert ledger_adds_up(product.id)
    # A movement is flagged only when it is the stock move that raised the alert.
    assert sum(alert for *_, alert in ledger(product.id)) <= len(sent)


def test_a_threshold_put_that_fails_sends_no_alert(client, admin_token, make_product):
    product = make_product(stock=8, low_stock_threshold=5)
    response = put(client, admin_token, product, low_stock_threshold=10, price=-1)
    assert response.status_code == 422
    assert alerts(product) == []
    assert scalar("SELECT low_stock_threshold FROM products WHERE id = :i", i=product.id) == 5


def test_a_deleted_product_takes_no_threshold_or_stock_change_and_alerts_nothing(
    client, buyer, admin_token, make_product
):
    _, token = buyer
    product = make_product(stock=8, low_stock_threshold=5)
    fill_cart(client, token, (product, 4))
    order = place_order(client, token).get_json()  # 4: crossing, alert
    assert len(alerts(product)) == 1
    url = f"/api/products/{product.id}"
    assert client.delete(url, headers=auth(admin_token)).status_code == 204
    assert put(client, admin_token, product, low_stock_threshold=50).status_code == 404
    assert put(client, admin_token, product, stock=0).status_code == 404
    assert adjust(client, admin_token, product, -1).status_code == 404
    # The cancel puts the units back on the deleted product (a rise: no alert).
    cancel = client.post(f"/api/orders/{order['id']}/cancel", headers=auth(token))
    assert cancel.status_code == 200, cancel.get_json()
    assert stock(product) == 8
    assert len(alerts(product)) == 1
    assert ledger_adds_up(product.id)
    # Its ledger stays readable; it is not in the low-stock report.
    moves = client.get(f"{url}/stock-movements", headers=auth(admin_token))
    assert moves.status_code == 200 and moves.get_json()["total"] == 3
    report = client.get("/api/inventory/low-stock", headers=auth(admin_token)).get_json()
    assert product.id not in [item["id"] for item in report["items"]]


# --- adjustments at their limits --------------------------------------------------------


@pytest.mark.parametrize(
    "delta", [0, True, False, "3", 1.5, None, MAX_STOCK + 1, -MAX_STOCK - 1, 2**63]
)
def test_adjustment_deltas_that_are_not_a_non_zero_integer_in_range_are_422(
    client, admin_token, make_product, delta
):
    product = make_product(stock=10)
    response = adjust(client, admin_token, product, delta)
    assert response.status_code == 422, response.get_json()
    assert stock(product) == 10 and len(ledger(product.id)) == 1


def test_adjustments_at_the_limits(client, admin_token, make_product):
    product = make_product(stock=10, low_stock_threshold=5)
    response = adjust(client, admin_token, product, -11)
    assert response.status_code == 409
    assert response.get_json()["code"] == "insufficient_stock"
    assert response.get_json()["details"] == {"product_id": product.id, "available": 10}
    assert adjust(client, admin_token, product, -MAX_STOCK).status_code == 409
    assert adjust(client, admin_token, product, MAX_STOCK - 10).get_json()["stock"] == MAX_STOCK
    assert adjust(client, admin_token, product, 1).status_code == 422  # past MAX_STOCK
    answer = adjust(client, admin_token, product, -MAX_STOCK).get_json()
    assert answer["stock"] == 0  # crossing: one alert
    assert len(alerts(product)) == 1
    assert adjust(client, admin_token, product, -1).status_code == 409
    assert ledger_adds_up(product.id) and stock(product) == 0
    assert [(d, a) for d, _, a in ledger(product.id)] == [
        (10, False),
        (MAX_STOCK - 10, False),
        (-MAX_STOCK, True),
    ]


def test_a_note_with_an_unknown_field_is_422(client, admin_token, make_product):
    product = make_product(stock=10)
    assert adjust(client, admin_token, product, 1, reason="cancel").status_code == 422
    assert adjust(client, admin_token, product, 1, note="\x00").status_code == 422
    assert stock(product) == 10


# --- access and ids -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("post", "/api/products/{id}/stock", {"delta": -1}),
        ("get", "/api/products/{id}/stock-movements", None),
        ("get", "/api/inventory/low-stock", None),
        ("put", "/api/products/{id}", {"low_stock_threshold": 50}),
    ],
)
def test_inventory_needs_an_admin(client, user_token, make_product, method, path, body):
    product = make_product(stock=8, low_stock_threshold=5)
    url = path.format(id=product.id)
    kwargs = {"json": body} if body is not None else {}
    anonymous = getattr(client, method)(url, **kwargs)
    customer = getattr(client, method)(url, headers=auth(user_token), **kwargs)
    assert (anonymous.status_code, customer.status_code) == (401, 403)
    assert stock(product) == 8 and alerts(product) == []
    assert scalar("SELECT low_stock_threshold FROM products WHERE id = :i", i=product.id) == 5


@pytest.mark.parametrize("product_id", ["999999", "0", "2147483648", "99999999999999999999"])
def test_unknown_product_ids(client, admin_token, product_id):
    for response in (
        client.post(
            f"/api/products/{product_id}/stock", json={"delta": 1}, headers=auth(admin_token)
        ),
        client.get(f"/api/products/{product_id}/stock-movements", headers=auth(admin_token)),
        client.put(
            f"/api/products/{product_id}",
            json={"low_stock_threshold": 9},
            headers=auth(admin_token),
        ),
    ):
        assert response.status_code == 404, response.get_json()


# --- under concurrency (real gunicorn workers and threads) -----------------------------


@pytest.fixture(scope="module")
def server(app):
    with gunicorn(DATABASE_URL, workers=2, threads=6) as live:
        yield live


def _low_stock_emails_per_admin(product, admins) -> Counter:
    return Counter(a["to"] for a in alerts(product) if a["to"] in {x.email for x in admins})


@pytest.mark.server
def test_a_threshold_raise_racing_checkouts_alerts_exactly_once(
    server, make_user, login, make_product
):
    """Stock only falls and the threshold only rises, so whatever order the
    row lock gives them the product becomes low exactly once: one alert
    per admin, from the sale or from the PUT, never from both."""
    admins = [make_user(admin=True) for _ in range(2)]
    admin_token = login(admins[0])["access_token"]
    product = make_product(stock=12, low_stock_threshold=2)
    tokens = buyers_with_carts(make_user, login, [(product, 1)], 8)
    calls = [
        lambda t=t: server.request("POST", "/api/orders", {"shipping_address": "1 Race Rd"}, t)
        for t in tokens
    ]
    calls.insert(
        4,
        lambda: server.request(
            "PUT", f"/api/products/{product.id}", {"low_stock_threshold": 8}, admin_token
        ),
    )
    statuses = Counter(status for status, _ in race(calls))
    assert statuses == {201: 8, 200: 1}
    assert stock(product) == 4
    assert _low_stock_emails_per_admin(product, admins) == {a.email: 1 for a in admins}
    assert ledger_adds_up(product.id)


@pytest.mark.server
def test_threshold_raises_racing_each_other_and_sales_alert_exactly_once(
    server, make_user, login, make_product
):
    """Several admins raise the threshold to values at or above every stock
    the product will have while it sells: the first change in row-lock
    order makes it low, the others and the sales keep it low."""
    admins = [make_user(admin=True) for _ in range(3)]
    tokens = [login(a)["access_token"] for a in admins]
    product = make_product(stock=20, low_stock_threshold=5)
    buyers = buyers_with_carts(make_user, login, [(product, 2)], 6)
    url = f"/api/products/{product.id}"
    calls = [
        lambda t=t: server.request("POST", "/api/orders", {"shipping_address": "1 Race Rd"}, t)
        for t in buyers
    ]
    calls += [
        lambda n=n: server.request("PUT", url, {"low_stock_threshold": 20 + n}, tokens[n % 3])
        for n in range(6)
    ]
    statuses = Counter(status for status, _ in race(calls))
    assert statuses == {201: 6, 200: 6}
    assert stock(product) == 8
    assert _low_stock_emails_per_admin(product, admins) == {a.email: 1 for a in admins}
    assert ledger_adds_up(product.id)


@pytest.mark.server
def test_adjustments_and_checkouts_racing_on_a_few_units_never_oversell(
    server, make_user, login, make_product
):
    """Removals, additions and checkouts on a product with a few units: no
    answer is a 5xx, the stock never goes below 0 (the ledger's running sum
    never does), what was sold and removed is exactly what left the stock,
    and the one crossing of the threshold (all units start above it and the
    removals outnumber the additions) alerts at most once per crossing."""
    admins = [make_user(admin=True) for _ in range(2)]
    tokens = [login(a)["access_token"] for a in admins]
    product = make_product(stock=6, low_stock_threshold=3)
    buyers = buyers_with_carts(make_user, login, [(product, 1)], 8)
    stock_url = f"/api/products/{product.id}/stock"
    calls = [
        lambda t=t: server.request("POST", "/api/orders", {"shipping_address": "1 Race Rd"}, t)
        for t in buyers
    ]
    calls += [
        lambda n=n: server.request("POST", stock_url, {"delta": -1}, tokens[n % 2])
        for n in range(6)
    ]
    results = race(calls)
    orders = Counter(status for status, _ in results[:8])
    removals = Counter(status for status, _ in results[8:])
    assert set(orders) <= {201, 409} and set(removals) <= {200, 409}
    assert orders[201] + removals[200] == 6
    assert stock(product) == 0
    assert ledger_adds_up(product.id)
    crossings = [after for _, after, alert in ledger(product.id) if alert]
    assert crossings == [3]  # the one move from 4 to 3
    assert _low_stock_emails_per_admin(product, admins) == {a.email: 1 for a in admins}


@pytest.mark.parametrize(
    ("query", "status"),
    [
        ("page=2147483647", 200),  # far past the end: an empty page, no overflow
        ("page=2147483648", 422),
        ("page=99999999999999999999", 422),
        ("page=0", 422),
        ("per_page=0", 422),
        ("per_page=-1", 422),
        ("per_page=101", 200),
        ("page=x", 422),
    ],
)
def test_ledger_and_report_page_queries(client, admin_token, make_product, query, status):
    product = make_product(stock=1, low_stock_threshold=5)
    for path in (f"/api/products/{product.id}/stock-movements", "/api/inventory/low-stock"):
        response = client.get(f"{path}?{query}", headers=auth(admin_token))
        assert response.status_code == status, (path, response.get_json())
        if status == 200:
            assert response.get_json()["total"] >= 1


def test_a_threshold_alert_email_names_the_product_its_stock_and_new_threshold(
    client, admin_token, make_product, smtp_server, deliver_outbox
):
    from tests.smtp import parts

    product = make_product(name="Kettle", stock=6, low_stock_threshold=5)
    assert put(client, admin_token, product, low_stock_threshold=6).status_code == 200
    deliver_outbox()
    [email] = [m for m in smtp_server.messages if "low stock" in m["Subject"]]
    assert email["Subject"] == f"Shop: low stock of Kettle (#{product.id}): 6 left"
    plain, _html = parts(email)
    assert "6 left" in plain and "threshold of 6" in plain
    assert deliver_outbox() == 0
