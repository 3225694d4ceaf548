"""Review round 8 (the cart, the order status workflow, Idempotency-Key): the
behaviour probed and found to hold on SQLite and PostgreSQL (cart quantity
bounds, deleted and sold-out products, prices moving before checkout, other
users' orders, every pair of statuses, racing cancels, pages and filters,
keys reused, raced and expired, exact totals), pinned down here."""

from __future__ import annotations

from collections import Counter
from datetime import timedelta
from decimal import Decimal
from functools import partial

import pytest
from sqlalchemy import text, update

from app.extensions import db
from app.models import IdempotencyKey
from app.models.cart import MAX_LINE_QUANTITY
from app.models.product import MAX_STOCK
from app.models.types import utcnow
from tests.helpers import (
    DATABASE_URL,
    SHIPPING,
    add_to_cart,
    auth,
    buyers_with_carts,
    fill_cart,
    order_for,
    place_order,
    race,
    scalar,
    stock,
)
from tests.live import gunicorn
from tests.test_orders import ALLOWED, PATH_TO, STATUSES

# --- cart quantities ----------------------------------------------------------


@pytest.mark.parametrize(
    "quantity",
    [
        0,
        -1,
        -(2**31),
        MAX_STOCK + 1,
        2**31,
        2**63,
        10**30,
        "2",
        "1",
        2.0,
        1.5,
        True,
        False,
        None,
        [1],
        {},
    ],
)
def test_a_cart_quantity_that_is_no_whole_number_from_one_up_is_422(
    client, user_token, make_product, quantity
):
    product = make_product(stock=50)
    response = client.post(
        "/api/cart", json={"product_id": product.id, "quantity": quantity}, headers=auth(user_token)
    )
    assert response.status_code == 422, response.get_json()
    assert response.get_json()["code"] == "validation_failed"
    assert "quantity" in response.get_json()["errors"]
    fill_cart(client, user_token, (product, 2))
    item_id = client.get("/api/cart", headers=auth(user_token)).get_json()["items"][0]["id"]
    response = client.put(
        f"/api/cart/{item_id}", json={"quantity": quantity}, headers=auth(user_token)
    )
    assert response.status_code == 422, response.get_json()
    assert "quantity" in response.get_json()["errors"]
    cart = client.get("/api/cart", headers=auth(user_token)).get_json()
    assert [line["quantity"] for line in cart["items"]] == [2]


def test_a_quantity_as_raw_json_number_forms_is_judged_by_its_value(
    client, user_token, make_product
):
    product = make_product(stock=50)
    for raw in (b"2.0", b"2e0", b"1E1", b"0.5e1"):
        body = b'{"product_id": %d, "quantity": %s}' % (product.id, raw)
        response = client.post(
            "/api/cart", data=body, content_type="application/json", headers=auth(user_token)
        )
        assert response.status_code == 422, (raw, response.get_json())
    assert client.get("/api/cart", headers=auth(user_token)).get_json()["items"] == []


def test_a_huge_addition_to_an_existing_line_is_a_409_and_keeps_the_line(
    client, user_token, make_product
):
    product = make_product(stock=MAX_STOCK)
    fill_cart(client, user_token, (product, MAX_LINE_QUANTITY))
    response = add_to_cart(client, user_token, product.id, MAX_STOCK)
    assert response.status_code == 409, response.get_json()
    response = add_to_cart(client, user_token, product.id, 1)
    assert response.status_code == 409, response.get_json()
    assert response.get_json()["code"] == "cart_limit"
    cart = client.get("/api/cart", headers=auth(user_token)).get_json()
    assert [line["quantity"] for line in cart["items"]] == [MAX_LINE_QUANTITY]


def test_adding_past_the_stock_is_a_409_naming_the_product_and_its_stock(
    client, user_token, make_product
):
    product = make_product(name="Phone", stock=5)
    fill_cart(client, user_token, (product, 3))
    response = add_to_cart(client, user_token, product.id, 3)
    assert response.status_code == 409
    body = response.get_json()
    assert body["code"] == "out_of_stock"
    assert "Phone" in body["message"] and "5" in body["message"]
    assert body["details"] == {"product_id": product.id, "available": 5}
    cart = client.get("/api/cart", headers=auth(user_token)).get_json()
    assert cart["total_items"] == 3


