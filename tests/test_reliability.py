"""Reliability (issue 13) on the in-process app: stock limits, bad input that
must never reach a 500, tokens, logs and headers."""

from __future__ import annotations

import time

import pytest
from sqlalchemy import text

from app.models import User
from app.models.product import MAX_STOCK, STOCK_COLUMN_MAX
from tests.helpers import PASSWORD, SHIPPING, auth, fill_cart, place_order, scalar, stock

# --- cancel never overflows stock -------------------------------------------------


def test_stock_above_the_cap_is_422(client, admin_token, make_product):
    product = make_product(stock=1)
    for body, status in (({"stock": MAX_STOCK}, 200), ({"stock": MAX_STOCK + 1}, 422)):
        response = client.put(f"/api/products/{product.id}", json=body, headers=auth(admin_token))
        assert response.status_code == status, response.get_json()


def test_cancel_restores_above_the_cap(client, db, buyer, admin_token, make_product):
    _, token = buyer
    product = make_product(stock=10)
    fill_cart(client, token, (product, 4))
    order = place_order(client, token).get_json()
    client.put(f"/api/products/{product.id}", json={"stock": MAX_STOCK}, headers=auth(admin_token))
    response = client.post(f"/api/orders/{order['id']}/cancel", headers=auth(token))
    assert response.status_code == 200, response.get_json()
    assert stock(product) == MAX_STOCK + 4


def test_cancel_that_would_overflow_the_column_is_409_and_changes_nothing(
    client, db, buyer, make_product
):
    _, token = buyer
    safe = make_product(stock=10)
    full = make_product(stock=10)
    fill_cart(client, token, (safe, 1), (full, 4))
    order = place_order(client, token).get_json()
    # Only a value written before the cap existed can be this close to the column's end.
    with db.engine.begin() as conn:
        conn.execute(
            text("UPDATE products SET stock = :s WHERE id = :i"),
            {"s": STOCK_COLUMN_MAX - 3, "i": full.id},
        )
    response = client.post(f"/api/orders/{order['id']}/cancel", headers=auth(token))
    assert response.status_code == 409, response.get_json()
    assert "maximum" in response.get_json()["message"]
    assert response.get_json()["code"] == "stock_limit"
    assert scalar("SELECT status FROM orders WHERE id = :i", i=order["id"]) == "pending"
    assert stock(safe) == 9 and stock(full) == STOCK_COLUMN_MAX - 3
    put = client.put(
        f"/api/orders/{order['id']}", json={"status": "cancelled"}, headers=auth(token)
    )
    assert put.status_code == 409


def test_checkout_orders_and_removes_exactly_the_lines_read(client, buyer, make_product):
    _, token = buyer
    a, b = make_product(stock=5), make_product(stock=5)
    fill_cart(client, token, (a, 1), (b, 2))
    assert place_order(client, token, SHIPPING).status_code == 201
    assert scalar("SELECT count(*) FROM cart_items") == 0
    again = place_order(client, token, SHIPPING)
    assert again.status_code == 409
    assert again.get_json()["message"] == "Your cart is empty"


# --- bad input never reaches a 500 -------------------------------------------------

SURROGATE = "Must be valid Unicode text (no lone surrogate escapes)."


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/api/auth/login", '{"email": "a@example.com", "password": "\\ud800"}', "password"),
        ("/api/auth/login", '{"username": "\\udfff", "password": "x"}', "username"),
        (
            "/api/auth/signup",
            '{"username": "sur", "email": "s@example.com", "password": "pass\\ud800word"}',
            "password",
        ),
        ("/api/auth/login", '{"email": "a@example.com", "password": ["\\ud800"]}', "password"),
    ],
)
def test_lone_surrogates_are_422_naming_the_field(client, db, path, body, field):
    response = client.post(path, data=body, content_type="application/json")
    assert response.status_code == 422, response.get_data(as_text=True)
    assert response.get_json()["errors"] == {field: [SURROGATE]}
    assert scalar("SELECT count(*) FROM users") == 0


def test_lone_surrogate_in_a_private_body_is_422(client, user_token):
    response = client.post(
        "/api/orders",
        data='{"shipping_address": "1 Main Street \\ud83d"}',
        content_type="application/json",
        headers={**auth(user_token), "Idempotency-Key": "surrogate"},
    )
    assert response.status_code == 422
    assert response.get_json()["errors"] == {"shipping_address": [SURROGATE]}


@pytest.mark.parametrize("depth", [33, 100, 327, 600, 975, 1500, 100_000])
@pytest.mark.parametrize("idempotency", [False, True])
def test_any_nesting_depth_is_400(client, user_token, depth, idempotency):
    body = '{"shipping_address": ' + "[" * depth + "]" * depth + "}"
    headers = auth(user_token)
    if idempotency:
        headers["Idempotency-Key"] = f"deep-{depth}"
    response = client.post(
        "/api/orders", data=body, content_type="application/json", headers=headers
    )
    assert response.status_code == 400, response.get_data(as_text=True)[:200]
    assert response.get_json()["code"] == "invalid_json"


