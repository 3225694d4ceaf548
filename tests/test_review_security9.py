"""Review round 9, security: what a hostile client sends - forged and odd
tokens, fields a user must not set, a configured CORS origin read as a
pattern. Through the test client, with real tokens from the API."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time

import jwt as pyjwt
import pytest

from tests.helpers import auth
from tests.test_review_hostile7 import assert_envelope, build_world


@pytest.fixture
def world(client, make_user, login, make_product):
    return build_world(client, make_user, login, make_product)


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _claims(token: str) -> dict:
    return json.loads(base64.urlsafe_b64decode(token.split(".")[1] + "=="))


def _signed(app, claims: dict) -> str:
    """A token signed with the app's own key: what only a holder of the key
    could make, so any answer but a 401 or the token's normal one is ours."""
    return pyjwt.encode(claims, app.config["JWT_SECRET_KEY"], algorithm="HS256")


# --- JWT -------------------------------------------------------------------------

NOW = int(time.time())
# Claims no token the app issues has, each on a fresh token of the user:
# every route refuses them with a 401 before reading anything; none is a 500
# (logout revoked a token without `jti`, or with an `exp` no date holds,
# through an IntegrityError or an OverflowError: found by this review), and
# none is taken as an access token (one of another `type` was; one with no
# `type` is an access token to Flask-JWT-Extended, by design).
ODD_CLAIMS = {
    "no jti": lambda c: {k: v for k, v in c.items() if k != "jti"},
    "empty jti": lambda c: {**c, "jti": ""},
    "exp past any date": lambda c: {**c, "exp": 10**30},
    "exp past year 9999": lambda c: {**c, "exp": 253402300800},
    "type admin": lambda c: {**c, "type": "admin"},
    "nbf in an hour": lambda c: {**c, "nbf": NOW + 3600},
    "iat in an hour": lambda c: {**c, "iat": NOW + 3600},
    "sub a number": lambda c: {**c, "sub": int(c["sub"])},
    "sub zero": lambda c: {**c, "sub": "0"},
    "sub negative": lambda c: {**c, "sub": "-1"},
    "sub past the id range": lambda c: {**c, "sub": "2147483648"},
    "sub huge": lambda c: {**c, "sub": "9" * 40},
    "sub a list": lambda c: {**c, "sub": [c["sub"]]},
    "jti a number": lambda c: {**c, "jti": 5},
}


@pytest.mark.parametrize("kind", ODD_CLAIMS)
def test_a_token_with_claims_the_app_never_issues_is_a_401(app, client, make_user, login, kind):
    user = make_user()
    claims = ODD_CLAIMS[kind](_claims(login(user)["access_token"]))
    token = _signed(app, claims)
    for method, path in [
        ("GET", "/api/auth/profile"),
        ("GET", "/api/cart"),
        ("POST", "/api/auth/logout"),
        ("POST", "/api/auth/logout-all"),
    ]:
        response = client.open(path, method=method, headers=auth(token))
        assert_envelope(response, 401, "token_invalid")
    # Nothing was revoked: the user's own tokens still work.
    assert (
        client.get("/api/auth/profile", headers=auth(login(user)["access_token"])).status_code
        == 200
    )


def test_a_refresh_token_with_an_exp_past_any_date_is_a_401_at_refresh(
    app, client, make_user, login
):
    refresh = login(make_user())["refresh_token"]
    token = _signed(app, {**_claims(refresh), "exp": 10**30})
    assert_envelope(client.post("/api/auth/refresh", headers=auth(token)), 401, "token_invalid")


def test_logout_naming_an_odd_refresh_token_still_logs_out(app, client, make_user, login):
    """The body's refresh token is revoked only if it is one the app issued:
    one of the caller's without `jti`, or with an `exp` no date holds, is
    ignored (it was a 500, the access token left unrevoked)."""
    user = make_user()
    for odd in (
        lambda c: {k: v for k, v in c.items() if k != "jti"},
        lambda c: {**c, "exp": 10**30},
    ):
        tokens = login(user)
        refresh = _signed(app, odd(_claims(tokens["refresh_token"])))
        response = client.post(
            "/api/auth/logout",
            json={"refresh_token": refresh},
            headers=auth(tokens["access_token"]),
        )
        assert response.status_code == 200, response.get_json()
        response = client.get("/api/cart", headers=auth(tokens["access_token"]))
        assert_envelope(response, 401, "token_revoked")
        # The real refresh token was not named, so it still refreshes.
        response = client.post("/api/auth/refresh", headers=auth(tokens["refresh_token"]))
        assert response.status_code == 200, response.get_json()


