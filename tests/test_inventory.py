"""Inventory (API.md, Inventory): the stock ledger, adjustments, the low-stock
report, and the low-stock crossing that raises an alert."""

from __future__ import annotations

import pytest
from flask_migrate import downgrade, upgrade
from sqlalchemy import text

from tests.helpers import auth, scalar, stock

ADDRESS = {"shipping_address": "1 Ledger Lane"}


def movements(product) -> list[dict]:
    """The product's ledger straight from the database, oldest first."""
    from app.extensions import db

    with db.engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT delta, stock_after, reason, order_id, actor_id, note, low_stock_alert "
                "FROM stock_movements WHERE product_id = :p ORDER BY id"
            ),
            {"p": product.id},
        )
        ledger = [dict(row._mapping) for row in rows]
    for movement in ledger:  # SQLite answers 0/1
        movement["low_stock_alert"] = bool(movement["low_stock_alert"])
    return ledger


def ledger_adds_up(product) -> bool:
    """Sum of deltas == stock, and every stock_after is the running sum."""
    running = 0
    for movement in movements(product):
        running += movement["delta"]
        if movement["stock_after"] != running:
            return False
    return running == stock(product)


def adjust(client, token, product, delta, note=None):
    body = {"delta": delta} if note is None else {"delta": delta, "note": note}
    return client.post(f"/api/products/{product.id}/stock", json=body, headers=auth(token))


def buy(client, token, product, quantity=1):
    response = client.post(
        "/api/cart", json={"product_id": product.id, "quantity": quantity}, headers=auth(token)
    )
    assert response.status_code == 201, response.get_json()
    return client.post("/api/orders", json=ADDRESS, headers=auth(token))


# --- the ledger --------------------------------------------------------------------


def test_creation_through_the_api_opens_the_ledger(client, admin_token):
    response = client.post(
        "/api/products",
        json={"name": "Lamp", "price": "10.00", "stock": 7},
        headers=auth(admin_token),
    )
    assert response.status_code == 201
    product = response.get_json()
    assert product["low_stock_threshold"] == 5
    admin_id = scalar("SELECT id FROM users WHERE is_admin")
    (created,) = movements(type("P", (), {"id": product["id"]}))
    assert created == {
        "delta": 7,
        "stock_after": 7,
        "reason": "created",
        "order_id": None,
        "actor_id": admin_id,
        "note": None,
        "low_stock_alert": False,
    }


def test_default_threshold_comes_from_the_config(make_app, make_user):
    other = make_app("testing", {"LOW_STOCK_THRESHOLD": 12})
    client = other.test_client()
    admin = make_user(admin=True)
    token = client.post(
        "/api/auth/login", json={"email": admin.email, "password": "correct-horse-9"}
    ).get_json()["access_token"]
    body = {"name": "Rope", "price": 3, "stock": 40}
    assert (
        client.post("/api/products", json=body, headers=auth(token)).get_json()[
            "low_stock_threshold"
        ]
        == 12
    )
    body = {**body, "low_stock_threshold": 0}
    assert (
        client.post("/api/products", json=body, headers=auth(token)).get_json()[
            "low_stock_threshold"
        ]
        == 0
    )


def test_checkout_and_cancel_each_write_one_movement_per_line(
    client, buyer, admin_token, make_product
):
    _, token = buyer
    a, b = make_product(stock=10), make_product(stock=20)
    for product, quantity in ((a, 3), (b, 4)):
        client.post(
            "/api/cart", json={"product_id": product.id, "quantity": quantity}, headers=auth(token)
        )
    order = client.post("/api/orders", json=ADDRESS, headers=auth(token)).get_json()
    assert [m["reason"] for m in movements(a)] == ["created", "order"]
    assert movements(a)[1] | {} == {
        "delta": -3,
        "stock_after": 7,
        "reason": "order",
        "order_id": order["id"],
        "actor_id": None,
        "note": None,
        "low_stock_alert": False,
    }
    assert movements(b)[1]["delta"] == -4 and movements(b)[1]["order_id"] == order["id"]

    response = client.post(f"/api/orders/{order['id']}/cancel", headers=auth(admin_token))
    assert response.status_code == 200
    assert movements(a)[-1] == {
        "delta": 3,
        "stock_after": 10,
        "reason": "cancel",
        "order_id": order["id"],
        "actor_id": None,
        "note": None,
        "low_stock_alert": False,
    }
    # A second cancel is refused and writes nothing.
    client.post(f"/api/orders/{order['id']}/cancel", headers=auth(admin_token))
    assert len(movements(a)) == len(movements(b)) == 3
    assert ledger_adds_up(a) and ledger_adds_up(b)


