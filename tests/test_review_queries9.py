"""Review of query counts (session 9, reviewer: queries): every GET of the
API, admin views included, and the writes that touch many rows, run the same
number of statements with one row as with thirty (cart lines, order lines,
history events, payments, orders on a page, reviews, products). Counted by
conftest's `count_queries`, on the suite's app and, where REDIS_URL is set,
on one whose caches live in Redis. Budgets pinned elsewhere are not repeated
here: GET /api/cart (test_cart), product list and detail (test_products,
test_reviews), search, facets and suggest on one data set (test_search),
review pages (test_reviews), order detail and list (test_orders,
test_review_orders7), stock movements and low stock (test_inventory),
checkout and an owner's cancel (test_orders, test_review_orders4)."""

from __future__ import annotations

import pytest
from sqlalchemy import insert

from app.extensions import db as _db
from app.models import Cart, CartItem, Payment, Review
from app.services import versions
from tests.helpers import REDIS_URL, auth, order_for, pay, scalar

ADMIN_MOVES = ("processing", "shipped", "delivered")

# The most statements a GET runs with every cache cold (the token's user read
# included): a budget, whatever the number of rows.
GET_BUDGETS = {
    "profile": 1,
    "health": 2,  # SELECT 1, then the schema's Alembic revision (services.health)
    "cart": 2,
    "products": 1,
    "products by rating": 1,
    "product": 1,
    "facets": 1,
    "facets of a search": 1,
    "search": 1,
    "suggest": 2,  # the name index built: names counted, read
    "reviews": 2,
    "own orders": 4,  # the user; the page with its total; lines; histories
    "all orders": 4,
    "a user's orders": 5,  # and the user asked about (a 404 if none)
    "order": 2,
    "order as admin": 2,
    "order payments": 3,  # the admin; the order (a 404 if none); its payments
    "low stock": 2,
    "stock movements": 3,
}


@pytest.fixture(params=["local", "redis"])
def shop(request, app, make_app):
    """The app a request goes to: the suite's, or one whose caches (catalog,
    accounts, revocations, rate limits) live in Redis."""
    if request.param == "local":
        return app
    if not REDIS_URL:
        pytest.skip("needs REDIS_URL")
    return make_app(overrides={"REDIS_URL": REDIS_URL})


def _counted(shop, count_queries, method: str, path: str, token=None, **kwargs):
    """Statements of one request, every cache cold (the rows were written
    behind the caches of an app in Redis): the most a request can run."""
    client = shop.test_client()
    headers = auth(token) if token else {}
    with shop.app_context():
        versions.bump_all()
        with count_queries() as q:
            response = client.open(path, method=method, headers=headers, **kwargs)
    assert response.status_code < 300, (path, response.get_json())
    return q.count, response


def _reviews(product_id: int, user_ids: list[int]) -> None:
    """Reviews written straight to the table, the product's rating with them."""
    _db.session.execute(
        insert(Review),
        [{"product_id": product_id, "user_id": uid, "rating": 4} for uid in user_ids],
    )
    count = _db.session.scalar(
        _db.text("SELECT count(*) FROM reviews WHERE product_id = :p"), {"p": product_id}
    )
    _db.session.execute(
        _db.text(
            "UPDATE products SET rating_count = :n, rating_sum = :s, rating_average = 4"
            " WHERE id = :p"
        ),
        {"n": count, "s": 4 * count, "p": product_id},
    )
    _db.session.commit()


def _payments(order_id: int, attempts: range) -> None:
    _db.session.execute(
        insert(Payment),
        [
            {
                "order_id": order_id,
                "provider": "test",
                "intent_id": f"pi_{order_id}_{n}",
                "amount": 100 * n,
                "currency": "USD",
                "status": "failed",
                "attempt": n,
                "failure_message": "declined",
            }
            for n in attempts
        ],
    )
    _db.session.commit()


def _cart_lines(user_id: int, products) -> None:
    cart_id = _db.session.scalar(_db.select(Cart.id).where(Cart.user_id == user_id))
    _db.session.execute(
        insert(CartItem),
        [{"cart_id": cart_id, "product_id": p.id, "quantity": 1} for p in products],
    )
    _db.session.commit()


def _moved(client, admin_token, order_id: int) -> None:
    for status in ADMIN_MOVES:
        response = client.put(
            f"/api/orders/{order_id}", json={"status": status}, headers=auth(admin_token)
        )
        assert response.status_code == 200, response.get_json()


