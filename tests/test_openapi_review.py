"""The OpenAPI document against the app, found by review (each failed
before its fix): the errors every operation can answer, the webhook's 409,
money bounds, rate-limit exemptions, a signed-in catalog read's caching."""

from __future__ import annotations

import json

import jsonschema_rs
import pytest

from tests.helpers import auth, order_for


@pytest.fixture(scope="module")
def spec(app):
    return json.loads(app.test_client().get("/api/openapi.json").data)


def declared(spec, path: str, method: str) -> set[str]:
    return {str(code) for code in spec["paths"][path][method]["responses"]}


def query_parameter(spec, path: str, method: str, name: str) -> dict:
    for parameter in spec["paths"][path][method].get("parameters", []):
        if parameter["in"] == "query" and parameter["name"] == name:
            return parameter
    raise AssertionError(f"{name} not documented on {method.upper()} {path}")


def test_operations_without_a_request_body_declare_the_body_errors_they_answer(
    client, spec, make_user, login, make_product, admin_token
):
    """OpenAPI vs app: `standard_error_responses` (app/web/openapi.py) adds
    400/413/415/422 only to operations with a `requestBody`. But every request
    with a body goes through `reject_non_json_bodies` (415 for a non-JSON
    content type, also on GETs) and every body-less write through
    `_refuse_unexpected_body` (app/web/blueprint.py: 422 naming each field,
    400 for bad JSON). So cancelOrder, deleteProduct, logoutAll, refresh,
    resendVerification and listProducts answer 415/422 that their documented
    responses do not list (docs/API.md: a non-JSON body is a 415, unknown body
    fields a 422) - a client generated from the document has no type for them."""
    user = make_user()
    tokens = login(user)
    token = tokens["access_token"]
    product = make_product(stock=5)
    order = order_for(client, token, (product, 1))
    other = make_product()
    probes = [
        (
            "/api/orders/{order_id}/cancel",
            "post",
            client.post(f"/api/orders/{order['id']}/cancel", json={"x": 1}, headers=auth(token)),
        ),
        (
            "/api/orders/{order_id}/cancel",
            "post",
            client.post(
                f"/api/orders/{order['id']}/cancel",
                data="x",
                content_type="text/plain",
                headers=auth(token),
            ),
        ),
        (
            "/api/products/{product_id}",
            "delete",
            client.delete(f"/api/products/{other.id}", json={"a": 1}, headers=auth(admin_token)),
        ),
        (
            "/api/auth/refresh",
            "post",
            client.post("/api/auth/refresh", json={"a": 1}, headers=auth(tokens["refresh_token"])),
        ),
        (
            "/api/auth/verify-email/resend",
            "post",
            client.post("/api/auth/verify-email/resend", json={"a": 1}, headers=auth(token)),
        ),
        (
            "/api/products",
            "get",
            client.get("/api/products", data="x", content_type="text/plain"),
        ),
        (
            "/api/auth/logout-all",
            "post",
            client.post("/api/auth/logout-all", json={"a": 1}, headers=auth(token)),
        ),
    ]
    observed = [(path, method, r.status_code) for path, method, r in probes]
    assert [status for _, _, status in observed] == [422, 415, 422, 422, 422, 415, 422]
    undeclared = [
        f"{method.upper()} {path}: {status}, declared {sorted(declared(spec, path, method))}"
        for path, method, status in observed
        if str(status) not in declared(spec, path, method)
    ]
    assert undeclared == []


def test_webhook_declares_the_409_it_answers(spec):
    """OpenAPI vs app and docs/API.md: docs/API.md lists 409 `conflict` for "a
    webhook refund that arrived before its payment" (the 409 itself:
    tests/test_payments_stripe.py), but POST /api/payments/webhook declared
    only 200, 400, 404, 413, 415, 422, 429, 502."""
    assert "409" in declared(spec, "/api/payments/webhook", "post")


@pytest.mark.parametrize(
    "path, body",
    [
        ("/api/auth/login", {"email": "nobody@example.com", "password": "correct-horse-9"}),
        (
            "/api/auth/signup",
            {"username": "busy_one", "email": "busy@example.com", "password": "correct-horse-9"},
        ),
    ],
)
def test_password_hashing_busy_503_is_declared(make_app, spec, path, body):
    """OpenAPI vs app and docs/API.md: docs/API.md says login, signup and a
    password change answer 503 `unavailable` (Retry-After: 1) when every
    password-hashing slot stays busy for PASSWORD_HASH_WAIT seconds
    (app/services/passwords.hashing raises ServerBusy). The document declares
    no 503 on any operation but /api/health: app/web/openapi.py has 503 in
    ERROR_DESCRIPTIONS but `standard_error_responses` never adds it."""
    app = make_app(overrides={"PASSWORD_HASH_WAIT": 0.01})
    slots = app.extensions["shop_hash_slots"]
    taken = 0
    while slots.acquire(blocking=False):
        taken += 1
    try:
        response = app.test_client().post(path, json=body)
    finally:
        for _ in range(taken):
            slots.release()
    assert response.status_code == 503, response.get_json()
    assert response.get_json()["code"] == "unavailable"
    assert "503" in declared(spec, path, "post")


