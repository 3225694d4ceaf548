"""Every error carries a stable `code` (and `details` where API.md lists them),
in the project's own words (API.md, Errors)."""

from __future__ import annotations

import pytest

from app.errors import ApiError
from tests.helpers import PASSWORD, SHIPPING, auth, order_for


def error(response, status: int, code: str) -> dict:
    assert response.status_code == status, response.get_json()
    assert response.mimetype == "application/json"
    body = response.get_json()
    assert body["code"] == code, body
    assert isinstance(body["message"], str) and body["message"]
    return body


@pytest.mark.parametrize(
    ("method", "path", "kwargs", "status", "code"),
    [
        ("get", "/api/nowhere", {}, 404, "not_found"),
        ("get", "/nowhere", {}, 404, "not_found"),
        ("get", "/api//products", {}, 404, "not_found"),  # not a 308 with an HTML body
        ("post", "//api/orders", {"json": {}}, 404, "not_found"),
        ("get", "/api/products/999", {}, 404, "not_found"),
        ("delete", "/api/health", {}, 405, "method_not_allowed"),
        (
            "post",
            "/api/auth/login",
            {"data": "{x", "content_type": "application/json"},
            400,
            "invalid_json",
        ),
        (
            "post",
            "/api/auth/login",
            {"data": "x=1", "content_type": "text/plain"},
            415,
            "unsupported_media_type",
        ),
        ("post", "/api/auth/login", {"json": {"password": "x"}}, 422, "validation_failed"),
        ("post", "/api/auth/login", {"json": [1]}, 422, "validation_failed"),
        ("get", "/api/products?per_page=0", {}, 422, "validation_failed"),
        ("get", "/api/cart", {}, 401, "token_missing"),
    ],
)
def test_http_and_validation_errors_have_codes(client, method, path, kwargs, status, code):
    error(getattr(client, method)(path, **kwargs), status, code)


def test_payload_too_large(client):
    body = '{"email": "' + "a" * (1024 * 1024 + 10) + '", "password": "x"}'
    response = client.post("/api/auth/login", data=body, content_type="application/json")
    error(response, 413, "payload_too_large")


def test_unexpected_error_is_internal_error(make_app):
    app = make_app()

    @app.route("/api/_boom_codes")
    def boom():
        raise RuntimeError("secret internals")

    body = error(app.test_client().get("/api/_boom_codes"), 500, "internal_error")
    assert body == {"code": "internal_error", "message": "Internal server error"}


def test_health_unavailable_has_a_code(make_app):
    unreachable = "postgresql+psycopg://nobody@127.0.0.1:1/none?connect_timeout=2"
    app = make_app("testing", {"SQLALCHEMY_DATABASE_URI": unreachable})
    response = app.test_client().get("/api/health")
    error(response, 503, "unavailable")
    # Every 503 says when to retry, as the document says this one does.
    assert response.headers["Retry-After"] == "5"


def test_wrong_login_is_invalid_credentials(client, make_user):
    user = make_user()
    for body in (
        {"email": user.email, "password": "wrong-one-9"},
        {"username": "nobody", "password": PASSWORD},
    ):
        error(client.post("/api/auth/login", json=body), 401, "invalid_credentials")


def test_admin_route_is_forbidden_for_users(client, user_token):
    body = {"name": "X", "price": 1, "stock": 1}
    error(client.post("/api/products", json=body, headers=auth(user_token)), 403, "forbidden")


@pytest.mark.parametrize("field", ["username", "email"])
def test_duplicate_signup_names_the_field(client, make_user, field):
    user = make_user()
    body = {"username": "fresh_name", "email": "fresh@example.com", "password": PASSWORD}
    body[field] = getattr(user, field).upper() if field == "username" else user.email
    got = error(client.post("/api/auth/signup", json=body), 409, "duplicate")
    assert got["details"] == {"field": field}


def test_duplicate_profile_change_names_the_field(client, make_user, login):
    taken = make_user()
    token = login(make_user())["access_token"]
    response = client.put(
        "/api/auth/profile", json={"username": taken.username}, headers=auth(token)
    )
    assert error(response, 409, "duplicate")["details"] == {"field": "username"}


def test_out_of_stock_in_cart_gives_product_and_available(client, user_token, make_product):
    product = make_product(stock=3)
    response = client.post(
        "/api/cart", json={"product_id": product.id, "quantity": 5}, headers=auth(user_token)
    )
    body = error(response, 409, "out_of_stock")
    assert body["details"] == {"product_id": product.id, "available": 3}


def test_out_of_stock_at_checkout_gives_product_and_available(client, db, user_token, make_product):
    product = make_product(stock=5)
    client.post(
        "/api/cart", json={"product_id": product.id, "quantity": 4}, headers=auth(user_token)
    )
    db.session.execute(db.text("UPDATE products SET stock = 2 WHERE id = :i"), {"i": product.id})
    db.session.commit()
    body = error(
        client.post("/api/orders", json=SHIPPING, headers=auth(user_token)), 409, "out_of_stock"
    )
    assert body["details"] == {"product_id": product.id, "available": 2}


def test_empty_cart(client, user_token):
    response = client.post("/api/orders", json=SHIPPING, headers=auth(user_token))
    error(response, 409, "empty_cart")


def test_invalid_transition_gives_from_and_to(client, user_token, admin_token, make_product):
    product = make_product()
    client.post("/api/cart", json={"product_id": product.id}, headers=auth(user_token))
    order = client.post("/api/orders", json=SHIPPING, headers=auth(user_token)).get_json()
    response = client.put(
        f"/api/orders/{order['id']}", json={"status": "delivered"}, headers=auth(admin_token)
    )
    body = error(response, 409, "invalid_transition")
    assert body["details"] == {"from": "pending", "to": "delivered"}


