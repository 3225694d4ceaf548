"""Review (session 15) of the contract clients generate code from: every real
answer, success or error, walked through the OpenAPI document. Each status an
operation answers must be one it documents, and the body must validate against
the documented schema (OpenAPI 3.0's `nullable` read as JSON Schema's "null").
Those walks pass (on both databases); the tests from
`test_the_typescript_client_has_a_method_for_every_operation` on each failed
on the code before their fix, as their docstrings say."""

from __future__ import annotations

import json
import re

import jsonschema_rs
import pytest

from tests.helpers import PASSWORD, SHIPPING, VISA, auth
from tests.reviewing import give_order


@pytest.fixture(scope="module")
def spec(app):
    return json.loads(app.test_client().get("/api/openapi.json").data)


def _resolve(spec, node):
    while isinstance(node, dict) and "$ref" in node:
        target = spec
        for part in node["$ref"].removeprefix("#/").split("/"):
            target = target[part]
        node = target
    return node


def as_json_schema(spec, node):
    """An OpenAPI 3.0 schema as plain JSON Schema: refs inlined, `nullable`
    allowing null, only `date-time` kept of the formats."""
    node = _resolve(spec, node)
    if isinstance(node, list):
        return [as_json_schema(spec, item) for item in node]
    if not isinstance(node, dict):
        return node
    out = {}
    for key, value in node.items():
        if key in ("example", "nullable", "readOnly", "writeOnly", "description"):
            continue
        if key == "format" and value != "date-time":
            continue
        if key in ("properties", "patternProperties"):
            out[key] = {name: as_json_schema(spec, sub) for name, sub in value.items()}
        elif isinstance(value, dict | list) and key != "enum" and key != "required":
            out[key] = as_json_schema(spec, value)
        else:
            out[key] = value
    if node.get("nullable"):
        if "type" in out:
            out["type"] = [out["type"], "null"]
        if "enum" in out:
            out["enum"] = [*out["enum"], None]
        if "allOf" in out:
            out = {"anyOf": [{"type": "null"}, out]}
    return out


def find_operation(spec, method: str, url: str):
    path = url.split("?", 1)[0]
    exact = [p for p in spec["paths"] if p == path]
    candidates = exact or [
        p for p in spec["paths"] if re.fullmatch(re.sub(r"\{[^}]+\}", r"[^/]+", p), path)
    ]
    for template in candidates:
        operation = spec["paths"][template].get(method.lower())
        if operation:
            return template, operation
    raise AssertionError(f"no documented operation for {method} {path}")


SOMETIMES_SENT = ("Idempotent-Replayed", "Accept-Encoding")


class Contract:
    """A test client whose every answer is checked against the document."""

    def __init__(self, client, spec):
        self.client, self.spec = client, spec
        self.seen: set[tuple[str, int]] = set()
        self.problems: list[str] = []

    def __call__(self, method: str, url: str, token: str | None = None, **kwargs):
        headers = {**kwargs.pop("headers", {}), **(auth(token) if token else {})}
        response = self.client.open(url, method=method, headers=headers, **kwargs)
        self.check(method, url, response)
        return response

    def check(self, method, url, response):
        template, operation = find_operation(self.spec, method, url)
        status = response.status_code
        name = f"{method} {template} -> {status}"
        self.seen.add((operation["operationId"], status))
        documented = _resolve(self.spec, operation["responses"].get(str(status)))
        if documented is None:
            self.problems.append(f"{name}: status not documented ({response.get_data()[:200]!r})")
            return
        for header in documented.get("headers", {}):
            # Sent only when they apply: a replay; a 415 for a compressed body.
            if header not in SOMETIMES_SENT and header not in response.headers:
                self.problems.append(f"{name}: documented header {header} not sent")
        content = documented.get("content", {}).get("application/json")
        if content is None:
            if response.get_data():
                self.problems.append(f"{name}: documented without a body, answered one")
            return
        body = json.loads(response.get_data())
        schema = as_json_schema(self.spec, content["schema"])
        validator = jsonschema_rs.validator_for(schema, validate_formats=True)
        for error in validator.iter_errors(body):
            self.problems.append(f"{name}: {error.message} at {list(error.instance_path)}")

    def assert_clean(self):
        assert self.problems == [], "\n".join(self.problems)