def test_an_out_of_stock_or_deleted_product_cannot_be_added(
    client, user_token, admin_token, make_product
):
    empty = make_product(stock=0)
    response = add_to_cart(client, user_token, empty.id, 1)
    assert response.status_code == 409
    assert response.get_json()["details"] == {"product_id": empty.id, "available": 0}
    gone = make_product(stock=5)
    assert client.delete(f"/api/products/{gone.id}", headers=auth(admin_token)).status_code == 204
    response = add_to_cart(client, user_token, gone.id, 1)
    assert response.status_code == 404
    assert response.get_json()["code"] == "not_found"
    assert client.get("/api/cart", headers=auth(user_token)).get_json()["items"] == []


def test_a_line_of_a_product_deleted_before_checkout_is_neither_shown_nor_ordered(
    client, user_token, admin_token, make_product
):
    kept, gone = make_product(stock=5), make_product(stock=5)
    fill_cart(client, user_token, (kept, 1), (gone, 2))
    assert client.delete(f"/api/products/{gone.id}", headers=auth(admin_token)).status_code == 204
    cart = client.get("/api/cart", headers=auth(user_token)).get_json()
    assert [line["product_id"] for line in cart["items"]] == [kept.id]
    response = place_order(client, user_token)
    assert response.status_code == 201, response.get_json()
    assert [item["product_id"] for item in response.get_json()["items"]] == [kept.id]
    assert stock(gone) == 5


def test_checkout_charges_the_price_at_checkout_not_at_adding(
    client, user_token, admin_token, make_product
):
    product = make_product(price="10.00", stock=5)
    fill_cart(client, user_token, (product, 3))
    response = client.put(
        f"/api/products/{product.id}", json={"price": "12.34"}, headers=auth(admin_token)
    )
    assert response.status_code == 200
    cart = client.get("/api/cart", headers=auth(user_token)).get_json()
    assert cart["items"][0]["unit_price"] == Decimal("12.34")
    assert cart["total"] == Decimal("37.02")
    order = place_order(client, user_token).get_json()
    assert order["items"][0]["unit_price"] == Decimal("12.34")
    assert order["total_amount"] == Decimal("37.02")


def test_totals_are_exact_over_many_lines_of_high_quantities(client, user_token, make_product):
    prices = ["0.10", "999999.99", "0.01", "33.33", "1000000.00"]
    products = [make_product(price=prices[n % len(prices)], stock=MAX_STOCK) for n in range(100)]
    fill_cart(client, user_token, *((p, MAX_LINE_QUANTITY) for p in products))
    expected = sum(
        (Decimal(prices[n % len(prices)]) * MAX_LINE_QUANTITY for n in range(100)), Decimal(0)
    )
    cart = client.get("/api/cart", headers=auth(user_token))
    assert Decimal(cart.get_data(as_text=True).rsplit('"total":', 1)[1].strip("}\n ")) == expected
    response = place_order(client, user_token)
    assert response.status_code == 201, response.get_json()
    order_id = response.get_json()["id"]
    assert Decimal(scalar("SELECT total_amount FROM orders WHERE id = :i", i=order_id)) == expected
    text = client.get(f"/api/orders/{order_id}", headers=auth(user_token)).get_data(as_text=True)
    assert f'"total_amount":{expected}' in text.replace(" ", "")
    assert scalar("SELECT count(*) FROM order_items WHERE order_id = :i", i=order_id) == 100


# --- orders: other users, the workflow ------------------------------------------


@pytest.fixture
def order_in(client, make_user, login, make_product, admin_token):
    """An order of 2 units, moved by the admin to `status`; (order id, product, owner token)."""

    def make(status: str, quantity: int = 2):
        product = make_product(stock=10)
        token = login(make_user())["access_token"]
        order = order_for(client, token, (product, quantity))
        for step in PATH_TO[status]:
            response = client.put(
                f"/api/orders/{order['id']}", json={"status": step}, headers=auth(admin_token)
            )
            assert response.status_code == 200, response.get_json()
        return order["id"], product, token

    return make


