"""Review round 7, hostile and malformed requests against every route: each
answer is the JSON envelope of API.md, never a 500 (found by review)."""

from __future__ import annotations

import pytest
from sqlalchemy import text
from werkzeug.datastructures import Headers

from app.extensions import db
from app.models import User
from tests.helpers import auth, fill_cart, order_for, scalar
from tests.reviewing import give_order


def assert_envelope(response, status: int, code: str) -> dict:
    """The documented error envelope: JSON with `code` and `message`."""
    assert response.status_code == status, response.get_data(as_text=True)[:500]
    assert response.mimetype == "application/json"
    body = response.get_json()
    assert body["code"] == code, body
    assert isinstance(body["message"], str) and body["message"]
    return body


def build_world(client, make_user, login, make_product) -> dict:
    """An admin, a buyer (alice) with an order, a cart line and a review, and
    a product: tokens and ids."""
    admin = login(make_user("root", admin=True))["access_token"]
    alice = make_user("alice")
    token = login(alice)["access_token"]
    product = make_product(stock=50)
    give_order(alice, product)
    order = order_for(client, token, (product, 1))
    fill_cart(client, token, (product, 1))
    item = client.get("/api/cart", headers=auth(token)).get_json()["items"][0]["id"]
    review = client.post(
        f"/api/products/{product.id}/reviews", json={"rating": 4}, headers=auth(token)
    ).get_json()["id"]
    return {
        "admin": admin,
        "user": token,
        "user_id": alice.id,
        "p": product.id,
        "o": order["id"],
        "i": item,
        "r": review,
    }


@pytest.fixture
def world(client, make_user, login, make_product):
    return build_world(client, make_user, login, make_product)


# Every operation that reads a JSON body (the admin's with an admin token).
BODY_ROUTES = [
    ("POST", "/api/auth/signup", None),
    ("POST", "/api/auth/login", None),
    ("PUT", "/api/auth/profile", "user"),
    ("POST", "/api/auth/logout", "user"),
    ("POST", "/api/auth/password-reset", None),
    ("POST", "/api/auth/password-reset/confirm", None),
    ("POST", "/api/auth/verify-email", None),
    ("POST", "/api/cart", "user"),
    ("PUT", "/api/cart/{i}", "user"),
    ("POST", "/api/orders", "user"),
    ("PUT", "/api/orders/{o}", "user"),
    ("POST", "/api/orders/{o}/pay", "user"),
    ("POST", "/api/products", "admin"),
    ("PUT", "/api/products/{p}", "admin"),
    ("POST", "/api/products/{p}/stock", "admin"),
    ("POST", "/api/products/{p}/reviews", "user"),
    ("PUT", "/api/reviews/{r}", "user"),
    # Operations that take no body read one all the same (a 422 for any but {}).
    ("POST", "/api/orders/{o}/cancel", "user"),
    ("POST", "/api/auth/logout-all", "user"),
    ("POST", "/api/auth/verify-email/resend", "user"),
    ("DELETE", "/api/cart/clear", "user"),
    ("DELETE", "/api/reviews/{r}", "user"),
    ("DELETE", "/api/products/{p}", "admin"),
]


@pytest.mark.parametrize(("method", "path", "who"), BODY_ROUTES)
def test_a_lone_surrogate_in_a_json_key_is_a_422_naming_it(client, world, method, path, who):
    """`{"\\ud800": 1}` parses (JSON allows the escape) and is refused as any
    lone surrogate is, with a 422 naming the field. The field named was the
    key itself, which no JSON encoder can write as UTF-8: the error answer
    raised while being written, a 500 (found by review). The name is given
    escaped."""
    headers = {"Content-Type": "application/json", **(auth(world[who]) if who else {})}
    response = client.open(
        path.format(**world), method=method, data=b'{"\\ud800x": 1}', headers=headers
    )
    body = assert_envelope(response, 422, "validation_failed")
    assert body["errors"] == {
        "\\ud800x": ["Must be valid Unicode text (no lone surrogate escapes)."]
    }


# --- Malformed bodies: a table of what an attacker or a buggy client sends -----