def test_failed_checkout_writes_no_movement(client, buyer, make_product):
    _, token = buyer
    plenty, scarce = make_product(stock=50), make_product(stock=1)
    for product in (plenty, scarce):
        client.post("/api/cart", json={"product_id": product.id}, headers=auth(token))
    # Someone else takes the last unit first.
    from app.extensions import db

    with db.engine.begin() as conn:
        conn.execute(text("UPDATE products SET stock = 0 WHERE id = :i"), {"i": scarce.id})
    assert client.post("/api/orders", json=ADDRESS, headers=auth(token)).status_code == 409
    assert [m["reason"] for m in movements(plenty)] == ["created"]
    assert stock(plenty) == 50
    assert scalar("SELECT count(*) FROM orders") == 0


def test_cancelling_restocks_a_deleted_product_too(client, buyer, admin_token, make_product):
    _, token = buyer
    product = make_product(stock=4)
    order = buy(client, token, product, 2).get_json()
    client.delete(f"/api/products/{product.id}", headers=auth(admin_token))
    assert client.post(f"/api/orders/{order['id']}/cancel", headers=auth(token)).status_code == 200
    assert stock(product) == 4 and ledger_adds_up(product)


# --- adjustments -------------------------------------------------------------------


def test_adjustment_adds_atomically_and_is_recorded(client, admin_token, make_product):
    product = make_product(stock=10)
    response = adjust(client, admin_token, product, 15, "Delivery #42")
    assert response.status_code == 200
    assert response.get_json()["stock"] == 25
    assert response.get_json()["id"] == product.id
    response = adjust(client, admin_token, product, -25)
    assert response.status_code == 200 and response.get_json()["stock"] == 0
    admin_id = scalar("SELECT id FROM users WHERE is_admin")
    assert movements(product)[1:] == [
        {
            "delta": 15,
            "stock_after": 25,
            "reason": "adjustment",
            "order_id": None,
            "actor_id": admin_id,
            "note": "Delivery #42",
            "low_stock_alert": False,
        },
        {
            "delta": -25,
            "stock_after": 0,
            "reason": "adjustment",
            "order_id": None,
            "actor_id": admin_id,
            "note": None,
            "low_stock_alert": True,
        },
    ]


def test_adjustment_below_zero_is_409_and_changes_nothing(client, admin_token, make_product):
    product = make_product(name="Kettle", stock=3)
    response = adjust(client, admin_token, product, -4)
    assert response.status_code == 409
    body = response.get_json()
    assert body["message"] == "Not enough stock for 'Kettle': 3 left, cannot remove 4"
    assert body["code"] == "insufficient_stock"
    assert body["details"] == {"product_id": product.id, "available": 3}
    assert stock(product) == 3 and len(movements(product)) == 1


def test_adjustment_past_the_stock_maximum_is_422(client, admin_token, make_product):
    product = make_product(stock=10)
    response = adjust(client, admin_token, product, 999_999_991)
    assert response.status_code == 422
    assert response.get_json()["errors"] == {"delta": ["The stock would pass 1000000000."]}
    assert stock(product) == 10
    assert adjust(client, admin_token, product, 999_999_990).get_json()["stock"] == 10**9


@pytest.mark.parametrize(
    "body",
    [
        {"delta": 0},
        {"delta": "5"},
        {"delta": 1.5},
        {"delta": True},
        {"delta": None},
        {"delta": 10**12},
        {"delta": -(10**12)},
        {"delta": 1_000_000_001},
        {"note": "no delta"},
        {},
        {"delta": 1, "note": "x" * 501},
        {"delta": 1, "note": 7},
        {"delta": 1, "stock": 5},
    ],
)
def test_adjustment_validation(client, admin_token, make_product, body):
    product = make_product(stock=10)
    response = client.post(
        f"/api/products/{product.id}/stock", json=body, headers=auth(admin_token)
    )
    assert response.status_code == 422, response.get_json()
    assert response.get_json()["code"] == "validation_failed"
    assert response.get_json()["errors"]
    assert stock(product) == 10 and len(movements(product)) == 1


def test_adjustment_note_of_500_characters_is_fine(client, admin_token, make_product):
    product = make_product(stock=1)
    assert adjust(client, admin_token, product, 1, "n" * 500).status_code == 200