@pytest.fixture
def api(client, spec):
    contract = Contract(client, spec)
    yield contract
    contract.assert_clean()


def test_the_converter_reads_nullable_and_refs(spec):
    """The walker itself: a product's nullable category takes null, its price
    no string, and an error envelope no unknown member."""
    product = as_json_schema(spec, {"$ref": "#/components/schemas/ProductResponse"})
    assert product["properties"]["category"]["type"] == ["string", "null"]
    error = jsonschema_rs.validator_for(
        as_json_schema(spec, {"$ref": "#/components/schemas/Error"})
    )
    assert error.is_valid({"code": "x", "message": "y"})
    assert not error.is_valid({"code": "x", "message": "y", "extra": 1})


def signup(api, name: str) -> dict:
    body = {"username": name, "email": f"{name}@example.com", "password": PASSWORD}
    response = api("POST", "/api/auth/signup", json=body)
    assert response.status_code == 201, response.get_json()
    return response.get_json()


def test_auth_answers_match_the_document(api, make_user):
    tokens = signup(api, "walker")
    access, refresh = tokens["access_token"], tokens["refresh_token"]
    other = make_user("someone")
    api(
        "POST",
        "/api/auth/signup",
        json={"username": "walker", "email": "w2@example.com", "password": PASSWORD},
    )
    api("POST", "/api/auth/signup", json={"username": "x", "email": "nope", "password": "short"})
    api("POST", "/api/auth/signup", json={"username": "walker3", "is_admin": True})
    api("POST", "/api/auth/signup", data="{nope", content_type="application/json")
    api("POST", "/api/auth/signup", data="a=b", content_type="application/x-www-form-urlencoded")
    api("POST", "/api/auth/signup", data="[" * 40 + "]" * 40, content_type="application/json")
    api("POST", "/api/auth/login", json={"username": "walker", "password": PASSWORD})
    api("POST", "/api/auth/login", json={"email": "walker@example.com", "password": "wrong-one-9"})
    api("POST", "/api/auth/login", json={"password": PASSWORD})
    api("POST", "/api/auth/login", json=[])
    api("GET", "/api/auth/profile", access)
    api("GET", "/api/auth/profile")
    api("GET", "/api/auth/profile", "not.a.token")
    api("GET", "/api/auth/profile", refresh)
    api("PUT", "/api/auth/profile", access, json={"username": "walker2"})
    api("PUT", "/api/auth/profile", access, json={"username": other.username})
    api("PUT", "/api/auth/profile", access, json={"email": "new@example.com"})
    api(
        "PUT",
        "/api/auth/profile",
        access,
        json={"email": "new@example.com", "current_password": "wrong-one-9"},
    )
    api(
        "PUT",
        "/api/auth/profile",
        access,
        json={"email": other.email, "current_password": PASSWORD},
    )
    api("PUT", "/api/auth/profile", access, json={})
    api("POST", "/api/auth/refresh", refresh)
    api("POST", "/api/auth/refresh", access)
    api("POST", "/api/auth/refresh", refresh, json={"x": 1})
    api("POST", "/api/auth/password-reset", json={"email": "walker@example.com"})
    api("POST", "/api/auth/password-reset", json={"email": "not-an-email"})
    api("POST", "/api/auth/password-reset/confirm", json={"token": "abc", "password": PASSWORD})
    api("POST", "/api/auth/password-reset/confirm", json={"token": "abc", "password": "short"})
    api("POST", "/api/auth/verify-email", json={"token": "abc"})
    api("POST", "/api/auth/verify-email", json={})
    api("POST", "/api/auth/verify-email/resend", access)
    api("POST", "/api/auth/verify-email/resend")
    api("POST", "/api/auth/logout", access, json={"refresh_token": refresh})
    api("POST", "/api/auth/logout", access)
    api("GET", "/api/auth/profile", access)
    fresh = api("POST", "/api/auth/login", json={"username": "walker2", "password": PASSWORD})
    api("POST", "/api/auth/logout-all", fresh.get_json()["access_token"])
    api("POST", "/api/auth/logout-all", fresh.get_json()["access_token"])
    api("GET", "/api/health")


