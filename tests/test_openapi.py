"""GET /api/openapi.json: every route in it and nothing else, the errors each
operation can give, bearer security exactly where a token is needed; and the
/api/docs page served from local files."""

from __future__ import annotations

import json
import re

import pytest

from tests.helpers import auth

# The documentation's own routes are not API operations, so they are not in it.
DOC_ROUTES = re.compile(r"^/api/(openapi\.json|docs(/.*)?)$")
IGNORED_METHODS = {"HEAD", "OPTIONS"}
ERROR_REF = "#/components/schemas/Error"


@pytest.fixture(scope="module")
def spec(app):
    response = app.test_client().get("/api/openapi.json")
    assert response.status_code == 200
    assert response.mimetype == "application/json"
    return json.loads(response.data)  # plain floats: the document is not money


def operations(spec):
    for path, item in spec["paths"].items():
        for method, operation in item.items():
            if method != "parameters":
                yield method.upper(), path, operation


def resolve(spec, obj):
    while "$ref" in obj:
        node = spec
        for part in obj["$ref"].lstrip("#/").split("/"):
            node = node[part]
        obj = node
    return obj


def concrete_path(path: str) -> str:
    return re.sub(r"\{[^}]+\}", "1", path)


def test_every_api_route_is_documented_and_nothing_else(app, spec):
    routes = {
        (method, re.sub(r"<(?:[^:>]+:)?([^>]+)>", r"{\1}", rule.rule))
        for rule in app.url_map.iter_rules()
        if rule.rule.startswith("/api") and not DOC_ROUTES.match(rule.rule)
        for method in rule.methods - IGNORED_METHODS
    }
    documented = {(method, path) for method, path, _ in operations(spec)}
    assert routes == documented
    assert len(documented) >= 20  # sanity: the comparison above saw the real API


def test_document_basics(spec):
    assert spec["openapi"].startswith("3.")
    assert spec["info"]["title"] and spec["info"]["version"]
    assert spec["components"]["securitySchemes"]["bearerAuth"] == {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "JWT",
    }
    error = spec["components"]["schemas"]["Error"]
    assert error["required"] == ["code", "message"]
    assert set(error["properties"]) == {"code", "message", "errors", "details"}
    assert error["properties"]["errors"]["additionalProperties"] == {
        "type": "array",
        "items": {"type": "string"},
    }
    for method, path, operation in operations(spec):
        assert operation.get("summary"), f"{method} {path} has no summary (docstring)"
        assert "default" not in operation["responses"], "errors are listed one by one"


def test_every_ref_resolves(spec):
    refs = re.findall(r'"\$ref": "([^"]+)"', json.dumps(spec))
    assert refs
    for ref in set(refs):
        assert resolve(spec, {"$ref": ref}), ref


def test_each_operation_lists_its_standard_errors_with_the_envelope(spec):
    for method, path, operation in operations(spec):
        responses = operation["responses"]
        name = f"{method} {path}"
        expected = {"415", "503"}
        if path not in ("/api/health", "/api/payments/webhook"):  # never rate limited
            expected.add("429")
        if "requestBody" in operation:
            expected |= {"400", "413", "415", "422"}
            assert "application/json" in operation["requestBody"]["content"], name
        elif method.lower() not in ("get", "head"):  # a write that takes no body refuses one
            expected |= {"400", "413", "422"}
        if operation.get("security"):
            expected.add("401")
        if "{" in path:
            expected.add("404")
        assert expected <= set(responses), f"{name}: {sorted(expected - set(responses))}"
        for code, response in responses.items():
            response = resolve(spec, response)
            assert response["description"], f"{name} {code}"
            if int(code) >= 400 and not (path == "/api/health" and code == "503"):
                schema = response["content"]["application/json"]["schema"]
                assert schema == {"$ref": ERROR_REF}, f"{name} {code}"


def _call(client, method, path, token=None):
    kwargs = {"headers": auth(token)} if token else {}
    if method in {"POST", "PUT"}:
        kwargs["json"] = {}
    return getattr(client, method.lower())(concrete_path(path), **kwargs)


def test_security_is_documented_exactly_where_a_token_is_needed(client, spec):
    for method, path, operation in operations(spec):
        response = _call(client, method, path)
        if operation.get("security"):
            assert operation["security"] == [{"bearerAuth": []}]
            assert response.status_code == 401, f"{method} {path}"
        else:
            assert response.status_code != 401 or path == "/api/auth/login", f"{method} {path}"


def test_403_is_documented_where_a_user_is_refused(client, spec, user_token):
    for method, path, operation in operations(spec):
        if operation.get("security"):
            response = _call(client, method, path, user_token)
            if response.status_code == 403:
                assert "403" in operation["responses"], f"{method} {path}"


