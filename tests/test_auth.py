"""Accounts and JWT auth (API.md, Auth)."""

from __future__ import annotations

import base64
import json
import threading
import time
from datetime import timedelta

import pytest
from flask_jwt_extended import create_access_token, create_refresh_token

from app.models import RevokedToken, User
from tests.helpers import PASSWORD, auth

SIGNUP = {"username": "alice", "email": "Alice@Example.com", "password": "s3cret-pass"}


def signup(client, **overrides):
    return client.post("/api/auth/signup", json={**SIGNUP, **overrides})


# --- signup -----------------------------------------------------------------


def test_signup_returns_tokens_and_user(client, db):
    response = signup(client)
    assert response.status_code == 201
    body = response.get_json()
    assert set(body) == {"access_token", "refresh_token", "user"}
    user = body["user"]
    assert set(user) == {"id", "username", "email", "is_admin", "email_verified", "created_at"}
    assert user["email"] == "alice@example.com"
    assert user["is_admin"] is False
    assert user["created_at"].endswith("+00:00")
    stored = db.session.get(User, user["id"])
    assert stored.password_hash != SIGNUP["password"]
    assert b"s3cret-pass" not in response.data
    assert b"password" not in response.data


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("username", "ab"),
        ("username", "a" * 81),
        ("username", "has space"),
        ("username", "semi;colon"),
        ("username", ""),
        ("username", 123),
        ("email", "not-an-email"),
        ("email", "a@"),
        ("email", ""),
        ("email", None),
        ("email", "=?utf-8?q?bob?=@example.com"),  # read as bob@example.com
        ("email", '"=?utf-8?q?a=40b.c?="@example.com'),
        ("password", "short"),
        ("password", "x" * 129),
        ("password", 12345678),
    ],
)
def test_signup_validation(client, db, field, value):
    response = signup(client, **{field: value})
    assert response.status_code == 422
    assert field in response.get_json()["errors"]
    assert db.session.scalar(db.select(db.func.count()).select_from(User)) == 0


@pytest.mark.parametrize("field", ["username", "email", "password"])
def test_signup_requires_each_field(client, field):
    body = {k: v for k, v in SIGNUP.items() if k != field}
    response = client.post("/api/auth/signup", json=body)
    assert response.status_code == 422
    assert field in response.get_json()["errors"]


@pytest.mark.parametrize(
    "extra",
    [
        {"is_admin": True},
        {"id": 99},
        {"password_hash": "x"},
        {"created_at": "2020-01-01"},
        {"nickname": "x"},
    ],
)
def test_signup_rejects_fields_a_user_must_not_set(client, db, extra):
    response = signup(client, **extra)
    assert response.status_code == 422
    assert next(iter(extra)) in response.get_json()["errors"]
    assert db.session.scalar(db.select(db.func.count()).select_from(User)) == 0


def test_signup_accepts_edge_lengths(client):
    assert signup(client, username="a.b", password="x" * 8).status_code == 201
    response = signup(client, username="u" * 80, email="long@example.com", password="y" * 128)
    assert response.status_code == 201


@pytest.mark.parametrize(
    "duplicate",
    [
        {"email": "ALICE@example.COM", "username": "other"},
        {"username": "ALICE", "email": "other@example.com"},
    ],
)
def test_signup_duplicates_ignoring_case_are_409(client, duplicate):
    assert signup(client).status_code == 201
    response = signup(client, **duplicate)
    assert response.status_code == 409
    body = response.get_json()
    assert body["code"] == "duplicate"
    assert body["details"] == {"field": next(iter(duplicate))}