def test_revoked_token(client, user_token):
    client.post("/api/auth/logout", headers=auth(user_token))
    error(client.get("/api/cart", headers=auth(user_token)), 401, "token_revoked")


def test_refresh_token_as_access_says_so(client, make_user, login):
    tokens = login(make_user())
    body = error(
        client.get("/api/cart", headers=auth(tokens["refresh_token"])), 401, "token_invalid"
    )
    assert body["message"] == "This route needs an access token"
    body = error(
        client.post("/api/auth/refresh", headers=auth(tokens["access_token"])), 401, "token_invalid"
    )
    assert body["message"] == "This route needs a refresh token"


# --- PUT with nothing to change ----------------------------------------------------


@pytest.mark.parametrize("kwargs", [{}, {"json": {}}])
def test_empty_product_update_is_422(client, admin_token, make_product, kwargs):
    product = make_product()
    response = client.put(f"/api/products/{product.id}", headers=auth(admin_token), **kwargs)
    assert "_schema" in error(response, 422, "validation_failed")["errors"]


@pytest.mark.parametrize("kwargs", [{}, {"json": {}}])
def test_empty_profile_update_is_422(client, user_token, kwargs):
    response = client.put("/api/auth/profile", headers=auth(user_token), **kwargs)
    assert "_schema" in error(response, 422, "validation_failed")["errors"]


# --- the contract other features rely on ----------------------------------------------


class _Declined(ApiError):
    status = 402
    code = "payment_declined"


def test_api_error_subclasses_declare_status_code_and_details(make_app):
    app = make_app()

    @app.route("/api/_declined")
    def declined():
        raise _Declined("Card declined", details={"reason": "test"})

    @app.route("/api/_adhoc")
    def adhoc():
        raise ApiError("Nope", status=415)

    body = error(app.test_client().get("/api/_declined"), 402, "payment_declined")
    assert body == {
        "code": "payment_declined",
        "message": "Card declined",
        "details": {"reason": "test"},
    }
    error(app.test_client().get("/api/_adhoc"), 415, "unsupported_media_type")


@pytest.mark.parametrize(
    ("kwargs", "status", "code"),
    [
        ({"data": "{not json", "content_type": "application/json"}, 400, "invalid_json"),
        ({"json": {"is_admin": True, "refund": False}}, 422, "validation_failed"),
        ({"json": [1]}, 422, "validation_failed"),
        (
            {"data": '{"a": "' + "x" * (1024 * 1024) + '"}', "content_type": "application/json"},
            413,
            "payload_too_large",
        ),
        ({"data": "x=1", "content_type": "text/plain"}, 415, "unsupported_media_type"),
    ],
)
def test_an_operation_without_a_body_refuses_a_bad_one(
    client, make_user, login, make_product, kwargs, status, code
):
    """A body sent to an operation that takes none (cancel, refresh, logout
    everywhere, a DELETE) is read as any body is: the same errors, and
    nothing done; `{}` or no body at all are fine."""
    tokens = login(make_user())
    token = tokens["access_token"]
    product = make_product(stock=5)
    order = order_for(client, token, (product, 2))
    cancel = f"/api/orders/{order['id']}/cancel"
    item = client.post(
        "/api/cart", json={"product_id": product.id, "quantity": 1}, headers=auth(token)
    ).get_json()["items"][0]
    for method, path, bearer in (
        ("post", cancel, token),
        ("post", "/api/auth/refresh", tokens["refresh_token"]),
        ("post", "/api/auth/logout-all", token),
        ("delete", f"/api/cart/{item['id']}", token),
        ("delete", "/api/cart/clear", token),
    ):
        body = error(getattr(client, method)(path, headers=auth(bearer), **kwargs), status, code)
        if status == 422:
            assert body["errors"] == (
                {"is_admin": ["Unknown field."], "refund": ["Unknown field."]}
                if "json" in kwargs and isinstance(kwargs["json"], dict)
                else {"_schema": ["This operation takes no request body."]}
            )
    # Without a valid token the answer is the 401, whatever the body, as on
    # an operation that takes a body.
    for method, path in (
        ("post", cancel),
        ("post", "/api/auth/refresh"),
        ("delete", "/api/cart/clear"),
    ):
        for headers in ({}, {"Authorization": "Bearer not-a-token"}):
            response = getattr(client, method)(path, headers=headers, **kwargs)
            if status != 415:  # not JSON at all is refused before anything else
                assert response.status_code == 401, (path, response.get_json())
    order_now = client.get(f"/api/orders/{order['id']}", headers=auth(token)).get_json()
    assert order_now["status"] == "pending"
    assert len(client.get("/api/cart", headers=auth(token)).get_json()["items"]) == 1
    assert client.post(cancel, json={}, headers=auth(token)).status_code == 200
    assert client.delete("/api/cart/clear", headers=auth(token)).status_code == 200


def test_docs_api_lists_every_error_code():
    """docs/API.md's table lists every code a feature adds (payments, reviews
    and inventory were missing; found by review)."""
    from pathlib import Path

    from app.errors import ApiError

    def codes(cls) -> set[str]:
        return {cls.code, *(code for sub in cls.__subclasses__() for code in codes(sub))}

    doc = (Path(__file__).resolve().parent.parent / "docs" / "API.md").read_text()
    found = codes(ApiError) - {None}
    assert len(found) > 20
    assert sorted(code for code in found if f"`{code}`" not in doc) == []
