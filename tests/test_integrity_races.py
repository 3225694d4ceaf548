"""Data integrity under concurrency, through real gunicorn workers on the test
database: one cart makes at most one order, lines added during a checkout are
never lost, an idempotency takeover never commits twice, parallel logouts and
cart adds stay within their rules."""

from __future__ import annotations

import threading
import time
from collections import Counter
from contextlib import contextmanager
from datetime import timedelta

import pytest
from flask_migrate import downgrade, upgrade
from sqlalchemy import insert, text

from app.models import Cart, CartItem
from app.models.types import utcnow
from app.services.cart import MAX_CART_LINES
from app.services.payment_timeouts import cancel_expired_orders
from tests.helpers import DATABASE_URL, IS_POSTGRES, SHIPPING, buyers_with_carts, race, scalar
from tests.live import gunicorn
from tests.reviewing import give_order

pytestmark = pytest.mark.server
postgres_only = pytest.mark.skipif(
    not IS_POSTGRES, reason="row locks: SQLite serialises every writer and cannot interleave"
)
ABANDONED_AFTER = 1  # seconds, so the takeover test need not wait a minute


@pytest.fixture(scope="module")
def server(app):
    env = {"IDEMPOTENCY_ABANDONED_AFTER": str(ABANDONED_AFTER)}
    with gunicorn(DATABASE_URL, workers=3, threads=4, extra_env=env) as live:
        yield live


@contextmanager
def product_locked(db, product_id: int):
    """Hold the product's row lock (SQLite: the database's write lock) in a
    transaction of our own until the block ends, so checkouts wait on it."""
    with db.engine.connect() as conn:
        conn.execute(
            text("SELECT id FROM products WHERE id = :i FOR UPDATE")
            if IS_POSTGRES
            else text("UPDATE products SET stock = stock WHERE id = :i"),
            {"i": product_id},
        )
        try:
            yield
        finally:
            conn.rollback()


def wait_for_lock_waiters(count: int, timeout: float = 10) -> None:
    """Until `count` server transactions wait on a lock (SQLite: a fixed pause)."""
    if not IS_POSTGRES:
        time.sleep(1)
        return
    deadline = time.monotonic() + timeout
    sql = (
        "SELECT count(*) FROM pg_stat_activity "
        "WHERE datname = current_database() AND wait_event_type = 'Lock'"
    )
    while scalar(sql) < count:
        assert time.monotonic() < deadline, "the requests never waited on the lock"
        time.sleep(0.05)


def in_thread(call):
    """Start `call` in a thread; the returned function joins it and gives its result."""
    result = {}
    thread = threading.Thread(target=lambda: result.setdefault("value", call()))
    thread.start()

    def join():
        thread.join(60)
        return result["value"]

    return join


def one_after_another(held, first, second, *, first_waits: bool = True, second_waits: bool = True):
    """While `held` (a lock of the test's own) lasts, start `first` and let
    it queue on the lock, then `second` (which queues behind it); without
    `first_waits` / `second_waits`, that one gets half a second to run or
    block instead. Release, and return both results."""
    with held:
        first_done = in_thread(first)
        if first_waits:
            wait_for_lock_waiters(1)
        else:
            time.sleep(0.5)
        second_done = in_thread(second)
        if second_waits:
            wait_for_lock_waiters(2)
        else:
            time.sleep(0.5)
    return first_done(), second_done()


def test_parallel_checkouts_of_one_cart_make_one_order(server, db, make_user, login, make_product):
    product = make_product(stock=1000)
    for trial in range(3):
        (token,) = buyers_with_carts(make_user, login, [(product, 2)], 1)
        results = race(
            [lambda t=token: server.request("POST", "/api/orders", SHIPPING, t) for _ in range(10)]
        )
        statuses = Counter(status for status, _ in results)
        assert statuses == {201: 1, 409: 9}, (trial, statuses)
        losers = [body for status, body in results if status == 409]
        assert all(body["message"] == "Your cart is empty" for body in losers), losers
        assert all(body["code"] == "empty_cart" for body in losers), losers
    assert scalar("SELECT count(*) FROM orders") == 3
    assert scalar("SELECT sum(quantity) FROM order_items") == 6
    assert scalar("SELECT stock FROM products WHERE id = :i", i=product.id) == 1000 - 6
    assert scalar("SELECT count(*) FROM cart_items") == 0