def test_adjusting_an_unknown_or_deleted_product_is_404(client, admin_token, make_product):
    product = make_product()
    client.delete(f"/api/products/{product.id}", headers=auth(admin_token))
    assert adjust(client, admin_token, product, 1).status_code == 404
    missing = type("P", (), {"id": 999_999})
    assert adjust(client, admin_token, missing, 1).status_code == 404
    assert adjust(client, admin_token, missing, -1).status_code == 404


def test_put_stock_is_an_adjustment_of_the_difference(client, admin_token, make_product):
    product = make_product(stock=10, low_stock_threshold=5)
    url = f"/api/products/{product.id}"
    response = client.put(url, json={"stock": 4, "name": "Renamed"}, headers=auth(admin_token))
    assert response.status_code == 200
    assert response.get_json()["stock"] == 4 and response.get_json()["name"] == "Renamed"
    # The same stock again is no change, and no movement.
    client.put(url, json={"stock": 4}, headers=auth(admin_token))
    client.put(url, json={"stock": 30, "low_stock_threshold": 40}, headers=auth(admin_token))
    ledger = movements(product)
    assert [(m["reason"], m["delta"], m["stock_after"]) for m in ledger] == [
        ("created", 10, 10),
        ("adjustment", -6, 4),
        ("adjustment", 26, 30),
    ]
    assert ledger[1]["actor_id"] == ledger[2]["actor_id"] is not None
    assert ledger[1]["low_stock_alert"] is True
    assert ledger[2]["low_stock_alert"] is False  # a rise, under the new threshold
    assert ledger_adds_up(product)


@pytest.mark.parametrize("value", [-1, "5", 2.5, None, 2_147_483_648])
def test_threshold_validation(client, admin_token, make_product, value):
    product = make_product()
    response = client.put(
        f"/api/products/{product.id}",
        json={"low_stock_threshold": value},
        headers=auth(admin_token),
    )
    assert response.status_code == 422


# --- reads -------------------------------------------------------------------------


def test_stock_movements_page_newest_first(client, admin_token, make_product):
    product = make_product(stock=1)
    for delta in range(1, 6):
        adjust(client, admin_token, product, delta)
    url = f"/api/products/{product.id}/stock-movements?per_page=4"
    page = client.get(url, headers=auth(admin_token)).get_json()
    assert (page["page"], page["per_page"], page["total"], page["pages"]) == (1, 4, 6, 2)
    assert [m["delta"] for m in page["items"]] == [5, 4, 3, 2]
    first = page["items"][0]
    assert set(first) == {
        "id",
        "product_id",
        "delta",
        "stock_after",
        "reason",
        "order_id",
        "actor_id",
        "note",
        "low_stock_alert",
        "created_at",
    }
    assert first["stock_after"] == 16 and first["product_id"] == product.id
    assert first["created_at"].endswith("+00:00")
    page2 = client.get(url + "&page=2", headers=auth(admin_token)).get_json()
    assert [(m["reason"], m["delta"]) for m in page2["items"]] == [
        ("adjustment", 1),
        ("created", 1),
    ]
    assert (
        client.get("/api/products/999999/stock-movements", headers=auth(admin_token)).status_code
        == 404
    )


def test_low_stock_report(client, admin_token, make_product):
    make_product(name="plenty", stock=50)
    at = make_product(name="at", stock=5, low_stock_threshold=5)
    make_product(name="zero-b", stock=0)
    make_product(name="zero-a", stock=0)
    make_product(name="custom", stock=30, low_stock_threshold=40)
    make_product(name="none", stock=0, low_stock_threshold=0)  # 0 <= 0: low
    make_product(name="above", stock=6, low_stock_threshold=5)
    gone = make_product(name="gone", stock=1)
    client.delete(f"/api/products/{gone.id}", headers=auth(admin_token))
    page = client.get("/api/inventory/low-stock", headers=auth(admin_token)).get_json()
    # Lowest stock first, then id.
    assert [p["name"] for p in page["items"]] == ["zero-b", "zero-a", "none", "at", "custom"]
    assert page["total"] == 5 and page["pages"] == 1
    assert page["items"][3] == client.get(f"/api/products/{at.id}").get_json()
    small = client.get("/api/inventory/low-stock?per_page=2&page=3", headers=auth(admin_token))
    assert [p["name"] for p in small.get_json()["items"]] == ["custom"]