def test_every_route_answers_another_users_order_with_a_404(client, make_user, login, order_in):
    order_id, product, _ = order_in("pending")
    other = login(make_user())["access_token"]
    another_buyer = order_in("pending")[2]  # a buyer with orders of their own
    assert client.get(f"/api/orders/{order_id}", headers=auth(another_buyer)).status_code == 404
    calls = [
        ("get", f"/api/orders/{order_id}", None),
        ("put", f"/api/orders/{order_id}", {"status": "cancelled"}),
        ("put", f"/api/orders/{order_id}", {"shipping_address": "Elsewhere 12"}),
        ("put", f"/api/orders/{order_id}", {"status": "processing"}),
        ("post", f"/api/orders/{order_id}/cancel", None),
        ("post", f"/api/orders/{order_id}/pay", {"payment_method": "pm_card_visa"}),
        ("get", f"/api/orders/{order_id + 1000}", None),
        ("post", f"/api/orders/{order_id + 1000}/cancel", None),
        ("get", f"/api/orders/{10**20}", None),
        ("put", f"/api/orders/{10**20}", {"status": "cancelled"}),
        ("post", f"/api/orders/{10**20}/cancel", None),
    ]
    for method, path, body in calls:
        response = getattr(client, method)(path, json=body, headers=auth(other))
        assert response.status_code == 404, (method, path, response.get_json())
        assert response.get_json()["code"] == "not_found"
    assert scalar("SELECT status FROM orders WHERE id = :i", i=order_id) == "pending"
    assert stock(product) == 8
    listed = client.get("/api/orders", headers=auth(other)).get_json()
    assert listed["items"] == [] and listed["total"] == 0


@pytest.mark.parametrize("current", STATUSES)
def test_every_admin_move_from_a_status_is_applied_or_refused_as_the_workflow_says(
    client, admin_token, order_in, current
):
    for new in STATUSES:
        order_id, product, _ = order_in(current)
        before_stock = stock(product)
        before = client.get(f"/api/orders/{order_id}", headers=auth(admin_token)).get_json()
        response = client.put(
            f"/api/orders/{order_id}", json={"status": new}, headers=auth(admin_token)
        )
        body = response.get_json()
        if (current, new) in ALLOWED:
            assert response.status_code == 200, body
            assert body["status"] == new
            assert [e["status"] for e in body["status_history"]] == [
                "pending",
                *PATH_TO[current],
                new,
            ]
            assert stock(product) == before_stock + (2 if new == "cancelled" else 0)
            after = client.get(f"/api/orders/{order_id}", headers=auth(admin_token)).get_json()
            assert after == body
        else:
            assert response.status_code == 409, (current, new, body)
            assert body["code"] == "invalid_transition"
            assert body["details"] == {"from": current, "to": new}
            assert stock(product) == before_stock
            after = client.get(f"/api/orders/{order_id}", headers=auth(admin_token)).get_json()
            assert after == before


@pytest.mark.parametrize("current", STATUSES)
def test_the_owner_may_only_cancel_and_only_where_the_workflow_allows(client, order_in, current):
    for new in STATUSES:
        order_id, product, token = order_in(current)
        before_stock = stock(product)
        response = client.put(f"/api/orders/{order_id}", json={"status": new}, headers=auth(token))
        body = response.get_json()
        if new != "cancelled":
            assert response.status_code == 403, body
            assert body["code"] == "forbidden"
        elif (current, new) in ALLOWED:
            assert response.status_code == 200, body
            assert stock(product) == before_stock + 2
        else:
            assert response.status_code == 409, body
            assert body["details"] == {"from": current, "to": new}
        if new != "cancelled" or (current, new) not in ALLOWED:
            assert stock(product) == before_stock
            assert scalar("SELECT status FROM orders WHERE id = :i", i=order_id) == current
        response = client.post(f"/api/orders/{order_id}/cancel", headers=auth(token))
        if current in ("pending", "processing") and new != "cancelled":
            assert response.status_code == 200, response.get_json()
        else:
            assert response.status_code == 409
            assert response.get_json()["code"] == "invalid_transition"


def test_a_refused_status_move_keeps_the_address_sent_with_it(client, admin_token, order_in):
    order_id, _, token = order_in("pending")
    for who, status, code in ((token, "processing", 403), (admin_token, "delivered", 409)):
        response = client.put(
            f"/api/orders/{order_id}",
            json={"status": status, "shipping_address": "Somewhere else 1"},
            headers=auth(who),
        )
        assert response.status_code == code, response.get_json()
    assert (
        scalar("SELECT shipping_address FROM orders WHERE id = :i", i=order_id)
        == (SHIPPING["shipping_address"])
    )


# --- order lists ------------------------------------------------------------------