def test_database_busy_503_is_declared(make_app, db, spec, make_user, login, make_product):
    """OpenAPI vs app and docs/API.md: docs/API.md says any request answers 503
    `unavailable` with Retry-After when the database cannot answer in time
    (app/errors.handle_database_busy); POST /api/cart does so with SQLite's
    write lock held, yet its documented responses have no 503 (only health's
    do: app/web/openapi.standard_error_responses never adds 503)."""
    if db.engine.dialect.name != "sqlite":
        pytest.skip("SQLite's database-wide write lock")
    import sqlite3

    app = make_app(overrides={"SQLITE_BUSY_TIMEOUT_MS": 50})
    client = app.test_client()
    token = login(make_user())["access_token"]
    product = make_product()
    holder = sqlite3.connect(db.engine.url.database, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        response = client.post("/api/cart", json={"product_id": product.id}, headers=auth(token))
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert response.status_code == 503, response.get_json()
    assert "503" in declared(spec, "/api/cart", "post")


@pytest.mark.parametrize("path", ["/api/products", "/api/products/facets"])
@pytest.mark.parametrize("name", ["min_price", "max_price"])
def test_price_filter_parameters_document_their_maximum(client, spec, path, name):
    """OpenAPI vs app: the `min_price`/`max_price` query parameters are documented
    as `{type: number, minimum: 0}` with no maximum (money2properties in
    app/web/openapi.py drops Money's bound), but the app refuses any value
    above 1,000,000 with a 422 ("Must be between 0 and 1000000."). A value the
    document allows is refused."""
    response = client.get(f"{path}?{name}=2000000")
    assert response.status_code == 422
    assert name in response.get_json()["errors"]
    schema = query_parameter(spec, path, "get", name)["schema"]
    assert not jsonschema_rs.validator_for(schema).is_valid(2000000)


def test_money_input_as_a_string_documents_the_same_bound_as_a_number(client, spec, admin_token):
    """OpenAPI vs app and API.md (price 0 to 1,000,000): a request amount is
    `anyOf [number 0..1000000, string ^[0-9]{1,7}(\\.[0-9]{1,2})?$]`
    (app/web/openapi_contract.money_input). The string branch allows up to
    9,999,999.99, so `"price": "9999999"` validates against the Product
    request schema, but the app answers 422 "Must be between 0 and 1000000."."""
    body = {"name": "Too dear", "price": "9999999", "stock": 1}
    response = client.post("/api/products", json=body, headers=auth(admin_token))
    assert response.status_code == 422
    assert "price" in response.get_json()["errors"]
    price = spec["components"]["schemas"]["Product"]["properties"]["price"]
    assert not jsonschema_rs.validator_for(price).is_valid("9999999")


@pytest.mark.parametrize(
    "path, method", [("/api/health", "get"), ("/api/payments/webhook", "post")]
)
def test_exempt_operations_do_not_declare_429(spec, path, method):
    """OpenAPI vs app and docs/API.md: /api/health ("Never rate limited",
    docs/API.md) and the payment webhook are `limiter.exempt`, yet
    `standard_error_responses` (app/web/openapi.py) adds 429 to every
    operation, so both document a 429 they can never answer (a client or a
    load balancer probe is told to expect throttling that never comes).
    (That neither is ever limited: tests/test_rate_limits.py, through a
    gunicorn with the limits on; the limiter is one object per process, so
    switching it on in a test app here switched it on for every later test.)"""
    assert "429" not in declared(spec, path, method)


def test_catalog_read_with_a_bearer_token_sends_the_documented_cache_control(
    client, spec, user_token, make_product
):
    """OpenAPI vs app: every catalog read's 200 documents `Cache-Control`
    "`no-cache`: may be stored, revalidated every time" (CATALOG_READ_HEADERS,
    app/web/blueprint.py). But `_finish_request` (app/web/hooks.py) overwrites
    it with `no-store` whenever the request has an Authorization header - which
    the generated TypeScript client (clients/typescript/src/client.ts) sends
    on every call once signed in - so the same public answer is documented as
    storable and served as not storable (the ETag can then never be reused)."""
    product = make_product()
    anonymous = client.get(f"/api/products/{product.id}")
    signed_in = client.get(f"/api/products/{product.id}", headers=auth(user_token))
    assert anonymous.headers["Cache-Control"] == "no-cache"
    assert signed_in.status_code == 200 and "ETag" in signed_in.headers
    documented = spec["paths"]["/api/products/{product_id}"]["get"]["responses"]["200"]["headers"]
    assert "no-cache" in documented["Cache-Control"]["description"]
    assert signed_in.headers["Cache-Control"] == "no-cache"