@pytest.mark.parametrize(
    "method, path",
    [
        ("post", "/api/products/{id}/stock"),
        ("get", "/api/products/{id}/stock-movements"),
        ("get", "/api/inventory/low-stock"),
    ],
)
def test_inventory_is_admin_only(client, user_token, make_product, method, path):
    product = make_product(stock=3)
    url = path.format(id=product.id)
    kwargs = {"json": {"delta": 1}} if method == "post" else {}
    assert getattr(client, method)(url, **kwargs).status_code == 401
    bad = {"Authorization": "Bearer not-a-token"}
    assert getattr(client, method)(url, headers=bad, **kwargs).status_code == 401
    response = getattr(client, method)(url, headers=auth(user_token), **kwargs)
    assert response.status_code == 403
    assert stock(product) == 3 and len(movements(product)) == 1


@pytest.mark.parametrize("query", ["page=0", "per_page=0", "page=x", "per_page=-1"])
def test_list_query_validation(client, admin_token, make_product, query):
    product = make_product()
    for path in (f"/api/products/{product.id}/stock-movements", "/api/inventory/low-stock"):
        assert client.get(f"{path}?{query}", headers=auth(admin_token)).status_code == 422


def test_reads_have_flat_query_budgets(client, admin_token, make_product, count_queries):
    products = [make_product(stock=n % 3) for n in range(12)]
    for _ in range(10):
        adjust(client, admin_token, products[0], 1)
    client.get("/api/inventory/low-stock", headers=auth(admin_token))  # the user is kept
    counts = {}
    for per_page in (1, 10):
        with count_queries() as q:
            response = client.get(
                f"/api/products/{products[0].id}/stock-movements?per_page={per_page}",
                headers=auth(admin_token),
            )
        assert len(response.get_json()["items"]) == per_page
        counts["movements", per_page] = q.count
        with count_queries() as q:
            response = client.get(
                f"/api/inventory/low-stock?per_page={per_page}", headers=auth(admin_token)
            )
        assert len(response.get_json()["items"]) == per_page
        counts["low", per_page] = q.count
    # the product (404 check); COUNT; the page (the token's user: the accounts cache)
    assert counts["movements", 1] == counts["movements", 10] <= 3, counts
    assert counts["low", 1] == counts["low", 10] <= 2, counts


def test_adjustment_statement_count(client, admin_token, make_product, count_queries):
    product = make_product(stock=10)
    with count_queries() as q:
        assert adjust(client, admin_token, product, 5).status_code == 200
    # the token's user; the guarded UPDATE ... RETURNING; the movement
    assert q.count <= 3, q.statements


# --- the low-stock crossing --------------------------------------------------------


def alerts(product) -> int:
    return sum(m["low_stock_alert"] for m in movements(product))


def test_crossing_alerts_once_until_stock_rises_above_again(
    client, buyer, admin_token, make_product
):
    _, token = buyer
    product = make_product(stock=7, low_stock_threshold=5)
    assert buy(client, token, product, 1).status_code == 201  # 6: above
    assert alerts(product) == 0
    assert buy(client, token, product, 1).status_code == 201  # 5: at the threshold
    assert alerts(product) == 1
    buy(client, token, product, 1)  # 4: still low, no second alert
    adjust(client, admin_token, product, 1)  # 5: rises, but not above
    adjust(client, admin_token, product, -2)  # 3
    assert alerts(product) == 1
    adjust(client, admin_token, product, 10)  # 13: above again
    adjust(client, admin_token, product, -13)  # 0: a new crossing
    assert alerts(product) == 2
    [crossing] = [m for m in movements(product) if m["low_stock_alert"]][1:]
    assert crossing["stock_after"] == 0 and crossing["reason"] == "adjustment"
    # The API's list marks the same two movements, newest first.
    listed = client.get(
        f"/api/products/{product.id}/stock-movements?per_page=100", headers=auth(admin_token)
    ).get_json()["items"]
    assert [(m["stock_after"], m["reason"]) for m in listed if m["low_stock_alert"]] == [
        (0, "adjustment"),
        (5, "order"),
    ]
    assert sum(m["low_stock_alert"] for m in listed) == 2


def test_creation_at_or_below_the_threshold_is_no_crossing(client, admin_token):
    body = {"name": "Rare", "price": 1, "stock": 2}
    response = client.post("/api/products", json=body, headers=auth(admin_token))
    assert response.status_code == 201
    assert scalar("SELECT count(*) FROM stock_movements WHERE low_stock_alert") == 0


