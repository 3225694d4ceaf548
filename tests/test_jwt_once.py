"""An access token is decoded and verified once per process (app.web.jwt.
VerifiedTokens); everything else about it is still checked on every request:
expiry, revocation, the user, the type, the signature of any other string."""

from __future__ import annotations

import time
from datetime import timedelta

import jwt as pyjwt
import pytest
from flask_jwt_extended import create_access_token

from tests.helpers import auth


@pytest.fixture
def parses(monkeypatch):
    """How many times PyJWT parses a token (every decode and header read does)."""
    calls = []
    original = pyjwt.api_jws.PyJWS._load

    def counting(self, jwt):
        calls.append(jwt)
        return original(self, jwt)

    monkeypatch.setattr(pyjwt.api_jws.PyJWS, "_load", counting)
    return calls


def test_a_token_is_parsed_on_its_first_request_only(client, user_token, parses):
    assert client.get("/api/auth/profile", headers=auth(user_token)).status_code == 200
    first = len(parses)
    assert first >= 1  # the library's own verification, in full
    for _ in range(3):
        response = client.get("/api/cart", headers=auth(user_token))
        assert response.status_code == 200
    assert len(parses) == first


def test_revocation_is_still_checked_on_every_request(client, user_token):
    assert client.get("/api/cart", headers=auth(user_token)).status_code == 200
    assert client.post("/api/auth/logout", headers=auth(user_token)).status_code == 200
    response = client.get("/api/cart", headers=auth(user_token))
    assert (response.status_code, response.get_json()["code"]) == (401, "token_revoked")


def test_a_cached_token_still_expires(app, client, make_user):
    user = make_user()
    with app.test_request_context():
        token = create_access_token(user, expires_delta=timedelta(seconds=2))
    assert client.get("/api/cart", headers=auth(token)).status_code == 200
    expires = pyjwt.decode(token, options={"verify_signature": False})["exp"]
    time.sleep(max(0.0, expires - time.time()))
    response = client.get("/api/cart", headers=auth(token))
    assert (response.status_code, response.get_json()["code"]) == (401, "token_expired")


def test_a_tampered_copy_of_a_cached_token_is_refused(client, user_token):
    assert client.get("/api/cart", headers=auth(user_token)).status_code == 200
    head, payload, signature = user_token.split(".")
    forged = f"{head}.{payload}.{signature[:-2]}{'AA' if signature[-2:] != 'AA' else 'BB'}"
    response = client.get("/api/cart", headers=auth(forged))
    assert (response.status_code, response.get_json()["code"]) == (401, "token_invalid")


def test_a_deleted_user_loses_access_with_a_cached_token(client, make_user, login, db):
    from app.models import User

    user = make_user()
    token = login(user)["access_token"]
    assert client.get("/api/cart", headers=auth(token)).status_code == 200
    db.session.delete(db.session.get(User, user.id))
    db.session.commit()
    response = client.get("/api/cart", headers=auth(token))
    assert (response.status_code, response.get_json()["code"]) == (401, "token_invalid")


def test_a_refresh_token_is_refused_on_an_access_route_every_time(client, make_user, login):
    refresh = login(make_user())["refresh_token"]
    for _ in range(2):
        response = client.get("/api/cart", headers=auth(refresh))
        assert (response.status_code, response.get_json()["code"]) == (401, "token_invalid")


def test_an_admin_guard_reads_the_role_from_the_database_each_time(client, make_user, login, db):
    from app.models import User

    admin = make_user(admin=True)
    token = login(admin)["access_token"]
    assert client.get("/api/orders?all=true", headers=auth(token)).status_code == 200
    db.session.get(User, admin.id).is_admin = False
    db.session.commit()
    assert client.get("/api/orders?all=true", headers=auth(token)).status_code == 403


def test_a_token_verified_under_another_key_is_not_trusted(app, client, user_token):
    assert client.get("/api/cart", headers=auth(user_token)).status_code == 200
    saved = app.config["JWT_SECRET_KEY"]
    app.config["JWT_SECRET_KEY"] = "another-key-" + "x" * 40
    try:
        response = client.get("/api/cart", headers=auth(user_token))
    finally:
        app.config["JWT_SECRET_KEY"] = saved
    assert (response.status_code, response.get_json()["code"]) == (401, "token_invalid")