def test_catalog_answers_match_the_document(api, make_product, admin_token, user_token):
    phone = make_product(name="Walk Phone", category="Phones", stock=3)
    make_product(name="Bare", category=None, image_url=None, description="")
    for url in [
        "/api/products",
        "/api/products?q=phone&sort=relevance",
        "/api/products?min_rating=4&sort=-rating",
        "/api/products/facets",
        "/api/products/facets?q=zzzz",
        "/api/products/suggest?q=wa",
        f"/api/products/{phone.id}",
        f"/api/products/{phone.id}/reviews",
    ]:
        first = api("GET", url)
        assert first.status_code == 200, (url, first.get_json())
        api("GET", url, headers={"If-None-Match": first.headers["ETag"]})
        api("GET", url, headers={"If-None-Match": "*"})
    for url in [
        "/api/products?page=0",
        "/api/products?sort=bogus",
        "/api/products?min_price=x",
        "/api/products/facets?in_stock=maybe",
        "/api/products/suggest",
        "/api/products/999999",
        "/api/products/0",
        f"/api/products/{phone.id}/reviews?sort=x",
        "/api/products/999999/reviews",
    ]:
        api("GET", url)
    api("GET", "/api/products/999999", headers={"If-None-Match": "*"})
    body = {"name": "New", "price": "9.99", "stock": 2}
    created = api("POST", "/api/products", admin_token, json=body)
    assert created.status_code == 201
    new_id = created.get_json()["id"]
    api("POST", "/api/products", user_token, json=body)
    api("POST", "/api/products", json=body)
    api("POST", "/api/products", admin_token, json={"name": "", "price": -1})
    api("POST", "/api/products", admin_token, json={})
    api(
        "POST",
        "/api/products",
        admin_token,
        data="x" * (1024 * 1024 + 10),
        content_type="application/json",
    )
    api("PUT", f"/api/products/{new_id}", admin_token, json={"stock": 7, "category": None})
    api("PUT", f"/api/products/{new_id}", admin_token, json={})
    api("PUT", "/api/products/999999", admin_token, json={"stock": 7})
    api("PUT", f"/api/products/{new_id}", user_token, json={"stock": 7})
    api("POST", f"/api/products/{new_id}/stock", admin_token, json={"delta": 3, "note": "in"})
    api("POST", f"/api/products/{new_id}/stock", admin_token, json={"delta": -100})
    api("POST", f"/api/products/{new_id}/stock", admin_token, json={"delta": 0})
    api("POST", "/api/products/999999/stock", admin_token, json={"delta": 1})
    api("POST", f"/api/products/{new_id}/stock", user_token, json={"delta": 1})
    api("GET", f"/api/products/{new_id}/stock-movements", admin_token)
    api("GET", f"/api/products/{new_id}/stock-movements?page=0", admin_token)
    api("GET", "/api/products/999999/stock-movements", admin_token)
    api("GET", f"/api/products/{new_id}/stock-movements", user_token)
    api("GET", "/api/inventory/low-stock", admin_token)
    api("GET", "/api/inventory/low-stock?per_page=x", admin_token)
    api("GET", "/api/inventory/low-stock", user_token)
    api("DELETE", f"/api/products/{new_id}", admin_token)
    api("DELETE", f"/api/products/{new_id}", admin_token)
    api("DELETE", f"/api/products/{phone.id}", user_token)
    api("DELETE", f"/api/products/{phone.id}", admin_token, json={"x": 1})
    api("GET", f"/api/products/{new_id}/stock-movements", admin_token)