def low_stock_emails(smtp_server) -> list:
    return [m for m in smtp_server.messages if "low stock" in m["Subject"]]


def test_crossing_emails_every_admin_once_per_crossing(
    client, make_user, login, buyer, make_product, smtp_server, deliver_outbox
):
    from tests.smtp import parts

    admins = [make_user(admin=True) for _ in range(2)]
    admin_token = login(admins[0])["access_token"]
    _, token = buyer
    product = make_product(name="Desk <Lamp>", stock=7, low_stock_threshold=5)
    buy(client, token, product, 1)  # 6
    deliver_outbox()
    assert low_stock_emails(smtp_server) == []
    buy(client, token, product, 3)  # 3: the crossing
    buy(client, token, product, 1)  # 2: still low
    assert low_stock_emails(smtp_server) == []  # recorded, not sent by the request
    deliver_outbox()
    emails = low_stock_emails(smtp_server)
    assert sorted(m["To"] for m in emails) == sorted(a.email for a in admins)
    assert {m["Subject"] for m in emails} == {
        f"Shop: low stock of Desk <Lamp> (#{product.id}): 3 left"
    }
    text, html = parts(emails[0])
    assert "Desk <Lamp> (product #" in text and "3 left" in text and "threshold of 5" in text
    assert "Desk &lt;Lamp&gt;" in html and "<strong>3</strong> left" in html

    adjust(client, admin_token, product, 10)  # 12: above again
    adjust(client, admin_token, product, -7)  # 5: a new crossing
    deliver_outbox()
    assert len(low_stock_emails(smtp_server)) == 4
    assert deliver_outbox() == 0  # nothing twice


def test_an_adjustment_that_fails_sends_no_alert(
    client, admin_token, make_product, smtp_server, deliver_outbox
):
    product = make_product(stock=8, low_stock_threshold=5)
    assert adjust(client, admin_token, product, -9).status_code == 409
    deliver_outbox()
    assert low_stock_emails(smtp_server) == []


# --- the migration -----------------------------------------------------------------


def test_migration_opens_the_ledger_of_existing_products(app, db):
    """Products that exist before the inventory revision get a `created`
    movement for their current stock (deleted ones too)."""
    db.session.remove()
    downgrade(revision="d18a7c3e5b90-1")  # just before the inventory revision
    try:
        with db.engine.begin() as conn:
            for name, stock_, deleted in (("a", 4, None), ("b", 0, None), ("c", 9, "2026-01-01")):
                conn.execute(
                    text(
                        "INSERT INTO products (name, description, price, stock, created_at, "
                        "updated_at, deleted_at) VALUES (:n, '', 1, :s, :t, :t, :d)"
                    ),
                    {"n": name, "s": stock_, "t": "2026-01-01 00:00:00", "d": deleted},
                )
    finally:
        upgrade()
    rows = db.session.execute(
        text(
            "SELECT p.name, p.low_stock_threshold, m.delta, m.stock_after, m.reason "
            "FROM products p JOIN stock_movements m ON m.product_id = p.id ORDER BY p.name"
        )
    ).all()
    db.session.rollback()
    assert [tuple(r) for r in rows] == [
        ("a", 5, 4, 4, "created"),
        ("b", 5, 0, 0, "created"),
        ("c", 5, 9, 9, "created"),
    ]


def test_seed_opens_the_ledger(app, db):
    runner = app.test_cli_runner()
    assert runner.invoke(args=["seed", "--products", "30"]).exit_code == 0
    assert scalar("SELECT count(*) FROM stock_movements WHERE reason = 'created'") == 30
    assert scalar("SELECT sum(delta) FROM stock_movements") == scalar(
        "SELECT sum(stock) FROM products"
    )


def test_seed_gives_products_the_configured_threshold(make_app, db):
    """API.md: new products get LOW_STOCK_THRESHOLD; `flask seed` left the
    column's own default (5) whatever the setting (found by review)."""
    other = make_app("testing", {"LOW_STOCK_THRESHOLD": 7})
    with other.app_context():  # a command runs in the app context it finds
        assert other.test_cli_runner().invoke(args=["seed"]).exit_code == 0
        assert other.test_cli_runner().invoke(args=["seed", "--products", "30"]).exit_code == 0
    thresholds = scalar("SELECT count(DISTINCT low_stock_threshold) FROM products")
    assert (thresholds, scalar("SELECT min(low_stock_threshold) FROM products")) == (1, 7)
