"""Review of the contract clients generate code from, and of the docs: the
OpenAPI document against what the endpoints answer, and docs/API.md (the
README's "API reference: every endpoint, field, error code and rule") against
the app. Each test fails on the current code because of a defect."""

from __future__ import annotations

import json
import re
from pathlib import Path

import jsonschema_rs
import pytest

from app.models.product import MAX_STOCK
from tests.helpers import DATABASE_URL, auth, order_for
from tests.live import gunicorn
from tests.test_faults import raw_request

ROOT = Path(__file__).resolve().parent.parent
API_MD = (ROOT / "docs" / "API.md").read_text()
README = (ROOT / "README.md").read_text()


@pytest.fixture(scope="module")
def spec(app):
    return json.loads(app.test_client().get("/api/openapi.json").data)


def operations(spec) -> set[tuple[str, str]]:
    return {
        (method.upper(), re.sub(r"\{[^}]*\}", "{}", path))
        for path, item in spec["paths"].items()
        for method in item
        if method != "parameters"
    }


def documented_operations(markdown: str) -> set[tuple[str, str]]:
    """The operations docs/API.md names: its endpoint tables (a path relative
    to the section's `/api/...` prefix, or absolute) and `METHOD /api/...`
    mentions in its text. Path parameters are compared by place, not name."""
    found: set[tuple[str, str]] = set()
    prefix = ""
    for line in markdown.splitlines():
        heading = re.match(r"#+ .*?\(`(/api[^`]*)`", line)
        if line.startswith("#"):
            prefix = heading.group(1) if heading else ""
        row = re.match(r"\| (GET|POST|PUT|DELETE|PATCH) \| `([^`]*)` \|", line)
        if row:
            method, path = row.groups()
            found.add((method, path if path.startswith("/api") else prefix + path))
        for method, path in re.findall(r"`(GET|POST|PUT|DELETE|PATCH) (/api/[^`?\s]*)", line):
            found.add((method, path))
    return {(m, re.sub(r"<[^>]*>", "{}", p)) for m, p in found}


# --- the OpenAPI document against the answers ---------------------------------


def test_a_cancel_can_leave_a_product_with_more_stock_than_its_documented_response_allows(
    client, spec, buyer, make_product, admin_token
):
    """OpenAPI: `ProductResponse.stock` (and so every product a client's
    generated validator reads: detail, lists, low-stock, the adjust answer)
    has `maximum: 1000000000` (MAX_STOCK, the request bound copied into the
    response component by `response_schema`). But the README says an admin
    may set a stock of 1,000,000,000 and a cancel still puts its units back
    (only past 2,147,483,647 is it a 409 `stock_limit`): so a product at the
    maximum, 5 units ordered, set back to the maximum, then the order
    cancelled, answers `stock: 1000000005`, which the document declares
    impossible (Schemathesis' response_schema_conformance fails on it, and a
    client validating answers against the document rejects a real product).
    Found: GET /api/products/<id> 200 with stock 1000000005 > maximum."""
    _, token = buyer
    product = make_product(stock=MAX_STOCK, price="1.00")
    order = order_for(client, token, (product, 5))
    restock = client.put(
        f"/api/products/{product.id}", json={"stock": MAX_STOCK}, headers=auth(admin_token)
    )
    assert restock.status_code == 200, restock.get_json()
    cancel = client.post(f"/api/orders/{order['id']}/cancel", headers=auth(token))
    assert cancel.status_code == 200, cancel.get_json()

    answer = client.get(f"/api/products/{product.id}")
    assert answer.status_code == 200
    schema = spec["paths"]["/api/products/{product_id}"]["get"]["responses"]["200"]
    ref = schema["content"]["application/json"]["schema"]["$ref"].rsplit("/", 1)[-1]
    stock_schema = spec["components"]["schemas"][ref]["properties"]["stock"]
    stock = answer.get_json()["stock"]
    assert stock <= stock_schema.get("maximum", stock), (
        f"GET /api/products/{product.id} answered stock {stock}; "
        f"the document's {ref}.stock says maximum {stock_schema['maximum']}"
    )