def test_cart_and_order_answers_match_the_document(
    api, make_product, make_user, login, admin_token
):
    user = make_user()
    token = login(user)["access_token"]
    other = login(make_user())["access_token"]
    product = make_product(stock=5, price="10.00")
    api("GET", "/api/cart", token)
    api("GET", "/api/cart")
    api("POST", "/api/orders", token, json=SHIPPING)  # empty cart
    added = api("POST", "/api/cart", token, json={"product_id": product.id, "quantity": 2})
    item = added.get_json()["items"][0]["id"]
    api("POST", "/api/cart", token, json={"product_id": product.id, "quantity": 50})
    api("POST", "/api/cart", token, json={"product_id": 999999})
    api("POST", "/api/cart", token, json={"product_id": product.id, "quantity": 0})
    api("PUT", f"/api/cart/{item}", token, json={"quantity": 3})
    api("PUT", f"/api/cart/{item}", token, json={"quantity": 30})
    api("PUT", f"/api/cart/{item}", other, json={"quantity": 1})
    api("PUT", f"/api/cart/{item}", token, json={})
    api("DELETE", f"/api/cart/{item}", other)
    api("POST", "/api/orders", token, json={"shipping_address": "x"})
    key = {"Idempotency-Key": "walk-1"}
    placed = api("POST", "/api/orders", token, json=SHIPPING, headers=key)
    assert placed.status_code == 201, placed.get_json()
    order = placed.get_json()["id"]
    api("POST", "/api/orders", token, json=SHIPPING, headers=key)
    api("POST", "/api/orders", token, json={"shipping_address": "Elsewhere 12"}, headers=key)
    api("POST", "/api/orders", token, json=SHIPPING, headers={"Idempotency-Key": "x" * 300})
    api("GET", "/api/orders", token)
    api("GET", "/api/orders?status=pending", token)
    api("GET", "/api/orders?status=bogus", token)
    api("GET", "/api/orders?all=true", token)
    api("GET", "/api/orders?all=true", admin_token)
    api("GET", f"/api/orders/{order}", token)
    api("GET", f"/api/orders/{order}", other)
    api("GET", f"/api/orders/{order}", admin_token)
    api("GET", f"/api/orders/user/{user.id}", admin_token)
    api("GET", "/api/orders/user/999999", admin_token)
    api("GET", f"/api/orders/user/{user.id}", token)
    api("PUT", f"/api/orders/{order}", token, json={"shipping_address": "10 Downing Street"})
    api("PUT", f"/api/orders/{order}", token, json={"status": "shipped"})
    api("PUT", f"/api/orders/{order}", admin_token, json={"status": "bogus"})
    api("PUT", f"/api/orders/{order}", admin_token, json={"status": "delivered"})
    api("PUT", f"/api/orders/{order}", other, json={"status": "cancelled"})
    api(
        "POST", f"/api/orders/{order}/pay", token, json={"payment_method": "pm_card_chargeDeclined"}
    )
    api("POST", f"/api/orders/{order}/pay", token, json={"payment_method": "pm_bogus"})
    api("POST", f"/api/orders/{order}/pay", other, json=VISA)
    api("POST", f"/api/orders/{order}/pay", admin_token, json=VISA)
    api("POST", f"/api/orders/{order}/pay", token, json=VISA)
    api("POST", f"/api/orders/{order}/pay", token, json=VISA)
    api("PUT", f"/api/orders/{order}", token, json={"shipping_address": "Too late Road 1"})
    api("PUT", f"/api/orders/{order}", admin_token, json={"status": "shipped"})
    api("POST", f"/api/orders/{order}/cancel", token)
    api("POST", f"/api/orders/{order}/cancel", other)
    api("POST", f"/api/orders/{order}/cancel", token, json={"x": 1})
    api("POST", "/api/cart", token, json={"product_id": product.id})
    second = api("POST", "/api/orders", token, json=SHIPPING).get_json()["id"]
    api("POST", f"/api/orders/{second}/pay", token, json=VISA)
    api("POST", f"/api/orders/{second}/cancel", token)
    api("POST", f"/api/orders/{second}/cancel", token)
    api("POST", f"/api/orders/{second}/pay", token, json=VISA)
    api("POST", "/api/cart", token, json={"product_id": product.id})
    api("DELETE", "/api/cart/clear", token)
    api("DELETE", "/api/cart/clear", token, json={"x": 1})
    api("POST", "/api/payments/webhook", json={"id": "evt_1"})


