"""Orders (API.md, Orders): checkout, workflow, cancellation, idempotency, reads."""

from __future__ import annotations

import sqlite3
from decimal import Decimal

import pytest
from sqlalchemy import event

from app.models import IdempotencyKey, Order
from app.services import orders as orders_service
from tests.helpers import SHIPPING, auth, fill_cart, place_order, scalar, stock

# --- placing --------------------------------------------------------------------


def test_place_order_from_cart(client, buyer, make_product):
    user, token = buyer
    a = make_product(name="A", price="0.10", stock=5)
    b = make_product(name="B", price="19.99", stock=2)
    fill_cart(client, token, (a, 3), (b, 2))
    response = place_order(client, token)
    assert response.status_code == 201
    order = response.get_json()
    assert set(order) == {
        "id",
        "user_id",
        "status",
        "total_amount",
        "currency",
        "payment_status",
        "shipping_address",
        "items",
        "status_history",
        "created_at",
        "updated_at",
    }
    assert order["user_id"] == user.id and order["status"] == "pending"
    assert order["currency"] == "USD" and order["payment_status"] == "unpaid"
    assert order["total_amount"] == Decimal("40.28")
    assert order["shipping_address"] == SHIPPING["shipping_address"]
    assert [
        (i["product_id"], i["product_name"], i["unit_price"], i["quantity"], i["subtotal"])
        for i in order["items"]
    ] == [
        (a.id, "A", Decimal("0.10"), 3, Decimal("0.30")),
        (b.id, "B", Decimal("19.99"), 2, Decimal("39.98")),
    ]
    assert [h["status"] for h in order["status_history"]] == ["pending"]
    assert order["status_history"][0]["at"].endswith("+00:00")
    assert stock(a) == 2 and stock(b) == 0
    assert client.get("/api/cart", headers=auth(token)).get_json()["items"] == []


def test_empty_cart_is_409(client, buyer):
    response = place_order(client, buyer[1])
    assert response.status_code == 409
    assert "empty" in response.get_json()["message"].lower()
    assert scalar("SELECT count(*) FROM orders") == 0


def test_short_line_changes_nothing(client, db, buyer, make_product):
    _, token = buyer
    plenty = make_product(name="Plenty", stock=10)
    scarce = make_product(name="Scarce Widget", stock=5)
    fill_cart(client, token, (plenty, 2), (scarce, 5))
    db.session.execute(db.text("UPDATE products SET stock = 1 WHERE id = :i"), {"i": scarce.id})
    db.session.commit()
    response = place_order(client, token)
    assert response.status_code == 409
    message = response.get_json()["message"]
    assert "Scarce Widget" in message and "1" in message
    assert stock(plenty) == 10 and stock(scarce) == 1
    assert scalar("SELECT count(*) FROM orders") == 0
    assert scalar("SELECT count(*) FROM order_items") == 0
    assert len(client.get("/api/cart", headers=auth(token)).get_json()["items"]) == 2


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"shipping_address": "abc"},
        {"shipping_address": "x" * 501},
        {"shipping_address": "      "},
        {"shipping_address": 12345},
        {**SHIPPING, "status": "delivered"},
        {**SHIPPING, "total_amount": 0},
        {**SHIPPING, "user_id": 1},
    ],
)
def test_place_validation(client, buyer, make_product, body):
    _, token = buyer
    product = make_product(stock=5)
    fill_cart(client, token, (product, 1))
    response = place_order(client, token, body)
    assert response.status_code == 422
    assert stock(product) == 5 and scalar("SELECT count(*) FROM orders") == 0


def test_order_keeps_its_copy_when_product_changes(client, buyer, admin_token, make_product):
    _, token = buyer
    product = make_product(name="Original", price="10.00", stock=5)
    fill_cart(client, token, (product, 1))
    order = place_order(client, token).get_json()
    client.put(
        f"/api/products/{product.id}",
        json={"name": "Renamed", "price": "99.00"},
        headers=auth(admin_token),
    )
    client.delete(f"/api/products/{product.id}", headers=auth(admin_token))
    again = client.get(f"/api/orders/{order['id']}", headers=auth(token)).get_json()
    assert again == order
    assert again["items"][0]["product_name"] == "Original"
    assert again["total_amount"] == Decimal("10.00")


