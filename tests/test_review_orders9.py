"""Review round 9 (orders): what the earlier rounds left open, probed on
SQLite and PostgreSQL. Pinned here: bad list parameters on both lists, pages
of orders placed at one instant, the order's own currency and prices in every
read, checkout's edges (stock exactly taken, stock gone, bodies that are no
address), every status move by the admin, the owner and a stranger with its
history, emails and ledger, the address change in every status for the owner
and the admin, and the OpenAPI document naming the 409 codes the order routes
answer (it named only the workflow's: fixed)."""

from __future__ import annotations

from decimal import Decimal

import pytest
from sqlalchemy import text

from app.extensions import db
from app.models.product import STOCK_COLUMN_MAX
from tests.helpers import SHIPPING, auth, fill_cart, order_for, place_order, scalar, stock
from tests.test_orders import ALLOWED, PATH_TO, STATUSES


def rows(sql: str, **params) -> list[tuple]:
    with db.engine.connect() as conn:
        return [tuple(row) for row in conn.execute(text(sql), params)]


def emails_to(user) -> list[str]:
    return [
        topic
        for (topic,) in rows(
            "SELECT topic FROM outbox WHERE kind = 'email' AND recipient = :r ORDER BY id",
            r=user.email,
        )
    ]


def ledger(product) -> list[tuple]:
    return rows(
        "SELECT reason, delta FROM stock_movements WHERE product_id = :p ORDER BY id", p=product.id
    )


def history(order_id: int) -> list[str]:
    return [
        status
        for (status,) in rows(
            "SELECT status FROM order_status_history WHERE order_id = :o ORDER BY id", o=order_id
        )
    ]


@pytest.fixture
def order_in(client, make_user, login, make_product, admin_token):
    """An order of 2 units (of a product of 10) moved by the admin to
    `status`; (order id, product, owner, owner's token)."""

    def make(status: str):
        product = make_product(stock=10)
        user = make_user()
        token = login(user)["access_token"]
        order = order_for(client, token, (product, 2))
        for step in PATH_TO[status]:
            response = client.put(
                f"/api/orders/{order['id']}", json={"status": step}, headers=auth(admin_token)
            )
            assert response.status_code == 200, response.get_json()
        return order["id"], product, user, token

    return make


# --- lists ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "query",
    [
        "per_page=x",
        "per_page=-1",
        "per_page=0",
        "per_page=",
        "page=0",
        "page=1.5",
        "page=",
        "page=2147483648",
        "page=99999999999999999999",
        "page=%EF%BC%91",  # a fullwidth digit one
        "status=PENDING",
        "status=",
        "status=%00",
        "all=TRUE",
        "all=1",
        "all=",
    ],
)
def test_a_malformed_list_parameter_is_a_422_on_both_order_lists(client, buyer, admin_token, query):
    user, token = buyer
    lists = [("/api/orders", token), ("/api/orders?x=1", admin_token)]
    if not query.startswith("all"):  # the user's list has no `all`: ignored there
        lists += [
            ("/api/orders?all=true", admin_token),
            (f"/api/orders/user/{user.id}", admin_token),
        ]
    for path, who in lists:
        separator = "&" if "?" in path else "?"
        response = client.get(f"{path}{separator}{query}", headers=auth(who))
        assert response.status_code == 422, (path, query, response.get_json())
        body = response.get_json()
        assert body["code"] == "validation_failed"
        assert set(body["errors"]) == {query.partition("=")[0]}


def test_list_parameters_at_their_bounds_and_unknown_ones(client, admin_token, order_in):
    order_id, _, user, token = order_in("pending")
    lists = [
        ("/api/orders?", token),
        ("/api/orders?all=true&", admin_token),
        (f"/api/orders/user/{user.id}?", admin_token),
    ]
    for path, who in lists:
        for query, (page, per_page, count) in {
            "page=2147483647&per_page=100": (2147483647, 100, 0),
            "per_page=" + "9" * 5000: (1, 100, 1),
            "per_page=1000": (1, 100, 1),
            "page=1&per_page=1": (1, 1, 1),  # `+1`, `01`: a 422 (test_review_query9)
            "sort=-id&user_id=999&from=yesterday&_=123": (1, 20, 1),  # ignored
        }.items():
            response = client.get(path + query, headers=auth(who))
            assert response.status_code == 200, (path, query, response.get_json())
            body = response.get_json()
            assert (body["page"], body["per_page"], len(body["items"])) == (page, per_page, count)
            assert (body["total"], body["pages"]) == (1, 1)
            assert [o["id"] for o in body["items"]] == [order_id] * count


