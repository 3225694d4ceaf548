"""Review (session 16) of the contract clients generate code from: request
schemas that took what the server refuses, and headers the server sends that
the document did not name. Each test failed on the code before its fix, as
its docstring says; the answers it compares with are real ones."""

from __future__ import annotations

import json

import jsonschema_rs
import pytest

from tests.helpers import auth
from tests.test_review_contract6 import Contract, as_json_schema, find_operation


@pytest.fixture(scope="module")
def spec(app):
    return json.loads(app.test_client().get("/api/openapi.json").data)


def _component(spec, name: str):
    return jsonschema_rs.validator_for(
        as_json_schema(spec, {"$ref": f"#/components/schemas/{name}"}), validate_formats=True
    )


def test_a_zero_stock_adjustment_is_refused_by_the_document_as_by_the_server(
    client, spec, admin_token, make_product
):
    """API.md: `delta` "a non-zero integer". The server answers `{"delta": 0}`
    422 ("Must not be 0."); StockAdjustment's `delta` said "not 0" in its
    description only, so a client validating against the document sent it."""
    product = make_product(stock=3)
    url = f"/api/products/{product.id}/stock"
    refused = client.post(url, json={"delta": 0}, headers=auth(admin_token))
    assert refused.status_code == 422, refused.get_json()
    assert not _component(spec, "StockAdjustment").is_valid({"delta": 0})
    for delta in (1, -1):
        taken = client.post(url, json={"delta": delta}, headers=auth(admin_token))
        assert taken.status_code == 200, taken.get_json()
        assert _component(spec, "StockAdjustment").is_valid({"delta": delta})


@pytest.mark.parametrize(
    ("image_url", "taken"),
    [
        ("", False),
        ("ftp://example.com/a.png", False),
        ("javascript:alert(1)", False),
        ("https://example.com/a b.png", False),
        ('https://example.com/a.png"onerror="x', False),
        ("https://example.com/a.png", True),
        ("HTTP://EXAMPLE.COM/A.PNG", True),
        ("http://localhost:8080/a.png?size=2", True),
        (None, True),
    ],
)
def test_an_image_url_the_server_refuses_is_refused_by_the_document(
    client, spec, admin_token, image_url, taken
):
    """Product.image_url was `{type: string, format: url}`: `url` is no JSON
    Schema format, which validators ignore, so the document took an empty
    string, an `ftp:` or `javascript:` URL and one with a space, all 422s
    (the server takes http(s) URLs only, without unsafe characters)."""
    body = {"name": "Pictured", "price": 1, "stock": 1, "image_url": image_url}
    answer = client.post("/api/products", json=body, headers=auth(admin_token))
    assert (answer.status_code == 201) is taken, answer.get_json()
    for component, instance in (("Product", body), ("ProductUpdate", {"image_url": image_url})):
        assert _component(spec, component).is_valid(instance) is taken, (component, image_url)


def test_every_503_in_the_envelope_documents_the_retry_after_it_sends(spec, make_app):
    """README: a database that cannot answer "is a 503 `unavailable` with
    `Retry-After: 1`" (30 when it takes no writes; a password-hashing slot
    too busy: 1). The server sends it; the document's 503 (every operation
    has it) named `X-Request-ID` only, so a generated client had no typed
    way to read when to retry."""
    from tests.live import free_port

    down = f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/none"
    other = make_app(overrides={"SQLALCHEMY_DATABASE_URI": down, "CATALOG_CACHE": False})
    client = other.test_client()
    for method, url, body in [
        ("GET", "/api/products/1", None),
        ("POST", "/api/auth/login", {"username": "abc", "password": "x"}),
    ]:
        answer = client.open(url, method=method, json=body)
        assert answer.status_code == 503, answer.get_json()
        assert answer.headers["Retry-After"].isdigit()
    missing = []
    for path, item in spec["paths"].items():
        for method, operation in item.items():
            if method == "parameters" or path == "/api/health":  # its own 503 body
                continue
            response = operation["responses"]["503"]
            if "$ref" in response:
                name = response["$ref"].rsplit("/", 1)[-1]
                response = spec["components"]["responses"][name]
            header = response.get("headers", {}).get("Retry-After")
            if header is None or header["schema"].get("type") != "integer":
                missing.append(operation["operationId"])
    assert missing == [], f"503 without Retry-After in the document: {missing}"


def test_a_304_documents_the_validators_it_sends(client, spec, make_product):
    """A 304 carries the ETag and Cache-Control of the copy it confirms (RFC
    9110; app.web.caching sends both). The document gave them to the 200
    only; the 304s of the five catalog reads listed `X-Request-ID` alone."""
    product = make_product(name="Etagged")
    urls = [
        "/api/products",
        "/api/products/facets",
        "/api/products/suggest?q=et",
        f"/api/products/{product.id}",
        f"/api/products/{product.id}/reviews",
    ]
    api = Contract(client, spec)
    for url in urls:
        etag = client.get(url).headers["ETag"]
        answer = api("GET", url, headers={"If-None-Match": etag})
        assert answer.status_code == 304
        assert answer.headers["ETag"] == etag
        _, operation = find_operation(spec, "GET", url)
        documented = operation["responses"]["304"].get("headers", {})
        assert {"ETag", "Cache-Control"} <= set(documented), (url, sorted(documented))
    api.assert_clean()
