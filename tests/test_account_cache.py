"""The accounts cache (app/services/account_cache.py): a read request with a
token this process has seen skips the user query, and every change to an
account or a token is seen by the next request, in this process and in
another one (another app on the same version file, or on the same Redis)."""

from __future__ import annotations

import re

import pytest
from flask_jwt_extended import decode_token
from sqlalchemy import inspect, text

from app.models import User
from app.services import account_cache
from tests.helpers import auth, order_for


def user_queries(statements: list[str]) -> int:
    return sum(bool(re.search(r"\bFROM users\b", s)) for s in statements)


def test_a_repeated_read_skips_the_user_query_a_write_never_does(client, user_token, count_queries):
    with count_queries() as first:
        assert client.get("/api/cart", headers=auth(user_token)).status_code == 200
    with count_queries() as again:
        assert client.get("/api/auth/profile", headers=auth(user_token)).status_code == 200
    with count_queries() as write:
        response = client.post("/api/cart", json={"product_id": 999}, headers=auth(user_token))
    assert response.status_code == 404
    assert user_queries(first.statements) == 1, first.statements
    assert user_queries(again.statements) == 0, again.statements
    assert user_queries(write.statements) == 1, write.statements


def test_every_private_read_answers_the_same_from_the_cache(client, make_user, login, make_product):
    """A cache hit hands the view the kept user itself, outside any session
    (no merge into the request's): every authenticated GET, as a user and as
    an admin, answers the second time (a hit) as it did the first (a miss)."""
    owner = make_user()
    token = login(owner)["access_token"]
    admin_token = login(make_user(admin=True))["access_token"]
    product = make_product(stock=3, low_stock_threshold=5)
    order = order_for(client, token, (product, 1))
    reads = [
        (token, "/api/auth/profile"),
        (token, "/api/cart"),
        (token, "/api/orders"),
        (token, f"/api/orders/{order['id']}"),
        (admin_token, "/api/auth/profile"),
        (admin_token, "/api/orders?all=true"),
        (admin_token, f"/api/orders/{order['id']}"),
        (admin_token, f"/api/orders/user/{owner.id}"),
        (admin_token, "/api/inventory/low-stock"),
        (admin_token, f"/api/products/{product.id}/stock-movements"),
    ]
    for bearer, path in reads:
        first = client.get(path, headers=auth(bearer))
        again = client.get(path, headers=auth(bearer))
        assert first.status_code == again.status_code == 200, (path, again.get_json())
        assert again.get_json() == first.get_json(), path
    # A user's read of another's order is refused from the cache as before.
    other = login(make_user())["access_token"]
    for _ in range(2):
        assert client.get(f"/api/orders/{order['id']}", headers=auth(other)).status_code == 404


def test_a_cache_hit_is_the_kept_detached_user(app, client, user_token):
    assert client.get("/api/cart", headers=auth(user_token)).status_code == 200
    claims = decode_token(user_token)
    jti, user_id = claims["jti"], int(claims["sub"])
    _version, _user_id, kept = app.extensions["account_cache"].users[jti]
    with app.test_request_context("/api/cart", method="GET"):
        user, revoked = account_cache.user_and_revoked(user_id, jti)
        assert (user, revoked) == (kept, False)
        assert inspect(user).detached  # in no session: nothing loads or writes through it
    with app.test_request_context("/api/cart", method="POST"):  # a write reads it anew
        user, _revoked = account_cache.user_and_revoked(user_id, jti)
        assert user is not kept and inspect(user).persistent


@pytest.mark.parametrize("where", ["same app", "another app"])
def test_logout_is_refused_on_the_next_read(client, make_app, login, make_user, where):
    tokens = login(make_user())
    headers = auth(tokens["access_token"])
    assert client.get("/api/cart", headers=headers).status_code == 200  # kept
    other = client if where == "same app" else make_app().test_client()
    assert other.post("/api/auth/logout", headers=headers).status_code == 200
    response = client.get("/api/cart", headers=headers)
    assert response.status_code == 401 and response.get_json()["code"] == "token_revoked"


def test_logout_everywhere_and_a_password_change_are_refused_at_once(client, login, make_user):
    user = make_user()
    first, second = login(user)["access_token"], login(user)["access_token"]
    for token in (first, second):
        assert client.get("/api/auth/profile", headers=auth(token)).status_code == 200
    assert client.post("/api/auth/logout-all", headers=auth(first)).status_code == 200
    for token in (first, second):
        assert client.get("/api/auth/profile", headers=auth(token)).status_code == 401

    fresh = login(user)["access_token"]
    assert client.get("/api/auth/profile", headers=auth(fresh)).status_code == 200
    changed = client.put(
        "/api/auth/profile",
        json={"password": "another-horse-7", "current_password": "correct-horse-9"},
        headers=auth(fresh),
    )
    assert changed.status_code == 200, changed.get_json()
    assert client.get("/api/auth/profile", headers=auth(fresh)).status_code == 401