BIG = 1024 * 1024 + 1
HOSTILE_BODIES = [
    # (name, raw body, Content-Type, extra headers, status, code)
    ("not json", b"{'a': 1}", "application/json", {}, 400, "invalid_json"),
    ("truncated", b'{"a": ', "application/json", {}, 400, "invalid_json"),
    ("NaN", b'{"quantity": NaN}', "application/json", {}, 400, "invalid_json"),
    ("latin-1 bytes", b'{"name": "\xe9"}', "application/json", {}, 400, "invalid_json"),
    ("utf-16", '{"quantity": 1}'.encode("utf-16"), "application/json", {}, 400, "invalid_json"),
    ("nested 5000 deep", b"[" * 5000 + b"]" * 5000, "application/json", {}, 400, "invalid_json"),
    (
        "nested 40 deep",
        b'{"a": ' + b"[" * 40 + b"]" * 40 + b"}",
        "application/json",
        {},
        400,
        "invalid_json",
    ),
    (  # a 400 invalid_json until review 9 (tests/test_review_hostile9.py)
        "gzip",
        b"\x1f\x8b\x08\x00\x00\x00\x00\x00",
        "application/json",
        {"Content-Encoding": "gzip"},
        415,
        "unsupported_media_type",
    ),
    ("top-level array", b"[1, 2]", "application/json", {}, 422, "validation_failed"),
    ("top-level number", b"42", "application/json", {}, 422, "validation_failed"),
    ("top-level string", b'"hi"', "application/json", {}, 422, "validation_failed"),
    ("top-level null", b"null", "application/json", {}, 422, "validation_failed"),
    ("NUL in a value", b'{"x": "a\\u0000b"}', "application/json", {}, 422, "validation_failed"),
    ("lone surrogate", b'{"x": "\\udfff"}', "application/json", {}, 422, "validation_failed"),
    ("1e400", b'{"x": 1e400}', "application/json", {}, 422, "validation_failed"),
    (
        "4,500 digits",
        b'{"x": ' + b"9" * 4500 + b"}",
        "application/json",
        {},
        422,
        "validation_failed",
    ),
    ("duplicate keys", b'{"x": 1, "x": 2}', "application/json", {}, 422, "validation_failed"),
    (
        "mass assignment",
        b'{"id": 9, "is_admin": true, "user_id": 1, "created_at": "2020-01-01"}',
        "application/json",
        {},
        422,
        "validation_failed",
    ),
    ("text/plain", b'{"quantity": 1}', "text/plain", {}, 415, "unsupported_media_type"),
    ("form", b"quantity=1", "application/x-www-form-urlencoded", {}, 415, "unsupported_media_type"),
    ("no content type", b'{"quantity": 1}', None, {}, 415, "unsupported_media_type"),
    (
        "past the limit",
        b'{"x": "' + b"a" * BIG + b'"}',
        "application/json",
        {},
        413,
        "payload_too_large",
    ),
]


@pytest.mark.parametrize(("method", "path", "who"), BODY_ROUTES)
def test_every_body_route_answers_hostile_bodies_with_the_envelope(
    client, world, method, path, who
):
    """Each operation that reads a body (or must refuse one) answers each
    malformed body with the documented status and code, and changes nothing."""
    before = client.get("/api/cart", headers=auth(world["user"])).get_json()
    for name, data, mimetype, extra, status, code in HOSTILE_BODIES:
        headers = {**extra, **(auth(world[who]) if who else {})}
        if mimetype:
            headers["Content-Type"] = mimetype
        response = client.open(path.format(**world), method=method, data=data, headers=headers)
        try:
            assert_envelope(response, status, code)
        except AssertionError as error:
            raise AssertionError(f"{name}: {error}") from None
    # Nothing was written by any of them: the tokens work, the cart is as it was.
    assert client.get("/api/cart", headers=auth(world["user"])).get_json() == before
    assert client.get(f"/api/products/{world['p']}").status_code == 200
    assert client.get(f"/api/orders/{world['o']}", headers=auth(world["user"])).status_code == 200


# --- Authorization -----------------------------------------------------------