# --- idempotency ------------------------------------------------------------------


def test_idempotent_retry_replays_and_creates_nothing(client, buyer, make_product):
    _, token = buyer
    product = make_product(stock=5)
    fill_cart(client, token, (product, 2))
    first = place_order(client, token, **{"Idempotency-Key": "abc-123"})
    assert first.status_code == 201
    fill_cart(client, token, (product, 1))  # a new cart must not be ordered by the retry
    retry = place_order(client, token, **{"Idempotency-Key": "abc-123"})
    assert retry.status_code == 201
    assert retry.get_json() == first.get_json()
    assert retry.headers.get("Idempotent-Replayed") == "true"
    assert scalar("SELECT count(*) FROM orders") == 1
    assert stock(product) == 3


def test_same_key_different_body_is_422(client, buyer, make_product):
    _, token = buyer
    fill_cart(client, token, (make_product(stock=5), 1))
    assert place_order(client, token, **{"Idempotency-Key": "k1"}).status_code == 201
    response = place_order(
        client, token, {"shipping_address": "Somewhere else 1"}, **{"Idempotency-Key": "k1"}
    )
    assert response.status_code == 422
    assert response.get_json()["code"] == "idempotency_key_reused"
    assert scalar("SELECT count(*) FROM orders") == 1


def test_keys_are_per_user(client, make_user, login, make_product):
    product = make_product(stock=5)
    one = login(make_user())["access_token"]
    two = login(make_user())["access_token"]
    fill_cart(client, one, (product, 1))
    fill_cart(client, two, (product, 1))
    assert place_order(client, one, **{"Idempotency-Key": "shared"}).status_code == 201
    second = place_order(client, two, **{"Idempotency-Key": "shared"})
    assert second.status_code == 201
    assert scalar("SELECT count(*) FROM orders") == 2


def claim_key(app, db, user, key, **fields):
    """A claimed key with no stored answer: what a still-running request leaves."""
    from app.web import idempotency

    with app.test_request_context("/api/orders", method="POST", json=SHIPPING):
        fingerprint = idempotency._fingerprint()
    db.session.add(IdempotencyKey(user_id=user.id, key=key, fingerprint=fingerprint, **fields))
    db.session.commit()


def test_key_in_flight_is_409(app, client, db, buyer, make_product):
    user, token = buyer
    fill_cart(client, token, (make_product(stock=5), 1))
    claim_key(app, db, user, "running")
    response = place_order(client, token, **{"Idempotency-Key": "running"})
    assert response.status_code == 409
    assert "progress" in response.get_json()["message"]
    assert response.get_json()["code"] == "idempotency_in_flight"
    assert scalar("SELECT count(*) FROM orders") == 0


def test_abandoned_claim_is_taken_over_after_a_minute(client, db, buyer, make_product):
    from datetime import timedelta

    from app.models.types import utcnow
    from app.web import idempotency

    user, token = buyer
    fill_cart(client, token, (make_product(stock=5), 1))
    with client.application.test_request_context("/api/orders", method="POST", json=SHIPPING):
        fingerprint = idempotency._fingerprint()
    db.session.add(
        IdempotencyKey(
            user_id=user.id,
            key="dead",
            fingerprint=fingerprint,
            created_at=utcnow() - timedelta(seconds=61),
        )
    )
    db.session.commit()
    response = place_order(client, token, **{"Idempotency-Key": "dead"})
    assert response.status_code == 201
    assert scalar("SELECT count(*) FROM orders") == 1


def test_conflict_answers_are_replayed_validation_errors_are_not(client, buyer, make_product):
    _, token = buyer
    first = place_order(client, token, **{"Idempotency-Key": "empty"})
    assert first.status_code == 409
    fill_cart(client, token, (make_product(stock=5), 1))
    replay = place_order(client, token, **{"Idempotency-Key": "empty"})
    assert replay.status_code == 409 and replay.get_json() == first.get_json()

    bad = place_order(client, token, {"shipping_address": "no"}, **{"Idempotency-Key": "fixme"})
    assert bad.status_code == 422
    good = place_order(client, token, {"shipping_address": "no"}, **{"Idempotency-Key": "fixme"})
    assert good.status_code == 422  # not replayed: the key was released