def test_orders_placed_at_one_instant_page_by_id_with_no_row_twice_or_missed(
    client, make_user, login, make_product, admin_token
):
    product = make_product(stock=100)
    user = make_user()
    token = login(user)["access_token"]
    ids = [order_for(client, token, (product, 1))["id"] for _ in range(7)]
    other = login(make_user())["access_token"]
    others = [order_for(client, other, (product, 1))["id"] for _ in range(2)]
    db.session.execute(text("UPDATE orders SET created_at = (SELECT min(created_at) FROM orders)"))
    db.session.commit()

    def walk(path, who, per_page):
        seen, n = [], 1
        while True:
            body = client.get(f"{path}per_page={per_page}&page={n}", headers=auth(who)).get_json()
            if not body["items"]:
                assert n == body["pages"] + 1
                return seen
            seen += [o["id"] for o in body["items"]]
            n += 1

    assert walk("/api/orders?", token, 2) == ids[::-1]
    assert walk(f"/api/orders/user/{user.id}?", admin_token, 3) == ids[::-1]
    assert walk("/api/orders?status=pending&", token, 4) == ids[::-1]
    assert walk("/api/orders?all=true&", admin_token, 2) == sorted(ids + others, reverse=True)


# --- what an order keeps ------------------------------------------------------------


def test_every_read_shows_the_orders_own_prices_names_and_currency(
    client, app, admin_token, order_in
):
    """After its products are repriced, renamed or deleted and the shop's
    currency changes, the detail and the three lists show each order exactly
    as placed (same JSON, byte for byte)."""
    made = [order_in(status) for status in STATUSES]
    placed = {}
    for order_id, product, _, token in made:
        placed[order_id] = client.get(f"/api/orders/{order_id}", headers=auth(token)).get_json()
        assert placed[order_id]["currency"] == "USD"
        assert placed[order_id]["total_amount"] == Decimal("20.00")
        response = client.put(
            f"/api/products/{product.id}",
            json={"name": "Renamed", "price": "3.33"},
            headers=auth(admin_token),
        )
        assert response.status_code == 200
    client.delete(f"/api/products/{made[0][1].id}", headers=auth(admin_token))
    app.config["SHOP_CURRENCY"] = "EUR"
    try:
        everyone = client.get("/api/orders?all=true&per_page=100", headers=auth(admin_token))
        for order_id, _product, user, token in made:
            detail = client.get(f"/api/orders/{order_id}", headers=auth(token))
            body = detail.get_json()
            assert body == placed[order_id]
            assert body["currency"] == "USD"
            assert [(i["product_name"], i["unit_price"]) for i in body["items"]] == [
                (placed[order_id]["items"][0]["product_name"], Decimal("10.00"))
            ]
            assert body["items"][0]["product_name"] != "Renamed"
            raw = detail.get_data(as_text=True).strip()
            assert '"total_amount":20.00' in raw.replace(" ", "")
            for path, who in (
                ("/api/orders", token),
                (f"/api/orders/user/{user.id}", admin_token),
            ):
                listed = client.get(path, headers=auth(who))
                assert listed.get_json()["items"] == [body]
                assert raw in listed.get_data(as_text=True)
            assert [o for o in everyone.get_json()["items"] if o["id"] == order_id] == [body]
    finally:
        app.config["SHOP_CURRENCY"] = "USD"


FORM, JSON = "application/x-www-form-urlencoded", "application/json"


# --- checkout -------------------------------------------------------------------------


def test_checkout_takes_the_stock_exactly_and_refuses_a_line_whose_stock_is_gone(
    client, buyer, make_product
):
    _, token = buyer
    exact = make_product(stock=3)
    order = order_for(client, token, (exact, 3))
    assert order["items"][0]["quantity"] == 3 and stock(exact) == 0
    assert ledger(exact) == [("created", 3), ("order", -3)]

    kept = make_product(stock=5)
    zeroed = make_product(name="Zeroed", stock=2)
    fill_cart(client, token, (kept, 1), (zeroed, 1))
    db.session.execute(text("UPDATE products SET stock = 0 WHERE id = :i"), {"i": zeroed.id})
    db.session.commit()
    response = place_order(client, token)
    assert response.status_code == 409
    body = response.get_json()
    assert body["code"] == "out_of_stock" and "Zeroed" in body["message"]
    assert body["details"] == {"product_id": zeroed.id, "available": 0}
    assert stock(kept) == 5 and stock(zeroed) == 0
    cart = client.get("/api/cart", headers=auth(token)).get_json()
    assert sorted(line["product_id"] for line in cart["items"]) == [kept.id, zeroed.id]
    assert scalar("SELECT count(*) FROM orders") == 1