def test_a_line_added_during_a_checkout_is_ordered_or_kept(
    server, db, make_user, login, make_product
):
    a = make_product(stock=10)
    b = make_product(stock=10)
    (token,) = buyers_with_carts(make_user, login, [(a, 1)], 1)
    (order_status, order), (add_status, _) = one_after_another(
        product_locked(db, a.id),
        lambda: server.request("POST", "/api/orders", SHIPPING, token),
        lambda: server.request("POST", "/api/cart", {"product_id": b.id, "quantity": 2}, token),
        second_waits=False,
    )
    assert (order_status, add_status) == (201, 201), (order, add_status)
    ordered = {item["product_id"]: item["quantity"] for item in order["items"]}
    in_cart = scalar(
        "SELECT coalesce(sum(quantity), 0) FROM cart_items WHERE product_id = :i", i=b.id
    )
    assert ordered.get(a.id) == 1
    assert ordered.get(b.id, 0) + in_cart == 2, (ordered, in_cart)
    assert scalar("SELECT stock FROM products WHERE id = :i", i=b.id) == 10 - ordered.get(b.id, 0)


@postgres_only
def test_an_idempotency_takeover_never_commits_twice(server, db, make_user, login, make_product):
    product = make_product(stock=10)
    (token,) = buyers_with_carts(make_user, login, [(product, 2)], 1)
    headers = {"Idempotency-Key": "slow-checkout"}

    def place():
        return server.request("POST", "/api/orders", SHIPPING, token, headers)

    with product_locked(db, product.id):
        first = in_thread(place)
        wait_for_lock_waiters(1)
        time.sleep(ABANDONED_AFTER + 0.5)  # the first claim now looks abandoned
        retry = in_thread(place)  # takes the claim over, then waits on the cart
        wait_for_lock_waiters(2)
    results = [first(), retry()]
    statuses = sorted(status for status, _ in results)
    assert statuses == [201, 409], results
    (loser,) = [body for status, body in results if status == 409]
    assert loser["code"] == "idempotency_in_flight", loser
    assert scalar("SELECT count(*) FROM orders") == 1
    assert scalar("SELECT stock FROM products WHERE id = :i", i=product.id) == 8
    (winner,) = [body for status, body in results if status == 201]
    status, replay = place()
    assert (status, replay["id"]) == (201, winner["id"])


def test_parallel_logouts_of_one_token_never_fail(server, make_user, login):
    token = login(make_user())["access_token"]
    results = race([lambda: server.request("POST", "/api/auth/logout", None, token)] * 12)
    statuses = Counter(status for status, _ in results)
    assert set(statuses) <= {200, 401} and statuses[200] >= 1, statuses
    assert scalar("SELECT count(*) FROM revoked_tokens") == 1
    assert server.request("GET", "/api/auth/profile", token=token)[0] == 401


def test_parallel_adds_never_pass_the_cart_line_limit(server, db, make_user, login, make_product):
    user = make_user()
    token = login(user)["access_token"]
    cart_id = db.session.scalar(db.select(Cart.id).where(Cart.user_id == user.id))
    filler = [make_product(stock=5) for _ in range(MAX_CART_LINES - 3)]
    db.session.execute(
        insert(CartItem), [{"cart_id": cart_id, "product_id": p.id, "quantity": 1} for p in filler]
    )
    db.session.commit()
    extra = [make_product(stock=5) for _ in range(12)]
    results = race(
        [
            lambda p=p: server.request("POST", "/api/cart", {"product_id": p.id}, token)
            for p in extra
        ]
    )
    assert Counter(status for status, _ in results) == {201: 3, 409: 9}
    assert scalar("SELECT count(*) FROM cart_items") == MAX_CART_LINES