@pytest.mark.parametrize("key", ["", "x" * 256])
def test_bad_keys_are_422(client, buyer, make_product, key):
    _, token = buyer
    fill_cart(client, token, (make_product(stock=5), 1))
    response = place_order(client, token, **{"Idempotency-Key": key})
    assert response.status_code == 422
    assert scalar("SELECT count(*) FROM orders") == 0


def test_keys_expire_after_24_hours(client, db, buyer, make_product):
    from datetime import timedelta

    from app.models.types import utcnow

    _, token = buyer
    product = make_product(stock=5)
    fill_cart(client, token, (product, 1))
    assert place_order(client, token, **{"Idempotency-Key": "old"}).status_code == 201
    db.session.execute(db.update(IdempotencyKey).values(created_at=utcnow() - timedelta(hours=25)))
    db.session.commit()
    fill_cart(client, token, (product, 1))
    again = place_order(client, token, **{"Idempotency-Key": "old"})
    assert again.status_code == 201 and again.headers.get("Idempotent-Replayed") is None
    assert scalar("SELECT count(*) FROM orders") == 2


# --- workflow ----------------------------------------------------------------------

STATUSES = ["pending", "processing", "shipped", "delivered", "cancelled"]
ALLOWED = {
    ("pending", "processing"),
    ("processing", "shipped"),
    ("shipped", "delivered"),
    ("pending", "cancelled"),
    ("processing", "cancelled"),
}
PATH_TO = {
    "pending": [],
    "processing": ["processing"],
    "shipped": ["processing", "shipped"],
    "delivered": ["processing", "shipped", "delivered"],
    "cancelled": ["cancelled"],
}


@pytest.fixture
def order_in(client, buyer, admin_token, make_product):
    def make(status: str, quantity: int = 2):
        _, token = buyer
        product = make_product(stock=10)
        fill_cart(client, token, (product, quantity))
        order = place_order(client, token).get_json()
        for step in PATH_TO[status]:
            response = client.put(
                f"/api/orders/{order['id']}", json={"status": step}, headers=auth(admin_token)
            )
            assert response.status_code == 200, response.get_json()
        return order["id"], product, token

    return make


@pytest.mark.parametrize("current", STATUSES)
@pytest.mark.parametrize("new", STATUSES)
def test_admin_transition_matrix(client, admin_token, order_in, current, new):
    order_id, product, _ = order_in(current)
    before = stock(product)
    response = client.put(
        f"/api/orders/{order_id}", json={"status": new}, headers=auth(admin_token)
    )
    if (current, new) in ALLOWED:
        assert response.status_code == 200, response.get_json()
        body = response.get_json()
        assert body["status"] == new
        assert [h["status"] for h in body["status_history"]] == ["pending", *PATH_TO[current], new]
        assert stock(product) == before + (2 if new == "cancelled" else 0)
    else:
        assert response.status_code == 409
        assert response.get_json()["message"]
        assert stock(product) == before
        assert scalar("SELECT status FROM orders WHERE id = :i", i=order_id) == current


def test_unknown_status_is_422(client, admin_token, order_in):
    order_id, _, _ = order_in("pending")
    for bad in ("lost", "", None, 3, "PENDING"):
        response = client.put(
            f"/api/orders/{order_id}", json={"status": bad}, headers=auth(admin_token)
        )
        assert response.status_code == 422


def test_empty_update_is_422(client, admin_token, order_in):
    order_id, _, _ = order_in("pending")
    assert (
        client.put(f"/api/orders/{order_id}", json={}, headers=auth(admin_token)).status_code == 422
    )


@pytest.mark.parametrize("new", ["processing", "shipped", "delivered", "pending"])
def test_owner_cannot_move_status_except_cancel(client, order_in, new):
    order_id, _, token = order_in("pending")
    response = client.put(f"/api/orders/{order_id}", json={"status": new}, headers=auth(token))
    assert response.status_code == 403
    assert scalar("SELECT status FROM orders WHERE id = :i", i=order_id) == "pending"


