"""Review of query-string strictness (session 9, reviewer: query).

(a) A single-valued query parameter given twice (`?sort=rating&sort=-rating`,
`?page=1&page=2`, `?min_price=1&min_price=500`, `?q=a&q=b`) was silently
read at its first value, where a JSON body naming a key twice is a 422: it
is now a 422 `validation_failed` naming the parameter ("Given more than
once."), for every GET, from the shared query parsing
(`app.web.blueprint.JSONBodyParser.load_querystring`). A multi-valued field
(a `fields.List`) still takes several values; the document has none today.

(b) An integer query parameter took `+1`, `01` and ` 1` (int() reads them):
the document says `type: integer`, and the query's other numbers (`min_price`,
`min_rating`) already refused a sign, leading zeros or spaces. An integer in
the query is now plain decimal notation (`app.schemas.common.Integer`)."""

from __future__ import annotations

import marshmallow as ma
import pytest
from marshmallow import fields

from app.errors import ValidationFailed
from app.web.blueprint import Blueprint
from tests.helpers import auth

TWICE = ["Given more than once."]

# A value each parameter takes, so that giving it twice is the only fault.
VALUES = {
    "page": "1",
    "per_page": "5",
    "category": "Lamps",
    "q": "lamp",
    "min_price": "1",
    "max_price": "500",
    "in_stock": "true",
    "min_rating": "1",
    "status": "pending",
    "all": "true",
}
SORT = {"/api/products": "price", "/api/products/{product_id}/reviews": "rating"}
SECOND_SORT = {"/api/products": "-price", "/api/products/{product_id}/reviews": "-rating"}
OTHER = {**VALUES, "page": "2", "per_page": "7", "q": "phone", "min_price": "2", "all": "false"}
OTHER.update({"category": "Phones", "max_price": "600", "min_rating": "2", "status": "shipped"})


@pytest.fixture
def spec(client):
    return client.get("/api/openapi.json").get_json()


def query_operations(spec) -> dict[str, list[dict]]:
    """Every GET of the document that takes query parameters: its path and
    its query parameters."""
    return {
        path: [p for p in ops["get"].get("parameters", []) if p.get("in") == "query"]
        for path, ops in spec["paths"].items()
        if "get" in ops and any(p.get("in") == "query" for p in ops["get"].get("parameters", []))
    }


@pytest.fixture
def urls(make_product, make_user, login, admin_token):
    """Each documented GET with query parameters: the URL to call and the
    headers (a token where it is private); `all=true` with an admin's."""
    product = make_product(name="Desk lamp", category="Lamps", price="10.00")
    user = make_user()
    token = login(user)["access_token"]
    return {
        "/api/products": ("/api/products", {}),
        "/api/products/facets": ("/api/products/facets", {}),
        "/api/products/suggest": ("/api/products/suggest", {}),
        "/api/products/{product_id}/reviews": (f"/api/products/{product.id}/reviews", {}),
        "/api/orders": ("/api/orders", auth(token)),
        "/api/orders?all": ("/api/orders", auth(admin_token)),
        "/api/orders/user/{user_id}": (f"/api/orders/user/{user.id}", auth(admin_token)),
        "/api/products/{product_id}/stock-movements": (
            f"/api/products/{product.id}/stock-movements",
            auth(admin_token),
        ),
        "/api/inventory/low-stock": ("/api/inventory/low-stock", auth(admin_token)),
    }


def cases(spec, urls):
    """(operation, url, headers, parameter name, its value, another value)
    for every query parameter of every documented GET."""
    operations = query_operations(spec)
    assert set(operations) | {"/api/orders?all"} == set(urls), "a GET with a query is untested"
    for path, parameters in operations.items():
        for parameter in parameters:
            name = parameter["name"]
            value = SORT.get(path) if name == "sort" else VALUES[name]
            other = SECOND_SORT.get(path) if name == "sort" else OTHER[name]
            operation = "/api/orders?all" if name == "all" else path
            url, headers = urls[operation]
            yield operation, url, headers, name, value, other
            if path == "/api/orders" and name != "all":  # the admin's all=true list too
                url, headers = urls["/api/orders?all"]
                yield "/api/orders?all", url + "?all=true", headers, name, value, other