PRIVATE = [
    ("GET", "/api/auth/profile"),
    ("PUT", "/api/auth/profile"),
    ("POST", "/api/auth/logout"),
    ("POST", "/api/auth/logout-all"),
    ("POST", "/api/auth/verify-email/resend"),
    ("GET", "/api/cart"),
    ("POST", "/api/cart"),
    ("PUT", "/api/cart/{i}"),
    ("DELETE", "/api/cart/{i}"),
    ("DELETE", "/api/cart/clear"),
    ("GET", "/api/orders"),
    ("POST", "/api/orders"),
    ("GET", "/api/orders/{o}"),
    ("PUT", "/api/orders/{o}"),
    ("POST", "/api/orders/{o}/cancel"),
    ("POST", "/api/orders/{o}/pay"),
    ("POST", "/api/products/{p}/reviews"),
    ("PUT", "/api/reviews/{r}"),
    ("DELETE", "/api/reviews/{r}"),
]
ADMIN = [
    ("POST", "/api/products"),
    ("PUT", "/api/products/{p}"),
    ("DELETE", "/api/products/{p}"),
    ("POST", "/api/products/{p}/stock"),
    ("GET", "/api/products/{p}/stock-movements"),
    ("GET", "/api/inventory/low-stock"),
    ("GET", "/api/orders/user/{u}"),
]
BAD_AUTHORIZATION = [
    (None, "token_missing"),
    ("Bearer", "token_invalid"),
    ("Bearer ", "token_invalid"),
    ("Basic dXNlcjpwYXNz", "token_invalid"),
    ("Bearer a.b.c", "token_invalid"),
    ("Bearer " + "a" * 20000, "token_invalid"),
    ("Bearer eyJhbGciOiJub25lIn0.eyJzdWIiOiIxIn0.", "token_invalid"),
]


@pytest.mark.parametrize(("method", "path"), PRIVATE + ADMIN)
def test_private_routes_refuse_every_bad_token_before_reading_anything(
    client, world, make_user, login, method, path
):
    """No token, a malformed one, a refresh token, the token of a deleted
    account: a 401 in the envelope, whatever the body (a valid one here)."""
    gone = make_user("gone")
    gone_token = login(gone)["access_token"]
    db.session.delete(db.session.get(User, gone.id))
    db.session.commit()
    refresh = login(make_user("fresh"))["refresh_token"]
    url = path.format(**world, u=1)
    body = {"quantity": 1}
    for header, code in [
        *BAD_AUTHORIZATION,
        (f"Bearer {refresh}", "token_invalid"),
        (f"Bearer {gone_token}", "token_invalid"),
    ]:
        headers = {"Authorization": header} if header else {}
        response = client.open(url, method=method, json=body, headers=headers)
        assert_envelope(response, 401, code)
        assert response.headers["WWW-Authenticate"] == "Bearer"


@pytest.mark.parametrize(("method", "path"), ADMIN)
def test_admin_routes_refuse_a_buyer_and_a_demoted_admin(
    client, world, make_user, login, method, path
):
    demoted = make_user("demoted", admin=True)
    demoted_token = login(demoted)["access_token"]
    with db.engine.begin() as conn:
        conn.execute(
            text("UPDATE users SET is_admin = :f WHERE id = :i"), {"f": False, "i": demoted.id}
        )
    assert scalar("SELECT is_admin FROM users WHERE id = :i", i=demoted.id) in (0, False)
    url = path.format(**world, u=1)
    for token in (world["user"], demoted_token):
        response = client.open(url, method=method, json={"delta": 1}, headers=auth(token))
        assert_envelope(response, 403, "forbidden")


OWNED = [
    ("GET", "/api/orders/{o}", None),
    ("PUT", "/api/orders/{o}", {"status": "cancelled"}),
    ("PUT", "/api/orders/{o}", {"status": "shipped"}),
    ("PUT", "/api/orders/{o}", {"shipping_address": "Elsewhere Road 1"}),
    ("POST", "/api/orders/{o}/cancel", None),
    ("POST", "/api/orders/{o}/pay", {"payment_method": "pm_card_visa"}),
    ("PUT", "/api/cart/{i}", {"quantity": 2}),
    ("DELETE", "/api/cart/{i}", None),
    ("PUT", "/api/reviews/{r}", {"rating": 1}),
    ("DELETE", "/api/reviews/{r}", None),
]