@pytest.mark.parametrize("current", ["pending", "processing"])
def test_owner_cancels_by_put_and_stock_returns(client, order_in, current):
    order_id, product, token = order_in(current)
    response = client.put(
        f"/api/orders/{order_id}", json={"status": "cancelled"}, headers=auth(token)
    )
    assert response.status_code == 200
    assert stock(product) == 10


@pytest.mark.parametrize(
    ("current", "status"),
    [
        ("pending", 200),
        ("processing", 200),
        ("shipped", 409),
        ("delivered", 409),
        ("cancelled", 409),
    ],
)
def test_cancel_endpoint(client, order_in, current, status):
    order_id, product, token = order_in(current)
    before = stock(product)
    response = client.post(f"/api/orders/{order_id}/cancel", headers=auth(token))
    assert response.status_code == status
    if status == 200:
        assert response.get_json()["status"] == "cancelled"
        assert stock(product) == before + 2
    else:
        assert stock(product) == before


def test_cancel_twice_restocks_once(client, admin_token, order_in):
    order_id, product, token = order_in("pending")
    assert client.post(f"/api/orders/{order_id}/cancel", headers=auth(token)).status_code == 200
    assert (
        client.post(f"/api/orders/{order_id}/cancel", headers=auth(admin_token)).status_code == 409
    )
    assert (
        client.put(
            f"/api/orders/{order_id}", json={"status": "cancelled"}, headers=auth(token)
        ).status_code
        == 409
    )
    assert stock(product) == 10


def test_owner_changes_address_only_while_pending(client, admin_token, order_in):
    order_id, _, token = order_in("pending")
    response = client.put(
        f"/api/orders/{order_id}", json={"shipping_address": "New Road 5"}, headers=auth(token)
    )
    assert response.status_code == 200
    assert response.get_json()["shipping_address"] == "New Road 5"
    client.put(f"/api/orders/{order_id}", json={"status": "processing"}, headers=auth(admin_token))
    response = client.put(
        f"/api/orders/{order_id}", json={"shipping_address": "Other Road 6"}, headers=auth(token)
    )
    assert response.status_code == 409
    assert scalar("SELECT shipping_address FROM orders WHERE id = :i", i=order_id) == "New Road 5"


def test_address_and_forbidden_status_together_change_nothing(client, order_in):
    order_id, _, token = order_in("pending")
    response = client.put(
        f"/api/orders/{order_id}",
        json={"shipping_address": "New Road 5", "status": "shipped"},
        headers=auth(token),
    )
    assert response.status_code == 403
    assert (
        scalar("SELECT shipping_address FROM orders WHERE id = :i", i=order_id)
        == SHIPPING["shipping_address"]
    )


# --- ownership and reads --------------------------------------------------------------


def test_other_users_orders_are_404(client, make_user, login, order_in):
    order_id, product, _ = order_in("pending")
    stranger = login(make_user())["access_token"]
    assert client.get(f"/api/orders/{order_id}", headers=auth(stranger)).status_code == 404
    assert (
        client.put(
            f"/api/orders/{order_id}", json={"status": "cancelled"}, headers=auth(stranger)
        ).status_code
        == 404
    )
    assert client.post(f"/api/orders/{order_id}/cancel", headers=auth(stranger)).status_code == 404
    assert stock(product) == 8
    assert client.get("/api/orders/999999", headers=auth(stranger)).status_code == 404


def test_admin_reads_any_order(client, admin_token, order_in):
    order_id, _, _ = order_in("pending")
    assert client.get(f"/api/orders/{order_id}", headers=auth(admin_token)).status_code == 200


def test_orders_need_a_token(client):
    for method, path in [
        ("get", "/api/orders"),
        ("post", "/api/orders"),
        ("get", "/api/orders/1"),
        ("put", "/api/orders/1"),
        ("post", "/api/orders/1/cancel"),
        ("get", "/api/orders/user/1"),
    ]:
        assert getattr(client, method)(path).status_code == 401