def test_role_claims_in_a_token_grant_nothing(app, client, make_user, login, make_product):
    """API.md: admin is read from the database. A token (signed with the
    key itself) that claims admin in every spelling is a buyer's."""
    claims = _claims(login(make_user())["access_token"])
    token = _signed(app, {**claims, "is_admin": True, "role": "admin", "roles": ["admin"]})
    product = make_product()
    assert client.get("/api/auth/profile", headers=auth(token)).get_json()["is_admin"] is False
    response = client.post(
        f"/api/products/{product.id}/stock", json={"delta": 5}, headers=auth(token)
    )
    assert_envelope(response, 403, "forbidden")


def test_an_rs256_header_over_an_hmac_of_the_key_is_refused(app, client, make_user, login):
    """HS/RS confusion: only HS256 is decoded, whatever the header claims."""
    payload = login(make_user())["access_token"].split(".")[1]
    key = app.config["JWT_SECRET_KEY"].encode()
    for alg in ("RS256", "ES256", "PS256", "HS512", "none", "None", "hs256"):
        header = _b64(json.dumps({"alg": alg, "typ": "JWT"}).encode())
        signature = _b64(hmac.new(key, f"{header}.{payload}".encode(), hashlib.sha256).digest())
        token = f"{header}.{payload}.{signature}"
        assert_envelope(client.get("/api/auth/profile", headers=auth(token)), 401, "token_invalid")


# --- mass assignment ----------------------------------------------------------------

# Fields a caller must not set, in every body that takes one: each a 422
# naming the field (unknown fields are rejected), and nothing changes.
MASS_ASSIGNMENT = [
    ("POST", "/api/cart", "user", {"product_id": "{p}", "unit_price": 0.01}, "unit_price"),
    ("POST", "/api/cart", "user", {"product_id": "{p}", "price": 0.01}, "price"),
    ("POST", "/api/cart", "user", {"product_id": "{p}", "user_id": 1}, "user_id"),
    ("PUT", "/api/cart/{i}", "user", {"quantity": 1, "unit_price": 0.01}, "unit_price"),
    ("PUT", "/api/cart/{i}", "user", {"quantity": 1, "product_id": 1}, "product_id"),
    (
        "POST",
        "/api/orders",
        "user",
        {"shipping_address": "Some Road 12", "status": "delivered"},
        "status",
    ),
    (
        "POST",
        "/api/orders",
        "user",
        {"shipping_address": "Some Road 12", "total_amount": 0},
        "total_amount",
    ),
    ("POST", "/api/orders", "user", {"shipping_address": "Some Road 12", "user_id": 1}, "user_id"),
    (
        "POST",
        "/api/orders",
        "user",
        {"shipping_address": "Some Road 12", "payment_status": "paid"},
        "payment_status",
    ),
    ("PUT", "/api/orders/{o}", "user", {"payment_status": "paid"}, "payment_status"),
    ("PUT", "/api/orders/{o}", "user", {"total_amount": 1}, "total_amount"),
    ("PUT", "/api/orders/{o}", "user", {"user_id": 1}, "user_id"),
    ("PUT", "/api/orders/{o}", "admin", {"total_amount": 1}, "total_amount"),
    ("PUT", "/api/orders/{o}", "admin", {"payment_status": "paid"}, "payment_status"),
    (
        "POST",
        "/api/orders/{o}/pay",
        "user",
        {"payment_method": "pm_card_visa", "amount": 0.01},
        "amount",
    ),
    ("POST", "/api/orders/{o}/cancel", "user", {"status": "delivered"}, "status"),
    ("PUT", "/api/reviews/{r}", "user", {"rating": 5, "user_id": 1}, "user_id"),
    ("PUT", "/api/reviews/{r}", "user", {"product_id": 1}, "product_id"),
    ("PUT", "/api/reviews/{r}", "user", {"verified": True}, "verified"),
    ("POST", "/api/products/{p}/reviews", "user", {"rating": 5, "user_id": 1}, "user_id"),
    (
        "PUT",
        "/api/auth/profile",
        "user",
        {"username": "new_name", "email_verified": True},
        "email_verified",
    ),
    ("PUT", "/api/auth/profile", "user", {"role": "admin"}, "role"),
    ("PUT", "/api/auth/profile", "user", {"token_version": 0}, "token_version"),
    ("PUT", "/api/auth/profile", "user", {"password_hash": "x"}, "password_hash"),
    (
        "POST",
        "/api/products",
        "admin",
        {"name": "N", "price": 1, "stock": 1, "rating_average": 5},
        "rating_average",
    ),
    ("PUT", "/api/products/{p}", "admin", {"rating_count": 5}, "rating_count"),
    ("POST", "/api/products/{p}/stock", "admin", {"delta": 1, "actor_id": 1}, "actor_id"),
    ("POST", "/api/products/{p}/stock", "admin", {"delta": 1, "reason": "order"}, "reason"),
]