def test_every_get_runs_as_many_statements_with_thirty_rows_as_with_one(
    shop, client, make_user, login, admin_token, make_product, count_queries
):
    """One of everything, then thirty: the same paths (or paths to the bigger
    order) cost the same statements."""
    user = make_user()
    token = login(user)["access_token"]
    products = [make_product(stock=1000, low_stock_threshold=2000) for _ in range(30)]
    first = products[0]
    reviewers = [make_user() for _ in range(30)]

    def gets(order_id: int) -> dict[str, tuple[str, str | None]]:
        return {
            "profile": ("/api/auth/profile", token),
            "health": ("/api/health", None),
            "cart": ("/api/cart", token),
            "products": ("/api/products?per_page=100", None),
            "products by rating": ("/api/products?per_page=100&sort=-rating&min_rating=1", None),
            "product": (f"/api/products/{first.id}", None),
            "facets": ("/api/products/facets", None),
            "facets of a search": ("/api/products/facets?q=product&in_stock=true", None),
            "search": ("/api/products?q=product&per_page=100", None),
            "suggest": ("/api/products/suggest?q=pro", None),
            "reviews": (f"/api/products/{first.id}/reviews?per_page=100", None),
            "own orders": ("/api/orders?per_page=100", token),
            "all orders": ("/api/orders?all=true&per_page=100", admin_token),
            "a user's orders": (f"/api/orders/user/{user.id}?per_page=100", admin_token),
            "order": (f"/api/orders/{order_id}", token),
            "order as admin": (f"/api/orders/{order_id}", admin_token),
            "order payments": (f"/api/orders/{order_id}/payments", admin_token),
            "low stock": ("/api/inventory/low-stock?per_page=100", admin_token),
            "stock movements": (
                f"/api/products/{first.id}/stock-movements?per_page=100",
                admin_token,
            ),
        }

    def measure(order_id: int, rows: int) -> dict[str, int]:
        counts = {}
        for name, (path, who) in gets(order_id).items():
            counts[name], response = _counted(shop, count_queries, "GET", path, who)
            body = response.get_json()
            if name in ("own orders", "a user's orders"):
                assert body["total"] == rows, (name, body["total"])
            if name == "order":
                assert len(body["items"]) == rows and len(body["status_history"]) == 4
            if name == "order payments":
                assert len(body["payments"]) == rows
            if name == "reviews":
                assert body["total"] == rows
            if name == "cart":
                assert len(body["items"]) == rows
        return counts

    # One: an order of one line, moved to delivered, one payment; one review;
    # one cart line; one product on the catalog (the others are out of it).
    for product in products[1:]:
        _db.session.execute(
            _db.text("UPDATE products SET name = :n WHERE id = :p"),
            {"n": f"Zebra {product.id}", "p": product.id},
        )
    _db.session.commit()
    one = order_for(client, token, (first, 1))["id"]
    _moved(client, admin_token, one)
    _payments(one, range(1, 2))
    _reviews(first.id, [reviewers[0].id])
    _cart_lines(user.id, [first])
    few = measure(one, 1)

    # Thirty: orders of thirty lines, thirty payment attempts, reviews,
    # cart lines, products named alike.
    _db.session.execute(_db.text("UPDATE products SET name = 'Product ' || id"))
    _db.session.commit()
    _db.session.execute(_db.text("DELETE FROM cart_items"))
    _db.session.commit()
    for _ in range(29):
        last = order_for(client, token, *[(p, 1) for p in products])["id"]
    _moved(client, admin_token, last)
    _payments(last, range(1, 31))
    _reviews(first.id, [r.id for r in reviewers[1:]])
    _cart_lines(user.id, products)
    many = measure(last, 30)
    assert few == many, {k: (few[k], many[k]) for k in few if few[k] != many[k]}
    over = {k: (many[k], GET_BUDGETS[k]) for k in many if many[k] > GET_BUDGETS[k]}
    assert not over, over


# --- writes that touch many rows ---------------------------------------------------


def _grows(measure) -> tuple[int, int]:
    """Statements of `measure(1)` and of `measure(30)`."""
    return measure(1), measure(30)