@pytest.mark.parametrize(("method", "path", "body"), OWNED)
def test_another_users_resource_is_the_same_404_as_one_that_does_not_exist(
    client, world, make_user, login, method, path, body
):
    """Never a 403 (or any other answer) that tells another user's order,
    cart line or review exists; and nothing changes."""
    other = login(make_user("mallory"))["access_token"]
    theirs = client.open(path.format(**world), method=method, json=body, headers=auth(other))
    missing = {key: 2_000_000 for key in ("o", "i", "r")}
    unknown = client.open(path.format(**missing), method=method, json=body, headers=auth(other))
    assert_envelope(theirs, 404, "not_found")
    assert theirs.get_json() == unknown.get_json()
    order = client.get(f"/api/orders/{world['o']}", headers=auth(world["user"])).get_json()
    assert (order["status"], order["payment_status"]) == ("pending", "unpaid")
    cart = client.get("/api/cart", headers=auth(world["user"])).get_json()
    assert [(line["id"], line["quantity"]) for line in cart["items"]] == [(world["i"], 1)]
    reviews = client.get(f"/api/products/{world['p']}/reviews").get_json()["items"]
    assert [(r["id"], r["rating"]) for r in reviews] == [(world["r"], 4)]


# --- Path ids, methods, query strings, headers ----------------------------------

ID_ROUTES = [
    ("GET", "/api/products/{}"),
    ("PUT", "/api/products/{}"),
    ("DELETE", "/api/products/{}"),
    ("GET", "/api/products/{}/reviews"),
    ("POST", "/api/products/{}/reviews"),
    ("POST", "/api/products/{}/stock"),
    ("GET", "/api/products/{}/stock-movements"),
    ("GET", "/api/orders/{}"),
    ("PUT", "/api/orders/{}"),
    ("POST", "/api/orders/{}/cancel"),
    ("POST", "/api/orders/{}/pay"),
    ("GET", "/api/orders/user/{}"),
    ("PUT", "/api/cart/{}"),
    ("DELETE", "/api/cart/{}"),
    ("PUT", "/api/reviews/{}"),
    ("DELETE", "/api/reviews/{}"),
]
BAD_IDS = [
    "0",
    "-1",
    "2147483648",
    "99999999999999999999999",
    "abc",
    "1.0",
    "1e3",
    "0x1",
    "%20",
    "1%00",
    "%D9%A1%D9%A2",
    "%EF%BC%91",
    "+1",
    "%F0%9F%98%80",
]


@pytest.mark.parametrize(("method", "path"), ID_ROUTES)
def test_ids_that_name_no_row_are_a_404_on_every_route(client, world, method, path):
    """Zero, negative, past INTEGER, not digits, other scripts' digits
    (Arabic-Indic, fullwidth): the same 404 envelope (as the admin, who may see anything)."""
    for bad in BAD_IDS:
        response = client.open(
            path.format(bad), method=method, json={"quantity": 1}, headers=auth(world["admin"])
        )
        try:
            assert_envelope(response, 404, "not_found")
        except AssertionError as error:
            raise AssertionError(f"{bad}: {error}") from None


@pytest.mark.parametrize(
    "path",
    [
        "/api/products",
        "/api/products/{p}",
        "/api/cart",
        "/api/orders/{o}",
        "/api/health",
        "/api/auth/login",
        "/api/payments/webhook",
        "/api/openapi.json",
    ],
)
def test_methods_a_path_does_not_have_are_a_405_with_allow(client, world, path):
    url = path.format(**world)
    for method in ("PATCH", "TRACE", "PROPFIND", "FOO", "CONNECT", "LINK"):
        for headers in ({}, auth(world["user"])):
            response = client.open(url, method=method, headers=headers)
            assert_envelope(response, 405, "method_not_allowed")
            assert "GET" in response.headers["Allow"] or "POST" in response.headers["Allow"]


def test_unknown_paths_are_a_404_for_any_method(client, world):
    for path in [
        "/",
        "/api",
        "/api/",
        "/api/nope",
        "/api/products/",
        "/api//products",
        "/api/products/1/",
        "/api/cart/clear/",
        "/api/docs/",
        "/static/x",
        "/api/%00",
    ]:
        for method in ("GET", "POST", "DELETE", "FOO"):
            response = client.open(path, method=method, headers=auth(world["user"]))
            assert response.status_code in (404, 405), (path, method)
            assert_envelope(
                response,
                response.status_code,
                code={404: "not_found", 405: "method_not_allowed"}[response.status_code],
            )