@pytest.mark.parametrize(("method", "path", "who", "body", "field"), MASS_ASSIGNMENT)
def test_fields_a_caller_must_not_set_are_refused(client, world, method, path, who, body, field):
    filled = {k: world["p"] if v == "{p}" else v for k, v in body.items()}
    before = {
        "order": client.get(f"/api/orders/{world['o']}", headers=auth(world["user"])).get_json(),
        "cart": client.get("/api/cart", headers=auth(world["user"])).get_json(),
        "product": client.get(f"/api/products/{world['p']}").get_json(),
        "me": client.get("/api/auth/profile", headers=auth(world["user"])).get_json(),
    }
    response = client.open(
        path.format(**world), method=method, json=filled, headers=auth(world[who])
    )
    body_ = assert_envelope(response, 422, "validation_failed")
    assert body_["errors"] == {field: ["Unknown field."]}, body_
    after = {
        "order": client.get(f"/api/orders/{world['o']}", headers=auth(world["user"])).get_json(),
        "cart": client.get("/api/cart", headers=auth(world["user"])).get_json(),
        "product": client.get(f"/api/products/{world['p']}").get_json(),
        "me": client.get("/api/auth/profile", headers=auth(world["user"])).get_json(),
    }
    assert after == before


# --- CORS ----------------------------------------------------------------------------

IPV6 = "http://[::1]:5173"


@pytest.fixture
def ipv6_cors(make_app):
    """CORS_ORIGINS as the README allows it, an IPv6 origin among them
    (config.env_origins takes `http://[::1]:5173`: test_review_ops7)."""
    return make_app(overrides={"CORS_ORIGINS": [IPV6, "https://shop.example.com"]}).test_client()


def test_a_configured_ipv6_origin_is_allowed(ipv6_cors):
    """flask-cors read `http://[::1]:5173` as a regular expression (its `[`):
    `[::1]` one character of `:` or `1`, so the origin itself was refused."""
    response = ipv6_cors.get("/api/products", headers={"Origin": IPV6})
    assert response.headers.get("Access-Control-Allow-Origin") == IPV6
    preflight = ipv6_cors.options(
        "/api/cart",
        headers={
            "Origin": IPV6,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "Authorization, Content-Type",
        },
    )
    assert preflight.headers.get("Access-Control-Allow-Origin") == IPV6
    assert "POST" in preflight.headers.get("Access-Control-Allow-Methods", "")


@pytest.mark.parametrize(
    "origin",
    [
        "http://1:5173",
        "http://::5173",
        "http://1:5173.evil.example",
        "http://[::1]:51730",
        "http://[::1]:5173.evil.example",
        "https://shop.example.com.evil.example",
        "https://evil.example",
        "null",
    ],
)
def test_only_the_configured_origins_are_allowed(ipv6_cors, origin):
    """The IPv6 pattern matched any origin starting with `http://1:5173` or
    `http://::5173` (a prefix, not the whole origin): none is configured."""
    for response in (
        ipv6_cors.get("/api/products", headers={"Origin": origin}),
        ipv6_cors.options(
            "/api/cart", headers={"Origin": origin, "Access-Control-Request-Method": "POST"}
        ),
    ):
        assert "Access-Control-Allow-Origin" not in response.headers, origin
        assert "Access-Control-Allow-Credentials" not in response.headers
