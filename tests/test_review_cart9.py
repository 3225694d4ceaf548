"""Review (cart, round 9): what the earlier cart tests leave out, on SQLite
and PostgreSQL.

Already pinned elsewhere, not repeated here: the current price and an exact
total after a price change (test_review_orders8), a deleted product's line
gone from the cart and from checkout (test_review_orders8, test_products),
quantities 0, negative, past INT4, strings, 2.0, booleans
(test_cart, test_review_orders8), a huge addition to a full line
(test_review_orders8), 100 lines of 0.01 / 999999.99 at 1000 units
(test_review_orders8), GET's query count flat in its lines (test_cart,
test_round_trips), a GET's no-store and no ETag for two users
(test_catalog_cache), another user's and a removed line's ids
(test_cart, test_review_cart4), racing adds of one product through
gunicorn with a cart already made (test_races, test_cart)."""

from __future__ import annotations

from collections import Counter
from decimal import Decimal

import pytest

from app.models.cart import MAX_LINE_QUANTITY
from tests.helpers import add_to_cart, auth, fill_cart, place_order, race, scalar, stock
from tests.test_races import server  # noqa: F401 - the module's gunicorn, as test_races has it


def _cart(client, token) -> dict:
    response = client.get("/api/cart", headers=auth(token))
    assert response.status_code == 200, response.get_json()
    return response.get_json()


def _set_stock(client, admin_token, product, value: int) -> None:
    response = client.put(
        f"/api/products/{product.id}", json={"stock": value}, headers=auth(admin_token)
    )
    assert response.status_code == 200, response.get_json()


# --- the cart after its products change -----------------------------------------------


def test_a_line_above_the_stock_left_is_shown_as_it_is_until_the_buyer_or_a_restock_mends_it(
    client, user_token, admin_token, make_product
):
    """Stock sold elsewhere falls below a line: GET shows the line whole,
    with the product's `stock` beside it and the total at the current
    price; checkout is the 409 naming the product and what is left, and
    changes nothing; the line may not be raised nor kept above the stock,
    and is ordered whole once the stock is back (API.md, Cart and Orders)."""
    lamp = make_product(name="Desk Lamp", price="12.50", stock=5)
    mug = make_product(price="0.10", stock=5)
    fill_cart(client, user_token, (lamp, 4), (mug, 3))
    _set_stock(client, admin_token, lamp, 1)
    cart = _cart(client, user_token)
    shown = {line["product_id"]: line for line in cart["items"]}
    assert shown[lamp.id]["quantity"] == 4 and shown[lamp.id]["product"]["stock"] == 1
    assert shown[lamp.id]["subtotal"] == Decimal("50.00")
    assert cart["total"] == Decimal("50.30") and cart["total_items"] == 7

    refused = place_order(client, user_token)
    assert refused.status_code == 409, refused.get_json()
    body = refused.get_json()
    assert body["code"] == "out_of_stock" and "Desk Lamp" in body["message"]
    assert body["details"] == {"product_id": lamp.id, "available": 1}
    assert _cart(client, user_token)["items"] == cart["items"]
    assert (stock(lamp), stock(mug)) == (1, 5)
    assert scalar("SELECT count(*) FROM orders") == 0

    line = shown[lamp.id]["id"]
    for change in (
        lambda: add_to_cart(client, user_token, lamp.id, 1),
        lambda: client.put(f"/api/cart/{line}", json={"quantity": 2}, headers=auth(user_token)),
    ):
        response = change()
        assert response.status_code == 409, response.get_json()
        assert response.get_json()["details"] == {"product_id": lamp.id, "available": 1}
    assert _cart(client, user_token)["items"] == cart["items"]

    _set_stock(client, admin_token, lamp, 0)
    zero = _cart(client, user_token)
    assert [line["product"]["stock"] for line in zero["items"]] == [0, 5]
    assert place_order(client, user_token).get_json()["details"]["available"] == 0

    _set_stock(client, admin_token, lamp, 9)  # restocked: the same line, ordered whole
    assert [line["id"] for line in _cart(client, user_token)["items"]] == [
        line["id"] for line in cart["items"]
    ]
    placed = place_order(client, user_token)
    assert placed.status_code == 201, placed.get_json()
    ordered = {item["product_id"]: item["quantity"] for item in placed.get_json()["items"]}
    assert ordered == {lamp.id: 4, mug.id: 3}
    assert placed.get_json()["total_amount"] == Decimal("50.30")
    assert (stock(lamp), stock(mug)) == (5, 2)


