"""Review of the contract clients generate code from, and of the docs: the
OpenAPI document against what the endpoints answer, and docs/API.md (the
README's "API reference: every endpoint, field, error code and rule") against
the app. Each test fails on the current code because of a defect."""

from __future__ import annotations

import json
import re
import threading
from contextlib import contextmanager
from pathlib import Path

import jsonschema_rs
import pytest
from sqlalchemy import event

from app.extensions import db as _db
from app.models.product import MAX_STOCK
from tests.helpers import DATABASE_URL, SHIPPING, auth, fill_cart, order_for
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


# ---------------------------------------------------------------------------
# Second contract pass (reviewer: contract, 2026-11-28; `-k c2_`). Each test
# failed before its fix on both databases.
# ---------------------------------------------------------------------------


def _run_between_count_and_page(app, table: str, write):
    """While the current thread's next paged read of `table` runs, commit
    `write` (a callable taking a test client, run in another thread) just
    before the statement that reads the page's items (after the page's COUNT,
    when that is a statement of its own, as it was): a GET's
    statements each run on their own (`app.db.begin_only_where_writes_may_happen`),
    so this is any concurrent write's timing. A context manager; yields the
    status codes the write answered."""

    @contextmanager
    def running():
        answers: list[int] = []
        main = threading.current_thread()

        def between(conn, cursor, statement, parameters, context, executemany):
            if answers or threading.current_thread() is not main:
                return
            text = " ".join(statement.split()).lower()
            if f"from {table}" not in text or "limit" not in text:
                return

            def other():
                with app.test_client() as client:
                    answers.append(write(client))

            worker = threading.Thread(target=other)
            worker.start()
            worker.join()

        event.listen(_db.engine, "before_cursor_execute", between)
        try:
            yield answers
        finally:
            event.remove(_db.engine, "before_cursor_execute", between)

    return running()


def test_c2_order_list_filtered_by_status_never_answers_a_total_its_items_contradict(
    app, client, buyer, make_product
):
    """API.md, "Every list endpoint answers with the same page envelope
    {items, page, per_page, total, pages}"; the recent change 78e0a35 says an
    order list never answers an order torn by a status change.

    `app.db.paginate` reads `total` with one COUNT and the items with another
    statement, each on its own in a read request: a cancel committed between
    them makes GET /api/orders?status=pending answer `"total": 1, "pages": 1`
    with `"items": []` on page 1 (a page that contradicts itself; the same
    for a checkout between them: more items than `total`). The review list
    already reads its total in the statement that reads its items (README,
    Reviews); orders (and the other pages built by `paginate`) do not.
    Expected: total and items from one snapshot (count in the page
    statement, e.g. `count(*) OVER ()`), so either total 0 and no item, or
    total 1 and the order."""
    _, token = buyer
    order = order_for(client, token, (make_product(stock=5), 1))

    def cancel(other):
        return other.post(f"/api/orders/{order['id']}/cancel", headers=auth(token)).status_code

    with _run_between_count_and_page(app, "orders", cancel) as answers:
        page = client.get("/api/orders?status=pending", headers=auth(token)).get_json()
    assert answers == [200]
    assert len(page["items"]) == page["total"], page


def test_c2_low_stock_page_never_answers_a_total_its_items_contradict(
    app, client, admin_token, make_product
):
    """API.md, Inventory: GET /inventory/low-stock is a page (the envelope
    of every list). `services.inventory.low_stock` pages through
    `app.db.paginate` (COUNT, then the items, two statements on their own):
    an adjustment that lifts the only low product above its threshold,
    committed in between, makes the answer `"total": 1` with no item.
    Expected: total and items of one snapshot."""
    product = make_product(stock=3, low_stock_threshold=5)

    def restock(other):
        answer = other.post(
            f"/api/products/{product.id}/stock", json={"delta": 10}, headers=auth(admin_token)
        )
        return answer.status_code

    with _run_between_count_and_page(app, "products", restock) as answers:
        page = client.get("/api/inventory/low-stock", headers=auth(admin_token)).get_json()
    assert answers == [200]
    assert len(page["items"]) == page["total"], page


def test_c2_stock_movement_page_never_holds_more_items_than_its_total(
    app, client, admin_token, buyer, make_product
):
    """API.md, Inventory: GET /products/<id>/stock-movements is a page,
    newest first. `services.inventory.stock_movements` counts, then reads the
    items (`app.db.paginate`): a checkout committed in between adds a
    movement, and the answer holds 2 items with `"total": 1, "pages": 1`.
    Expected: total and items of one snapshot."""
    _, token = buyer
    product = make_product(stock=5)
    fill_cart(client, token, (product, 1))

    def checkout(other):
        return other.post("/api/orders", json=SHIPPING, headers=auth(token)).status_code

    with _run_between_count_and_page(app, "stock_movements", checkout) as answers:
        page = client.get(
            f"/api/products/{product.id}/stock-movements", headers=auth(admin_token)
        ).get_json()
    assert answers == [201]
    assert len(page["items"]) == page["total"], page


def test_c2_review_page_never_answers_a_total_its_items_contradict(
    app, client, make_user, login, make_product
):
    """API.md, Reviews: GET /products/<id>/reviews is a page of reviews (the
    envelope of every list); README: "a review page reads its `total` in the
    statement that reads its items".

    Not when the page comes back empty: `services.reviews.list_reviews`
    then answers the `rating_count` of its first statement (the product's
    read), so a review deleted between that read and the page statement
    gives page 1 with `"items": []` and `"total": 1, "pages": 1`. Expected:
    total and items of one snapshot (total 0 and no item here)."""
    from tests.reviewing import give_order

    author = make_user()
    token = login(author)["access_token"]
    product = make_product(stock=5)
    give_order(author, product, "delivered")
    review = client.post(
        f"/api/products/{product.id}/reviews", json={"rating": 4}, headers=auth(token)
    )
    assert review.status_code == 201, review.get_json()

    def delete(other):
        return other.delete(
            f"/api/reviews/{review.get_json()['id']}", headers=auth(token)
        ).status_code

    with _run_between_count_and_page(app, "reviews", delete) as answers:
        page = client.get(f"/api/products/{product.id}/reviews").get_json()
    assert answers == [204]
    assert len(page["items"]) == page["total"], page


def test_c2_docs_api_md_lists_no_409_cart_changed_that_nothing_raises():
    """docs/API.md's error table (the README's "API reference: every
    endpoint, field, error code and rule") lists `409 cart_changed`, "the
    cart changed while checkout read it; retry", and a client is told to
    branch on `code` (API.md, Errors). Nothing raises it:
    `app.errors.CartChanged` is defined and never used (checkout reads the
    cart by deleting its lines, README Orders, so a changed cart is no
    longer an error). Expected: the table lists only codes the API answers
    (drop the row, and the dead class), or the code is raised where the
    table says."""
    documented = set(re.findall(r"^\| 409 \| `([a-z_]+)` \|", API_MD, re.MULTILINE))
    sources = "\n".join(
        path.read_text() for path in (ROOT / "app").rglob("*.py") if path.name != "errors.py"
    )
    answered = "cart_changed" if re.search(r"\bCartChanged\(", sources) else None
    assert "cart_changed" not in documented or answered, (
        "docs/API.md lists 409 cart_changed, which no code path answers"
    )