def test_facets_price_is_null_when_nothing_matches_as_the_document_describes_it(client, spec):
    """OpenAPI: `FacetsResponse.price` is described "null when none match"
    (app/schemas/product.py, FacetsSchema.price metadata). The answer is
    never null: with no match it is `{"min": null, "max": null}` (what the
    README says). A storefront developer reading the generated type's doc
    comment writes `if (facets.price === null)` and never takes that branch.
    Found: price == {'min': None, 'max': None}."""
    description = spec["components"]["schemas"]["FacetsResponse"]["properties"]["price"][
        "description"
    ]
    answer = client.get("/api/products/facets?q=zzzqqqxxnomatch")
    assert answer.status_code == 200
    assert answer.get_json()["total"] == 0
    price = answer.get_json()["price"]
    if "null when none match" in description:
        assert price is None, f"document: price {description!r}; answered {price!r}"


def test_response_status_fields_are_enums_as_the_readme_says(spec):
    """README (API documentation): "response `status` fields are enums" - a
    generated client gets a union of literals, not `string`. The health
    answer's `status` (`HealthResponse`, and `UnavailableResponse` of its
    503) is a bare string whose values (`ok`, `degraded`, `unavailable`) are
    only in a description, so a TypeScript client types it `string`.
    Found: ['HealthResponse', 'UnavailableResponse']."""
    missing = sorted(
        name
        for name, schema in spec["components"]["schemas"].items()
        if name.endswith("Response")
        and "status" in schema.get("properties", {})
        and "enum" not in schema["properties"]["status"]
    )
    assert missing == [], f"response `status` without an enum: {missing}"


def _price_string_schema(spec) -> dict:
    price = spec["components"]["schemas"]["Product"]["properties"]["price"]
    return next(branch for branch in price["anyOf"] if branch.get("type") == "string")


@pytest.mark.parametrize("price", ["1e2", " 05"])
def test_a_price_string_the_document_declares_invalid_is_refused(client, spec, admin_token, price):
    """OpenAPI: a request's money string must match the `Product.price`
    pattern `^((0|[1-9][0-9]{0,5})(\\.[0-9]{1,2})?|1000000(\\.00?)?)$`
    (app/web/openapi_contract.py MONEY_PATTERN: no exponent, no sign, no
    leading zero or space). The server's `Money` (app/schemas/common.py:
    `strip()`, then NUMBER, which allows a sign, an exponent, leading zeros,
    `.5` and `5.`) reads much more: `"1e2"` is a product at 100.00, `" 05"`
    one at 5.00 (so are `"+5"`, `".5"`, `"5."`). The document and the server
    disagree on what an amount string is: Schemathesis' negative-data check
    and any client-side validator built from the document contradict the
    server. Found: 201 for each."""
    assert not jsonschema_rs.validator_for(_price_string_schema(spec)).is_valid(price)
    answer = client.post(
        "/api/products",
        json={"name": "Amount probe", "price": price, "stock": 1},
        headers=auth(admin_token),
    )
    assert answer.status_code == 422, (
        f"price {price!r}: the document's pattern refuses it, the server answered "
        f"{answer.status_code} {answer.get_json()}"
    )


@pytest.mark.parametrize(
    ("component", "field", "value", "promise"),
    [
        ("Product", "price", "-0", '`"-0"` is `0.00`'),
        (
            "Signup",
            "username",
            "\uff41\uff4c\uff49\uff43\uff45",
            "fullwidth `\uff41\uff4c\uff49\uff43\uff45` is `alice`",
        ),
    ],
    ids=["price-minus-zero", "fullwidth-username"],
)
def test_inputs_the_readme_promises_are_valid_in_the_document(
    client, spec, admin_token, component, field, value, promise
):
    """README (Auth): "amounts ... given as strings ... `"-0"` is `0.00`" and
    "Usernames and emails are NFKC-normalised first (fullwidth alice is
    `alice`)"; the server does accept both (201). The OpenAPI document, generated
    from the same schemas, declares both invalid (the price pattern has no
    sign; the username pattern is `^[A-Za-z0-9_.\\-]{3,80}$` on the raw
    input), so a client validating its forms with the document refuses what
    the README promises and the server takes. Found: the document's schema
    rejects both."""
    assert promise in README
    if component == "Product":
        body, path = {"name": "Minus zero", "price": value, "stock": 1}, "/api/products"
    else:
        body = {"username": value, "email": "wide@example.com", "password": "correct-horse-9"}
        path = "/api/auth/signup"
    accepted = client.post(path, json=body, headers=auth(admin_token))
    assert accepted.status_code == 201, accepted.get_json()
    schema = spec["components"]["schemas"][component]["properties"][field]
    if "anyOf" in schema:
        schema = _price_string_schema(spec)
    assert jsonschema_rs.validator_for(schema).is_valid(value), (
        f"README: {promise}; the document's {component}.{field} refuses {value!r}"
    )