def join(url: str, query: str) -> str:
    return url + ("&" if "?" in url else "?") + query


def test_every_query_parameter_given_once_is_read(client, spec, urls):
    """The values used below are each accepted alone: a 422 below is the
    repetition's, not the value's."""
    for operation, url, headers, name, value, other in cases(spec, urls):
        for given in (value, other):
            response = client.get(join(url, f"{name}={given}"), headers=headers)
            assert response.status_code == 200, (operation, name, given, response.get_json())


def test_every_single_valued_query_parameter_given_twice_is_a_422_naming_it(client, spec, urls):
    seen = set()
    for operation, url, headers, name, value, other in cases(spec, urls):
        for query in (f"{name}={value}&{name}={other}", f"{name}={value}&{name}={value}"):
            response = client.get(join(url, query), headers=headers)
            assert response.status_code == 422, (operation, query, response.get_json())
            body = response.get_json()
            assert body["code"] == "validation_failed", body
            assert body["errors"] == {name: TWICE}, (operation, query, body)
        seen.add(operation)
    assert seen == set(urls)


@pytest.mark.parametrize(
    ("path", "query", "named"),
    [
        ("/api/products/{p}/reviews", "sort=rating&sort=-rating", "sort"),
        ("/api/products", "page=1&page=2", "page"),
        ("/api/products", "min_price=1&min_price=500", "min_price"),
        ("/api/products", "q=a&q=b", "q"),
        ("/api/products", "per_page=5&q=lamp&sort=price&per_page=5", "per_page"),
        ("/api/products/suggest", "q=de&q=desk", "q"),
        ("/api/products/facets", "category=Lamps&category=Phones", "category"),
    ],
)
def test_the_reported_repetitions(client, make_product, path, query, named):
    product = make_product(name="Desk lamp", category="Lamps")
    response = client.get(f"{path.format(p=product.id)}?{query}")
    assert response.status_code == 422, response.get_json()
    assert response.get_json()["errors"] == {named: TWICE}


def test_several_repeated_parameters_are_each_named(client):
    response = client.get("/api/products?page=1&sort=price&page=2&sort=name&per_page=3")
    assert response.status_code == 422
    assert response.get_json()["errors"] == {"page": TWICE, "sort": TWICE}


def test_a_repeated_parameter_is_a_422_whatever_the_catalog_cache_holds(client, make_product):
    """The catalog cache keys a request by the parameters it reads: a
    repetition never finds the entry of the single value (or of the same
    repetition), so it is a 422 every time, with no ETag."""
    make_product(name="Desk lamp", price="10.00")
    for _ in range(2):
        single = client.get("/api/products?sort=price")
        assert single.status_code == 200 and "ETag" in single.headers
        for query in ("sort=price&sort=price", "sort=price&sort=-price", "sort=-price&sort=price"):
            twice = client.get(f"/api/products?{query}")
            assert twice.status_code == 422, twice.get_json()
            assert "ETag" not in twice.headers
            assert twice.get_json()["errors"] == {"sort": TWICE}


def test_unknown_parameters_stay_ignored_even_repeated(client, make_product, admin_token):
    """docs/API.md: unknown query parameters are ignored (a cache-buster
    `_` given twice included); only the parameters an operation reads must
    be given once."""
    product = make_product(name="Desk lamp")
    for url, headers in [
        ("/api/products", {}),
        ("/api/products/suggest?q=desk", {}),
        (f"/api/products/{product.id}/reviews", {}),
        ("/api/inventory/low-stock", auth(admin_token)),
    ]:
        plain = client.get(url, headers=headers)
        assert plain.status_code == 200
        ignored = client.get(join(url, "_=1&_=2&user_id=1&user_id=2&x=&x="), headers=headers)
        assert ignored.status_code == 200, ignored.get_json()
        assert ignored.get_json() == plain.get_json()


def test_a_parameter_of_another_operation_repeated_is_unknown_here(client, user_token):
    """`sort` is not a parameter of the orders list: ignored, even twice."""
    response = client.get("/api/orders?sort=a&sort=b", headers=auth(user_token))
    assert response.status_code == 200, response.get_json()
    # `all` is one of its parameters: named.
    response = client.get("/api/orders?all=false&all=false", headers=auth(user_token))
    assert response.status_code == 422 and response.get_json()["errors"] == {"all": TWICE}