@contextmanager
def row_locked(db, sql: str, **params):
    """Hold the row `sql` locks (a SELECT ... FOR ...) in a transaction of
    our own until the block ends."""
    with db.engine.connect() as conn:
        conn.execute(text(sql), params)
        try:
            yield
        finally:
            conn.rollback()


@contextmanager
def cart_locked(db, user_id: int):
    """Hold the user's cart row lock in a transaction of our own until the
    block ends, so a cart write waits on it (after reading its product)."""
    with db.engine.connect() as conn:
        conn.execute(text("SELECT id FROM carts WHERE user_id = :u FOR UPDATE"), {"u": user_id})
        try:
            yield
        finally:
            conn.rollback()


def _admin(make_user, login) -> str:
    return login(make_user(admin=True))["access_token"]


@postgres_only
def test_a_product_deleted_during_a_checkout_never_deadlocks(
    server, db, make_user, login, make_product
):
    """The delete takes the product's row first and then its cart lines; a
    checkout took its cart's lines first and then their products, so the two
    deadlocked (and one of them was a 503). Checkout now locks its products
    first, in the same order as every other writer of them. Forced here: the
    delete queues on the product ahead of the checkout."""
    admin = _admin(make_user, login)
    gone, kept = make_product(stock=10), make_product(stock=10)
    (token,) = buyers_with_carts(make_user, login, [(gone, 1), (kept, 2)], 1)
    (delete_status, deleted), (order_status, order) = one_after_another(
        product_locked(db, gone.id),
        lambda: server.request("DELETE", f"/api/products/{gone.id}", None, admin),
        lambda: server.request("POST", "/api/orders", SHIPPING, token),
    )
    assert delete_status == 204, deleted
    assert order_status == 201, order
    assert {item["product_id"]: item["quantity"] for item in order["items"]} == {kept.id: 2}
    assert scalar("SELECT stock FROM products WHERE id = :i", i=gone.id) == 10
    assert scalar("SELECT count(*) FROM cart_items") == 0


@postgres_only
def test_a_checkout_ahead_of_a_product_delete_orders_it(server, db, make_user, login, make_product):
    admin = _admin(make_user, login)
    product = make_product(stock=10)
    (token,) = buyers_with_carts(make_user, login, [(product, 3)], 1)
    (order_status, order), (delete_status, _) = one_after_another(
        product_locked(db, product.id),
        lambda: server.request("POST", "/api/orders", SHIPPING, token),
        lambda: server.request("DELETE", f"/api/products/{product.id}", None, admin),
    )
    assert (order_status, delete_status) == (201, 204), order
    assert [item["quantity"] for item in order["items"]] == [3]
    assert scalar("SELECT stock FROM products WHERE id = :i", i=product.id) == 7
    assert scalar("SELECT deleted_at IS NOT NULL FROM products WHERE id = :i", i=product.id)


@postgres_only
@pytest.mark.parametrize("had_line", [True, False])
def test_a_product_deleted_during_a_cart_add_leaves_no_line(
    server, db, make_user, login, make_product, had_line
):
    """A cart add read the product (live), waited for its cart, and then
    wrote its line after the delete had taken the product out of every
    cart: a deleted product stayed in the cart, and every checkout of it
    was a 409. The add now holds the product (FOR SHARE) from that read
    until it commits, so the delete's sweep of the carts comes after it."""
    admin = _admin(make_user, login)
    product, other = make_product(stock=10), make_product(stock=10)
    user = make_user()
    token = login(user)["access_token"]
    assert server.request("POST", "/api/cart", {"product_id": other.id}, token)[0] == 201
    if had_line:
        assert server.request("POST", "/api/cart", {"product_id": product.id}, token)[0] == 201
    # The delete runs, or waits on the add's hold of the product.
    (add_status, added), (delete_status, _) = one_after_another(
        cart_locked(db, user.id),
        lambda: server.request("POST", "/api/cart", {"product_id": product.id}, token),
        lambda: server.request("DELETE", f"/api/products/{product.id}", None, admin),
        second_waits=False,
    )
    assert delete_status == 204
    assert add_status in (201, 404), added
    lines = scalar("SELECT count(*) FROM cart_items WHERE product_id = :i", i=product.id)
    assert lines == 0
    status, order = server.request("POST", "/api/orders", SHIPPING, token)
    assert status == 201, order
    assert [item["product_id"] for item in order["items"]] == [other.id]


