"""Two gunicorn instances (several workers each) on one PostgreSQL and one
Redis, as behind a load balancer: what one instance does, the other sees."""

from __future__ import annotations

import threading
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import pytest
from sqlalchemy import insert

from app.models import Cart, CartItem
from tests.helpers import DATABASE_URL, IS_POSTGRES, PASSWORD, REDIS_URL, scalar
from tests.live import gunicorn

pytestmark = [
    pytest.mark.server,
    pytest.mark.skipif(
        not (IS_POSTGRES and REDIS_URL),
        reason="scale-out needs TEST_DATABASE_URL (PostgreSQL) and REDIS_URL",
    ),
]
FAILED_LOGINS_ALLOWED = 6


@pytest.fixture(scope="module")
def instances(app):
    env = {
        "REDIS_URL": REDIS_URL or "",
        "RATELIMIT_ENABLED": "true",
        "RATELIMIT_STORAGE_URI": REDIS_URL or "",
        # A fresh prefix per run: counters of earlier runs never leak in.
        "RATELIMIT_KEY_PREFIX": f"scaleout-{uuid.uuid4().hex}",
        # The test process empties tables behind the cache's back: a fresh
        # namespace per run, and every test's product is made through A.
        "CATALOG_CACHE_PREFIX": f"scaleout-catalog-{uuid.uuid4().hex}",
        "SEARCH_RANKINGS_PREFIX": f"scaleout-rankings-{uuid.uuid4().hex}",
        "CATALOG_MATCHES_PREFIX": f"scaleout-matches-{uuid.uuid4().hex}",
        "RATELIMIT_LOGIN": f"{FAILED_LOGINS_ALLOWED} per minute",
        "RATELIMIT_DEFAULT": "100000 per minute",
        "RATELIMIT_SIGNUP": "100000 per hour",
    }
    with (
        gunicorn(DATABASE_URL, workers=2, threads=4, extra_env=env) as a,
        gunicorn(DATABASE_URL, workers=2, threads=4, extra_env=env) as b,
    ):
        yield a, b


def test_token_revoked_on_a_is_refused_by_b(instances, make_user):
    a, b = instances
    user = make_user()
    status, tokens = a.request(
        "POST", "/api/auth/login", {"email": user.email, "password": PASSWORD}
    )
    assert status == 200
    token = tokens["access_token"]
    assert b.request("GET", "/api/auth/profile", token=token)[0] == 200
    assert (
        a.request(
            "POST", "/api/auth/logout", {"refresh_token": tokens["refresh_token"]}, token=token
        )[0]
        == 200
    )
    status, body = b.request("GET", "/api/auth/profile", token=token)
    assert status == 401 and "revoked" in body["message"].lower()
    assert b.request("POST", "/api/auth/refresh", token=tokens["refresh_token"])[0] == 401
    # Several workers per instance: ask a few times, every answer is the same.
    assert {b.request("GET", "/api/cart", token=token)[0] for _ in range(6)} == {401}


def test_buyers_split_across_instances_never_oversell(
    instances, db, make_user, login, make_product
):
    a, b = instances
    product = make_product(stock=7)
    tokens = []
    for _ in range(30):
        user = make_user()
        cart_id = db.session.scalar(db.select(Cart.id).where(Cart.user_id == user.id))
        db.session.execute(
            insert(CartItem).values(cart_id=cart_id, product_id=product.id, quantity=1)
        )
        db.session.commit()
        tokens.append(login(user)["access_token"])
    barrier = threading.Barrier(len(tokens))

    def buy(n):
        server = (a, b)[n % 2]
        barrier.wait()
        return server.request(
            "POST", "/api/orders", {"shipping_address": "1 Scale Street"}, token=tokens[n]
        )[0]

    with ThreadPoolExecutor(len(tokens)) as pool:
        statuses = Counter(pool.map(buy, range(len(tokens))))
    assert statuses == {201: 7, 409: 23}, statuses
    assert scalar("SELECT stock FROM products WHERE id = :i", i=product.id) == 0
    assert scalar("SELECT count(*) FROM orders") == 7


def test_failed_logins_across_instances_share_one_limit(instances, make_user):
    a, b = instances
    user = make_user()
    wrong = {"email": user.email, "password": "not-the-password"}
    statuses = [
        (a, b)[n % 2].request("POST", "/api/auth/login", wrong)[0]
        for n in range(FAILED_LOGINS_ALLOWED + 2)
    ]
    assert statuses == [401] * FAILED_LOGINS_ALLOWED + [429, 429], statuses
    assert a.request("POST", "/api/auth/login", wrong)[0] == 429
    assert b.request("POST", "/api/auth/login", wrong)[0] == 429


def test_idempotency_key_used_on_a_replays_on_b(instances, db, make_user, login, make_product):
    a, b = instances
    product = make_product(stock=5)
    user = make_user()
    cart_id = db.session.scalar(db.select(Cart.id).where(Cart.user_id == user.id))
    db.session.execute(insert(CartItem).values(cart_id=cart_id, product_id=product.id, quantity=2))
    db.session.commit()
    token = login(user)["access_token"]
    body = {"shipping_address": "2 Replay Road"}
    headers = {"Idempotency-Key": "across-instances"}
    first = a.request("POST", "/api/orders", body, token=token, headers=headers)
    second = b.request("POST", "/api/orders", body, token=token, headers=headers)
    assert first[0] == second[0] == 201
    assert first[1] == second[1]
    assert scalar("SELECT count(*) FROM orders") == 1