@pytest.mark.parametrize(
    ("request_kwargs", "status", "code", "field"),
    [
        ({"data": ""}, 422, "validation_failed", "shipping_address"),
        ({"data": "", "content_type": "application/json"}, 422, "validation_failed", None),
        ({"data": "null", "content_type": "application/json"}, 422, "validation_failed", None),
        ({"data": "[]", "content_type": "application/json"}, 422, "validation_failed", None),
        ({"data": "{", "content_type": "application/json"}, 400, "invalid_json", None),
        (
            {"data": "shipping_address=Abbey+Road+3", "content_type": FORM},
            415,
            "unsupported_media_type",
            None,
        ),
        ({"data": "x", "content_type": "text/plain"}, 415, "unsupported_media_type", None),
        ({"json": {"shipping_address": None}}, 422, "validation_failed", "shipping_address"),
        ({"json": {"shipping_address": "x" * 10_000}}, 422, "validation_failed", None),
        ({"json": {"shipping_address": "Abbey\x1b[2J Road"}}, 422, "validation_failed", None),
        ({"json": {"shipping_address": "\u200b" * 6}}, 422, "validation_failed", None),
        ({"json": {"shipping_address": " \n\t \r\n "}}, 422, "validation_failed", None),
        (
            {"data": '{"shipping_address": "Abbey \\ud800 Road"}', "content_type": JSON},
            422,
            "validation_failed",
            "shipping_address",
        ),
        ({"json": {**SHIPPING, "items": []}}, 422, "validation_failed", "items"),
        ({"json": {**SHIPPING, "currency": "EUR"}}, 422, "validation_failed", "currency"),
    ],
)
def test_a_checkout_body_that_is_no_valid_address_changes_nothing(
    client, buyer, make_product, request_kwargs, status, code, field
):
    _, token = buyer
    product = make_product(stock=5)
    fill_cart(client, token, (product, 2))
    response = client.post("/api/orders", headers=auth(token), **request_kwargs)
    assert response.status_code == status, response.get_json()
    body = response.get_json()
    assert body["code"] == code
    if status == 422:
        assert set(body["errors"]) <= {"shipping_address", "_schema", "items", "currency"}
        assert body["errors"]
    if field is not None:
        assert field in body["errors"]
    assert stock(product) == 5 and scalar("SELECT count(*) FROM orders") == 0
    assert len(client.get("/api/cart", headers=auth(token)).get_json()["items"]) == 1


# --- the workflow ---------------------------------------------------------------------

EMAIL_OF = {
    "processing": "order_processing",
    "shipped": "order_shipped",
    "delivered": "order_delivered",
    "cancelled": "order_cancelled",
}


@pytest.mark.parametrize("current", STATUSES)
def test_every_status_move_by_admin_owner_and_stranger_answers_and_records_as_documented(
    client, make_user, login, admin_token, order_in, current
):
    """Each (current, new) pair by PUT: the answer and its code, then the
    history (one event per move made), the emails (exactly one, of the new
    status, per move made; none for a refused one) and the ledger (a `cancel`
    movement putting the 2 units back only on a cancel)."""
    stranger = login(make_user())["access_token"]
    for new in STATUSES:
        for who in ("admin", "owner", "stranger"):
            order_id, product, user, token = order_in(current)
            headers = auth({"admin": admin_token, "owner": token, "stranger": stranger}[who])
            emails, moves, events = emails_to(user), ledger(product), history(order_id)
            response = client.put(f"/api/orders/{order_id}", json={"status": new}, headers=headers)
            body = response.get_json()
            if who == "stranger":
                expected = (404, "not_found")
            elif who == "owner" and new != "cancelled":
                expected = (403, "forbidden")
            elif (current, new) in ALLOWED:
                expected = (200, None)
            else:
                expected = (409, "invalid_transition")
            assert (response.status_code, body.get("code")) == expected, (current, new, who)
            if expected[0] == 409:
                assert body["details"] == {"from": current, "to": new}
            moved = expected[0] == 200
            assert history(order_id) == events + ([new] if moved else [])
            assert emails_to(user) == emails + ([EMAIL_OF[new]] if moved else [])
            restocked = moved and new == "cancelled"
            assert ledger(product) == moves + ([("cancel", 2)] if restocked else [])
            assert stock(product) == 8 + (2 if restocked or current == "cancelled" else 0)
            status = scalar("SELECT status FROM orders WHERE id = :i", i=order_id)
            assert status == (new if moved else current)
            if moved:
                assert [e["status"] for e in body["status_history"]] == history(order_id)
                assert body["status_history"][-1]["at"] == body["updated_at"]