def test_the_migration_sweeps_deleted_products_out_of_carts(app, db, make_user, make_product):
    """A line of a deleted product left by the race above (before its fix)
    goes at the next upgrade; the cart's other lines stay."""
    live, gone = make_product(), make_product()
    user = make_user()
    cart_id = db.session.scalar(db.select(Cart.id).where(Cart.user_id == user.id))
    db.session.execute(
        insert(CartItem),
        [{"cart_id": cart_id, "product_id": p.id, "quantity": 1} for p in (live, gone)],
    )
    db.session.execute(
        text("UPDATE products SET deleted_at = updated_at WHERE id = :i"), {"i": gone.id}
    )
    db.session.commit()
    db.session.remove()
    downgrade(revision="e24c9d2e5a68")
    upgrade()
    assert scalar("SELECT product_id FROM cart_items WHERE cart_id = :c", c=cart_id) == live.id
    assert scalar("SELECT count(*) FROM cart_items WHERE cart_id = :c", c=cart_id) == 1


@postgres_only
def test_a_review_and_a_put_of_name_and_stock_never_deadlock(
    server, db, make_user, login, make_product
):
    """The PUT wrote the name (FOR NO KEY UPDATE), then asked for FOR UPDATE
    to set the stock, which waits on the KEY SHARE a new review's foreign
    key holds; the review's rating UPDATE waited on the PUT: a deadlock, one
    of them a 503. Every writer of a product now locks it FOR NO KEY UPDATE
    at its first read. The test's KEY SHARE stands in for the review's."""
    admin = _admin(make_user, login)
    product = make_product(stock=10)
    buyer = make_user()
    give_order(buyer, product)
    token = login(buyer)["access_token"]
    (put_status, put), (review_status, review) = one_after_another(
        row_locked(db, "SELECT 1 FROM products WHERE id = :i FOR KEY SHARE", i=product.id),
        lambda: server.request(
            "PUT", f"/api/products/{product.id}", {"name": "Renamed", "stock": 7}, admin
        ),
        lambda: server.request("POST", f"/api/products/{product.id}/reviews", {"rating": 4}, token),
        first_waits=False,
        second_waits=False,
    )
    assert (put_status, review_status) == (200, 201), (put, review)
    assert scalar("SELECT stock FROM products WHERE id = :i", i=product.id) == 7
    assert scalar("SELECT rating_count FROM products WHERE id = :i", i=product.id) == 1


@postgres_only
@pytest.mark.parametrize("body", [{"stock": 7}, {"name": "New", "stock": 7}, {"price": "4.50"}])
def test_a_put_queued_behind_a_delete_is_a_404(server, db, make_user, login, make_product, body):
    """A PUT read the product unlocked, then waited on the delete: with
    `stock` it was a 500 ("stock changed under a row lock"), with a price a
    200 that wrote to the deleted row. It now locks the product first."""
    admin = _admin(make_user, login)
    product = make_product(stock=10, price="9.99")
    (delete_status, _), (put_status, put) = one_after_another(
        product_locked(db, product.id),
        lambda: server.request("DELETE", f"/api/products/{product.id}", None, admin),
        lambda: server.request("PUT", f"/api/products/{product.id}", body, admin),
    )
    assert (delete_status, put_status) == (204, 404), put
    assert scalar("SELECT stock FROM products WHERE id = :i", i=product.id) == 10
    assert str(scalar("SELECT price FROM products WHERE id = :i", i=product.id)) == "9.99"