def test_racing_signups_with_one_email_end_in_201_and_409(app, db):
    # Two threads, two sessions: the unique index decides, never a 500.
    results: list[int] = []
    barrier = threading.Barrier(2)

    def attempt(name: str) -> None:
        client = app.test_client()
        barrier.wait()
        results.append(signup(client, username=name, email="race@example.com").status_code)

    threads = [threading.Thread(target=attempt, args=(f"racer{i}",)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(results) == [201, 409]
    assert db.session.scalar(db.select(db.func.count()).select_from(User)) == 1


def test_unique_indexes_hold_in_the_database(db, make_user):
    from sqlalchemy.exc import IntegrityError

    make_user("carol")
    db.session.add(User(username="CAROL", email="c2@example.com", password_hash="x"))
    with pytest.raises(IntegrityError):
        db.session.flush()
    db.session.rollback()


# --- login ------------------------------------------------------------------


def test_login_by_email_or_username(client, make_user):
    user = make_user("dave")
    by_email = client.post(
        "/api/auth/login", json={"email": "DAVE@example.com", "password": PASSWORD}
    )
    assert by_email.status_code == 200
    assert by_email.get_json()["user"]["id"] == user.id
    by_name = client.post("/api/auth/login", json={"username": "Dave", "password": PASSWORD})
    assert by_name.status_code == 200
    assert set(by_name.get_json()) == {"access_token", "refresh_token", "user"}


def test_wrong_password_and_unknown_account_look_the_same(client, make_user):
    make_user("erin")
    wrong = client.post("/api/auth/login", json={"username": "erin", "password": "nope-nope"})
    unknown = client.post("/api/auth/login", json={"username": "nobody", "password": "nope"})
    unknown_email = client.post("/api/auth/login", json={"email": "x@y.zz", "password": "n"})
    assert wrong.status_code == unknown.status_code == unknown_email.status_code == 401
    assert wrong.get_json() == unknown.get_json() == unknown_email.get_json()


def test_unknown_account_spends_a_password_check(app, client, make_user, monkeypatch):
    import app.services.auth as accounts

    checked: list[str] = []
    real = accounts.check_password_hash
    monkeypatch.setattr(
        accounts, "check_password_hash", lambda h, p: checked.append(h) or real(h, p)
    )
    client.post("/api/auth/login", json={"username": "ghost", "password": "whatever1"})
    assert len(checked) == 1  # the dummy hash was verified


def test_unknown_account_takes_about_as_long_as_a_wrong_password(app, make_user):
    # Real hash cost (scrypt), measured on median of several tries.
    fast = app.config["PASSWORD_HASH_METHOD"]
    app.config["PASSWORD_HASH_METHOD"] = "scrypt"
    try:
        make_user("timed")
        client = app.test_client()

        bodies = {
            "known": {"username": "timed", "password": "wrong-password"},
            "unknown": {"username": "not-there", "password": "wrong-password"},
        }
        times: dict[str, list[float]] = {"known": [], "unknown": []}
        # Alternated, so a machine whose load changes meanwhile (CI shares two
        # cores) slows both alike: measured one after the other, a busy
        # phase read as a 2x difference.
        for _ in range(7):
            for name, body in bodies.items():
                start = time.perf_counter()
                assert client.post("/api/auth/login", json=body).status_code == 401
                times[name].append(time.perf_counter() - start)
        known, unknown = (sorted(times[name])[3] for name in ("known", "unknown"))
    finally:
        app.config["PASSWORD_HASH_METHOD"] = fast
    assert unknown > known * 0.5 and known > unknown * 0.5


@pytest.mark.parametrize(
    "body",
    [
        {"password": PASSWORD},
        {"email": "a@example.com"},
        {"email": "a@example.com", "username": "a", "password": PASSWORD},
        {"email": "a@example.com", "password": PASSWORD, "remember": True},
        {"email": 5, "password": PASSWORD},
    ],
)
def test_login_validation(client, body):
    response = client.post("/api/auth/login", json=body)
    assert response.status_code == 422
    assert response.get_json()["errors"]


# --- tokens -----------------------------------------------------------------


def test_profile_needs_a_token(client):
    response = client.get("/api/auth/profile")
    assert response.status_code == 401
    assert response.get_json()["code"] == "token_missing"


def test_profile_returns_the_user(client, make_user, login):
    user = make_user("frank")
    token = login(user)["access_token"]
    response = client.get("/api/auth/profile", headers=auth(token))
    assert response.status_code == 200
    assert response.get_json()["username"] == "frank"
    assert "password_hash" not in response.get_json()


def _b64(data: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def _bad_tokens(app, user) -> dict[str, dict]:
    with app.app_context():
        good = create_access_token(identity=user)
        expired = create_access_token(identity=user, expires_delta=timedelta(seconds=-10))
        refresh = create_refresh_token(identity=user)
    header, payload, signature = good.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=="))
    none_alg = f"{_b64({'alg': 'none', 'typ': 'JWT'})}.{payload}."
    tampered = f"{header}.{_b64({**claims, 'sub': '999'})}.{signature}"
    flipped = f"{header}.{payload}.{signature[:-2]}{'AA' if signature[-2:] != 'AA' else 'BB'}"
    return {
        "missing": {},
        "wrong scheme": {"Authorization": f"Basic {good}"},
        "no token": {"Authorization": "Bearer "},
        "garbage": {"Authorization": "Bearer not.a.jwt"},
        "alg none": {"Authorization": f"Bearer {none_alg}"},
        "tampered payload": {"Authorization": f"Bearer {tampered}"},
        "tampered signature": {"Authorization": f"Bearer {flipped}"},
        "expired": {"Authorization": f"Bearer {expired}"},
        "refresh as access": {"Authorization": f"Bearer {refresh}"},
    }


BAD_TOKEN_KINDS = {
    "missing": "token_missing",
    "wrong scheme": "token_invalid",
    "no token": "token_invalid",
    "garbage": "token_invalid",
    "alg none": "token_invalid",
    "tampered payload": "token_invalid",
    "tampered signature": "token_invalid",
    "expired": "token_expired",
    "refresh as access": "token_invalid",
}
# Flask-JWT-Extended's and PyJWT's own wording never reaches a client.
LIBRARY_WORDS = ("segments", "Header", "Expected", "Signature", "Only ", "padding", "decode")


@pytest.mark.parametrize("kind", BAD_TOKEN_KINDS)
def test_every_bad_token_is_a_401_envelope(app, client, make_user, kind):
    headers = _bad_tokens(app, make_user())[kind]
    for method, path in [
        ("get", "/api/auth/profile"),
        ("get", "/api/cart"),
        ("post", "/api/auth/logout"),
    ]:
        response = getattr(client, method)(path, headers=headers)
        assert response.status_code == 401, (kind, path, response.get_json())
        body = response.get_json()
        assert set(body) == {"code", "message"} and body["message"]
        assert body["code"] == BAD_TOKEN_KINDS[kind], (kind, body)
        assert not any(word in body["message"] for word in LIBRARY_WORDS), body


def test_access_token_refused_for_refresh(client, make_user, login):
    tokens = login(make_user())
    response = client.post("/api/auth/refresh", headers=auth(tokens["access_token"]))
    assert response.status_code == 401
    assert response.get_json() == {
        "code": "token_invalid",
        "message": "This route needs a refresh token",
    }


def test_refresh_gives_a_working_access_token(client, make_user, login):
    tokens = login(make_user())
    response = client.post("/api/auth/refresh", headers=auth(tokens["refresh_token"]))
    assert response.status_code == 200
    new = response.get_json()["access_token"]
    assert client.get("/api/auth/profile", headers=auth(new)).status_code == 200


def test_token_lifetimes(app, client, make_user, login):
    from flask_jwt_extended import decode_token

    tokens = login(make_user())
    access = decode_token(tokens["access_token"])
    refresh = decode_token(tokens["refresh_token"])
    assert access["exp"] - access["iat"] == 3600
    assert refresh["exp"] - refresh["iat"] == 30 * 86400
    assert isinstance(access["sub"], str)


def test_deleted_users_token_is_401(client, db, make_user, login):
    user = make_user()
    token = login(user)["access_token"]
    db.session.delete(db.session.get(User, user.id))
    db.session.commit()
    response = client.get("/api/auth/profile", headers=auth(token))
    assert response.status_code == 401


# --- logout -----------------------------------------------------------------


def test_logout_revokes_the_access_token_at_once(client, db, make_user, login):
    tokens = login(make_user())
    response = client.post("/api/auth/logout", headers=auth(tokens["access_token"]))
    assert response.status_code == 200
    assert response.get_json() == {"message": "Logged out"}
    again = client.get("/api/auth/profile", headers=auth(tokens["access_token"]))
    assert again.status_code == 401
    assert "revoked" in again.get_json()["message"].lower()
    # The refresh token was not sent, so it still works.
    refreshed = client.post("/api/auth/refresh", headers=auth(tokens["refresh_token"]))
    assert refreshed.status_code == 200


def test_logout_revokes_the_refresh_token_sent_in_the_body(client, make_user, login):
    tokens = login(make_user())
    response = client.post(
        "/api/auth/logout",
        headers=auth(tokens["access_token"]),
        json={"refresh_token": tokens["refresh_token"]},
    )
    assert response.status_code == 200
    refreshed = client.post("/api/auth/refresh", headers=auth(tokens["refresh_token"]))
    assert refreshed.status_code == 401


def test_logout_does_not_revoke_another_users_refresh_token(client, make_user, login):
    mine = login(make_user())
    theirs = login(make_user())
    client.post(
        "/api/auth/logout",
        headers=auth(mine["access_token"]),
        json={"refresh_token": theirs["refresh_token"]},
    )
    refreshed = client.post("/api/auth/refresh", headers=auth(theirs["refresh_token"]))
    assert refreshed.status_code == 200


def test_revocations_live_in_the_database_and_expired_ones_are_purged(
    app, client, db, make_user, login
):
    from datetime import UTC, datetime

    db.session.add(RevokedToken(jti="old", expires_at=datetime.now(UTC) - timedelta(days=1)))
    db.session.commit()
    tokens = login(make_user())
    client.post("/api/auth/logout", headers=auth(tokens["access_token"]))
    jtis = set(db.session.scalars(db.select(RevokedToken.jti)))
    assert "old" not in jtis and len(jtis) == 1


# --- admin ------------------------------------------------------------------


def test_admin_required_reads_the_database_not_the_token(client, db, make_user, login):
    admin = make_user(admin=True)
    token = login(admin)["access_token"]
    new_product = {"name": "X", "price": "1.00", "stock": 1}
    assert client.post("/api/products", json=new_product, headers=auth(token)).status_code == 201
    db.session.get(User, admin.id).is_admin = False
    db.session.commit()
    response = client.post("/api/products", json=new_product, headers=auth(token))
    assert response.status_code == 403
    assert response.get_json() == {"code": "forbidden", "message": "Admin privileges required"}


# --- profile update ----------------------------------------------------------


def test_profile_update_username(client, user_token):
    response = client.put(
        "/api/auth/profile", json={"username": "renamed"}, headers=auth(user_token)
    )
    assert response.status_code == 200
    assert response.get_json()["username"] == "renamed"


@pytest.mark.parametrize("change", [{"email": "new@example.com"}, {"password": "new-password-1"}])
def test_email_or_password_change_needs_current_password(client, user_token, change):
    response = client.put("/api/auth/profile", json=change, headers=auth(user_token))
    assert response.status_code == 422
    assert "current_password" in response.get_json()["errors"]
    wrong = client.put(
        "/api/auth/profile",
        json={**change, "current_password": "wrong-one"},
        headers=auth(user_token),
    )
    assert wrong.status_code == 422
    assert "current_password" in wrong.get_json()["errors"]


def test_password_change_then_login(client, make_user, login):
    user = make_user()
    token = login(user)["access_token"]
    response = client.put(
        "/api/auth/profile",
        json={"password": "brand-new-pass", "current_password": PASSWORD},
        headers=auth(token),
    )
    assert response.status_code == 200
    assert (
        client.post("/api/auth/login", json={"email": user.email, "password": PASSWORD}).status_code
        == 401
    )
    assert (
        client.post(
            "/api/auth/login", json={"email": user.email, "password": "brand-new-pass"}
        ).status_code
        == 200
    )


def test_email_change_is_lowercased_and_unique(client, make_user, login):
    make_user("taken")
    user = make_user()
    token = login(user)["access_token"]
    response = client.put(
        "/api/auth/profile",
        json={"email": "NEW@Example.com", "current_password": PASSWORD},
        headers=auth(token),
    )
    assert response.status_code == 200
    assert response.get_json()["email"] == "new@example.com"
    clash = client.put(
        "/api/auth/profile",
        json={"email": "taken@example.com", "current_password": PASSWORD},
        headers=auth(token),
    )
    assert clash.status_code == 409
    clash = client.put("/api/auth/profile", json={"username": "TAKEN"}, headers=auth(token))
    assert clash.status_code == 409


@pytest.mark.parametrize(
    "body",
    [{"is_admin": True}, {"id": 5}, {"password_hash": "x"}, {"username": "x"}, {"unknown": 1}],
)
def test_profile_update_rejects_forbidden_and_bad_fields(client, db, make_user, login, body):
    user = make_user()
    token = login(user)["access_token"]
    response = client.put("/api/auth/profile", json=body, headers=auth(token))
    assert response.status_code == 422
    assert db.session.get(User, user.id).is_admin is False


def test_passwords_never_logged(app, client, caplog):
    caplog.set_level("DEBUG")
    signup(client, password="very-secret-pw")
    client.post("/api/auth/login", json={"username": "alice", "password": "very-secret-pw"})
    client.post("/api/auth/login", json={"username": "alice", "password": "other-secret"})
    assert "very-secret-pw" not in caplog.text
    assert "other-secret" not in caplog.text