def test_catalog_reads_that_answer_304_document_the_if_none_match_header_that_asks_for_it(spec):
    """README (API documentation): "Every operation has its parameters, ...".
    The catalog reads (list, detail, facets, suggest, reviews) declare a 304
    "the request's If-None-Match names the current ETag" and an `ETag`
    response header, but no `If-None-Match` header parameter: a generated
    client (openapi-typescript's paths types, openapi-fetch) has no typed
    way to send it, and Swagger UI's "Try it out" can never reach the
    documented 304. Found: all five operations lack the parameter."""
    missing = sorted(
        f"GET {path}"
        for path, item in spec["paths"].items()
        if "304" in item.get("get", {}).get("responses", {})
        and not any(
            p["in"] == "header" and p["name"].lower() == "if-none-match"
            for p in [*item.get("parameters", []), *item["get"].get("parameters", [])]
        )
    )
    assert missing == [], f"declare a 304 but no If-None-Match parameter: {missing}"


@pytest.mark.server
def test_every_code_the_production_server_answers_is_documented(app, spec):
    """docs/API.md: "Every error ... is one JSON shape ... `code`: stable and
    machine-readable; branch on it", with a table that lists the codes; the
    OpenAPI `Error.code` description "lists every code the app can answer"
    (README). Under gunicorn (the production server), requests gunicorn
    refuses itself answer codes of gunicorn.conf.py's `_json_error` that
    neither lists: `headers_too_large` (431, a header over 8 KB - a long
    token), `invalid_request` (400, a control character in a header) and
    `uri_too_long` (414). A client branching on `code` meets codes that no
    document names (a 400 is documented as `invalid_json` only)."""
    requests = [
        b"GET /api/auth/profile HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "
        + b"a" * 9000
        + b"\r\nConnection: close\r\n\r\n",
        b"GET /api/products HTTP/1.1\r\nHost: x\r\nX-Note: a\x01b\r\nConnection: close\r\n\r\n",
        b"GET /api/products?q=" + b"a" * 9000 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
    ]
    with gunicorn(DATABASE_URL, workers=1, threads=2) as server:
        codes = {raw_request(server, data)[2]["code"] for data in requests}
    described = spec["components"]["schemas"]["Error"]["properties"]["code"]["description"]
    undocumented = sorted(
        code for code in codes if f"`{code}`" not in API_MD or f"`{code}`" not in described
    )
    assert undocumented == [], (
        f"codes answered but not in docs/API.md or Error.code: {undocumented}"
    )


# --- docs/API.md, the API reference, against the app ---------------------------


def test_docs_api_md_lists_every_operation_the_app_serves(spec):
    """README: "The API reference is docs/API.md (every endpoint, field, error
    code and rule)". docs/API.md has no row (and no mention) for the payment
    endpoints (POST /api/orders/<id>/pay, POST /api/payments/webhook) nor the
    password reset and email verification ones (POST /api/auth/password-reset,
    /password-reset/confirm, /verify-email, /verify-email/resend), though it
    lists their error codes (`payment_declined`, `already_paid`,
    `invalid_signature`...). A storefront built from the reference cannot
    take a payment or reset a password."""
    missing = sorted(operations(spec) - documented_operations(API_MD))
    assert missing == [], f"operations docs/API.md does not document: {missing}"