def test_review_answers_match_the_document(api, make_product, make_user, login, admin_token):
    buyer, stranger = make_user(), make_user()
    product = make_product()
    give_order(buyer, product, "delivered")
    token, other = login(buyer)["access_token"], login(stranger)["access_token"]
    url = f"/api/products/{product.id}/reviews"
    api("POST", url, other, json={"rating": 5})
    created = api("POST", url, token, json={"rating": 5, "title": "Good"})
    review = created.get_json()["id"]
    api("POST", url, token, json={"rating": 4})
    api("POST", url, token, json={"rating": 9})
    api("POST", url, json={"rating": 4})
    api("POST", "/api/products/999999/reviews", token, json={"rating": 4})
    api("GET", url)
    api("GET", f"/api/products/{product.id}")
    api("PUT", f"/api/reviews/{review}", token, json={"rating": 4})
    api("PUT", f"/api/reviews/{review}", other, json={"rating": 4})
    api("PUT", f"/api/reviews/{review}", token, json={})
    api("PUT", "/api/reviews/999999", token, json={"rating": 4})
    api("DELETE", f"/api/reviews/{review}", other)
    api("DELETE", f"/api/reviews/{review}", admin_token)
    api("DELETE", f"/api/reviews/{review}", token)


def test_rate_limited_answers_match_the_document(spec, make_app, make_user, login):
    """Every operation documents 429 with the envelope and Retry-After (but
    the two never limited); each answers it that way once its limit is spent.
    The routes with limits of their own: the default limit (every other
    route's) is the first limited app's of the process (Flask-Limiter keeps
    it), in the whole suite 100,000 a minute; tests/test_rate_limits.py
    spends it on a real gunicorn."""
    user = make_user()
    token = login(user)["access_token"]
    other = make_app(
        overrides={
            "RATELIMIT_ENABLED": True,
            "RATELIMIT_STORAGE_URI": "memory://",
            "RATELIMIT_DEFAULT": "1 per minute",
            "RATELIMIT_SIGNUP": "1 per minute",
            "RATELIMIT_LOGIN_ATTEMPTS": "1 per minute",
            "RATELIMIT_PASSWORD_RESET": "1 per minute",
            "RATELIMIT_VERIFY_RESEND": "1 per minute",
        }
    )
    api = Contract(other.test_client(), spec)
    calls = [
        ("POST", "/api/auth/signup", None, {"username": "x", "email": "x", "password": "y"}),
        ("POST", "/api/auth/login", None, {"username": user.username, "password": PASSWORD}),
        ("POST", "/api/auth/password-reset", None, {"email": "a@example.com"}),
        ("POST", "/api/auth/verify-email/resend", token, None),
    ]
    for method, url, bearer, body in calls:
        for _ in range(400):
            answer = api(method, url, bearer, json=body)
            if answer.status_code == 429:
                break
        assert answer.status_code == 429, (method, url, answer.get_json())
        assert answer.headers["Retry-After"].isdigit(), (method, url)
    for _ in range(3):
        assert api("GET", "/api/health").status_code == 200
    api.assert_clean()


def test_database_down_answers_match_the_document(spec, make_app):
    """A database that cannot be reached: health's 503 and any read's 503
    validate against what the document gives them."""
    from tests.live import free_port

    down = f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/none"
    other = make_app(overrides={"SQLALCHEMY_DATABASE_URI": down, "CATALOG_CACHE": False})
    api = Contract(other.test_client(), spec)
    assert api("GET", "/api/health").status_code == 503
    assert api("GET", "/api/products/1").status_code == 503
    assert (
        api("POST", "/api/auth/login", json={"username": "ab", "password": "x"}).status_code == 503
    )
    api.assert_clean()


WEBHOOK_SECRET = "whsec_contract6_0123456789"


def _signed(payload: bytes) -> dict:
    import hashlib
    import hmac
    import time

    at = int(time.time())
    digest = hmac.new(WEBHOOK_SECRET.encode(), f"{at}.".encode() + payload, hashlib.sha256)
    return {"Stripe-Signature": f"t={at},v1={digest.hexdigest()}"}