def test_writes_over_many_rows_keep_their_statement_count(
    shop, client, make_user, login, admin_token, make_product, count_queries
):
    """A product's delete (its lines in every cart), a cart's clear, an
    order's cancel by an admin (paid: with its refund), its moves, its
    payment, a price change of a product in many carts, a review among many
    and its delete, a logout-all of many sessions: as many statements for
    thirty rows as for one."""

    def buyer():
        user = make_user()
        return user, login(user)["access_token"]

    def counted(method, path, token, **kwargs):
        return _counted(shop, count_queries, method, path, token, **kwargs)

    def in_carts(n):
        """A product in the carts of `n` users."""
        product = make_product()
        for _ in range(n):
            _cart_lines(make_user().id, [product])
        return product

    def delete_product(n):
        product = in_carts(n)
        count, _ = counted("DELETE", f"/api/products/{product.id}", admin_token)
        assert scalar("SELECT count(*) FROM cart_items WHERE product_id = :p", p=product.id) == 0
        return count

    def clear_cart(n):
        user, token = buyer()
        _cart_lines(user.id, [make_product() for _ in range(n)])
        count, _ = counted("DELETE", "/api/cart/clear", token)
        return count

    def reprice(n):
        product = in_carts(n)
        count, _ = counted(
            "PUT", f"/api/products/{product.id}", admin_token, json={"price": "12.50"}
        )
        return count

    def order_of(n):
        _, token = buyer()
        products = [make_product(stock=5) for _ in range(n)]
        return token, products, order_for(client, token, *[(p, 2) for p in products])["id"]

    def admin_cancel(n):
        _, products, order_id = order_of(n)
        count, body = counted(
            "PUT", f"/api/orders/{order_id}", admin_token, json={"status": "cancelled"}
        )
        assert body.get_json()["status"] == "cancelled"
        restocked = [scalar("SELECT stock FROM products WHERE id = :p", p=p.id) for p in products]
        assert restocked == [5] * n
        return count

    def paid_cancel(n):
        token, _, order_id = order_of(n)
        assert pay(client, token, order_id).status_code == 200
        count, body = counted("POST", f"/api/orders/{order_id}/cancel", token)
        assert body.get_json()["payment_status"] == "refunded"
        return count

    def pay_order(n):
        token, _, order_id = order_of(n)
        count, body = counted(
            "POST", f"/api/orders/{order_id}/pay", token, json={"payment_method": "pm_card_visa"}
        )
        assert body.get_json()["payment_status"] == "paid"
        return count

    def moves(n):
        _, _, order_id = order_of(n)
        counts = []
        for status in ADMIN_MOVES:
            count, _ = counted(
                "PUT", f"/api/orders/{order_id}", admin_token, json={"status": status}
            )
            counts.append(count)
        return tuple(counts)

    def new_address(n):
        token, _, order_id = order_of(n)
        address = {"shipping_address": "1 Other Road, Leeds"}
        count, _ = counted("PUT", f"/api/orders/{order_id}", token, json=address)
        return count

    def review_among(n):
        product = make_product(stock=100)
        _reviews(product.id, [make_user().id for _ in range(n)])
        _, token = buyer()
        _moved(client, admin_token, order_for(client, token, (product, 1))["id"])
        count, body = counted(
            "POST", f"/api/products/{product.id}/reviews", token, json={"rating": 5}
        )
        review_id = body.get_json()["id"]
        deleted, _ = counted("DELETE", f"/api/reviews/{review_id}", token)
        return count, deleted

    def logout_all(n):
        user, _ = buyer()
        tokens = [login(user)["access_token"] for _ in range(n)]
        count, _ = counted("POST", "/api/auth/logout-all", tokens[-1])
        return count

    checks = {
        "delete product": delete_product,
        "clear cart": clear_cart,
        "reprice": reprice,
        "admin cancel": admin_cancel,
        "paid cancel": paid_cancel,
        "pay": pay_order,
        "moves": moves,
        "new address": new_address,
        "review": review_among,
        "logout all": logout_all,
    }
    grown = {}
    for name, measure in checks.items():
        one, thirty = _grows(measure)
        if one != thirty:
            grown[name] = (one, thirty)
    assert not grown, grown


def test_the_payment_timeout_sweep_cancels_an_order_of_thirty_lines_in_as_many_statements(
    app, client, buyer, make_product, count_queries
):
    """The sweep cancels each expired order in a transaction of its own (by
    design: per order), and each order's restock in statements that do not
    grow with its lines."""
    from datetime import timedelta

    from app.models.types import utcnow
    from app.services.payment_timeouts import cancel_expired_orders

    assert app.config["ORDER_PAYMENT_TIMEOUT"] > 0
    _, token = buyer
    counts = []
    for lines in (1, 30):
        products = [make_product(stock=5) for _ in range(lines)]
        order_id = order_for(client, token, *[(p, 2) for p in products])["id"]
        later = utcnow() + timedelta(seconds=app.config["ORDER_PAYMENT_TIMEOUT"] + 60)
        with count_queries() as q:
            cancelled = cancel_expired_orders(now=later)
        assert [o.id for o in cancelled] == [order_id]
        _db.session.remove()
        assert (
            scalar("SELECT count(*) FROM products WHERE stock = 5 AND id >= :p", p=products[0].id)
            == lines
        )
        counts.append(q.count)
    assert counts[0] == counts[1], counts