def test_order_pages_and_filters(client, make_user, login, make_product, admin_token):
    product = make_product(stock=100)
    user = make_user()
    token = login(user)["access_token"]
    ids = [order_for(client, token, (product, 1))["id"] for _ in range(7)]
    other_token = login(make_user())["access_token"]
    others = [order_for(client, other_token, (product, 1))["id"] for _ in range(2)]
    for order_id in ids[:3]:
        assert client.post(f"/api/orders/{order_id}/cancel", headers=auth(token)).status_code == 200

    def page(query, who=token):
        response = client.get(f"/api/orders?{query}", headers=auth(who))
        assert response.status_code == 200, response.get_json()
        return response.get_json()

    first, second, third = page("per_page=3"), page("per_page=3&page=2"), page("per_page=3&page=3")
    seen = [o["id"] for p in (first, second, third) for o in p["items"]]
    assert seen == ids[::-1]
    assert (first["total"], first["pages"], third["page"]) == (7, 3, 3)
    past = page("per_page=3&page=9")
    assert (past["items"], past["total"], past["pages"]) == ([], 7, 3)
    cancelled = page("status=cancelled")
    assert [o["id"] for o in cancelled["items"]] == ids[:3][::-1]
    assert cancelled["total"] == 3
    assert page("status=shipped")["total"] == 0
    assert page("per_page=1000")["per_page"] == 100
    everyone = page("all=true", admin_token)
    assert [o["id"] for o in everyone["items"]] == (ids + others)[::-1]
    assert page("all=true&status=pending", admin_token)["total"] == 6
    assert page("all=false", admin_token)["total"] == 0
    for query in ("status=lost", "page=0", "per_page=0", "page=x", "all=maybe", "page=-1"):
        response = client.get(f"/api/orders?{query}", headers=auth(token))
        assert response.status_code == 422, query
    forbidden = client.get("/api/orders?all=true", headers=auth(token))
    assert forbidden.status_code == 403
    mine = client.get(f"/api/orders/user/{user.id}?status=pending", headers=auth(admin_token))
    assert [o["id"] for o in mine.get_json()["items"]] == ids[3:][::-1]
    assert client.get(f"/api/orders/user/{user.id}", headers=auth(token)).status_code == 403
    for missing in (10**6, 10**20, 0):
        response = client.get(f"/api/orders/user/{missing}", headers=auth(admin_token))
        assert response.status_code == 404, missing


# --- races (real threads, a real server) ------------------------------------------


@pytest.fixture(scope="module")
def server(app):
    with gunicorn(DATABASE_URL, workers=3, threads=4) as live:
        yield live


def _ledger_sum(product) -> int:
    return scalar("SELECT sum(delta) FROM stock_movements WHERE product_id = :i", i=product.id)


def test_cancels_racing_admin_moves_restock_once_and_agree_with_the_final_status(
    server, make_user, login, admin_token, make_product
):
    a, b = make_product(stock=10), make_product(stock=10)
    for round_ in range(4):
        (token,) = buyers_with_carts(make_user, login, [(a, 3), (b, 1)], 1)
        status, order = server.request("POST", "/api/orders", SHIPPING, token)
        assert status == 201, order
        path = f"/api/orders/{order['id']}"
        calls = [
            partial(server.request, "POST", f"{path}/cancel", None, token),
            partial(server.request, "PUT", path, {"status": "cancelled"}, token),
            partial(server.request, "POST", f"{path}/cancel", None, admin_token),
            partial(server.request, "PUT", path, {"status": "cancelled"}, admin_token),
            partial(server.request, "PUT", path, {"status": "processing"}, admin_token),
            partial(server.request, "PUT", path, {"shipping_address": "Racing Road 9"}, token),
        ]
        results = race(calls)
        for status, body in results:
            assert status in (200, 409), (status, body)
        cancels = [status for status, _ in results[:4]]
        final = scalar("SELECT status FROM orders WHERE id = :i", i=order["id"])
        history = [
            row
            for (row,) in db.session.execute(
                text("SELECT status FROM order_status_history WHERE order_id = :i ORDER BY id"),
                {"i": order["id"]},
            )
        ]
        db.session.rollback()
        assert final == "cancelled", (round_, results)
        assert cancels.count(200) == 1, results
        assert history[0] == "pending" and history[-1] == "cancelled"
        assert history.count("cancelled") == 1
        assert (results[4][0] == 200) == ("processing" in history), (results[4], history)
        assert stock(a) == 10 and stock(b) == 10
        assert _ledger_sum(a) == 10 and _ledger_sum(b) == 10