@postgres_only
def test_a_review_queued_behind_a_delete_is_a_404(server, db, make_user, login, make_product):
    """The review was written (its rating onto the deleted row) and then
    could not be read back: a 500. It now locks the product first."""
    admin = _admin(make_user, login)
    product = make_product()
    buyer = make_user()
    give_order(buyer, product)
    token = login(buyer)["access_token"]
    (delete_status, _), (review_status, review) = one_after_another(
        product_locked(db, product.id),
        lambda: server.request("DELETE", f"/api/products/{product.id}", None, admin),
        lambda: server.request("POST", f"/api/products/{product.id}/reviews", {"rating": 5}, token),
    )
    assert (delete_status, review_status) == (204, 404), review
    assert scalar("SELECT count(*) FROM reviews") == 0
    assert scalar("SELECT rating_count FROM products WHERE id = :i", i=product.id) == 0


@postgres_only
@pytest.mark.parametrize("cancel", ["POST cancel", "PUT status"])
def test_a_cancel_queued_behind_a_payment_cancels_and_refunds(
    server, db, make_user, login, make_product, cancel
):
    """The cancel read the order unlocked (pending), and its compare-and-set
    found it processing once the pay committed: a 409 "from processing",
    a move the workflow allows. It now locks the order and decides from
    the status it finds."""
    product = make_product(stock=10)
    (token,) = buyers_with_carts(make_user, login, [(product, 2)], 1)
    status, order = server.request("POST", "/api/orders", SHIPPING, token)
    assert status == 201, order
    path = f"/api/orders/{order['id']}"
    (pay_status, paid), (cancel_status, cancelled) = one_after_another(
        row_locked(db, "SELECT 1 FROM orders WHERE id = :i FOR UPDATE", i=order["id"]),
        lambda: server.request("POST", f"{path}/pay", {"payment_method": "pm_card_visa"}, token),
        lambda: (
            server.request("POST", f"{path}/cancel", None, token)
            if cancel == "POST cancel"
            else server.request("PUT", path, {"status": "cancelled"}, token)
        ),
    )
    assert (pay_status, cancel_status) == (200, 200), (paid, cancelled)
    assert (cancelled["status"], cancelled["payment_status"]) == ("cancelled", "refunded")
    assert scalar("SELECT stock FROM products WHERE id = :i", i=product.id) == 10


@postgres_only
def test_the_payment_timeout_sweep_and_a_checkout_never_deadlock(
    app, server, db, make_user, login, make_product
):
    """The sweep cancelled every expired order in one transaction: holding
    the products of the orders so far (here p2) while it locked the next
    order, and then that order's products (p1) - out of id order across
    orders, so a checkout holding p1 and waiting on p2 deadlocked with it
    (a 503). Each order is its own transaction now, and the sweep skips an
    order whose row another writer holds (SKIP LOCKED) instead of waiting:
    it cancels the first, leaves the held one to the next sweep, and the
    checkout goes through."""
    p1, p2 = make_product(stock=10), make_product(stock=10)
    orders_placed = []
    for product in (p2, p1):
        (token,) = buyers_with_carts(make_user, login, [(product, 1)], 1)
        status, order = server.request("POST", "/api/orders", SHIPPING, token)
        assert status == 201, order
        orders_placed.append(order["id"])
    (buyer,) = buyers_with_carts(make_user, login, [(p1, 1), (p2, 1)], 1)

    def sweep():
        with app.app_context():
            later = utcnow() + timedelta(days=1)
            return [order.id for order in cancel_expired_orders(now=later)]

    swept, (status, order) = one_after_another(
        row_locked(db, "SELECT 1 FROM orders WHERE id = :i FOR UPDATE", i=orders_placed[1]),
        sweep,  # cancels the first order (restocks p2), skips the second
        lambda: server.request("POST", "/api/orders", SHIPPING, buyer),  # p1, then p2
        first_waits=False,
        second_waits=False,
    )
    assert status == 201, order
    assert swept == orders_placed[:1]
    assert scalar("SELECT status FROM orders WHERE id = :i", i=orders_placed[1]) == "pending"
    assert scalar("SELECT stock FROM products WHERE id = :i", i=p1.id) == 8
    assert scalar("SELECT stock FROM products WHERE id = :i", i=p2.id) == 9
