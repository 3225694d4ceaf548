"""The cart (API.md, Cart)."""

from __future__ import annotations

import threading
from decimal import Decimal

import pytest

from app.models import CartItem
from tests.helpers import add_to_cart, auth, scalar


def test_cart_needs_a_token(client):
    for method, path in [
        ("get", "/api/cart"),
        ("post", "/api/cart"),
        ("put", "/api/cart/1"),
        ("delete", "/api/cart/1"),
        ("delete", "/api/cart/clear"),
    ]:
        assert getattr(client, method)(path).status_code == 401


def test_empty_cart_made_on_first_use(client, db, make_user, login):
    from app.models import Cart

    user = make_user()
    db.session.execute(db.delete(Cart).where(Cart.user_id == user.id))
    db.session.commit()
    token = login(user)["access_token"]
    body = client.get("/api/cart", headers=auth(token)).get_json()
    assert body == {"id": body["id"], "items": [], "total_items": 0, "total": 0}
    assert isinstance(body["id"], int)
    assert client.get("/api/cart", headers=auth(token)).get_json()["id"] == body["id"]


def test_add_returns_whole_cart(client, user_token, make_product):
    product = make_product(name="Mug", price="4.50", stock=10, image_url="https://x.io/m.png")
    response = add_to_cart(client, user_token, product.id, 2)
    assert response.status_code == 201
    cart = response.get_json()
    assert set(cart) == {"id", "items", "total_items", "total"}
    (item,) = cart["items"]
    assert set(item) == {"id", "product_id", "product", "quantity", "unit_price", "subtotal"}
    assert item["product"] == {
        "id": product.id,
        "name": "Mug",
        "price": Decimal("4.50"),
        "image_url": "https://x.io/m.png",
        "stock": 10,
    }
    assert item["quantity"] == 2 and item["unit_price"] == Decimal("4.50")
    assert item["subtotal"] == Decimal("9.00")
    assert cart["total_items"] == 2 and cart["total"] == Decimal("9.00")


def test_quantity_defaults_to_one(client, user_token, make_product):
    product = make_product()
    assert add_to_cart(client, user_token, product.id).get_json()["items"][0]["quantity"] == 1


def test_adding_again_adds_to_the_line(client, db, user_token, make_product):
    product = make_product(stock=10)
    add_to_cart(client, user_token, product.id, 2)
    cart = add_to_cart(client, user_token, product.id, 3).get_json()
    assert len(cart["items"]) == 1
    assert cart["items"][0]["quantity"] == 5
    assert db.session.scalar(db.select(db.func.count()).select_from(CartItem)) == 1


def test_exact_totals(client, user_token, make_product):
    dime = make_product(price="0.10", stock=100)
    other = make_product(price="19.99", stock=100)
    add_to_cart(client, user_token, dime.id, 3)
    response = add_to_cart(client, user_token, other.id, 3)
    cart = response.get_json()
    assert cart["total"] == Decimal("60.27")
    assert b'"total":60.27' in response.data
    assert b'"subtotal":0.30' in response.data or b'"subtotal":0.3' in response.data
    assert cart["total_items"] == 6


def test_over_stock_is_409_naming_product_and_stock(client, user_token, make_product):
    product = make_product(name="Rare Lamp", stock=3)
    response = add_to_cart(client, user_token, product.id, 4)
    assert response.status_code == 409
    message = response.get_json()["message"]
    assert "Rare Lamp" in message and "3" in message
    assert add_to_cart(client, user_token, product.id, 3).status_code == 201
    response = add_to_cart(client, user_token, product.id, 1)
    assert response.status_code == 409
    cart = client.get("/api/cart", headers=auth(user_token)).get_json()
    assert cart["items"][0]["quantity"] == 3


def test_unknown_or_deleted_product_is_404(client, user_token, admin_token, make_product):
    assert add_to_cart(client, user_token, 999999).status_code == 404
    product = make_product()
    client.delete(f"/api/products/{product.id}", headers=auth(admin_token))
    response = add_to_cart(client, user_token, product.id)
    assert response.status_code == 404
    assert response.get_json() == {"code": "not_found", "message": "Product not found"}


@pytest.mark.parametrize(
    "quantity", [0, -1, 1.5, "2", None, True, 10**9 + 1, 2**31, 2**63, 10**40, [1], {"n": 1}]
)
def test_bad_quantities_are_422(client, user_token, make_product, quantity):
    product = make_product(stock=10**6)
    response = client.post(
        "/api/cart", json={"product_id": product.id, "quantity": quantity}, headers=auth(user_token)
    )
    assert response.status_code == 422
    assert "quantity" in response.get_json()["errors"]


@pytest.mark.parametrize("product_id", [None, "1", 0, -3, 1.0, 2**40, "abc"])
def test_bad_product_ids_are_422(client, user_token, product_id):
    response = client.post("/api/cart", json={"product_id": product_id}, headers=auth(user_token))
    assert response.status_code == 422
    assert "product_id" in response.get_json()["errors"]


@pytest.mark.parametrize(
    "body",
    [{}, {"quantity": 1}, {"product_id": 1, "user_id": 2}, {"product_id": 1, "unit_price": 0.01}],
)
def test_missing_or_forbidden_fields_are_422(client, user_token, make_product, body):
    make_product()
    response = client.post("/api/cart", json=body, headers=auth(user_token))
    assert response.status_code == 422


