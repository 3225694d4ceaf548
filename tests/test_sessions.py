"""Sessions end when they should (API.md, Auth): a password change and
POST /logout-all revoke every token of the user issued before, the caller's
own included; tokens issued afterwards work. The two-instance version is in
test_scale_out.py; here both revocation stores are covered in process."""

from __future__ import annotations

import pytest

from app.models import User
from app.services.revocation import revoke_user_tokens
from tests.helpers import PASSWORD, REDIS_URL, auth, scalar

NEW_PASSWORD = "brand-new-pass-7"


def sessions(login, user, n: int = 2) -> list[dict]:
    return [login(user) for _ in range(n)]


def assert_revoked(client, tokens: dict) -> None:
    response = client.get("/api/auth/profile", headers=auth(tokens["access_token"]))
    assert response.status_code == 401
    assert response.get_json()["code"] == "token_revoked"
    refreshed = client.post("/api/auth/refresh", headers=auth(tokens["refresh_token"]))
    assert refreshed.status_code == 401
    assert refreshed.get_json()["code"] == "token_revoked"


def assert_working(client, tokens: dict) -> None:
    assert client.get("/api/auth/profile", headers=auth(tokens["access_token"])).status_code == 200
    refreshed = client.post("/api/auth/refresh", headers=auth(tokens["refresh_token"]))
    assert refreshed.status_code == 200
    access = refreshed.get_json()["access_token"]
    assert client.get("/api/cart", headers=auth(access)).status_code == 200


def change_password(client, token: str):
    return client.put(
        "/api/auth/profile",
        json={"password": NEW_PASSWORD, "current_password": PASSWORD},
        headers=auth(token),
    )


def test_password_change_revokes_every_earlier_token(client, make_user, login):
    user = make_user()
    other = make_user()
    mine, elsewhere = sessions(login, user)
    theirs = login(other)
    response = change_password(client, mine["access_token"])
    assert response.status_code == 200 and response.get_json()["id"] == user.id
    for tokens in (mine, elsewhere):  # the caller's own session too
        assert_revoked(client, tokens)
    assert_working(client, theirs)  # nobody else is logged out
    assert_working(client, login(user, NEW_PASSWORD))  # and logging in again works at once


def test_refresh_minted_access_tokens_are_revoked_too(client, make_user, login):
    user = make_user()
    tokens = login(user)
    minted = client.post("/api/auth/refresh", headers=auth(tokens["refresh_token"]))
    access = minted.get_json()["access_token"]
    assert change_password(client, tokens["access_token"]).status_code == 200
    assert client.get("/api/cart", headers=auth(access)).status_code == 401


@pytest.mark.parametrize("change", [{"username": "renamed_user"}, {"email": "moved@example.com"}])
def test_other_profile_changes_keep_sessions(client, make_user, login, change):
    user = make_user()
    tokens = login(user)
    body = {**change, "current_password": PASSWORD} if "email" in change else change
    response = client.put("/api/auth/profile", json=body, headers=auth(tokens["access_token"]))
    assert response.status_code == 200
    assert_working(client, tokens)


def test_failed_password_change_keeps_sessions(client, make_user, login):
    user = make_user()
    tokens = login(user)
    response = client.put(
        "/api/auth/profile",
        json={"password": NEW_PASSWORD, "current_password": "not-the-password"},
        headers=auth(tokens["access_token"]),
    )
    assert response.status_code == 422
    assert_working(client, tokens)
    assert scalar("SELECT token_version FROM users WHERE id = :i", i=user.id) == 0


def test_logout_all(client, make_user, login):
    user = make_user()
    first, second = sessions(login, user)
    response = client.post("/api/auth/logout-all", headers=auth(first["access_token"]))
    assert response.status_code == 200
    assert response.get_json()["message"]
    assert_revoked(client, first)
    assert_revoked(client, second)
    assert_working(client, login(user))  # the password is unchanged


def test_logout_all_needs_an_access_token(client, make_user, login):
    tokens = login(make_user())
    assert client.post("/api/auth/logout-all").get_json()["code"] == "token_missing"
    refresh = client.post("/api/auth/logout-all", headers=auth(tokens["refresh_token"]))
    assert refresh.status_code == 401


def test_revoke_user_tokens_is_one_atomic_increment(app, db, make_user):
    user = db.session.get(User, make_user().id)
    revoke_user_tokens(user)
    revoke_user_tokens(user)
    db.session.commit()
    assert user.token_version == 2
    assert scalar("SELECT token_version FROM users WHERE id = :i", i=user.id) == 2


@pytest.mark.skipif(not REDIS_URL, reason="needs REDIS_URL")
def test_password_change_with_the_redis_store(make_app, make_user):
    app = make_app("testing", {"REDIS_URL": REDIS_URL})
    client = app.test_client()
    user = make_user()

    def login(password=PASSWORD):
        body = {"email": user.email, "password": password}
        return client.post("/api/auth/login", json=body).get_json()

    tokens = login()
    assert change_password(client, tokens["access_token"]).status_code == 200
    assert_revoked(client, tokens)
    assert_working(client, login(NEW_PASSWORD))
