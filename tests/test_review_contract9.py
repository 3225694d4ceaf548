"""Review (round 9) of the contract clients generate code from: every
operation driven through a matrix of callers and bodies, each answer checked
against the document (tests.test_review_contract6's walker) and, beyond it,
the headers a client reads: an ETag, Cache-Control, Location or Retry-After
the server sends is one the document names for that answer, with a value
its schema takes."""

from __future__ import annotations

import json
import re

import jsonschema_rs
import pytest

from tests.helpers import PASSWORD, SHIPPING, auth
from tests.reviewing import give_order
from tests.test_review_contract6 import (  # noqa: F401 - spec: the module's fixture
    Contract,
    _resolve,
    find_operation,
    spec,
)

READ_HEADERS = ("ETag", "Cache-Control", "Location", "Retry-After", "Idempotent-Replayed")


class HeaderContract(Contract):
    """The walker, also checking the headers a client acts on."""

    def check(self, method, url, response):
        super().check(method, url, response)
        template, operation = find_operation(self.spec, method, url)
        status = response.status_code
        documented = _resolve(self.spec, operation["responses"].get(str(status)))
        if documented is None:
            return
        headers = {
            name.lower(): _resolve(self.spec, h)
            for name, h in documented.get("headers", {}).items()
        }
        for name in READ_HEADERS:
            value = response.headers.get(name)
            if value is None:
                continue
            if name == "Cache-Control" and value == "no-store" and name.lower() not in headers:
                continue  # the server's default for every answer
            where = f"{method} {template} -> {status}"
            header = headers.get(name.lower())
            if header is None:
                self.problems.append(f"{where}: sends {name}: {value} undocumented")
                continue
            schema = header.get("schema", {})
            typed = int(value) if schema.get("type") == "integer" and value.isdigit() else value
            if not jsonschema_rs.validator_for(schema).is_valid(typed):
                self.problems.append(f"{where}: {name}: {value} not valid for {schema}")


@pytest.fixture
def api(client, spec):  # noqa: F811 - the imported fixture
    contract = HeaderContract(client, spec)
    yield contract
    contract.assert_clean()


def _concrete(template: str, ids: dict[str, int]) -> str:
    return re.sub(r"\{(\w+)\}", lambda m: str(ids[m.group(1)]), template)


BODIES = [
    ("none", {}),
    ("empty", {"json": {}}),
    ("junk", {"json": {"zzz": 1}}),
    ("not json", {"data": "{nope", "content_type": "application/json"}),
    ("form", {"data": "a=b", "content_type": "application/x-www-form-urlencoded"}),
    ("list", {"json": [1]}),
    ("nested", {"json": {"name": {"a": [1]}, "rating": [1], "status": {"x": 1}}}),
]


ENDS_SESSIONS = ("/api/auth/logout", "/api/auth/logout-all")


def test_every_operation_answers_only_what_it_documents(
    spec,  # noqa: F811
    api,
    make_user,
    make_product,
    login,
    admin_token,
):
    """Each operation, as anonymous, a bad token, its user and an admin, with
    each body shape: every answer is documented and validates."""
    user = make_user()
    token = login(user)["access_token"]
    product = make_product(stock=5)
    give_order(user, product, "delivered")
    api("POST", "/api/cart", token, json={"product_id": product.id})
    order = api("POST", "/api/orders", token, json=SHIPPING).get_json()["id"]
    item = api("POST", "/api/cart", token, json={"product_id": product.id}).get_json()["items"][0][
        "id"
    ]
    review = api(
        "POST", f"/api/products/{product.id}/reviews", token, json={"rating": 4}
    ).get_json()["id"]
    ids = {
        "product_id": product.id,
        "order_id": order,
        "item_id": item,
        "review_id": review,
        "user_id": user.id,
    }
    missing = {k: 99999999 for k in ids}
    for template, item_ in spec["paths"].items():
        for method in item_:
            if method == "parameters" or template == "/api/payments/webhook":
                continue
            for who in (None, "bad.token", token, admin_token):
                for which in (ids, missing):
                    url = _concrete(template, which)
                    for _name, body in BODIES:
                        if who in (token, admin_token) and (
                            (method == "delete" and which is ids) or template in ENDS_SESSIONS
                        ):
                            continue  # keep the resources and sessions for the other calls
                        api(method.upper(), url, who, **body)