def test_shallow_nesting_is_still_a_validation_error(client):
    body = '{"email": ' + "[" * 10 + "]" * 10 + ', "password": "x"}'
    response = client.post("/api/auth/login", data=body, content_type="application/json")
    assert response.status_code == 422


def signup(client, username, email):
    return client.post(
        "/api/auth/signup", json={"username": username, "email": email, "password": PASSWORD}
    )


@pytest.mark.parametrize("username", ["alice\n", "a" * 80 + "\n", "alice\r\n", "bob\n\n"])
def test_usernames_must_match_in_full(client, username):
    response = signup(client, username, "nl@example.com")
    assert response.status_code == 422, response.get_json()
    assert "username" in response.get_json()["errors"]


def test_identifiers_are_nfkc_normalised_before_uniqueness(client):
    assert signup(client, "alice", "alice1@example.com").status_code == 201
    fullwidth_name = "\uff41\uff4c\uff49\uff43\uff45"  # fullwidth "alice"
    response = signup(client, fullwidth_name, "other@example.com")
    assert response.status_code == 409 and response.get_json()["code"] == "duplicate"
    fullwidth_digit = "alice\uff11@example.com"  # fullwidth "1"
    response = signup(client, "alice2", fullwidth_digit)
    assert response.status_code == 409 and response.get_json()["code"] == "duplicate"
    login = client.post("/api/auth/login", json={"username": fullwidth_name, "password": PASSWORD})
    assert login.status_code == 200


def test_email_length_is_checked_after_lower_casing(client):
    domain = ".".join(["a" * 60] * 3) + ".com"
    email = "x" * 50 + "\u0130" * 10 + "@" + domain  # 'İ' lower-cases to two characters
    assert len(email) <= 254 < len(email.lower())
    response = signup(client, "dotted", email)
    assert response.status_code == 422, response.get_json()
    assert "email" in response.get_json()["errors"]
    assert scalar("SELECT count(*) FROM users") == 0


@pytest.mark.parametrize("price", ["\uff11\uff12", "\u0663", "1_0", " 1_0.5"])
def test_money_accepts_ascii_digits_only(client, admin_token, price):
    response = client.post(
        "/api/products", json={"name": "X", "price": price, "stock": 1}, headers=auth(admin_token)
    )
    assert response.status_code == 422, response.get_json()
    assert "price" in response.get_json()["errors"]


def test_minus_zero_is_zero(client, admin_token):
    for price in ("-0", "-0.00", 0):
        response = client.post(
            "/api/products",
            json={"name": "X", "price": price, "stock": 1},
            headers=auth(admin_token),
        )
        assert response.status_code == 201, response.get_json()
        assert response.get_data(as_text=True).count('"price":0.00') == 1


@pytest.mark.parametrize("page", ["\uff12", "\u0663", "1_0"])
def test_query_integers_accept_ascii_digits_only(client, page):
    response = client.get("/api/products", query_string={"page": page})
    assert response.status_code == 422
    assert "page" in response.get_json()["errors"]


# --- tokens -----------------------------------------------------------------------


def forged(app, **claims):
    """A token signed with the app's own key (as only a key holder could)."""
    import uuid

    import jwt

    now = int(time.time())
    payload = {"jti": str(uuid.uuid4()), "type": "access", "fresh": False, "iat": now}
    payload.update(claims)
    payload = {k: v for k, v in payload.items() if v is not None}
    return jwt.encode(payload, app.config["JWT_SECRET_KEY"], algorithm="HS256")


@pytest.mark.parametrize("sub", ["2147483648", "99999999999999999999", " {id}", "0{id}", "{id} "])
def test_only_canonical_subjects_are_accepted(app, client, make_user, sub):
    user = make_user()
    token = forged(app, sub=sub.format(id=user.id), exp=int(time.time()) + 60)
    response = client.get("/api/auth/profile", headers=auth(token))
    assert response.status_code == 401, response.get_json()
    assert response.get_json()["code"] == "token_invalid"


def test_tokens_without_exp_are_refused(app, client, make_user):
    user = make_user()
    good = forged(app, sub=str(user.id), exp=int(time.time()) + 60)
    assert client.get("/api/auth/profile", headers=auth(good)).status_code == 200
    token = forged(app, sub=str(user.id), exp=None)
    response = client.get("/api/auth/profile", headers=auth(token))
    assert response.status_code == 401
    assert response.get_json()["code"] == "token_invalid"
    assert client.post("/api/auth/logout", headers=auth(token)).status_code == 401


# --- logs and headers --------------------------------------------------------------


def test_sql_errors_are_logged_without_parameters_but_with_path_and_request_id(
    client, db, monkeypatch, caplog
):
    from sqlalchemy import text as sql

    from app.services import auth as accounts

    def broken(password, email=None, username=None):
        db.session.execute(
            sql("SELECT no_such_column FROM users WHERE email = :e AND password_hash = :p"),
            {"e": email, "p": password},
        )

    monkeypatch.setattr(accounts, "authenticate", broken)
    response = client.post(
        "/api/auth/login",
        json={"email": "leak@example.com", "password": "pbkdf2-secret-hash"},
        headers={"X-Request-ID": "req-15"},
    )
    assert response.status_code == 500
    assert "leak@example.com" not in caplog.text
    assert "pbkdf2-secret-hash" not in caplog.text
    (record,) = [r for r in caplog.records if r.levelname == "ERROR"]
    assert record.fields["path"] == "/api/auth/login"
    assert record.fields["request_id"] == "req-15"
    assert "SQL parameters hidden" in str(record.exc_info[1])


