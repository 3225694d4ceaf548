"""Review (round 8) of the contract clients generate code from, for what this
round added: `GET /api/orders/<id>/payments` (admin) with `amount_refunded`,
and query booleans (`in_stock`, the orders list's `all`) that take exactly
`true` or `false`. Every real answer below is walked through the served
document (`Contract`: its status must be documented and its body validate
against the documented schema, OpenAPI's `nullable` read as JSON Schema's
null) and its values are checked against what the server did."""

from __future__ import annotations

import json
import re
from decimal import Decimal

import jsonschema_rs
import pytest

from tests.helpers import order_for, pay
from tests.test_payments_stripe import (  # noqa: F401 - fixtures
    deliver,
    event,
    intent,
    signed,
    stripe_app,
    stripe_client,
    stripe_http,
)
from tests.test_review_contract6 import Contract, as_json_schema
from tests.test_review_payments8 import refunded_charge

DECLINED = {"payment_method": "pm_card_chargeDeclined"}
REFUNDED = {"id": "re_1", "object": "refund", "status": "succeeded"}
SERVER_ERROR = {"error": {"type": "api_error", "message": "An unknown error occurred"}}


@pytest.fixture(scope="module")
def spec(app):
    return json.loads(app.test_client().get("/api/openapi.json").data)


@pytest.fixture
def api(client, spec):
    contract = Contract(client, spec)
    yield contract
    contract.assert_clean()


def _schema(spec, name: str):
    return as_json_schema(spec, {"$ref": f"#/components/schemas/{name}"})


def _parameter(spec, path: str, name: str) -> dict:
    operation = spec["paths"][path]["get"]
    return next(p for p in operation["parameters"] if p["name"] == name and p["in"] == "query")


# --- GET /api/orders/<id>/payments -----------------------------------------------------


def test_order_payments_answers_match_the_document_and_the_money(
    api, spec, admin_token, user_token, make_product
):
    """Each answer of the admin's payments view, from an unpaid order through a
    decline, a payment and a cancel's refund, is documented and validates;
    amounts are JSON numbers (as every amount in the document), exact, and
    `amount_refunded` is the sum over the attempts."""
    product = make_product(price="19.99", stock=5)
    order = order_for(api.client, user_token, (product, 2))
    url = f"/api/orders/{order['id']}/payments"

    unpaid = api("GET", url, admin_token)
    assert unpaid.status_code == 200
    assert json.loads(unpaid.data) == {
        "order_id": order["id"],
        "currency": "USD",
        "payment_status": "unpaid",
        "amount_refunded": 0,
        "payments": [],
    }

    assert api("POST", f"/api/orders/{order['id']}/pay", user_token, json=DECLINED).status_code == (
        402
    )
    assert pay(api.client, user_token, order["id"]).status_code == 200
    paid = json.loads(api("GET", url, admin_token).data, parse_float=Decimal)
    assert paid["payment_status"] == "paid"
    assert [
        (p["attempt"], p["status"], p["amount"], p["amount_refunded"]) for p in paid["payments"]
    ] == [
        (1, "failed", Decimal("39.98"), Decimal("0.00")),
        (2, "succeeded", Decimal("39.98"), Decimal("0.00")),
    ]
    assert isinstance(paid["payments"][0]["failure_message"], str)
    assert paid["payments"][1]["failure_message"] is None

    assert api("POST", f"/api/orders/{order['id']}/cancel", user_token).status_code == 200
    refunded = json.loads(api("GET", url, admin_token).data, parse_float=Decimal)
    assert refunded["payment_status"] == "refunded"
    assert refunded["amount_refunded"] == Decimal("39.98")
    assert refunded["payments"][1]["status"] == "refunded"
    assert refunded["payments"][1]["amount_refunded"] == Decimal("39.98")

    # Money in the answer is what every other amount of the document is: a number.
    payment = _schema(spec, "PaymentResponse")["properties"]
    order_schema = _schema(spec, "OrderResponse")["properties"]
    for name in ("amount", "amount_refunded"):
        assert payment[name]["type"] == order_schema["total_amount"]["type"] == "number"
    assert payment["intent_id"]["type"] == ["string", "null"]
    assert payment["failure_message"]["type"] == ["string", "null"]