def test_a_cancel_after_the_product_was_deleted_restocks_it_and_keeps_it_hidden(
    client, buyer, admin_token, make_product
):
    _, token = buyer
    gone = make_product(name="Gone soon", stock=5, price="2.50")
    kept = make_product(stock=5, price="1.00")
    order = order_for(client, token, (gone, 2), (kept, 1))
    assert client.delete(f"/api/products/{gone.id}", headers=auth(admin_token)).status_code == 204
    response = client.post(f"/api/orders/{order['id']}/cancel", headers=auth(token))
    assert response.status_code == 200, response.get_json()
    assert response.get_json()["items"] == order["items"]
    assert response.get_json()["total_amount"] == Decimal("6.00")
    assert stock(gone) == 5 and stock(kept) == 5
    assert ledger(gone)[-1] == ("cancel", 2) and ledger(kept)[-1] == ("cancel", 1)
    assert client.get(f"/api/products/{gone.id}").status_code == 404


# --- the address ----------------------------------------------------------------------


@pytest.mark.parametrize("current", STATUSES)
def test_the_address_changes_only_while_pending_by_the_owner_or_an_admin(
    client, admin_token, order_in, current
):
    for who in ("owner", "admin"):
        order_id, _, user, token = order_in(current)
        headers = auth(admin_token if who == "admin" else token)
        before = client.get(f"/api/orders/{order_id}", headers=headers).get_json()
        emails = emails_to(user)
        response = client.put(
            f"/api/orders/{order_id}", json={"shipping_address": "New Road 55"}, headers=headers
        )
        body = response.get_json()
        if current == "pending":
            assert response.status_code == 200, body
            assert body["shipping_address"] == "New Road 55"
            assert body["status_history"] == before["status_history"]
            assert body["updated_at"] > before["updated_at"]
        else:
            assert response.status_code == 409, body
            assert body["code"] == "order_not_pending"
            assert client.get(f"/api/orders/{order_id}", headers=headers).get_json() == before
        assert emails_to(user) == emails  # an address change sends nothing
        assert history(order_id) == [e["status"] for e in before["status_history"]]


@pytest.mark.parametrize(
    "address",
    [
        "",
        "abcd",
        "     ",
        " \t\n\r ",
        "\u200b\u2060\u200b\u2060\u200b",
        "x" * 501,
        "x" * 10_000,
        "Main\x07 Street 1",
        "Main\x00 Street 1",
        "Main\x7f Street 1",
        None,
        12345,
        ["Main St 1"],
    ],
)
def test_a_bad_address_change_is_a_422_for_owner_and_admin_and_changes_nothing(
    client, admin_token, order_in, address
):
    order_id, _, _, token = order_in("pending")
    for who in (token, admin_token):
        response = client.put(
            f"/api/orders/{order_id}", json={"shipping_address": address}, headers=auth(who)
        )
        assert response.status_code == 422, (address, response.get_json())
        body = response.get_json()
        assert body["code"] == "validation_failed" and "shipping_address" in body["errors"]
    assert (
        scalar("SELECT shipping_address FROM orders WHERE id = :i", i=order_id)
        == SHIPPING["shipping_address"]
    )