LISTS = [
    ("/api/products", None),
    ("/api/products/facets", None),
    ("/api/products/{p}/reviews", None),
    ("/api/orders", "user"),
    ("/api/orders/user/2", "admin"),
    ("/api/products/{p}/stock-movements", "admin"),
    ("/api/inventory/low-stock", "admin"),
]
BAD_QUERIES = [
    # (query, field named in `errors`)
    ("page=0", "page"),
    ("page=-1", "page"),
    ("page=99999999999999999999", "page"),
    ("page=", "page"),
    ("page=1e3", "page"),
    ("page=%D9%A1", "page"),
    ("per_page=0", "per_page"),
    ("per_page=-5", "per_page"),
    ("per_page=abc", "per_page"),
    ("per_page=", "per_page"),
]


@pytest.mark.parametrize(("path", "who"), LISTS)
def test_list_query_strings_hostile_and_malformed(client, world, path, who):
    """Malformed paging is a 422 naming the parameter; past 100 per page is
    clamped; unknown parameters are ignored and a repeated one is a 422
    naming it (docs/API.md; it was read at its first value before review 9,
    tests/test_review_query9.py); a NUL anywhere is a 422."""
    url = path.format(**world)
    headers = auth(world[who]) if who else {}
    paged = "facets" not in path
    if paged:
        for query, field in BAD_QUERIES:
            body = assert_envelope(
                client.get(f"{url}?{query}", headers=headers), 422, "validation_failed"
            )
            assert field in body["errors"], (query, body)
        response = client.get(f"{url}?per_page=100000", headers=headers)
        assert response.status_code == 200 and response.get_json()["per_page"] == 100
        page = client.get(f"{url}?page=2147483647&per_page=100", headers=headers).get_json()
        assert page["items"] == [] and page["page"] == 2147483647
        twice = client.get(f"{url}?page=1&page=2&per_page=1&per_page=5", headers=headers)
        body = assert_envelope(twice, 422, "validation_failed")
        twice = ["Given more than once."]
        assert body["errors"] == {"page": twice, "per_page": twice}
    plain = client.get(url, headers=headers)
    assert plain.status_code == 200
    ignored = client.get(f"{url}?unknown=1&user_id=1&is_admin=true&_=123&%FF=1", headers=headers)
    assert ignored.status_code == 200 and ignored.get_json() == plain.get_json()
    body = assert_envelope(client.get(f"{url}?x=a%00b", headers=headers), 422, "validation_failed")
    assert body["errors"] == {"x": ["Must not contain the NUL character."]}


@pytest.mark.parametrize(
    ("path", "sorts"),
    [
        (
            "/api/products",
            [
                "id",
                "-id",
                "price;drop table users",
                "name'--",
                "-",
                "",
                "relevance",
                "PRICE",
                " price",
            ],
        ),
        ("/api/products/{p}/reviews", ["id", "user_id", "rating desc", "-", "", "price"]),
    ],
)
def test_a_sort_the_list_does_not_offer_is_a_422(client, world, path, sorts):
    url = path.format(**world)
    for sort in sorts:
        body = assert_envelope(
            client.get(url, query_string={"sort": sort}), 422, "validation_failed"
        )
        assert list(body["errors"]) == ["sort"], (sort, body)
    # Filters are values, never SQL: an injection attempt matches nothing.
    for name in ("category", "q"):
        page = client.get("/api/products", query_string={name: "' OR 1=1 --"}).get_json()
        assert page["total"] == 0, name
    assert client.get("/api/products").get_json()["total"] == 1