def test_stripe_webhook_answers_match_the_document(spec, make_app, buyer, make_product):
    """With PAYMENT_PROVIDER=stripe (the fuzz run's `test` provider answers
    the webhook 404 only): 200, 400, 409 and 422 as documented."""
    other = make_app(
        overrides={
            "PAYMENT_PROVIDER": "stripe",
            "STRIPE_SECRET_KEY": "sk_test_offline",
            "STRIPE_WEBHOOK_SECRET": WEBHOOK_SECRET,
        }
    )
    api = Contract(other.test_client(), spec)
    _, token = buyer
    product = make_product(price="19.99", stock=5)
    api("POST", "/api/cart", token, json={"product_id": product.id})
    order = api("POST", "/api/orders", token, json=SHIPPING).get_json()["id"]

    def deliver(body, signature=True):
        payload = json.dumps(body).encode() if not isinstance(body, bytes) else body
        headers = _signed(payload) if signature else {"Stripe-Signature": "t=1,v1=x"}
        return api(
            "POST",
            "/api/payments/webhook",
            data=payload,
            content_type="application/json",
            headers=headers,
        )

    meta = {"order_id": str(order)}
    charge = {
        "id": "ch_1",
        "object": "charge",
        "payment_intent": "pi_1",
        "refunded": True,
        "metadata": meta,
    }
    paid = {
        "id": "pi_1",
        "object": "payment_intent",
        "status": "succeeded",
        "amount": 1999,
        "currency": "usd",
        "metadata": meta,
    }
    statuses = [
        deliver({"id": "evt_x"}, signature=False).status_code,
        deliver(b"{}").status_code,
        deliver(b"[]").status_code,
        deliver({"id": 1, "type": 2, "data": []}).status_code,
        deliver(
            {"id": "evt_1", "type": "payment_intent.succeeded", "data": {"object": 3}}
        ).status_code,
        deliver(
            {"id": "e\u0000", "type": "payment_intent.succeeded", "data": {"object": {}}}
        ).status_code,
        deliver({"id": "evt_r", "type": "charge.refunded", "data": {"object": charge}}).status_code,
        deliver(
            {"id": "evt_p", "type": "payment_intent.succeeded", "data": {"object": paid}}
        ).status_code,
        deliver({"id": "evt_u", "type": "customer.created", "data": {"object": {}}}).status_code,
    ]
    assert statuses == [400, 422, 422, 422, 422, 422, 409, 200, 200], statuses
    api.assert_clean()


def _link_token(message, path: str) -> str:
    text = message.get_body(("plain",)).get_content()
    match = re.search(rf"/{path}\?token=([A-Za-z0-9_\-]+)", text)
    assert match, text
    return match.group(1)


def test_emailed_link_answers_match_the_document(api, smtp_server, deliver_outbox):
    """The two answers a link from an email gets: a verified user, a reset."""
    tokens = signup(api, "linked")
    deliver_outbox()
    verify = _link_token(smtp_server.wait_for(1)[0], "verify-email")
    assert api("POST", "/api/auth/verify-email", json={"token": verify}).status_code == 200
    api("POST", "/api/auth/password-reset", json={"email": "linked@example.com"})
    deliver_outbox()
    reset = _link_token(smtp_server.wait_for(2)[-1], "reset-password")
    body = {"token": reset, "password": "brand-new-pass-7"}
    assert api("POST", "/api/auth/password-reset/confirm", json=body).status_code == 200
    assert api("GET", "/api/auth/profile", tokens["access_token"]).status_code == 401


def test_the_typescript_client_has_a_method_for_every_operation(spec):
    """README: "A TypeScript storefront can start from clients/typescript/
    (types generated from the API's document, a typed client)". Its
    `ShopClient` called 17 of the document's 39 operations: a storefront on
    it could not pay an order, remove a cart line, clear the cart, read the
    facets or suggestions, write a review, refresh a token, log out, reset a
    password or verify an email. Every operation but the provider's signed
    webhook now has a method (its types from the generated schema.d.ts, which
    tests/test_typescript_client.py compiles with tsc --strict)."""
    from tests.live import ROOT

    source = (ROOT / "clients" / "typescript" / "src" / "client.ts").read_text()
    called = {
        (method, re.sub(r"\$\{[^}]*\}", "{}", path))
        for method, path in re.findall(
            r'this\.request(?:<[^>]*>)?\(\s*"(\w+)",\s*[`"]([^`"]+)[`"]', source
        )
    }
    missing = sorted(
        f"{method.upper()} {path} ({operation['operationId']})"
        for method, path, operation in (
            (m, p, o)
            for p, item in spec["paths"].items()
            for m, o in item.items()
            if m != "parameters"
        )
        if path != "/api/payments/webhook"
        and (method.upper(), re.sub(r"\{[^}]*\}", "{}", path)) not in called
    )
    assert missing == [], f"ShopClient has no method for: {missing}"