def test_an_address_change_and_a_cancel_together_apply_both_or_neither(
    client, admin_token, order_in
):
    order_id, product, _, token = order_in("pending")
    both = {"shipping_address": "Last Lane 7", "status": "cancelled"}
    response = client.put(f"/api/orders/{order_id}", json=both, headers=auth(token))
    assert response.status_code == 200, response.get_json()
    assert response.get_json()["shipping_address"] == "Last Lane 7"
    assert history(order_id) == ["pending", "cancelled"] and stock(product) == 10
    order_id, product, _, token = order_in("processing")
    for who in (token, admin_token):
        response = client.put(f"/api/orders/{order_id}", json=both, headers=auth(who))
        assert response.status_code == 409 and response.get_json()["code"] == "order_not_pending"
    assert history(order_id) == ["pending", "processing"] and stock(product) == 8


# --- the OpenAPI document ---------------------------------------------------------------


def test_the_documents_409s_of_the_order_routes_name_every_code_they_answer(
    client, admin_token, order_in
):
    """Each 409 code produced here through the API is named in the OpenAPI
    description of that operation's 409: none was named (checkout's said
    "Empty cart, not enough stock"; PUT's only the workflow's, though it also
    answers `order_not_pending` and `stock_limit`)."""
    answered: dict[tuple[str, str], set[str]] = {}

    def call(method, path_template, order_id, body=None, who=None):
        response = getattr(client, method)(
            path_template.replace("{order_id}", str(order_id)), json=body, headers=auth(who)
        )
        assert response.status_code == 409, response.get_json()
        answered.setdefault((method, path_template), set()).add(response.get_json()["code"])

    put, cancel = "/api/orders/{order_id}", "/api/orders/{order_id}/cancel"
    order_id, product, _, token = order_in("shipped")
    call("post", "/api/orders", order_id, SHIPPING, token)  # empty_cart
    fill_cart(client, token, (product, 8))
    db.session.execute(text("UPDATE products SET stock = 7 WHERE id = :i"), {"i": product.id})
    db.session.commit()
    call("post", "/api/orders", order_id, SHIPPING, token)  # out_of_stock
    call("put", put, order_id, {"status": "pending"}, admin_token)
    call("put", put, order_id, {"shipping_address": "Late Lane 1"}, token)
    call("post", cancel, order_id, None, token)
    for method, path in (("put", put), ("post", cancel)):
        order_id, product, _, token = order_in("pending")
        db.session.execute(
            text("UPDATE products SET stock = :s WHERE id = :i"),
            {"s": STOCK_COLUMN_MAX - 1, "i": product.id},
        )
        db.session.commit()
        call(method, path, order_id, {"status": "cancelled"} if method == "put" else None, token)
        assert scalar("SELECT status FROM orders WHERE id = :i", i=order_id) == "pending"
    assert answered == {
        ("post", "/api/orders"): {"empty_cart", "out_of_stock"},
        ("put", put): {"invalid_transition", "order_not_pending", "stock_limit"},
        ("post", cancel): {"invalid_transition", "stock_limit"},
    }
    document = client.get("/api/openapi.json").get_json()
    for (method, path), codes in answered.items():
        description = document["paths"][path][method]["responses"]["409"]["description"]
        for code in codes:
            assert f"`{code}`" in description, (method, path, code, description)


@pytest.mark.parametrize("current", STATUSES)
def test_the_cancel_route_by_admin_owner_and_stranger_records_one_cancel_or_nothing(
    client, make_user, login, admin_token, order_in, current
):
    stranger = login(make_user())["access_token"]
    for who in ("admin", "owner", "stranger"):
        order_id, product, user, token = order_in(current)
        headers = auth({"admin": admin_token, "owner": token, "stranger": stranger}[who])
        emails, moves, events = emails_to(user), ledger(product), history(order_id)
        response = client.post(f"/api/orders/{order_id}/cancel", headers=headers)
        if who == "stranger":
            expected = (404, "not_found")
        elif current in ("pending", "processing"):
            expected = (200, None)
        else:
            expected = (409, "invalid_transition")
        assert (response.status_code, response.get_json().get("code")) == expected, (current, who)
        moved = expected[0] == 200
        assert history(order_id) == events + (["cancelled"] if moved else [])
        assert emails_to(user) == emails + (["order_cancelled"] if moved else [])
        assert ledger(product) == moves + ([("cancel", 2)] if moved else [])
        if moved:
            again = client.post(f"/api/orders/{order_id}/cancel", headers=headers)
            assert again.status_code == 409
            assert again.get_json()["details"] == {"from": "cancelled", "to": "cancelled"}
            assert ledger(product) == [*moves, ("cancel", 2)] and stock(product) == 10
            assert emails_to(user) == [*emails, "order_cancelled"]