@pytest.mark.parametrize(
    ("who", "path", "status", "code"),
    [
        ("nobody", "{id}", 401, "token_missing"),
        ("garbage", "{id}", 401, "token_invalid"),
        ("owner", "{id}", 403, "forbidden"),
        ("admin", "999999", 404, "not_found"),
        ("admin", "0", 404, "not_found"),
        ("admin", "2147483648", 404, "not_found"),
    ],
)
def test_order_payments_errors_are_the_documented_ones(
    api, spec, admin_token, user_token, make_product, who, path, status, code
):
    """401 without a valid token, 403 for a non-admin (the order's owner
    included), 404 for no such order: each documented on the operation, in
    the error envelope."""
    order = order_for(api.client, user_token, (make_product(stock=3), 1))
    token = {"nobody": None, "garbage": "not.a.token", "owner": user_token, "admin": admin_token}
    url = "/api/orders/" + path.format(id=order["id"]) + "/payments"
    answer = api("GET", url, token[who])
    assert (answer.status_code, json.loads(answer.data)["code"]) == (status, code)
    documented = spec["paths"]["/api/orders/{order_id}/payments"]["get"]["responses"]
    assert {"401", "403", "404"} <= set(documented)


def test_stripe_order_payments_with_partial_refunds_match_the_document(
    spec,
    stripe_client,  # noqa: F811 - the imported fixture
    stripe_http,  # noqa: F811
    buyer,
    make_user,
    login,
    make_product,
):
    """With Stripe: a provider outage (an attempt recorded like a decline), a
    payment, a partial refund made at Stripe (the order stays paid) and a
    cancel that refunds the rest: every answer of the payments view validates
    and says what was given back, per attempt and in all."""
    api = Contract(stripe_client, spec)
    _, token = buyer
    admin = login(make_user(admin=True))["access_token"]
    order = order_for(stripe_client, token, (make_product(price="19.99", stock=5), 2))
    url = f"/api/orders/{order['id']}/payments"

    stripe_http.answers = [(500, SERVER_ERROR)] * 3
    assert (
        api(
            "POST", f"/api/orders/{order['id']}/pay", token, json={"payment_method": "pm_card_visa"}
        ).status_code
        == 502
    )
    stripe_http.answers = [
        (200, intent("requires_payment_method", amount=3998)),
        (200, intent("succeeded", amount=3998)),
    ]
    assert pay(stripe_client, token, order["id"]).status_code == 200
    charge = refunded_charge(order["id"], 1000)
    payload = event("charge.refunded", charge, "evt_partial")
    assert (
        api(
            "POST",
            "/api/payments/webhook",
            headers={"Stripe-Signature": signed(payload)},
            data=payload,
            content_type="application/json",
        ).status_code
        == 200
    )

    partly = json.loads(api("GET", url, admin).data, parse_float=Decimal)
    assert partly["payment_status"] == "paid"
    assert partly["amount_refunded"] == Decimal("10.00")
    succeeded = [p for p in partly["payments"] if p["status"] == "succeeded"]
    assert [(p["amount"], p["amount_refunded"], p["intent_id"]) for p in succeeded] == [
        (Decimal("39.98"), Decimal("10.00"), "pi_1")
    ]
    assert all(p["status"] in ("failed", "succeeded") for p in partly["payments"])

    stripe_http.answers = [(200, REFUNDED)]
    assert api("POST", f"/api/orders/{order['id']}/cancel", token).status_code == 200
    done = json.loads(api("GET", url, admin).data, parse_float=Decimal)
    assert done["payment_status"] == "refunded"
    assert done["amount_refunded"] == Decimal("39.98")
    api.assert_clean()