def test_one_key_sent_at_once_by_two_users_and_with_two_bodies(
    server, make_user, login, make_product
):
    """Of one user's three requests with one key (two bodies) one makes the
    order; the others with its body get a 409 (or, once it is done, its
    answer), those with the other body a 422. Another user's same key is
    theirs alone: their own order."""
    product = make_product(stock=50)
    first, second = buyers_with_carts(make_user, login, [(product, 1)], 2)
    key = {"Idempotency-Key": "same-key"}
    other = {"shipping_address": "Another Street 5"}
    sent = [SHIPPING, SHIPPING, other]
    calls = [partial(server.request, "POST", "/api/orders", body, first, key) for body in sent]
    calls.append(partial(server.request, "POST", "/api/orders", SHIPPING, second, key))
    results = race(calls)
    assert results[3][0] == 201, results[3]
    mine = list(zip(results[:3], sent, strict=True))
    made = [(answer, body) for (status, answer), body in mine if status == 201]
    assert made, mine
    won = made[0][1]
    for (status, answer), body in mine:
        if body != won:
            assert (status, answer["code"]) == (422, "idempotency_key_reused"), answer
        elif status == 201:
            assert answer == made[0][0]
            assert answer["shipping_address"] == won["shipping_address"]
        else:
            assert (status, answer["code"]) == (409, "idempotency_in_flight"), answer
    assert scalar("SELECT count(*) FROM orders") == 2
    assert stock(product) == 48
    lost = other if won == SHIPPING else SHIPPING
    status, answer = server.request("POST", "/api/orders", lost, first, key)
    assert (status, answer["code"]) == (422, "idempotency_key_reused")
    assert server.request("POST", "/api/orders", won, first, key) == (201, made[0][0])
    assert server.request("POST", "/api/orders", SHIPPING, second, key) == tuple(results[3])


# --- a random sequence of cart writes against a model ------------------------------