@pytest.mark.parametrize(
    ("resource", "path"),
    [("user", "/api/auth/profile"), ("order", "/api/orders/{order_id}")],
)
def test_docs_api_md_resource_fields_are_the_fields_the_api_answers(
    client, buyer, make_product, resource, path
):
    """docs/API.md describes each resource by its fields ("user: `{id,
    username, email, is_admin, created_at}`", "order: `{id, user_id, status,
    total_amount, shipping_address, items, status_history, created_at,
    updated_at}`"). The answers have more: a user's `email_verified`, an
    order's `currency` and `payment_status` (API.md of /work/shared and the
    README document them; the reference never names them, so nowhere does it
    say what `payment_status` values are). Found: user missing
    ['email_verified']; order missing ['currency', 'payment_status']."""
    _, token = buyer
    order = order_for(client, token, (make_product(stock=3), 1))
    answer = client.get(path.format(order_id=order["id"]), headers=auth(token))
    assert answer.status_code == 200
    listed = re.search(rf"- {resource}: `\{{([^}}]*)\}}`", API_MD.replace("\n  ", " "))
    assert listed, f"docs/API.md describes no {resource}"
    documented = {name.strip() for name in listed.group(1).split(",")}
    extra = sorted(set(answer.get_json()) - documented)
    assert extra == [], f"docs/API.md's {resource} lacks the answered fields {extra}"


def test_docs_api_md_product_list_parameters_are_the_ones_the_list_takes(spec):
    """docs/API.md, Products: "Query parameters of the list: `page`,
    `per_page`, `category`, `q`, `min_price`, `max_price`, `in_stock=true`,
    `sort` (`name`, `-name`, `price`, `-price`, `created_at`, `-created_at`,
    `relevance` ...)". The list also takes `min_rating` and sorts by `rating`
    and `-rating` (API.md of /work/shared, README and the OpenAPI document
    say so); the reference omits all three. Found: ['-rating', 'min_rating',
    'rating']."""
    bullet = re.search(r"- Query parameters of the list:(.*?)(?:\n- |\n\n)", API_MD, re.S)
    assert bullet, "docs/API.md has no list of the product list's query parameters"
    text = bullet.group(1)
    parameters = spec["paths"]["/api/products"]["get"]["parameters"]
    names = {p["name"] for p in parameters if p["in"] == "query"}
    sorts = next(p for p in parameters if p["name"] == "sort")["schema"]["enum"]
    missing = sorted(
        word for word in names | set(sorts) if not re.search(rf"`{re.escape(word)}[`=]", text)
    )
    assert missing == [], f"docs/API.md's product list parameters lack {missing}"


def test_an_amount_string_with_three_decimals_is_refused_as_the_pattern_says(
    client, spec, admin_token
):
    """The pattern allows at most two decimals; `"5.000"` (exactly 5.00) was
    taken, so the document and the server still disagreed on it."""
    assert not jsonschema_rs.validator_for(_price_string_schema(spec)).is_valid("5.000")
    answer = client.post(
        "/api/products",
        json={"name": "Three places", "price": "5.000", "stock": 1},
        headers=auth(admin_token),
    )
    assert answer.status_code == 422, answer.get_json()
    assert answer.get_json()["errors"]["price"] == ["At most two decimal places are allowed."]


def test_a_category_stored_empty_before_the_rule_is_none_after_the_upgrade(app, make_product):
    """A category of "" (stored before categories were 1 to 80 characters)
    answered `category: ""` against the document's `minLength: 1`; migration
    f32c5e7a9d03 makes it NULL."""
    import importlib.util

    from app.extensions import db as _db
    from tests.helpers import scalar

    product = make_product()
    _db.session.execute(
        _db.text("UPDATE products SET category = '' WHERE id = :id"), {"id": product.id}
    )
    _db.session.commit()
    path = ROOT / "migrations" / "versions" / "f32c5e7a9d03_empty_categories_are_none.py"
    spec_ = importlib.util.spec_from_file_location("f32", path)
    module = importlib.util.module_from_spec(spec_)
    spec_.loader.exec_module(module)
    from alembic.migration import MigrationContext
    from alembic.operations import Operations

    with (
        _db.engine.begin() as connection,
        Operations.context(MigrationContext.configure(connection)),
    ):
        module.upgrade()
    assert scalar("SELECT category FROM products WHERE id = :id", id=product.id) is None