def test_list_own_orders_newest_first_with_filter(
    client, db, make_user, login, admin_token, make_product
):
    user = make_user()
    token = login(user)["access_token"]
    product = make_product(stock=100)
    ids = []
    for _ in range(3):
        fill_cart(client, token, (product, 1))
        ids.append(place_order(client, token).get_json()["id"])
    other = login(make_user())["access_token"]
    fill_cart(client, other, (product, 1))
    place_order(client, other)
    client.post(f"/api/orders/{ids[0]}/cancel", headers=auth(token))

    page = client.get("/api/orders", headers=auth(token)).get_json()
    assert [o["id"] for o in page["items"]] == list(reversed(ids))
    assert {k: page[k] for k in ("page", "per_page", "total", "pages")} == {
        "page": 1,
        "per_page": 20,
        "total": 3,
        "pages": 1,
    }
    cancelled = client.get("/api/orders?status=cancelled", headers=auth(token)).get_json()
    assert [o["id"] for o in cancelled["items"]] == [ids[0]]
    assert client.get("/api/orders?status=bogus", headers=auth(token)).status_code == 422
    paged = client.get("/api/orders?per_page=2&page=2", headers=auth(token)).get_json()
    assert [o["id"] for o in paged["items"]] == [ids[0]] and paged["pages"] == 2

    assert client.get("/api/orders?all=true", headers=auth(token)).status_code == 403
    everyone = client.get("/api/orders?all=true", headers=auth(admin_token)).get_json()
    assert everyone["total"] == 4


def test_admin_lists_a_users_orders(
    client, make_user, login, admin_token, user_token, make_product
):
    user = make_user()
    token = login(user)["access_token"]
    fill_cart(client, token, (make_product(stock=5), 1))
    order_id = place_order(client, token).get_json()["id"]
    page = client.get(f"/api/orders/user/{user.id}", headers=auth(admin_token)).get_json()
    assert [o["id"] for o in page["items"]] == [order_id]
    assert client.get("/api/orders/user/999999", headers=auth(admin_token)).status_code == 404
    assert client.get(f"/api/orders/user/{user.id}", headers=auth(user_token)).status_code == 403


def test_order_reads_have_flat_query_counts(
    client, db, buyer, admin_token, make_product, count_queries
):
    _, token = buyer
    products = [make_product(stock=100) for _ in range(12)]
    order_ids = []
    for n in (1, 12):
        fill_cart(client, token, *[(p, 1) for p in products[:n]])
        order_ids.append(place_order(client, token).get_json()["id"])
    for _ in range(5):
        fill_cart(client, token, (products[0], 1))
        place_order(client, token)
    client.put(
        f"/api/orders/{order_ids[1]}", json={"status": "processing"}, headers=auth(admin_token)
    )

    client.get("/api/orders?per_page=1", headers=auth(token))  # the token's user is kept
    counts = []
    for order_id in order_ids:
        with count_queries() as q:
            assert client.get(f"/api/orders/{order_id}", headers=auth(token)).status_code == 200
        counts.append(q.count)
    assert counts[0] == counts[1] <= 1, counts  # the order (the user: the accounts cache)
    body = client.get(f"/api/orders/{order_ids[1]}", headers=auth(token)).get_json()
    assert [i["product_id"] for i in body["items"]] == [p.id for p in products]
    assert [h["status"] for h in body["status_history"]] == ["pending", "processing"]
    # That one statement returns a row per line and one per event (14), not
    # one per pair of them (24), which grew as lines x events.
    params = {"order_id": order_ids[1], "user_id": body["user_id"]}
    assert len(db.session.execute(orders_service._order_rows(True), params).all()) == 14

    list_counts = []
    for per_page in (1, 7):
        with count_queries() as q:
            page = client.get(f"/api/orders?per_page={per_page}", headers=auth(token))
        assert len(page.get_json()["items"]) == per_page
        list_counts.append(q.count)
    assert list_counts[0] == list_counts[1] <= 5, list_counts


def statement_kind(statement: str) -> str:
    """'SELECT users', 'UPDATE products', ...: the verb and its table (a
    SELECT's outermost FROM comes last, after its subqueries')."""
    words = statement.split()
    if words[0] == "SELECT":
        return f"SELECT {words[len(words) - 1 - words[::-1].index('FROM') + 1]}"
    return " ".join(words[: 3 if words[0] in ("INSERT", "DELETE") else 2])


