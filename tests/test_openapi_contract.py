"""The OpenAPI document is one a client generator can trust (issue: contract
fidelity): request types hold only what the server accepts, responses type
what it sends, every operation has an id, every body an example that works."""

from __future__ import annotations

import json
import re

import jsonschema_rs
import pytest

from tests.helpers import DATABASE_URL, PASSWORD, SHIPPING, auth
from tests.live import gunicorn
from tests.reviewing import give_order


@pytest.fixture(scope="module")
def spec(app):
    return json.loads(app.test_client().get("/api/openapi.json").data)


def operations(spec):
    for path, item in spec["paths"].items():
        for method, operation in item.items():
            if method != "parameters":
                yield method.upper(), path, operation


def inline(spec, node):
    """`node` with every $ref replaced by what it names (the document has no cycles)."""
    if isinstance(node, dict):
        if "$ref" in node:
            target = spec
            for part in node["$ref"].removeprefix("#/").split("/"):
                target = target[part]
            return inline(spec, target)
        return {key: inline(spec, value) for key, value in node.items()}
    if isinstance(node, list):
        return [inline(spec, item) for item in node]
    return node


def body_schema(spec, operation) -> dict:
    return inline(spec, operation["requestBody"]["content"]["application/json"]["schema"])


def valid(schema: dict, instance) -> bool:
    return jsonschema_rs.validator_for(schema).is_valid(instance)


def by_id(spec) -> dict:
    return {op["operationId"]: (method, path, op) for method, path, op in operations(spec)}


def test_every_operation_has_a_unique_operation_id(spec):
    ids = [operation.get("operationId") for _, _, operation in operations(spec)]
    assert all(ids) and len(ids) == len(set(ids)), ids
    assert {"signup", "login", "listProducts", "addItem", "placeOrder", "logoutAll"} <= set(ids)


def test_servers_and_no_unused_pagination_component(spec):
    assert spec["servers"][0]["url"] == "/"
    assert "PaginationMetadata" not in spec["components"]["schemas"]
    assert "PAGINATION" not in spec["components"].get("headers", {})


def test_request_bodies_hold_no_read_only_fields(spec):
    for method, path, operation in operations(spec):
        if "requestBody" not in operation:
            continue
        schema = body_schema(spec, operation)
        for member in schema.get("oneOf", [schema]):
            properties = member.get("properties", {})
            assert not any(p.get("readOnly") for p in properties.values()), (method, path)
    schemas = spec["components"]["schemas"]
    for name in ("Product", "ProductUpdate", "Signup", "ProfileUpdate", "CartAdd", "OrderUpdate"):
        assert not {"id", "created_at", "updated_at"} & set(schemas[name]["properties"]), name


@pytest.mark.parametrize(
    "operation_id", ["updateProduct", "updateProfile", "updateOrder", "updateReview"]
)
def test_changes_need_at_least_one_field(spec, operation_id):
    schema = body_schema(spec, by_id(spec)[operation_id][2])
    assert schema["minProperties"] == 1
    assert not valid(schema, {})


def test_login_is_exactly_one_of_email_or_username(spec):
    schema = body_schema(spec, by_id(spec)["login"][2])
    assert len(schema["oneOf"]) == 2
    assert valid(schema, {"email": "a@example.com", "password": "x"})
    assert valid(schema, {"username": "alice", "password": "x"})
    assert not valid(schema, {"password": "x"})
    assert not valid(schema, {"email": "a@example.com", "username": "alice", "password": "x"})


def test_request_price_is_a_number_or_a_numeric_string(spec):
    schema = body_schema(spec, by_id(spec)["createProduct"][2])
    for price in (12.5, 0, "12.50", "699.99"):
        assert valid(schema, {"name": "X", "price": price, "stock": 1}), price
    for price in ("12.505", "abc", -1, "-1"):
        assert not valid(schema, {"name": "X", "price": price, "stock": 1}), price
    response = spec["components"]["schemas"]["ProductResponse"]["properties"]["price"]
    assert response["type"] == "number"


def test_response_status_fields_are_enums(spec):
    schemas = spec["components"]["schemas"]
    statuses = ["pending", "processing", "shipped", "delivered", "cancelled"]
    assert schemas["OrderResponse"]["properties"]["status"]["enum"] == statuses
    assert schemas["StatusEventResponse"]["properties"]["status"]["enum"] == statuses