# Tokens come from the in-process app (same secrets): the login limit shared by
# the instances is used up by the test above for a minute.


def test_password_change_on_a_ends_every_session_on_b(instances, make_user, login):
    a, b = instances
    user = make_user()
    sessions = [login(user) for _ in range(3)]
    for tokens in sessions:
        assert b.request("GET", "/api/auth/profile", token=tokens["access_token"])[0] == 200
    change = {"password": "changed-on-a-1", "current_password": PASSWORD}
    assert (
        a.request("PUT", "/api/auth/profile", change, token=sessions[0]["access_token"])[0] == 200
    )
    for server in (a, b):
        for tokens in sessions:  # several workers per instance: every answer is the same
            for _ in range(3):
                status, body = server.request("GET", "/api/cart", token=tokens["access_token"])
                assert (status, body["code"]) == (401, "token_revoked")
            status, _ = server.request("POST", "/api/auth/refresh", token=tokens["refresh_token"])
            assert status == 401
    fresh = login(user, "changed-on-a-1")
    assert {s.request("GET", "/api/cart", token=fresh["access_token"])[0] for s in (a, b)} == {200}


def test_logout_all_on_b_ends_sessions_on_a(instances, make_user, login):
    a, b = instances
    user = make_user()
    first, second = login(user), login(user)
    assert b.request("POST", "/api/auth/logout-all", token=second["access_token"])[0] == 200
    for tokens in (first, second):
        assert {
            a.request("GET", "/api/cart", token=tokens["access_token"])[0] for _ in range(4)
        } == {401}
        assert a.request("POST", "/api/auth/refresh", token=tokens["refresh_token"])[0] == 401
    again = login(user)
    assert b.request("GET", "/api/cart", token=again["access_token"])[0] == 200


def test_catalog_write_on_a_is_read_on_b_at_once(instances, make_user, login, make_product):
    a, b = instances
    admin = login(make_user(admin=True))["access_token"]
    status, product = a.request(
        "POST", "/api/products", {"name": "Lamp", "price": "10.00", "stock": 5}, token=admin
    )
    assert status == 201
    path = f"/api/products/{product['id']}"
    # Several workers per instance: warm every worker's view of the entry.
    assert {b.request("GET", path)[1]["price"] for _ in range(4)} == {10}
    assert a.request("PUT", path, {"price": "12.00"}, token=admin)[0] == 200
    assert {b.request("GET", path)[1]["price"] for _ in range(4)} == {12}
    buyer = make_user()
    token = login(buyer)["access_token"]
    assert (
        a.request("POST", "/api/cart", {"product_id": product["id"], "quantity": 2}, token=token)[0]
        == 201
    )
    assert (
        a.request("POST", "/api/orders", {"shipping_address": "3 Cache Lane"}, token=token)[0]
        == 201
    )
    assert {b.request("GET", path)[1]["stock"] for _ in range(4)} == {3}
    listed = b.request("GET", "/api/products?in_stock=true")[1]["items"]
    assert [(p["id"], p["stock"]) for p in listed if p["id"] == product["id"]] == [
        (product["id"], 3)
    ]


def test_a_sell_out_on_a_changes_totals_and_facets_on_b(instances, make_user, login):
    """The facets and a list's total are kept under the match version, which a
    checkout moves only when a product sells out: here it does, on A, and B
    answers with the new numbers at once (and keeps them after a checkout
    that sells nothing out, with its stock shown as it is)."""
    a, b = instances
    admin = login(make_user(admin=True))["access_token"]
    made = [
        a.request(
            "POST",
            "/api/products",
            {"name": f"Matchbox {n}", "price": "3.00", "stock": stock, "category": "Matches"},
            token=admin,
        )
        for n, stock in enumerate((1, 10))
    ]
    assert [status for status, _ in made] == [201, 201]
    last, plenty = (product["id"] for _, product in made)
    facets = "/api/products/facets?category=Matches&in_stock=true"
    listed = "/api/products?category=Matches&in_stock=true"

    def seen_on_b():
        answers = {
            (b.request("GET", facets)[1]["in_stock"], b.request("GET", listed)[1]["total"])
            for _ in range(4)  # every worker's view
        }
        assert len(answers) == 1, answers
        return answers.pop()

    assert seen_on_b() == (2, 2)
    for product_id in (plenty, last):  # nothing sold out, then the last unit
        token = login(make_user())["access_token"]
        line = {"product_id": product_id, "quantity": 1}
        assert a.request("POST", "/api/cart", line, token=token)[0] == 201
        order = {"shipping_address": "4 Match Street"}
        assert a.request("POST", "/api/orders", order, token=token)[0] == 201
        if product_id == plenty:
            assert seen_on_b() == (2, 2)
            items = b.request("GET", listed)[1]["items"]
            assert {p["id"]: p["stock"] for p in items}[plenty] == 9
    assert seen_on_b() == (1, 1)