def test_the_document_has_no_multi_valued_query_parameter(spec):
    """What (a) checked first: no documented query parameter takes several
    values (`category` is one exact value), so refusing repetitions takes
    nothing away. A list parameter added later keeps working (below)."""
    for path, parameters in query_operations(spec).items():
        for parameter in parameters:
            assert parameter["schema"].get("type") != "array", (path, parameter)
            assert parameter.get("explode") is not True, (path, parameter)


class TaggedQuery(ma.Schema):
    tag = fields.List(fields.String())
    page = fields.Integer()


def test_a_multi_valued_field_still_takes_several_values(app):
    """The check lives in the shared query parsing and spares a field that
    is meant to repeat (webargs' multi-valued fields: List, Tuple)."""
    parser = Blueprint.ARGUMENTS_PARSER
    with app.test_request_context("/?tag=a&tag=b&page=3"):
        assert parser.parse(TaggedQuery(), location="query") == {"tag": ["a", "b"], "page": 3}
    with (
        app.test_request_context("/?tag=a&page=3&page=4"),
        pytest.raises(ValidationFailed) as raised,
    ):
        parser.parse(TaggedQuery(), location="query")
    assert raised.value.errors == {"page": TWICE}


# (b) integers in the query

NOT_PLAIN = ["%2B1", "01", "%201", "1%20", "%091", "00", "+1", "-01", "1.0", "0x1", "1_0"]


def integer_cases(spec, urls):
    for operation, url, headers, name, _value, _other in cases(spec, urls):
        parameter = next(
            p for p in query_operations(spec)[operation.replace("?all", "")] if p["name"] == name
        )
        if parameter["schema"].get("type") == "integer":
            yield operation, url, headers, name


def test_integer_query_parameters_are_plain_decimal_notation(client, spec, urls):
    """`type: integer` is written `1`: a sign, a leading zero or a space
    (`+1`, `01`, ` 1`) is a 422 naming the parameter, as `min_price=05`
    and `in_stock=True` already were."""
    checked = set()
    for operation, url, headers, name in integer_cases(spec, urls):
        for given in NOT_PLAIN:
            response = client.get(join(url, f"{name}={given}"), headers=headers)
            assert response.status_code == 422, (operation, name, given, response.get_json())
            body = response.get_json()
            assert body["code"] == "validation_failed"
            assert body["errors"] == {name: ["Not a valid integer."]}, (operation, given, body)
        checked.add((operation, name))
    assert {name for _, name in checked} == {"page", "per_page"}
    assert {operation for operation, _ in checked} == set(urls) - {
        "/api/products/facets",
        "/api/products/suggest",
    }


def test_plain_integers_in_the_query_keep_working(client, spec, urls, make_product):
    for _ in range(3):
        make_product(category="Lamps", price="10.00")
    for operation, url, headers, name in integer_cases(spec, urls):
        for given in ("1", "2", "10", "100", "1000"):
            response = client.get(join(url, f"{name}={given}"), headers=headers)
            assert response.status_code == 200, (operation, name, given, response.get_json())
            expected = min(int(given), 100) if name == "per_page" else int(given)
            assert response.get_json()[name] == expected, (operation, name, given)
        for given in ("0", "-1", "-0"):  # integers, out of range
            response = client.get(join(url, f"{name}={given}"), headers=headers)
            assert response.status_code == 422, (operation, name, given)
            assert list(response.get_json()["errors"]) == [name]
    page = client.get("/api/products?per_page=3&page=2").get_json()  # 4 products
    assert (page["page"], page["per_page"], page["total"], len(page["items"])) == (2, 3, 4, 1)
    assert client.get("/api/products?per_page=" + "9" * 5000).get_json()["per_page"] == 100
    huge = client.get("/api/products?page=" + "9" * 5000)
    assert huge.status_code == 422 and list(huge.get_json()["errors"]) == ["page"]


def test_the_document_says_so(spec):
    """The document's own description of query input."""
    description = spec["info"]["description"]
    assert "first value" not in description
    assert "given twice is a 422" in description