def test_every_request_body_has_an_example_its_schema_accepts(spec):
    for method, path, operation in operations(spec):
        if "requestBody" not in operation:
            continue
        media = operation["requestBody"]["content"]["application/json"]
        schema = body_schema(spec, operation)
        example = media.get("example", schema.get("example"))
        assert example is not None, (
            f"{method} {path}: give the schema OPENAPI_EXAMPLE or its fields "
            "metadata={'example': ...}"
        )
        assert valid(schema, example), (method, path, example)


def test_response_headers_are_documented(spec):
    responses = spec["components"]["responses"]
    assert "Retry-After" in responses["TOO_MANY_REQUESTS"]["headers"]
    for method, path, operation in operations(spec):
        for code, response in operation["responses"].items():
            headers = inline(spec, response).get("headers", {})
            assert "X-Request-ID" in headers, (method, path, code)
    placed = by_id(spec)["placeOrder"][2]["responses"]["201"]
    assert "Idempotent-Replayed" in placed["headers"]


def test_try_it_out_with_the_prefilled_examples(client, spec, make_user, login):
    """What a user of /api/docs gets by pressing "Try it out" and "Execute" on
    each core operation in turn, typing only the ids and the token."""
    ops = by_id(spec)

    def example(operation_id: str) -> dict:
        operation = ops[operation_id][2]
        return body_schema(spec, operation)["example"]

    def call(operation_id: str, token: str | None = None, body=None, **ids):
        method, path, operation = ops[operation_id]
        if body is None and "requestBody" in operation:
            body = example(operation_id)
        response = client.open(
            path.format(**ids), method=method, json=body, headers=auth(token) if token else {}
        )
        assert 200 <= response.status_code < 300, (operation_id, body, response.get_json())
        return response.get_json()

    tokens = call("signup")
    assert call("login")["user"]["id"] == tokens["user"]["id"]
    user = tokens["access_token"]
    admin = login(make_user(admin=True, password=PASSWORD))["access_token"]
    product = call("createProduct", admin)
    call("updateProduct", admin, product_id=product["id"])
    cart = call("addItem", user, body={**example("addItem"), "product_id": product["id"]})
    call("updateItem", user, item_id=cart["items"][0]["id"])
    order = call("placeOrder", user)
    call("updateOrder", admin, order_id=order["id"])
    call("updateProfile", user)
    call("logout", user)


def test_review_examples_work(client, spec, make_user, make_product, login):
    """Swagger UI's prefilled bodies for writing and editing a review, as a
    buyer of a delivered product: both are accepted (the edit's was `{}`,
    documented and then refused with a 422)."""
    ops = by_id(spec)
    user, product = make_user(), make_product()
    give_order(user, product, "delivered")
    token = login(user)["access_token"]
    bodies = {
        name: body_schema(spec, ops[name][2])["example"]
        for name in ("createReview", "updateReview")
    }
    assert bodies["updateReview"]
    created = client.post(
        f"/api/products/{product.id}/reviews", json=bodies["createReview"], headers=auth(token)
    )
    assert created.status_code == 201, created.get_json()
    edited = client.put(
        f"/api/reviews/{created.get_json()['id']}", json=bodies["updateReview"], headers=auth(token)
    )
    assert edited.status_code == 200, edited.get_json()
    assert (
        client.put(
            f"/api/reviews/{created.get_json()['id']}", json={}, headers=auth(token)
        ).status_code
        == 422
    )


def test_links_name_real_operations_parameters_and_fields(spec):
    """Each link from a 201 names an operation that exists, exactly its path
    parameters, and a field the 201's own schema has (an integer id)."""
    ops, found = by_id(spec), 0
    for _method, path, operation in operations(spec):
        created = operation.get("responses", {}).get("201", {})
        schema = inline(spec, created.get("content", {}).get("application/json", {}).get("schema"))
        for name, link in created.get("links", {}).items():
            found += 1
            assert link["description"], name
            _target_method, target_path, _target = ops[link["operationId"]]
            assert set(link["parameters"]) == set(re.findall(r"{(\w+)}", target_path)), name
            for value in link["parameters"].values():
                node = schema
                for part in value.removeprefix("$response.body#/").split("/"):
                    node = node["items"] if part.isdigit() else node["properties"][part]
                    node = node.get("allOf", [node])[0]  # a nested schema, as apispec writes it
                assert node["type"] == "integer", (path, name, value)
    assert found >= 16