def test_order_payments_is_in_the_client_and_the_reference(spec):
    """The new operation is in the document, in ShopClient (typed from the
    generated OrderPaymentsResponse) and in docs/API.md with the fields the
    answer has, as every other operation is."""
    from tests.live import ROOT

    operation = spec["paths"]["/api/orders/{order_id}/payments"]["get"]
    assert operation["operationId"] == "orderPayments"
    assert operation["security"] == [{"bearerAuth": []}]
    client = (ROOT / "clients" / "typescript" / "src" / "client.ts").read_text()
    assert re.search(
        r"orderPayments\(id: number\): Promise<OrderPayments> \{\s*"
        r"return this\.request\(\"GET\", `/api/orders/\$\{id\}/payments`\)",
        client,
    )
    assert 'Schemas["OrderPaymentsResponse"]' in client
    reference = (ROOT / "docs" / "API.md").read_text().replace("\n  ", " ")
    row = re.search(
        r"\| GET \| `/api/orders/<id>/payments` \| admin \| 200 `\{([^}]*)\}`", reference
    )
    assert row, "docs/API.md has no row for GET /api/orders/<id>/payments"
    top = _schema(spec, "OrderPaymentsResponse")
    assert {f.strip() for f in row.group(1).split(",")} == set(top["properties"])
    listed = re.search(r"oldest first, `\{([^}]*)\}`", reference)
    assert listed, "docs/API.md does not list a payment's fields"
    fields = {f.strip() for f in re.sub(r" \([^)]*\)", "", listed.group(1)).split(",")}
    assert fields == set(_schema(spec, "PaymentResponse")["properties"])


# --- query booleans ------------------------------------------------------------------

BOOLEANS = [
    ("/api/products", "in_stock", None),
    ("/api/products/facets", "in_stock", None),
    ("/api/orders", "all", "admin"),
]


@pytest.mark.parametrize(("path", "name", "who"), BOOLEANS)
def test_query_booleans_take_what_the_document_serializes_and_nothing_else(
    api, spec, admin_token, make_product, path, name, who
):
    """The document declares these `type: boolean` query parameters, which a
    client (openapi-typescript + `String(value)`, Swagger UI, Postman) sends as
    `true` / `false`: the server takes exactly those, and answers any other
    spelling with the documented 422 naming the parameter."""
    make_product(stock=0)
    make_product(stock=2)
    parameter = _parameter(spec, path, name)
    assert parameter["schema"]["type"] == "boolean"
    assert "422" in spec["paths"][path]["get"]["responses"]
    token = admin_token if who else None
    validator = jsonschema_rs.validator_for(parameter["schema"])
    for value in ("true", "false"):
        assert validator.is_valid(json.loads(value))
        assert api("GET", f"{path}?{name}={value}", token).status_code == 200
    for value in ("yes", "1", "0", "True", "FALSE", "on", ""):
        answer = api("GET", f"{path}?{name}={value}", token)
        assert answer.status_code == 422, (value, answer.get_json())
        assert list(json.loads(answer.data)["errors"]) == [name]


def test_in_stock_false_is_no_filter_and_true_keeps_products_with_stock(api, make_product):
    """As the document's description says: `true` only products with stock,
    `false` no filter (the same answer as leaving it out)."""
    empty, stocked = make_product(stock=0), make_product(stock=2)
    ids = {}
    for query in ("", "?in_stock=false", "?in_stock=true"):
        ids[query] = {
            p["id"] for p in json.loads(api("GET", f"/api/products{query}").data)["items"]
        }
    assert ids[""] == ids["?in_stock=false"] == {empty.id, stocked.id}
    assert ids["?in_stock=true"] == {stocked.id}
    facets = {q: json.loads(api("GET", f"/api/products/facets{q}").data)["total"] for q in ids}
    assert facets == {"": 2, "?in_stock=false": 2, "?in_stock=true": 1}


def test_all_is_false_by_default_and_true_is_for_admins(
    api, spec, admin_token, user_token, make_product
):
    """`all` defaults to false (the document says so: a generated client may
    leave it out or send false alike); `all=true` from a non-admin is the
    documented 403, from an admin everyone's orders."""
    assert _parameter(spec, "/api/orders", "all")["schema"]["default"] is False
    order = order_for(api.client, user_token, (make_product(stock=3), 1))
    for query in ("", "?all=false"):
        own = json.loads(api("GET", f"/api/orders{query}", admin_token).data)
        assert own["total"] == 0
    everyone = json.loads(api("GET", "/api/orders?all=true", admin_token).data)
    assert [o["id"] for o in everyone["items"]] == [order["id"]]
    refused = api("GET", "/api/orders?all=true", user_token)
    assert (refused.status_code, json.loads(refused.data)["code"]) == (403, "forbidden")
    assert api("GET", "/api/orders?all=false", user_token).status_code == 200