def test_a_random_sequence_of_cart_writes_answers_as_the_contract_says(
    client, buyer, admin_token, make_product
):
    """Adds, quantity changes, removals, clears, checkouts, and the admin's
    price, stock and delete changes in between: each answer's status and the
    cart it shows are compared with a model (lines by product, the current
    price, exact totals); the stock of each product with what was ordered."""
    import random

    _, token = buyer
    rng = random.Random(8)
    prices = ["0.10", "0.01", "19.99", "999999.99", "3.33"]
    products = {}
    for n in range(12):
        made = make_product(price=prices[n % len(prices)], stock=rng.randint(0, 1500))
        products[made.id] = {"price": Decimal(prices[n % len(prices)]), "stock": made.stock}
    lines: dict[int, int] = {}  # product id -> quantity
    line_ids: dict[int, int] = {}  # product id -> line id
    gone_lines: list[int] = []
    ordered = 0
    seen = Counter()
    for step in range(400):
        live = [p for p, v in products.items() if v is not None]
        response = None
        kind = rng.choices(
            ["add", "update", "remove", "stale", "clear", "order", "admin"],
            weights=[8, 4, 2, 1, 1, 2, 3],
        )[0]
        if kind == "add":
            product_id = rng.choice(list(products))
            quantity = rng.choice([1, 2, 5, 300, 999, 1000, 1001])
            response = add_to_cart(client, token, product_id, quantity)
            state = products[product_id]
            if state is None:
                expected = 404
            else:
                total = lines.get(product_id, 0) + quantity
                expected = 409 if total > state["stock"] or total > MAX_LINE_QUANTITY else 201
                if expected == 201:
                    lines[product_id] = total
        elif kind in ("update", "remove") and lines:
            product_id = rng.choice(sorted(lines))
            path = f"/api/cart/{line_ids[product_id]}"
            if kind == "remove":
                response = client.delete(path, headers=auth(token))
                expected = 200
                gone_lines.append(line_ids.pop(product_id))
                del lines[product_id]
            else:
                quantity = rng.choice([1, 3, 1000, 1001])
                response = client.put(path, json={"quantity": quantity}, headers=auth(token))
                state = products[product_id]
                expected = 409 if quantity > min(state["stock"], MAX_LINE_QUANTITY) else 200
                if expected == 200:
                    lines[product_id] = quantity
        elif kind == "stale" and gone_lines:
            line_id = rng.choice(gone_lines)
            if rng.random() < 0.5:
                response = client.delete(f"/api/cart/{line_id}", headers=auth(token))
            else:
                path = f"/api/cart/{line_id}"
                response = client.put(path, json={"quantity": 1}, headers=auth(token))
            expected = 404
        elif kind == "clear":
            response = client.delete("/api/cart/clear", headers=auth(token))
            expected = 200
            gone_lines += line_ids.values()
            lines, line_ids = {}, {}
        elif kind == "order":
            response = place_order(client, token)
            short = [p for p, q in lines.items() if q > products[p]["stock"]]
            expected = 409 if not lines or short else 201
            if expected == 201:
                body = response.get_json()
                want = sum((products[p]["price"] * q for p, q in lines.items()), Decimal(0))
                assert body["total_amount"] == want, step
                assert {i["product_id"]: i["quantity"] for i in body["items"]} == lines
                for p, q in lines.items():
                    products[p]["stock"] -= q
                    ordered += q
                gone_lines += line_ids.values()
                lines, line_ids = {}, {}
        elif kind == "admin" and live:
            product_id = rng.choice(live)
            what = rng.choices(["price", "stock", "delete"], weights=[8, 8, 1])[0]
            path = f"/api/products/{product_id}"
            if what == "delete":
                response = client.delete(path, headers=auth(admin_token))
                expected = 204
                products[product_id] = None
                if product_id in lines:
                    del lines[product_id]
                    gone_lines.append(line_ids.pop(product_id))
            else:
                value = rng.choice(prices) if what == "price" else rng.randint(0, 1200)
                response = client.put(path, json={what: value}, headers=auth(admin_token))
                expected = 200
                products[product_id][what] = Decimal(value) if what == "price" else value
        if response is None:  # nothing of that kind to do now
            continue
        assert response.status_code == expected, (step, kind, response.get_json())
        seen[kind, expected] += 1
        cart = client.get("/api/cart", headers=auth(token)).get_json()
        shown = {item["product_id"]: item["quantity"] for item in cart["items"]}
        assert shown == lines, (step, kind)
        for item in cart["items"]:
            line_ids[item["product_id"]] = item["id"]
            price = products[item["product_id"]]["price"]
            assert item["unit_price"] == price
            assert item["subtotal"] == price * item["quantity"]
            assert item["product"]["stock"] == products[item["product_id"]]["stock"]
        want = sum((products[p]["price"] * q for p, q in lines.items()), Decimal(0))
        assert cart["total"] == want and cart["total_items"] == sum(lines.values())
    assert ordered > 0
    for kind, status in [
        ("add", 201),
        ("add", 409),
        ("add", 404),
        ("update", 200),
        ("order", 201),
        ("order", 409),
        ("stale", 404),
        ("admin", 204),
    ]:
        assert seen[kind, status], (kind, status, seen)


def test_checkouts_cancels_and_moves_sharing_products_never_deadlock_or_drift(
    server, make_user, login, admin_token, make_product
):
    """Buyers checking out overlapping products (in different orders in their
    carts) while earlier orders are cancelled by their owners and moved by the
    admin: no 5xx (a deadlock is a 503), and every product's stock equals its
    initial stock less what non-cancelled orders hold, as its ledger says."""
    products = [make_product(stock=40) for _ in range(4)]
    a, b, c, d = products
    carts = [[(a, 2), (d, 1)], [(d, 2), (b, 1)], [(c, 1), (a, 1), (b, 1)], [(b, 3), (c, 2)]]
    tokens = []
    for lines in carts * 2:
        tokens += buyers_with_carts(make_user, login, lines, 1)
    first = [server.request("POST", "/api/orders", SHIPPING, t) for t in tokens]
    assert all(status == 201 for status, _ in first), first
    again = buyers_with_carts(make_user, login, carts[0] + [(c, 1)], 1) + buyers_with_carts(
        make_user, login, [(c, 2), (b, 2), (a, 1)], 3
    )
    calls = [lambda t=t: server.request("POST", "/api/orders", SHIPPING, t) for t in again]
    for n, (token, (_, order)) in enumerate(zip(tokens, first, strict=True)):
        path = f"/api/orders/{order['id']}"
        if n % 3 == 0:
            calls.append(lambda p=path, t=token: server.request("POST", f"{p}/cancel", None, t))
        elif n % 3 == 1:
            calls.append(
                lambda p=path: server.request("PUT", p, {"status": "processing"}, admin_token)
            )
        else:
            calls.append(
                lambda p=path: server.request("PUT", p, {"status": "cancelled"}, admin_token)
            )
    results = race(calls)
    for status, body in results:
        assert status in (200, 201), (status, body)
    for product in products:
        held = scalar(
            "SELECT coalesce(sum(i.quantity), 0) FROM order_items i JOIN orders o "
            "ON o.id = i.order_id WHERE o.status <> 'cancelled' AND i.product_id = :p",
            p=product.id,
        )
        assert stock(product) + held == 40
        assert _ledger_sum(product) == stock(product)