def test_update_quantity(client, user_token, make_product):
    product = make_product(price="2.00", stock=5)
    item_id = add_to_cart(client, user_token, product.id, 1).get_json()["items"][0]["id"]
    response = client.put(f"/api/cart/{item_id}", json={"quantity": 4}, headers=auth(user_token))
    assert response.status_code == 200
    assert response.get_json()["total"] == Decimal("8.00")
    over = client.put(f"/api/cart/{item_id}", json={"quantity": 6}, headers=auth(user_token))
    assert over.status_code == 409
    assert "5" in over.get_json()["message"]
    for bad in (0, -1, "3", 2.5):
        response = client.put(
            f"/api/cart/{item_id}", json={"quantity": bad}, headers=auth(user_token)
        )
        assert response.status_code == 422
    assert client.put(f"/api/cart/{item_id}", json={}, headers=auth(user_token)).status_code == 422


def test_remove_and_clear(client, user_token, make_product):
    a, b = make_product(), make_product()
    add_to_cart(client, user_token, a.id)
    cart = add_to_cart(client, user_token, b.id).get_json()
    first = cart["items"][0]["id"]
    response = client.delete(f"/api/cart/{first}", headers=auth(user_token))
    assert response.status_code == 200
    assert [i["product_id"] for i in response.get_json()["items"]] == [b.id]
    assert client.delete(f"/api/cart/{first}", headers=auth(user_token)).status_code == 404
    response = client.delete("/api/cart/clear", headers=auth(user_token))
    assert response.status_code == 200
    assert response.get_json()["items"] == [] and response.get_json()["total"] == 0


def test_other_users_items_are_404(client, make_user, login, make_product):
    mine = login(make_user())["access_token"]
    theirs = login(make_user())["access_token"]
    product = make_product()
    their_item = add_to_cart(client, theirs, product.id, 2).get_json()["items"][0]["id"]
    assert (
        client.put(f"/api/cart/{their_item}", json={"quantity": 1}, headers=auth(mine)).status_code
        == 404
    )
    assert client.delete(f"/api/cart/{their_item}", headers=auth(mine)).status_code == 404
    client.delete("/api/cart/clear", headers=auth(mine))
    cart = client.get("/api/cart", headers=auth(theirs)).get_json()
    assert cart["items"][0]["quantity"] == 2


def test_unknown_item_is_404(client, user_token):
    assert (
        client.put("/api/cart/424242", json={"quantity": 1}, headers=auth(user_token)).status_code
        == 404
    )
    assert client.delete("/api/cart/424242", headers=auth(user_token)).status_code == 404


def test_line_count_limit(client, user_token, make_product):
    from app.services.cart import MAX_CART_LINES

    products = [make_product() for _ in range(MAX_CART_LINES + 1)]
    for product in products[:-1]:
        assert add_to_cart(client, user_token, product.id).status_code == 201
    response = add_to_cart(client, user_token, products[-1].id)
    assert response.status_code == 409
    assert add_to_cart(client, user_token, products[0].id).status_code == 201


def test_concurrent_adds_of_one_product_merge_into_one_line(
    app, db, make_user, login, make_product
):
    product = make_product(stock=1000)
    token = login(make_user())["access_token"]
    workers = 8
    barrier = threading.Barrier(workers)
    statuses: list[int] = []

    def worker():
        client = app.test_client()
        barrier.wait()
        for _ in range(3):
            statuses.append(add_to_cart(client, token, product.id, 2).status_code)

    threads = [threading.Thread(target=worker) for _ in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert statuses == [201] * workers * 3
    assert scalar("SELECT count(*) FROM cart_items") == 1
    assert scalar("SELECT quantity FROM cart_items") == workers * 3 * 2


@pytest.mark.parametrize("lines", [1, 50])
def test_get_cart_query_budget_is_flat(client, user_token, make_product, count_queries, lines):
    for _ in range(lines):
        add_to_cart(client, user_token, make_product().id)
    with count_queries() as q:
        response = client.get("/api/cart", headers=auth(user_token))
    assert len(response.get_json()["items"]) == lines
    # one for the token's user and its revocation, one for the cart
    assert q.count == 2, q.statements


def test_a_first_cart_read_holds_one_connection(make_app, make_user):
    """A user with no cart row (made some other way than signup): the read
    finds nothing, the session makes the cart. The read request's own
    connection is given back first, so a pool of one serves it (it was a
    503 once the read ran on a connection of its own; found by review)."""
    from sqlalchemy import text

    from app.extensions import db
    from tests.helpers import PASSWORD

    app = make_app(
        "testing",
        {
            "SQLALCHEMY_ENGINE_OPTIONS": {"pool_size": 1, "max_overflow": 0, "pool_timeout": 2},
            "DB_POOL_TIMEOUT": 2,
        },
    )
    user = make_user()
    with app.app_context():
        client = app.test_client()
        login = client.post("/api/auth/login", json={"email": user.email, "password": PASSWORD})
        token = login.get_json()["access_token"]
        assert client.get("/api/orders", headers=auth(token)).status_code == 200  # user kept
        with db.engine.begin() as conn:
            conn.execute(text("DELETE FROM carts WHERE user_id = :u"), {"u": user.id})
        response = client.get("/api/cart", headers=auth(token))
        assert response.status_code == 200, response.get_json()
        assert response.get_json()["items"] == []