def test_a_profile_change_and_a_demotion_show_on_the_next_read(
    client, db, make_user, login, make_app
):
    admin = make_user(admin=True)
    token = login(admin)["access_token"]
    headers = auth(token)
    assert client.get("/api/inventory/low-stock", headers=headers).status_code == 200
    renamed = client.put("/api/auth/profile", json={"username": "renamed"}, headers=headers)
    assert renamed.status_code == 200
    assert client.get("/api/auth/profile", headers=headers).get_json()["username"] == "renamed"

    with make_app().app_context():  # another process's ORM write
        db.session.get(User, admin.id).is_admin = False
        db.session.commit()
    response = client.get("/api/inventory/low-stock", headers=headers)
    assert response.status_code == 403


def test_a_raw_sql_write_to_users_is_noticed(client, db, make_user, login):
    user = make_user()
    headers = auth(login(user)["access_token"])
    assert client.get("/api/auth/profile", headers=headers).status_code == 200
    db.session.execute(text("UPDATE users SET username = 'by-sql' WHERE id = :id"), {"id": user.id})
    db.session.commit()
    assert client.get("/api/auth/profile", headers=headers).get_json()["username"] == "by-sql"
    db.session.execute(text("DELETE FROM users WHERE id = :id"), {"id": user.id})
    db.session.commit()
    response = client.get("/api/auth/profile", headers=headers)
    assert response.status_code == 401 and response.get_json()["code"] == "token_invalid"


def test_a_write_rolled_back_keeps_the_cache(client, db, make_user, login, count_queries):
    user = make_user()
    headers = auth(login(user)["access_token"])
    client.get("/api/auth/profile", headers=headers)
    db.session.execute(text("UPDATE users SET username = 'never' WHERE id = :id"), {"id": user.id})
    db.session.rollback()
    with count_queries() as q:
        body = client.get("/api/auth/profile", headers=headers).get_json()
    assert body["username"] == user.username
    assert user_queries(q.statements) == 0, q.statements


def test_the_cache_off_reads_the_user_every_time(make_app, make_user, count_queries):
    app = make_app(overrides={"ACCOUNT_CACHE_MAX_ENTRIES": 0})
    client = app.test_client()
    user = make_user()
    token = client.post(
        "/api/auth/login", json={"email": user.email, "password": "correct-horse-9"}
    ).get_json()["access_token"]
    with app.app_context():
        assert app.extensions["account_cache"] is None
        for _ in range(2):
            with count_queries() as q:
                assert client.get("/api/auth/profile", headers=auth(token)).status_code == 200
            assert user_queries(q.statements) == 1


def test_redis_shared_by_two_apps_and_redis_stopped(own_redis, make_app, make_user):
    url, process = own_redis
    one = make_app(overrides={"REDIS_URL": url})
    two = make_app(overrides={"REDIS_URL": url})
    with one.app_context():
        assert isinstance(one.extensions["account_cache"].store, account_cache.RedisStore)
    user = make_user()
    tokens = [
        c.post(
            "/api/auth/login", json={"email": user.email, "password": "correct-horse-9"}
        ).get_json()["access_token"]
        for c in (one.test_client(), one.test_client())
    ]
    a, b = one.test_client(), two.test_client()
    for token in tokens:
        assert a.get("/api/auth/profile", headers=auth(token)).status_code == 200
    assert b.post("/api/auth/logout", headers=auth(tokens[0])).status_code == 200
    assert a.get("/api/auth/profile", headers=auth(tokens[0])).status_code == 401
    assert a.get("/api/auth/profile", headers=auth(tokens[1])).status_code == 200
    process.kill()
    process.wait()
    for _ in range(2):  # Redis gone: the database answers, and still refuses
        assert a.get("/api/auth/profile", headers=auth(tokens[1])).status_code == 200
        assert a.get("/api/auth/profile", headers=auth(tokens[0])).status_code == 401


def test_a_failing_version_bump_is_logged_and_the_write_stands(
    app, client, make_user, login, monkeypatch, caplog
):
    """A cache whose version cannot move (its store broken) never fails the
    committed write that moved it: `app.services.versions` logs the error."""
    user = make_user()
    headers = auth(login(user)["access_token"])
    cache = app.extensions["account_cache"]

    def broken() -> None:
        raise OSError("version store unwritable")

    monkeypatch.setattr(cache.store, "bump", broken)
    response = client.put("/api/auth/profile", json={"username": "still-saved"}, headers=headers)
    assert response.status_code == 200
    assert "accounts_changed: version bump failed" in caplog.text
    monkeypatch.undo()
    assert client.get("/api/auth/profile", headers=headers).get_json()["username"] == "still-saved"