def test_a_line_lowered_to_the_stock_left_is_accepted(
    client, user_token, admin_token, make_product
):
    product = make_product(price="3.33", stock=10)
    fill_cart(client, user_token, (product, 6))
    [line] = _cart(client, user_token)["items"]
    _set_stock(client, admin_token, product, 2)
    response = client.put(f"/api/cart/{line['id']}", json={"quantity": 2}, headers=auth(user_token))
    assert response.status_code == 200, response.get_json()
    assert response.get_json()["total"] == Decimal("6.66")
    assert place_order(client, user_token).status_code == 201
    assert stock(product) == 0


def test_a_deleted_product_leaves_every_cart_and_its_line_ids_name_nothing(
    client, make_user, login, admin_token, make_product
):
    gone = make_product(price="999999.99", stock=50)
    kept = make_product(price="0.01", stock=50)
    tokens = [login(make_user())["access_token"] for _ in range(2)]
    lines = {}
    for n, token in enumerate(tokens):
        fill_cart(client, token, (gone, n + 1), (kept, 3))
        cart = _cart(client, token)
        lines[token] = {line["product_id"]: line["id"] for line in cart["items"]}
    assert client.delete(f"/api/products/{gone.id}", headers=auth(admin_token)).status_code == 204
    for token in tokens:
        cart = _cart(client, token)
        assert [(line["product_id"], line["quantity"]) for line in cart["items"]] == [(kept.id, 3)]
        assert cart["total"] == Decimal("0.03") and cart["total_items"] == 3
        stale = lines[token][gone.id]
        put = client.put(f"/api/cart/{stale}", json={"quantity": 1}, headers=auth(token))
        assert (put.status_code, put.get_json()["code"]) == (404, "not_found")
        assert client.delete(f"/api/cart/{stale}", headers=auth(token)).status_code == 404
        added = add_to_cart(client, token, gone.id, 1)
        assert (added.status_code, added.get_json()) == (
            404,
            {"code": "not_found", "message": "Product not found"},
        )
        assert _cart(client, token) == cart
    assert scalar("SELECT count(*) FROM cart_items WHERE product_id = :p", p=gone.id) == 0


# --- ids in the path ------------------------------------------------------------------


@pytest.mark.parametrize(
    "item_id",
    ["0", "-1", "2147483648", str(10**30), "9" * 5000, "1.0", "1e3", "abc", "%20", "\u0661"],
)
def test_a_line_id_that_names_no_line_is_a_json_404(client, user_token, make_product, item_id):
    product = make_product(stock=5)
    fill_cart(client, user_token, (product, 2))
    before = _cart(client, user_token)
    for method, body in (("put", {"quantity": 1}), ("delete", None)):
        response = getattr(client, method)(
            f"/api/cart/{item_id}", json=body, headers=auth(user_token)
        )
        assert response.status_code == 404, (method, item_id, response.status_code)
        assert response.get_json()["code"] == "not_found"
        assert response.headers["Cache-Control"] == "no-store"
    assert _cart(client, user_token) == before


def test_the_largest_id_is_looked_up_and_is_a_404(client, user_token, make_product):
    fill_cart(client, user_token, (make_product(), 1))
    for method, body in (("put", {"quantity": 1}), ("delete", None)):
        response = getattr(client, method)(
            "/api/cart/2147483647", json=body, headers=auth(user_token)
        )
        assert response.status_code == 404
        assert response.get_json() == {"code": "not_found", "message": "Cart item not found"}


# --- HTTP caching ---------------------------------------------------------------------


def test_every_cart_answer_is_no_store_without_validators(
    client, user_token, admin_token, make_product
):
    """Writes and errors too, HEAD and a conditional GET: the cart is
    private, never a 304, never an ETag, never the catalog's `no-cache`."""
    product = make_product(stock=3)
    assert client.get(f"/api/products/{product.id}").headers["Cache-Control"] == "no-cache"
    added = add_to_cart(client, user_token, product.id, 1)
    line = added.get_json()["items"][0]["id"]
    answers = {
        "add": added,
        "get": client.get("/api/cart", headers=auth(user_token)),
        "head": client.head("/api/cart", headers=auth(user_token)),
        "conditional": client.get("/api/cart", headers={**auth(user_token), "If-None-Match": "*"}),
        "put": client.put(f"/api/cart/{line}", json={"quantity": 2}, headers=auth(user_token)),
        "409": add_to_cart(client, user_token, product.id, 5),
        "422": add_to_cart(client, user_token, product.id, 0),
        "404": add_to_cart(client, user_token, 10**6),
        "401": client.get("/api/cart"),
        "delete": client.delete(f"/api/cart/{line}", headers=auth(user_token)),
        "clear": client.delete("/api/cart/clear", headers=auth(user_token)),
    }
    expected = {"add": 201, "409": 409, "422": 422, "404": 404, "401": 401}
    for name, response in answers.items():
        assert response.status_code == expected.get(name, 200), (name, response.status_code)
        assert response.headers["Cache-Control"] == "no-store", name
        assert "ETag" not in response.headers and "Last-Modified" not in response.headers, name
    assert answers["conditional"].get_json() == answers["get"].get_json()
    assert answers["conditional"].get_json()["items"][0]["quantity"] == 1