def test_hostile_headers_on_private_and_catalog_reads(client, world):
    token = world["user"]
    product = f"/api/products/{world['p']}"
    # The scheme is case-insensitive (RFC 9110: 1*SP before the token); the
    # token must stand alone.
    for header in [f"bearer {token}", f"BEARER {token}", f"Bearer  {token}"]:
        assert client.get("/api/cart", headers={"Authorization": header}).status_code == 200
    for header in [
        f"Bearer {token} extra",
        f"Token {token}",
        token,
        f"Bearer {token}, Bearer junk",
        f"Bearer {token}\x00",
    ]:
        assert_envelope(
            client.get("/api/cart", headers={"Authorization": header}), 401, "token_invalid"
        )
    for pair in ([f"Bearer {token}", "Bearer junk"], ["Bearer junk", f"Bearer {token}"]):
        two = Headers([("Authorization", value) for value in pair])
        assert_envelope(client.get("/api/cart", headers=two), 401, "token_invalid")
    # Junk validators never make a 304, nor an error.
    for junk in ["junk", '"', 'W/"x", "y"', '"' * 5000, "\u00e9"]:
        response = client.get(product, headers={"If-None-Match": junk})
        assert response.status_code == 200 and response.get_json()["id"] == world["p"]
    # A request id that is not a plain token is replaced, never echoed.
    for junk in ["x" * 10000, "<script>", "a b", "a\u00e9", "a\r\nSet-Cookie: x=1"]:
        try:
            response = client.get("/api/health", headers={"X-Request-ID": junk})
        except ValueError:  # werkzeug will not send a header with a newline
            continue
        assert response.status_code == 200
        assert response.headers["X-Request-ID"] != junk
        assert len(response.headers["X-Request-ID"]) == 32
    # An Idempotency-Key outside 1-255 printable ASCII is a 422 naming the header.
    for key in ["", "k" * 256, "\u00e9", " a"]:
        body = assert_envelope(
            client.post(
                "/api/orders",
                json={"shipping_address": "Somewhere Road 1"},
                headers={**auth(token), "Idempotency-Key": key},
            ),
            422,
            "validation_failed",
        )
        assert list(body["errors"]) == ["Idempotency-Key"]


def test_head_and_options_answer_without_a_body_or_an_html_type(client, world):
    """HEAD answers as GET without the body (errors included); OPTIONS lists
    the methods, with no body labelled `text/html` (the API answers JSON or
    nothing: Flask's automatic OPTIONS answer said text/html; found by review)."""
    for path, headers, status in [
        ("/api/products", {}, 200),
        (f"/api/products/{world['p']}", {}, 200),
        ("/api/cart", auth(world["user"]), 200),
        ("/api/cart", {}, 401),
        ("/api/nope", {}, 404),
        ("/api/orders/0", auth(world["user"]), 404),
    ]:
        response = client.head(path, headers=headers)
        assert response.status_code == status and response.data == b""
        assert response.mimetype == "application/json"
    for path in ["/api/products", f"/api/products/{world['p']}", "/api/cart", "/api/auth/login"]:
        response = client.options(path)
        assert response.status_code == 200 and response.data == b""
        assert "OPTIONS" in response.headers["Allow"]
        assert "text/html" not in response.headers.get("Content-Type", "")
    # A browser's CORS preflight gets the same bodiless answer, with its headers.
    preflight = client.options(
        "/api/cart",
        headers={"Origin": "http://localhost:3000", "Access-Control-Request-Method": "POST"},
    )
    assert preflight.status_code == 200 and preflight.data == b""
    assert preflight.headers["Access-Control-Allow-Origin"] == "http://localhost:3000"
    assert "Content-Type" not in preflight.headers
    assert_envelope(client.options("/api/nope"), 404, "not_found")


@pytest.mark.parametrize(
    ("method", "path", "status", "code"),
    [
        ("POST", "/api/no-such-route", 404, "not_found"),
        ("PUT", "/api/products/not-an-id", 404, "not_found"),
        ("PATCH", "/api/cart", 405, "method_not_allowed"),
        ("DELETE", "/api/auth/login", 405, "method_not_allowed"),
    ],
)
def test_a_form_sent_where_no_route_takes_it_is_a_404_or_405_not_a_415(
    client, method, path, status, code
):
    """API.md: an unknown route is a 404, a method the route does not take a
    405; the non-JSON body check ran first and answered 415 to both."""
    response = client.open(path, method=method, data="a=1", content_type="text/plain")
    assert (response.status_code, response.get_json()["code"]) == (status, code)
    if status == 405:
        assert response.headers["Allow"]