def test_answers_with_tokens_are_never_cached(client, make_user, login):
    signup = client.post(
        "/api/auth/signup",
        json={"username": "cachy", "email": "cachy@example.com", "password": PASSWORD},
    )
    assert signup.headers["Cache-Control"] == "no-store"
    user = make_user()
    response = client.post("/api/auth/login", json={"email": user.email, "password": PASSWORD})
    assert response.headers["Cache-Control"] == "no-store"
    refresh = response.get_json()["refresh_token"]
    refreshed = client.post("/api/auth/refresh", headers=auth(refresh))
    assert refreshed.status_code == 200 and refreshed.headers["Cache-Control"] == "no-store"
    failed = client.post("/api/auth/login", json={"email": user.email, "password": "wrong-pass"})
    assert failed.headers["Cache-Control"] == "no-store"


def test_a_reused_user_id_does_not_inherit_old_tokens(app, client, db, make_user):
    from datetime import UTC, datetime, timedelta

    first = make_user()
    with db.engine.begin() as conn:  # an account made a while ago
        conn.execute(
            db.update(User)
            .where(User.id == first.id)
            .values(created_at=datetime.now(UTC) - timedelta(minutes=5))
        )
    old_token = forged(
        app, sub=str(first.id), exp=int(time.time()) + 600, iat=int(time.time()) - 60
    )
    assert client.get("/api/auth/profile", headers=auth(old_token)).status_code == 200
    with db.engine.begin() as conn:
        conn.execute(text("DELETE FROM users WHERE id = :i"), {"i": first.id})
    second = make_user()
    if db.engine.dialect.name == "sqlite":
        assert second.id == first.id  # SQLite hands the highest id out again
    response = client.get("/api/auth/profile", headers=auth(old_token))
    assert response.status_code == 401, response.get_json()
    assert response.get_json()["code"] == "token_invalid"
    fresh = forged(app, sub=str(second.id), exp=int(time.time()) + 600)
    assert client.get("/api/auth/profile", headers=auth(fresh)).get_json()["id"] == second.id


def test_password_hashing_is_capped_per_process(app, client, make_user, monkeypatch):
    user = make_user()
    slots = app.extensions["shop_hash_slots"]
    monkeypatch.setitem(app.config, "PASSWORD_HASH_WAIT", 0.2)
    credentials = {"email": user.email, "password": PASSWORD}
    held = 0
    while slots.acquire(blocking=False):  # every slot busy, as in a login flood
        held += 1
    try:
        assert held == app.config["PASSWORD_HASH_CONCURRENCY"]
        started = time.monotonic()
        response = client.post("/api/auth/login", json=credentials)
        assert response.status_code == 503, response.get_json()
        assert response.get_json()["code"] == "unavailable"
        assert response.headers["Retry-After"] == "1"  # a client knows when to try again
        assert time.monotonic() - started < 2
        assert client.get("/api/products").status_code == 200  # reads are not held up
    finally:
        for _ in range(held):
            slots.release()
    assert client.post("/api/auth/login", json=credentials).status_code == 200


def test_production_refuses_per_process_rate_limit_counters(monkeypatch):
    import importlib

    import config
    from app import create_app

    monkeypatch.setenv("SECRET_KEY", "s" * 40)
    monkeypatch.setenv("JWT_SECRET_KEY", "j" * 40)
    monkeypatch.setenv("DATABASE_URL", "sqlite:////tmp/prod-check.db")
    monkeypatch.delenv("REDIS_URL", raising=False)
    monkeypatch.delenv("RATELIMIT_STORAGE_URI", raising=False)
    monkeypatch.setenv("MAIL_BACKEND", "console")  # named: accepted
    monkeypatch.setenv("PAYMENT_PROVIDER", "test")  # named: accepted
    importlib.reload(config)
    try:
        with pytest.raises(RuntimeError, match="RATELIMIT_STORAGE_URI"):
            create_app("production")
        # Allowed explicitly, the check passes (the app is not built: the
        # limiter is one object, shared with the test app).
        allowed = {
            name: getattr(config.ProductionConfig, name)
            for name in dir(config.ProductionConfig)
            if name.isupper()
        }
        allowed["RATELIMIT_ALLOW_MEMORY_STORAGE"] = True
        config.ProductionConfig.check(allowed)
        config.ProductionConfig.check({**allowed, "RATELIMIT_STORAGE_URI": "redis://r:6379/0",
                                       "RATELIMIT_ALLOW_MEMORY_STORAGE": False})  # fmt: skip
    finally:
        monkeypatch.undo()
        importlib.reload(config)