# --- racing adds through gunicorn -----------------------------------------------------


def _cartless(db, make_user, login) -> tuple[int, str]:
    """A user whose cart is not made yet (the cart is made on first use)."""
    user = make_user()
    db.session.execute(db.text("DELETE FROM carts WHERE user_id = :u"), {"u": user.id})
    db.session.commit()
    return user.id, login(user)["access_token"]


@pytest.mark.server
def test_racing_first_adds_and_reads_at_the_stock_edge_make_one_cart_and_one_line(
    server,  # noqa: F811
    db,
    make_user,
    login,
    make_product,
):
    """The user has no cart row yet: 12 adds of 3 units of a product with 20
    in stock race 4 first reads of the cart. One cart, one line of 18, six
    201s and six 409s naming the 20 left, every read a 200 (never a 500, a
    second cart or a second line)."""
    product = make_product(price="0.10", stock=20)
    user_id, token = _cartless(db, make_user, login)
    body = {"product_id": product.id, "quantity": 3}
    calls = [lambda: server.request("POST", "/api/cart", body, token) for _ in range(12)]
    calls += [lambda: server.request("GET", "/api/cart", None, token) for _ in range(4)]
    results = race(calls)
    adds, reads = results[:12], results[12:]
    assert Counter(status for status, _ in adds) == {201: 6, 409: 6}, adds
    for status, answer in adds:
        if status == 409:
            assert answer["code"] == "out_of_stock", answer
            assert answer["details"] == {"product_id": product.id, "available": 20}
    assert {status for status, _ in reads} == {200}, reads
    assert scalar("SELECT count(*) FROM carts WHERE user_id = :u", u=user_id) == 1
    assert len({answer["id"] for _, answer in reads + adds if "id" in answer}) == 1
    assert scalar("SELECT count(*) FROM cart_items") == 1
    assert scalar("SELECT quantity FROM cart_items") == 18
    status, cart = server.request("GET", "/api/cart", None, token)
    assert status == 200 and cart["total"] == 1.8 and cart["total_items"] == 18


@pytest.mark.server
def test_racing_adds_past_the_line_maximum_stop_at_it(
    server,  # noqa: F811
    db,
    make_user,
    login,
    make_product,
):
    product = make_product(stock=MAX_LINE_QUANTITY * 10)
    _user_id, token = _cartless(db, make_user, login)
    status, _ = server.request(
        "POST", "/api/cart", {"product_id": product.id, "quantity": MAX_LINE_QUANTITY - 10}, token
    )
    assert status == 201
    body = {"product_id": product.id, "quantity": 3}
    results = race([lambda: server.request("POST", "/api/cart", body, token) for _ in range(8)])
    assert Counter(status for status, _ in results) == {201: 3, 409: 5}, results
    assert {answer["code"] for status, answer in results if status == 409} == {"cart_limit"}
    assert scalar("SELECT count(*) FROM cart_items") == 1
    assert scalar("SELECT quantity FROM cart_items") == MAX_LINE_QUANTITY - 1


# --- the OpenAPI document -------------------------------------------------------------


def test_the_document_says_a_cart_409_may_be_a_cart_limit(client, user_token, make_product):
    """POST /api/cart and PUT /api/cart/{item_id} answer 409 `cart_limit`
    as well as `out_of_stock` (README, docs/API.md); the document described
    their 409 as "Not enough stock" only, so a client reading it took a
    line past 1000 units for a stock shortage."""
    product = make_product(stock=MAX_LINE_QUANTITY * 2)
    limited = add_to_cart(client, user_token, product.id, MAX_LINE_QUANTITY + 1)
    assert (limited.status_code, limited.get_json()["code"]) == (409, "cart_limit")
    paths = client.get("/api/openapi.json").get_json()["paths"]
    for path, method in (("/api/cart", "post"), ("/api/cart/{item_id}", "put")):
        described = paths[path][method]["responses"]["409"]["description"]
        assert "out_of_stock" in described and "cart_limit" in described, (path, described)