def test_a_product_deleted_while_its_line_is_checked_out_is_ordered_whole_or_not_at_all(
    server, make_user, login, admin_token, make_product
):
    for _ in range(6):
        kept, doomed = make_product(stock=5), make_product(stock=5)
        (token,) = buyers_with_carts(make_user, login, [(kept, 1), (doomed, 2)], 1)
        (checkout, order), (deleted, _) = race(
            [
                lambda t=token: server.request("POST", "/api/orders", SHIPPING, t),
                lambda p=doomed: server.request(
                    "DELETE", f"/api/products/{p.id}", None, admin_token
                ),
            ]
        )
        assert (checkout, deleted) == (201, 204), order
        lines = {item["product_id"]: item["quantity"] for item in order["items"]}
        assert lines in ({kept.id: 1}, {kept.id: 1, doomed.id: 2}), lines
        assert stock(doomed) == 5 - lines.get(doomed.id, 0) == _ledger_sum(doomed)
        assert stock(kept) == 4 == _ledger_sum(kept)
        assert scalar("SELECT count(*) FROM cart_items") == 0


# --- Idempotency-Key: reuse and expiry --------------------------------------------


def _age_keys(hours: float) -> None:
    db.session.execute(update(IdempotencyKey).values(created_at=utcnow() - timedelta(hours=hours)))
    db.session.commit()


def test_a_key_replays_for_its_whole_day_and_is_new_after_it(client, buyer, make_product):
    _, token = buyer
    product = make_product(stock=10)
    key = {"Idempotency-Key": "daily"}
    other = {"shipping_address": "Another Street 5"}
    fill_cart(client, token, (product, 1))
    first = place_order(client, token, **key)
    assert first.status_code == 201
    _age_keys(23.9)
    fill_cart(client, token, (product, 2))
    replay = place_order(client, token, **key)
    assert replay.status_code == 201 and replay.headers["Idempotent-Replayed"] == "true"
    assert replay.get_data() == first.get_data()
    reused = place_order(client, token, other, **key)
    assert reused.status_code == 422
    assert reused.get_json()["code"] == "idempotency_key_reused"
    assert "Idempotency-Key" in reused.get_json()["errors"]
    assert scalar("SELECT count(*) FROM orders") == 1 and stock(product) == 9
    _age_keys(24.1)
    fresh = place_order(client, token, other, **key)
    assert fresh.status_code == 201, fresh.get_json()
    assert "Idempotent-Replayed" not in fresh.headers
    assert fresh.get_json()["shipping_address"] == other["shipping_address"]
    assert [i["quantity"] for i in fresh.get_json()["items"]] == [2]
    assert scalar("SELECT count(*) FROM orders") == 2 and stock(product) == 7
    again = place_order(client, token, other, **key)
    assert again.get_data() == fresh.get_data()
    assert scalar("SELECT count(*) FROM idempotency_keys") == 1


def test_a_key_means_the_same_request_whatever_the_bodys_spelling(client, buyer, make_product):
    _, token = buyer
    fill_cart(client, token, (make_product(stock=10), 1))
    headers = {**auth(token), "Idempotency-Key": "spelled"}
    first = client.post(
        "/api/orders",
        data='{"shipping_address": "221B Baker Street, London"}',
        content_type="application/json",
        headers=headers,
    )
    assert first.status_code == 201
    for body in (
        '{ "shipping_address" :"221B Baker Street, London" }\n',
        '{"shipping_address": "221B Baker Street, \\u004condon"}',
    ):
        again = client.post(
            "/api/orders", data=body, content_type="application/json", headers=headers
        )
        assert again.status_code == 201 and again.get_data() == first.get_data()
    assert scalar("SELECT count(*) FROM orders") == 1