def test_checkout_statements_do_not_grow_with_its_lines(
    client, db, buyer, make_product, count_queries
):
    """The budget of one checkout: the token's user; the cart's lines, read
    by deleting them; every line's stock in one guarded UPDATE; the order,
    its lines, their ledger rows, its history and its email, one INSERT each;
    then COMMIT. Ten round trips on PostgreSQL whatever the number of lines
    (BEGIN, eight statements, COMMIT), eight statements on SQLite."""
    _, token = buyer
    budget = [
        "SELECT users",
        "DELETE FROM cart_items",
        "UPDATE products",
        "INSERT INTO orders",
        "INSERT INTO order_items",
        "INSERT INTO stock_movements",
        "INSERT INTO order_status_history",
        "INSERT INTO outbox",
    ]
    for lines in (1, 3, 10):
        fill_cart(client, token, *[(make_product(stock=5), 1) for _ in range(lines)])
        with count_queries() as q:
            assert place_order(client, token).status_code == 201
        seen = [statement_kind(statement) for statement in q.statements]
        # One INSERT for all the lines on SQLite too (it ran once per line
        # while their ids had to come back in the parameters' order).
        assert seen == budget, (lines, q.statements)
        assert q.transactions == ["begin", "commit"], q.transactions


def test_the_placed_order_is_the_order_stored(client, buyer, make_product):
    """The answer of a checkout is built from what was written, not read back:
    its lines' ids (returned by one INSERT, matched to their product, not to
    the rows' order) are the ones a GET reads, for every line."""
    _, token = buyer
    products = [make_product(stock=9, price=f"{n}.25") for n in range(1, 8)]
    fill_cart(client, token, *[(product, n % 3 + 1) for n, product in enumerate(products)])
    placed = place_order(client, token)
    assert placed.status_code == 201
    stored = client.get(f"/api/orders/{placed.get_json()['id']}", headers=auth(token))
    assert placed.get_json() == stored.get_json()
    lines = placed.get_json()["items"]
    assert len({line["id"] for line in lines}) == len(products)


def test_checkout_reads_before_it_takes_sqlites_write_lock(app, client, db, buyer, make_product):
    """On SQLite a checkout begins deferred: it reads the token's user while
    another connection holds the write lock, and takes the lock at its first
    write, even when that other writer has committed in between (a deferred
    transaction could not write after that: SQLITE_BUSY_SNAPSHOT)."""
    if db.engine.dialect.name != "sqlite":
        pytest.skip("PostgreSQL's writers lock rows, not the database")
    _, token = buyer
    other, mine = make_product(stock=5), make_product(stock=5)
    fill_cart(client, token, (mine, 2))
    db.session.commit()
    writer = sqlite3.connect(db.engine.url.database, isolation_level=None)
    writer.execute("BEGIN IMMEDIATE")
    locked_while_reading = []

    def on_statement(_conn, _cursor, statement, *_args):
        if statement.startswith("SELECT users") and writer.in_transaction:
            locked_while_reading.append(statement)
            writer.execute("UPDATE products SET stock = 7 WHERE id = ?", (other.id,))
            writer.execute("COMMIT")

    event.listen(db.engine, "before_cursor_execute", on_statement)
    try:
        response = place_order(client, token)
    finally:
        event.remove(db.engine, "before_cursor_execute", on_statement)
        if writer.in_transaction:
            writer.execute("ROLLBACK")
        writer.close()
    assert len(locked_while_reading) == 1
    assert response.status_code == 201, response.get_json()
    assert stock(mine) == 3 and stock(other) == 7


def test_order_total_is_a_number_with_two_decimals(client, buyer, make_product):
    _, token = buyer
    fill_cart(client, token, (make_product(price="699.99", stock=5), 1))
    response = place_order(client, token)
    assert b'"total_amount":699.99' in response.data


def test_order_model_status_is_constrained(db, buyer):
    from sqlalchemy.exc import IntegrityError

    user, _ = buyer
    db.session.add(
        Order(
            user_id=user.id,
            status="lost",
            total_amount=Decimal("1.00"),
            shipping_address="Somewhere 1",
        )
    )
    with pytest.raises(IntegrityError):
        db.session.commit()
    db.session.rollback()