def test_admin_operations_document_403(spec):
    admin_only = {
        ("POST", "/api/products"),
        ("PUT", "/api/products/{product_id}"),
        ("DELETE", "/api/products/{product_id}"),
        ("GET", "/api/orders/user/{user_id}"),
    }
    for method, path, operation in operations(spec):
        if (method, path) in admin_only:
            assert "403" in operation["responses"]


def test_money_is_a_number_and_query_parameters_are_documented(spec):
    product = spec["components"]["schemas"]["Product"]
    assert [t["type"] for t in product["properties"]["price"]["anyOf"]] == ["number", "string"]
    assert "id" not in product["properties"]  # a request: what a client may send
    response = spec["components"]["schemas"]["ProductResponse"]
    assert response["properties"]["price"]["type"] == "number"
    assert set(product["required"]) == {"name", "price", "stock"}
    params = {
        p["name"]: p
        for p in spec["paths"]["/api/products"]["get"]["parameters"]
        if p["in"] == "query"
    }
    assert set(params) == {
        "page",
        "per_page",
        "category",
        "q",
        "min_price",
        "max_price",
        "in_stock",
        "min_rating",
        "sort",
    }
    assert {"-created_at", "relevance"} <= set(params["sort"]["schema"]["enum"])
    facets = spec["paths"]["/api/products/facets"]["get"]
    assert {p["name"] for p in facets["parameters"] if p["in"] == "query"} == set(params) - {
        "page",
        "per_page",
        "sort",
    }
    suggest = spec["paths"]["/api/products/suggest"]["get"]
    assert [(p["name"], p["required"]) for p in suggest["parameters"]] == [
        ("q", True),
        ("If-None-Match", False),  # a catalog read: it may answer 304
    ]
    place = spec["paths"]["/api/orders"]["post"]
    assert [p["name"] for p in place["parameters"]] == ["Idempotency-Key"]


def test_docs_page_uses_only_local_assets_and_no_inline_script(client):
    response = client.get("/api/docs")
    assert response.status_code == 200
    assert response.mimetype == "text/html"
    html = response.get_data(as_text=True)
    assert 'data-spec-url="/api/openapi.json"' in html
    scripts = re.findall(r"<script([^>]*)>(.*?)</script>", html, re.S)
    assert scripts and all("src=" in attrs and not body.strip() for attrs, body in scripts)
    assets = re.findall(r'(?:src|href)="([^"]+)"', html)
    assert len(assets) >= 4
    for url in assets:
        assert url.startswith("/api/docs/"), url
        asset = client.get(url)
        assert asset.status_code == 200, url
        asset.close()
    assert "validatorUrl: null" in client.get("/api/docs/swagger-init.js").get_data(as_text=True)


def test_docs_assets_do_not_escape_their_folder(client):
    assert client.get("/api/docs/assets/../../../config.py").status_code == 404
    assert client.get("/api/docs/assets/nothing.js").status_code == 404


def test_responses_mark_every_field_required_and_requests_keep_their_own(spec):
    schemas = spec["components"]["schemas"]
    responses = {name: s for name, s in schemas.items() if name.endswith("Response")}
    assert {"ProductResponse", "CartResponse", "OrderResponse", "UserResponse"} <= set(responses)
    for name, schema in responses.items():
        assert set(schema.get("required", [])) == set(schema["properties"]), name
    # the request body for a new product: only what API.md requires
    assert set(schemas["Product"]["required"]) == {"name", "price", "stock"}
    cart = spec["paths"]["/api/cart"]["get"]["responses"]["200"]["content"]
    assert cart["application/json"]["schema"]["$ref"].endswith("/CartResponse")


def test_documented_required_fields_are_in_real_answers(client, spec, user_token, make_product):
    """What the document promises a client generator, a real answer holds."""
    schemas = spec["components"]["schemas"]
    product = make_product(image_url=None, category=None)
    client.post(
        "/api/cart",
        json={"product_id": product.id},
        headers={"Authorization": f"Bearer {user_token}"},
    )
    answers = {
        "ProductResponse": client.get(f"/api/products/{product.id}").get_json(),
        "ProductPageResponse": client.get("/api/products").get_json(),
        "CartResponse": client.get(
            "/api/cart", headers={"Authorization": f"Bearer {user_token}"}
        ).get_json(),
        "HealthResponse": client.get("/api/health").get_json(),
    }
    for name, body in answers.items():
        assert set(schemas[name]["required"]) <= set(body), name
    item = answers["CartResponse"]["items"][0]
    assert set(schemas["CartItemResponse"]["required"]) <= set(item)
    assert set(schemas["CartProductResponse"]["required"]) <= set(item["product"])