@pytest.mark.server
def test_generated_types_let_a_cart_add_leave_out_its_default_quantity():
    """API.md: POST /api/cart takes `product_id` and `quantity` (default 1),
    and the document says so (`quantity` not required, `default: 1`). The
    types `npm run generate` made (openapi-typescript 7, whose
    `defaultNonNullable` is on unless turned off) required `quantity` in
    CartAdd: `addToCart({product_id})` did not compile (contract.ts says it
    must). The script now turns that option off; responses need no default
    to be required (every response field is required in the document)."""
    import os
    import shutil
    import subprocess

    from tests.helpers import DATABASE_URL
    from tests.live import ROOT, gunicorn

    client = ROOT / "clients" / "typescript"
    if shutil.which("npm") is None or not (client / "node_modules" / ".bin" / "tsc").exists():
        if os.environ.get("SHOP_REQUIRE_NODE"):
            pytest.fail("node or clients/typescript/node_modules missing (`npm ci` there)")
        pytest.skip("node and `npm ci` in clients/typescript are needed")

    def run(*cmd: str, **env: str) -> None:
        done = subprocess.run(
            cmd, cwd=client, env={**os.environ, **env}, capture_output=True, text=True, timeout=180
        )
        assert done.returncode == 0, f"{' '.join(cmd)}\n{done.stdout}\n{done.stderr}"

    with gunicorn(DATABASE_URL, workers=1, threads=2) as server:
        run("npm", "run", "generate", SHOP_URL=server.url)  # as `make client` does
    run(str(client / "node_modules" / ".bin" / "tsc"), "--strict", "--noEmit", "-p", ".")


def test_every_code_answered_with_details_is_named_where_the_document_lists_them(
    client, spec, admin_token, user_token, make_product
):
    """The document says which codes carry `details` (Error.details: "for some
    codes: out_of_stock {product_id, available}, invalid_transition {from,
    to}, duplicate {field}"; the info: "`details` for `out_of_stock`,
    `invalid_transition` and `duplicate`"), and README's Inventory section
    promises a fourth: a stock adjustment below zero answers 409
    `insufficient_stock` with `details: {product_id, available}`, which
    neither named, so a client typed from the document had no word of it."""
    product = make_product(stock=2)
    answers = [
        client.post(
            f"/api/products/{product.id}/stock", json={"delta": -5}, headers=auth(admin_token)
        ),
        client.post(
            "/api/cart", json={"product_id": product.id, "quantity": 5}, headers=auth(user_token)
        ),
    ]
    with_details = {a.get_json()["code"]: a.get_json()["details"] for a in answers}
    assert with_details["insufficient_stock"] == {"product_id": product.id, "available": 2}
    described = spec["components"]["schemas"]["Error"]["properties"]["details"]["description"]
    overview = spec["info"]["description"]
    for code, details in with_details.items():
        assert f"`{code}` {{{', '.join(details)}}}" in described, (code, described)
        assert f"`{code}`" in overview.split("`details` for", 1)[1].split(".", 1)[0], code


@pytest.mark.parametrize("email", ["bob@straße.de", "josé@example.com", "ÿ@例え.jp"])
def test_an_email_the_api_takes_is_one_the_document_allows(api, spec, email):
    """README (Auth, Email): an email domain is read as IDNA 2008 (`bob@straße.de`)
    and a local part that is not ASCII (`josé@example.com`) is stored and
    mailed through a relay offering SMTPUTF8. The document gave every email
    input `format: email`, which JSON Schema defines as an ASCII address
    (RFC 5321): a client that validates formats (ajv-formats, a form built
    from the document) refused addresses the API signs up. They are
    `idn-email` (RFC 6531), the format of exactly those."""
    body = {"username": "idn_user", "email": email, "password": PASSWORD}
    answer = api("POST", "/api/auth/signup", json=body)
    assert answer.status_code == 201, answer.get_json()
    for component in ("Signup", "ProfileUpdate", "PasswordResetRequest"):
        prop = spec["components"]["schemas"][component]["properties"]["email"]
        validator = jsonschema_rs.validator_for(prop, validate_formats=True)
        assert validator.is_valid(email), (component, prop)