def test_redis_health_and_a_spent_login_budget_in_profile_changes(spec, make_app, make_user):  # noqa: F811
    """Two answers the other walks do not reach: a wrong `current_password`
    past RATELIMIT_LOGIN (a 429 with its Retry-After) and health with Redis
    unreachable (`degraded`), both as documented."""
    from tests.live import free_port

    user = make_user()
    other = make_app(
        overrides={
            "RATELIMIT_ENABLED": True,
            "RATELIMIT_STORAGE_URI": "memory://",
            "RATELIMIT_LOGIN": "1 per minute",
            "REDIS_URL": f"redis://127.0.0.1:{free_port()}/15",
        }
    )
    api = HeaderContract(other.test_client(), spec)
    login = api("POST", "/api/auth/login", json={"username": user.username, "password": PASSWORD})
    token = json.loads(login.data)["access_token"]
    change = {"email": "x@example.com", "current_password": "wrong-pass-1"}
    answers = [api("PUT", "/api/auth/profile", token, json=change).status_code for _ in range(3)]
    assert answers[-1] == 429, answers
    assert json.loads(api("GET", "/api/health").data)["redis"] == "unavailable"
    assert ("updateProfile", 429) in api.seen
    api.assert_clean()


# Text fields the server refuses with a control character in them (NoControl),
# but a description's or an address's tab and line breaks.
TEXT_VALUES = [
    "Plain words",
    "Tab\there",
    "Two\nlines\r\nthree",
    "Bell\u0007 rings",
    "Escape \u001b[31mred",
    "Delete\u007f key",
    "C1 \u0085 control",
    "caf\u00e9 \U0001f600 ok",
]


def _property(document, component: str, field: str) -> dict:
    return document["components"]["schemas"][component]["properties"][field]


def test_text_with_control_characters_is_refused_by_the_document_as_by_the_server(
    client,
    spec,  # noqa: F811
    make_user,
    make_product,
    login,
    admin_token,
):
    """The server refuses a control character in a product's name, category
    or description, a review's title or body, an order's shipping address
    and a stock note (`NoControl`, tabs and line breaks allowed in the long
    texts); the document took every one of them (`{"title": "Bell\u0007"}`
    valid, answered 422), so a generated form or Swagger UI's validation let
    them through. Each value: valid in the document exactly when the real
    request with it succeeds."""
    user = make_user()
    token = login(user)["access_token"]
    product = make_product(stock=1000)
    give_order(user, product, "delivered")
    review = client.post(
        f"/api/products/{product.id}/reviews", json={"rating": 5}, headers=auth(token)
    ).get_json()["id"]
    client.post("/api/cart", json={"product_id": product.id}, headers=auth(token))
    order = client.post("/api/orders", json=SHIPPING, headers=auth(token)).get_json()["id"]
    cases = [
        (
            "Product",
            "name",
            "POST",
            "/api/products",
            admin_token,
            lambda v: {"name": v, "price": 1, "stock": 1},
        ),
        (
            "Product",
            "category",
            "POST",
            "/api/products",
            admin_token,
            lambda v: {"name": "N", "price": 1, "stock": 1, "category": v},
        ),
        (
            "ProductUpdate",
            "description",
            "PUT",
            f"/api/products/{product.id}",
            admin_token,
            lambda v: {"description": v},
        ),
        ("ReviewUpdate", "title", "PUT", f"/api/reviews/{review}", token, lambda v: {"title": v}),
        ("ReviewUpdate", "body", "PUT", f"/api/reviews/{review}", token, lambda v: {"body": v}),
        (
            "OrderUpdate",
            "shipping_address",
            "PUT",
            f"/api/orders/{order}",
            token,
            lambda v: {"shipping_address": v},
        ),
        (
            "StockAdjustment",
            "note",
            "POST",
            f"/api/products/{product.id}/stock",
            admin_token,
            lambda v: {"delta": 1, "note": v},
        ),
    ]
    wrong = []
    for component, field, method, url, bearer, body in cases:
        schema = _property(spec, component, field)
        for value in TEXT_VALUES:
            answer = client.open(url, method=method, json=body(value), headers=auth(bearer))
            assert answer.status_code in (200, 201, 422), (url, answer.get_json())
            documented = jsonschema_rs.validator_for(schema).is_valid(value)
            if documented != (answer.status_code < 300):
                wrong.append((component, field, value, answer.status_code))
    assert wrong == []