# --- query parameters as client generators fill them in --------------------------------


def _example_query(parameters: list[dict]) -> dict[str, str]:
    """The query a generator builds from the document alone: each parameter's
    example, else its default, else its first enum value (what Postman's
    converter and Swagger UI prefill)."""
    query = {}
    for parameter in parameters:
        schema = parameter.get("schema", {})
        if parameter["in"] != "query":
            continue
        for key in ("example", "default"):
            if key in schema:
                value = schema[key]
                break
        else:
            if "enum" not in schema:
                continue
            value = schema["enum"][0]
        query[parameter["name"]] = json.dumps(value) if not isinstance(value, str) else value
    return query


@pytest.mark.parametrize("path", ["/api/products", "/api/products/facets"])
def test_the_documented_price_filter_examples_are_taken(api, spec, path, make_product):
    """`min_price` and `max_price` were `{type: number, minimum: 0, maximum:
    1000000}` with no example, so a generator made one up: the project's own
    Postman collection (`make postman`, scripts/postman.mjs) sent
    `min_price=404691.44534278987&max_price=404691.44534278987`, which the
    server answers 422 ("At most two decimal places are allowed."): its
    product list and facets requests failed as generated. They now carry
    examples the server takes."""
    make_product(price="499.00", stock=2)
    operation = spec["paths"][path]["get"]
    query = _example_query(operation["parameters"])
    assert {"min_price", "max_price"} <= set(query)
    answer = api("GET", path, query_string=query)
    assert answer.status_code == 200, answer.get_json()
    total = json.loads(answer.data)["total"]
    assert total == 1, query


@pytest.mark.server
def test_the_postman_collection_requests_are_answered_as_generated(
    spec, client, admin_token, make_product, tmp_path
):
    """Every request of the generated Postman collection that needs no path id,
    sent as generated (its enabled query parameters, an admin's token), is
    answered 2xx and validates against the document. listProducts and
    productFacets were 422s (made-up prices with 11 decimals)."""
    import shutil
    import subprocess

    from tests.live import ROOT

    scripts = ROOT / "clients" / "typescript"
    if shutil.which("node") is None or not (scripts / "node_modules").exists():
        pytest.skip("node and `npm ci` in clients/typescript are needed")
    make_product(price="499.00", stock=2)
    document = tmp_path / "openapi.json"
    document.write_text(json.dumps(spec))
    target = tmp_path / "collection.json"
    subprocess.run(
        ["node", "scripts/postman.mjs", str(document), str(target)],
        cwd=scripts,
        check=True,
        capture_output=True,
        timeout=120,
    )

    def requests(items):
        for item in items:
            yield from requests(item["item"]) if "item" in item else [item["request"]]

    api = Contract(client, spec)
    sent = []
    for request in requests(json.loads(target.read_text())["item"]):
        path = "/" + "/".join(request["url"]["path"])
        if request["method"] != "GET" or ":" in path:
            continue
        query = {
            q["key"]: q["value"] for q in request["url"].get("query", []) if not q.get("disabled")
        }
        answer = api("GET", path, admin_token, query_string=query)
        sent.append(path)
        assert 200 <= answer.status_code < 300, (path, query, answer.get_json())
    assert {"/api/products", "/api/products/facets", "/api/orders"} <= set(sent)
    api.assert_clean()


def test_docs_api_md_says_what_the_query_booleans_take():
    """docs/API.md named `in_stock=true` only and `all=true` only: not that
    `false` is no filter (the same as leaving it out), that any other
    spelling is a 422, nor that `all=true` from a non-admin is a 403, all of
    which the server does (the tests above) and the README says."""
    from tests.live import ROOT

    reference = (ROOT / "docs" / "API.md").read_text().replace("\n  ", " ")
    in_stock = re.search(r"`in_stock` \(([^)]*)\)", reference)
    assert in_stock, "docs/API.md does not say what in_stock takes"
    assert "`false`: no filter" in in_stock.group(1) and "422" in in_stock.group(1)
    orders = reference.split("## Orders", 1)[1].split("\n## ", 1)[0]
    assert re.search(r"`all` is `true` or `false`[^.]*422", orders)
    assert re.search(r"`all=true` from a user who is not an admin is a 403", orders)