def test_following_the_cart_and_order_links(client, spec, make_product, user_token):
    """The ids the links point at are the ones to send: an added line's id
    changes that line; a placed order's id reads and cancels that order."""
    ops = by_id(spec)
    added = client.post(
        "/api/cart", json={"product_id": make_product().id, "quantity": 1}, headers=auth(user_token)
    )
    assert added.status_code == 201
    link = ops["addItem"][2]["responses"]["201"]["links"]["UpdateItem"]
    item_id = added.get_json()["items"][0]["id"]
    assert link["parameters"] == {"item_id": "$response.body#/items/0/id"}
    changed = client.put(f"/api/cart/{item_id}", json={"quantity": 2}, headers=auth(user_token))
    assert changed.status_code == 200 and changed.get_json()["items"][0]["quantity"] == 2
    placed = client.post(
        "/api/orders", json={"shipping_address": "1 Link Road"}, headers=auth(user_token)
    )
    assert placed.status_code == 201
    assert ops["placeOrder"][2]["responses"]["201"]["links"]["CancelOrder"]["parameters"] == {
        "order_id": "$response.body#/id"
    }
    order_id = placed.get_json()["id"]
    assert client.get(f"/api/orders/{order_id}", headers=auth(user_token)).status_code == 200
    cancelled = client.post(f"/api/orders/{order_id}/cancel", headers=auth(user_token))
    assert cancelled.status_code == 200 and cancelled.get_json()["status"] == "cancelled"


def test_idempotency_key_is_documented_as_checked(spec):
    """The header's documented schema accepts exactly what the server does."""
    from app.web.idempotency import KEY_PATTERN

    (parameter,) = [
        p for p in by_id(spec)["placeOrder"][2]["parameters"] if p["name"] == "Idempotency-Key"
    ]
    schema = parameter["schema"]
    keys = ("k", "order-42 retry", "~" * 255, "", "x" * 256, "caf\u00e9", "tab\there", "a\nb")
    for key in (*keys, " ", " a", "a ", "a b"):
        assert valid(schema, key) == bool(KEY_PATTERN.fullmatch(key)), key


@pytest.mark.server
def test_documented_idempotency_keys_work_over_http(spec, make_user, make_product, login):
    """Through gunicorn, which trims a header value's edges: each key the
    document allows places an order and replays it; one it refuses (a space,
    which arrives as "") is a 422."""
    (parameter,) = [
        p for p in by_id(spec)["placeOrder"][2]["parameters"] if p["name"] == "Idempotency-Key"
    ]
    product = make_product(stock=100)
    with gunicorn(DATABASE_URL, workers=1, threads=2) as server:
        for key in ("k", "a b", "~" * 255, " "):
            token = login(make_user())["access_token"]
            added = server.request("POST", "/api/cart", {"product_id": product.id}, token)
            assert added[0] == 201, added
            answers = [
                server.request("POST", "/api/orders", SHIPPING, token, {"Idempotency-Key": key})
                for _ in range(2)
            ]
            if valid(parameter["schema"], key):
                assert [status for status, _ in answers] == [201, 201], (key, answers)
                assert answers[0][1]["id"] == answers[1][1]["id"], key
            else:
                assert answers[0][0] == 422, (key, answers)


def test_non_blank_fields_are_documented_as_such(spec):
    """A field the server refuses when it is all whitespace (NonBlank) says so
    with a `pattern` of one visible character, so a generated client or form
    validates the same (`\\S` let zero-width spaces through)."""
    from marshmallow import ValidationError

    from app.schemas.common import NonBlank

    def server_accepts(value: str) -> bool:
        try:
            NonBlank()(value)
        except ValidationError:
            return False
        return True

    schemas = spec["components"]["schemas"]
    fields = [
        ("Product", "name"),
        ("ProductUpdate", "name"),
        ("OrderCreate", "shipping_address"),
        ("OrderUpdate", "shipping_address"),
        ("Pay", "payment_method"),
    ]
    for component, field in fields:
        prop = schemas[component]["properties"][field]
        for value in (
            *("     ", "\t \n  ", "\u3000" * 5, "  a  ", "\u00a0" * 4 + "x", "12345"),
            *("\u200b\u200b", "\u2060 \ufeff", "\u00ad", "\x85\x1c", "\u200bhello"),
            "\U0001f600" * 5,
        ):
            assert valid(prop, value) == server_accepts(value), (component, field, value)
