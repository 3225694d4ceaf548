"""Review round 8, hostile and malformed input on every route, listed from the
app's own URL map and OpenAPI document (a new route is probed without being
added here): each answer is the JSON envelope of API.md, never a 500, an
HTML page or a traceback, and nothing is written. The same requests go
through the test client and, for what only a real server shows (raw bytes,
bad request lines, framing), through gunicorn."""

from __future__ import annotations

import json
import re
import socket

import pytest
from sqlalchemy import text

from app.extensions import db
from tests.helpers import DATABASE_URL, auth
from tests.live import gunicorn
from tests.test_review_hostile7 import assert_envelope, build_world


@pytest.fixture
def world(client, make_user, login, make_product):
    """hostile7's world, its ids named as the routes' parameters, and a
    refresh token of another user."""
    made = build_world(client, make_user, login, make_product)
    ids = {
        "product_id": made["p"],
        "order_id": made["o"],
        "item_id": made["i"],
        "review_id": made["r"],
        "user_id": made["user_id"],
    }
    refresh = login(make_user("bob"))["refresh_token"]
    return {**made, "refresh": refresh, "ids": ids}


def row_counts() -> dict[str, int]:
    with db.engine.connect() as conn:
        return {
            table.name: conn.execute(text(f"SELECT COUNT(*) FROM {table.name}")).scalar()  # noqa: S608
            for table in db.metadata.sorted_tables
        }


def operations(app) -> list[tuple[str, str, set[str]]]:
    """(method, rule, the rule's path's methods) for every API operation in
    the URL map (the docs pages and Flask's static route aside)."""
    by_path: dict[str, set[str]] = {}
    for rule in app.url_map.iter_rules():
        by_path.setdefault(rule.rule, set()).update(rule.methods)
    found = []
    for rule in app.url_map.iter_rules():
        if rule.rule.startswith("/api/") and not rule.rule.startswith("/api/docs"):
            for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
                found.append((method, rule.rule, by_path[rule.rule]))
    return sorted(found)


def url(rule: str, ids: dict, value: str | None = None) -> str:
    return re.sub(r"<int:(\w+)>", lambda m: value or str(ids[m.group(1)]), rule)


def token_for(world, rule: str) -> str:
    if rule == "/api/auth/refresh":
        return world["refresh"]
    admin_only = ("/api/products", "/api/inventory", "/api/orders/user", "/payments")
    if rule.startswith(admin_only) and "reviews" not in rule:
        return world["admin"]
    return world["user"]


def test_the_operations_probed_are_those_the_openapi_document_lists(app, client):
    served = {
        (method, re.sub(r"<int:(\w+)>", r"{\1}", rule)) for method, rule, _ in operations(app)
    }
    spec = client.get("/api/openapi.json").get_json()
    documented = {
        (method.upper(), path)
        for path, item in spec["paths"].items()
        for method in item
        if method in ("get", "post", "put", "patch", "delete")
    }
    assert served - {("GET", "/api/openapi.json")} == documented
    assert len(served) >= 40


# --- Bodies ---------------------------------------------------------------------------

BIG = 1024 * 1024 + 1
J = "application/json"
HOSTILE = [
    # (name, raw body, Content-Type, status, code)
    ("not JSON", b"{'quantity': 1}", J, 400, "invalid_json"),
    ("empty object, truncated", b"{", J, 400, "invalid_json"),
    ("10,000 arrays deep", b"[" * 10_000 + b"]" * 10_000, J, 400, "invalid_json"),
    ("10,000 objects deep", b'{"a":' * 10_000 + b"1" + b"}" * 10_000, J, 400, "invalid_json"),
    ("NaN literal", b'{"quantity": NaN}', J, 400, "invalid_json"),
    ("Infinity literal", b'{"price": Infinity}', J, 400, "invalid_json"),
    ("-Infinity literal", b'{"price": -Infinity}', J, 400, "invalid_json"),
    ("raw NUL in a string", b'{"name": "a\x00b"}', J, 400, "invalid_json"),
    ("raw control character", b'{"name": "a\x01b"}', J, 400, "invalid_json"),
    ("overlong UTF-8 '/'", b'{"name": "\xc0\xaf"}', J, 400, "invalid_json"),
    ("UTF-8 of a surrogate", b'{"name": "\xed\xa0\x80"}', J, 400, "invalid_json"),
    ("invalid UTF-8", b'{"name": "\xff\xfe"}', J, 400, "invalid_json"),
    ("array", b"[]", J, 422, "validation_failed"),
    ("string", b'"x"', J, 422, "validation_failed"),
    ("number", b"1", J, 422, "validation_failed"),
    ("null", b"null", J, 422, "validation_failed"),
    ("true", b"true", J, 422, "validation_failed"),
    ("escaped NUL", b'{"zz": "a\\u0000b"}', J, 422, "validation_failed"),
    ("lone surrogate", b'{"zz": "\\ud800"}', J, 422, "validation_failed"),
    ("1e309", b'{"zz": 1e309}', J, 422, "validation_failed"),
    ("-0", b'{"zz": -0}', J, 422, "validation_failed"),
    ("duplicate key", b'{"zz": 1, "zz": 2}', J, 422, "validation_failed"),
    ("past the limit", b'{"zz": "' + b"a" * BIG + b'"}', J, 413, "payload_too_large"),
    ("text/plain", b"{}", "text/plain", 415, "unsupported_media_type"),
    ("latin-1", b"{}", "application/json; charset=latin-1", 415, "unsupported_media_type"),
    ("utf-16", b"{}", "application/json; charset=utf-16", 415, "unsupported_media_type"),
    ("unknown charset", b"{}", "application/json; charset=bogus", 415, "unsupported_media_type"),
]
# The payment webhook reads its body only after the signature, which the
# test provider never has: it answers 404 to anything JSON.
WEBHOOK_KEEPS = {413, 415}


def test_every_body_route_answers_every_hostile_body_with_the_envelope(app, client, world):
    """Every write operation of the URL map, each body of the table: the
    documented status and code, and no row written anywhere."""
    before = row_counts()
    writes = [op for op in operations(app) if op[0] in ("POST", "PUT", "DELETE")]
    assert len(writes) >= 25
    failures = []
    for method, rule, _ in writes:
        path = url(rule, world["ids"])
        for name, data, mimetype, status, code in HOSTILE:
            if rule == "/api/payments/webhook" and status not in WEBHOOK_KEEPS:
                status, code = 404, "not_found"
            headers = {**auth(token_for(world, rule)), "Content-Type": mimetype}
            response = client.open(path, method=method, data=data, headers=headers)
            body = response.get_json(silent=True) or {}
            if (response.status_code, response.mimetype, body.get("code")) != (status, J, code):
                failures.append((method, path, name, response.status_code, body))
    assert failures == []
    assert row_counts() == before


def test_a_key_given_twice_is_a_422_naming_it_and_changes_nothing(client, world):
    """`{"quantity": 1, "quantity": 1000}` was read as 1000 (the last), while
    a proxy, a WAF or a log reader may take the first: the body meant two
    things (found by review). Nested objects too; the key named escaped when
    it is a lone surrogate (as any field name)."""
    token = world["user"]
    before = client.get("/api/cart", headers=auth(token)).get_json()
    item = world["ids"]["item_id"]
    for data, errors in [
        (b'{"quantity": 1, "quantity": 1000}', {"quantity": ["Given more than once."]}),
        (b'{"quantity": 2, "x": {"a": 1, "a": 2}}', {"a": ["Given more than once."]}),
        (b'{"\\ud800": 1, "\\ud800": 2}', {"\\ud800": ["Given more than once."]}),
    ]:
        response = client.put(
            f"/api/cart/{item}", data=data, headers={**auth(token), "Content-Type": J}
        )
        assert assert_envelope(response, 422, "validation_failed")["errors"] == errors
    assert client.get("/api/cart", headers=auth(token)).get_json() == before
    # Keys that differ are no duplicates, nor the same key in two objects.
    response = client.put(
        f"/api/cart/{item}", data=b'{"quantity": 3}', headers={**auth(token), "Content-Type": J}
    )
    assert response.status_code == 200 and response.get_json()["total_items"] == 3


@pytest.mark.parametrize("charset", ["utf-8", "UTF-8", "utf8", '"utf-8"'])
def test_utf8_declared_any_way_is_read(client, world, charset):
    response = client.post(
        "/api/cart",
        data=json.dumps({"product_id": world["p"], "quantity": 1}).encode(),
        headers={**auth(world["user"]), "Content-Type": f"application/json; charset={charset}"},
    )
    assert response.status_code == 201, response.get_json()


def test_a_body_declared_latin1_is_a_415_not_misread_as_utf8(client, world, admin_token):
    """A client that says its bytes are Latin-1 meant `"Ã©"` by C3 A9; read
    as UTF-8 it was stored as `"é"` (found by review). JSON is UTF-8: the
    body is refused with the reason, and nothing is created."""
    before = row_counts()
    response = client.post(
        "/api/products",
        data='{"name": "Ã©", "price": 1, "stock": 1}'.encode("latin-1"),
        headers={**auth(world["admin"]), "Content-Type": "application/json; charset=latin-1"},
    )
    body = assert_envelope(response, 415, "unsupported_media_type")
    assert "UTF-8" in body["message"]
    assert row_counts() == before


def test_number_edge_cases_in_every_numeric_field(client, world):
    """-0 is 0 (a price of 0.00, never "-0.00"; a quantity or delta of 0 is
    refused as 0 is); 1e309, a 5,000-digit integer and "NaN"/"Infinity"/"sNaN"
    strings are a 422 naming the field; a NaN literal is not JSON."""
    admin, user = auth(world["admin"]), auth(world["user"])
    p, item = world["p"], world["ids"]["item_id"]
    huge = "9" * 5000
    cases = [
        ("POST", "/api/cart", user, '{"product_id": %d, "quantity": %s}', "quantity"),
        ("PUT", f"/api/cart/{item}", user, '{"quantity": %s}', "quantity"),
        ("POST", f"/api/products/{p}/stock", admin, '{"delta": %s}', "delta"),
        ("PUT", f"/api/products/{p}", admin, '{"price": %s}', "price"),
        ("PUT", f"/api/products/{p}", admin, '{"stock": %s}', "stock"),
        ("PUT", f"/api/products/{p}", admin, '{"low_stock_threshold": %s}', "low_stock_threshold"),
        ("PUT", f"/api/reviews/{world['ids']['review_id']}", user, '{"rating": %s}', "rating"),
    ]
    before = row_counts()
    for method, path, headers, template, field in cases:
        values = ["1e309", "-1e309", huge, "-" + huge, "1e-999999999", '"NaN"', '"Infinity"']
        values += ['"sNaN"', '"1E+999999999"', "true", "[]", "{}"]
        if field != "price":
            values += ["0.5", "1.0"]
        if field in ("quantity", "delta", "rating"):  # -0 is 0, which these refuse
            values += ["-0", "-0.0"]
        for value in values:
            data = template % (p, value) if "product_id" in template else template % value
            response = client.open(
                path, method=method, data=data, headers={**headers, "Content-Type": J}
            )
            body = assert_envelope(response, 422, "validation_failed")
            assert list(body["errors"]) == [field], (path, value, body)
        literal = template % (p, "NaN") if "product_id" in template else template % "NaN"
        response = client.open(
            path, method=method, data=literal, headers={**headers, "Content-Type": J}
        )
        assert_envelope(response, 400, "invalid_json")
    assert row_counts() == before
    for value in ("-0", '"-0.00"', "-0.0"):
        response = client.put(
            f"/api/products/{p}", data=f'{{"price": {value}}}', headers={**admin, "Content-Type": J}
        )
        assert response.status_code == 200
        assert b'"price":0.00' in response.data and b"-0" not in response.data


# --- Path ids, query strings, headers -------------------------------------------------

BAD_IDS = ["9" * 5000, "9" * 4301, "1" + "0" * 30, "0", "-1", "x", "%D9%A1", "%EF%BC%91"]


def test_path_ids_past_what_int_reads_are_a_404_not_a_500(app, client, world):
    """An id of more than 4,300 digits raised int()'s ValueError inside
    routing: a 500 with a logged traceback on every route with an id (found
    by review). Every such route, every method, as the admin."""
    failures = []
    for method, rule, _ in operations(app):
        if "<int:" not in rule:
            continue
        for bad in BAD_IDS:
            response = client.open(
                url(rule, world["ids"], bad), method=method, json={}, headers=auth(world["admin"])
            )
            if response.status_code != 404 or response.get_json()["code"] != "not_found":
                failures.append((method, rule, bad[:12], response.status_code))
    assert failures == []
    # Leading zeros still name the id (as they always did), however many.
    response = client.get(f"/api/products/{'0' * 5000}{world['p']}")
    assert response.status_code == 200 and response.get_json()["id"] == world["p"]


def _first_and_bad(parameter: dict) -> tuple[str, str]:
    """A valid value of a query parameter, and an invalid one, from its schema."""
    schema = parameter["schema"]
    if "enum" in schema:
        return schema["enum"][0], "bogus"
    kind = schema.get("type")
    if kind == "integer":
        return "1", "0"
    if kind == "number":
        return str(schema.get("minimum", 1) or 1), "abc"
    if kind == "boolean":
        return "true", "maybe"
    if "pattern" in schema and "maxLength" not in schema:  # an amount in a query
        return "1", "abc"
    return "a", "x" * (schema["maxLength"] + 1)


def test_a_repeated_query_parameter_is_a_422_naming_it_everywhere(client, world):
    """docs/API.md and README: a parameter given twice is a 422 naming it (it
    was read at its first value before review 9: tests/test_review_query9.py).
    Every query parameter of every operation in the OpenAPI document: given
    twice in either order, or twice the same valid value, a 422 naming it."""
    spec = client.get("/api/openapi.json").get_json()
    checked = 0
    for path, item in spec["paths"].items():
        operation = item.get("get") or {}
        query = [p for p in operation.get("parameters", []) if p["in"] == "query"]
        target = re.sub(r"\{(\w+)\}", lambda m: str(world["ids"][m.group(1)]), path)
        headers = auth(world["admin"])
        for parameter in query:
            name = parameter["name"]
            good, bad = _first_and_bad(parameter)
            required = "&q=ab" if path.endswith("/suggest") and name != "q" else ""
            for values in [(good, bad), (bad, good), (good, good)]:
                query = "&".join(f"{name}={value}" for value in values)
                response = client.get(f"{target}?{query}{required}", headers=headers)
                body = assert_envelope(response, 422, "validation_failed")
                assert body["errors"] == {name: ["Given more than once."]}, (path, name, body)
            checked += 1
    assert checked >= 25
    assert "given twice is a 422" in spec["info"]["description"]


def test_a_host_header_werkzeug_cannot_read_is_invalid_request_not_invalid_json(client):
    """werkzeug refuses a Host that is no host name (an empty label, a
    5,000-character one) with a 400 the app answered as `invalid_json`: the
    request had no body (found by review). It is a malformed request, the
    code gunicorn's own refusals use."""
    for host in ["a..b", "x" * 5000, "a" * 64 + ".example"]:
        response = client.get("/api/health", headers={"Host": host})
        body = assert_envelope(response, 400, "invalid_request")
        assert "JSON" not in body["message"]


@pytest.mark.parametrize(
    "header",
    [
        "Bearer é",
        "Bearer \xff\xfe",
        "Bearer",
        "Bearer ",
        "Bearer a b",
        "Bearer {t}é",
        "Bearer {t} {t}",
        "Bearer {t}, Bearer {t}",
        "Bearer \x01{t}",
        "Bearer " + "é" * 5000,
    ],
)
def test_bad_authorization_headers_are_401_on_every_private_operation(app, client, world, header):
    header = header.replace("{t}", world["user"])
    before = row_counts()
    private = [
        (method, rule)
        for method, rule, _ in operations(app)
        if rule
        not in (
            "/api/health",
            "/api/openapi.json",
            "/api/payments/webhook",
            "/api/products",
            "/api/products/facets",
            "/api/products/suggest",
            "/api/products/<int:product_id>",
            "/api/products/<int:product_id>/reviews",
        )
        and not rule.startswith("/api/auth/")
    ]
    private += [("GET", "/api/auth/profile"), ("POST", "/api/auth/refresh")]
    assert len(private) >= 20
    for method, rule in private:
        response = client.open(
            url(rule, world["ids"]), method=method, json={}, headers={"Authorization": header}
        )
        assert_envelope(response, 401, "token_invalid")
    assert row_counts() == before


@pytest.mark.parametrize("key", ["", " ", "k" * 256, "k" * 1000, "a\x01b", "a\x7fb", "a\tb", "é"])
def test_a_malformed_idempotency_key_is_a_422_and_nothing_is_ordered(client, world, key):
    before = row_counts()
    response = client.post(
        "/api/orders",
        json={"shipping_address": "Somewhere Road 1"},
        headers={**auth(world["user"]), "Idempotency-Key": key},
    )
    body = assert_envelope(response, 422, "validation_failed")
    assert list(body["errors"]) == ["Idempotency-Key"]
    assert row_counts() == before


def test_every_path_answers_every_method_in_json_with_allow(app, client, world):
    """HEAD, OPTIONS, PATCH, DELETE, PUT, POST, GET and TRACE on every path:
    a method the path has is served (HEAD and OPTIONS with no body); any
    other is a 405 envelope whose `Allow` names exactly the path's methods."""
    paths: dict[str, set[str]] = {}
    for _method, rule, methods in operations(app):
        paths[rule] = methods
    methods = ["HEAD", "OPTIONS", "PATCH", "DELETE", "PUT", "POST", "GET", "TRACE"]
    failures = []
    for rule, allowed in paths.items():
        path = url(rule, world["ids"])
        for method in methods:
            response = client.open(path, method=method, headers=auth(world["admin"]))
            content_type = response.headers.get("Content-Type", "")
            if response.status_code >= 500 or "html" in content_type:
                failures.append((method, rule, response.status_code, content_type))
            if method == "OPTIONS":
                if (
                    response.status_code != 200
                    or set(response.headers["Allow"].split(", ")) != allowed
                ):
                    failures.append((method, rule, response.status_code))
            elif method not in allowed:
                if (
                    response.status_code != 405
                    or set(response.headers.get("Allow", "").split(", ")) != allowed
                ):
                    failures.append((method, rule, response.status_code))
                elif method != "HEAD":
                    assert_envelope(response, 405, "method_not_allowed")
            if method == "HEAD":
                assert response.data == b""
    assert failures == []


# --- A real server --------------------------------------------------------------------


def raw_request(port: int, data: bytes) -> tuple[int, dict[str, str], bytes]:
    with socket.create_connection(("127.0.0.1", port), timeout=20) as sock:
        sock.sendall(data)
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
    head, _, body = received.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(": ")
        headers[name.lower()] = value
    return int(lines[0].split()[1]), headers, body


def _chunked(payload: bytes, size: int = 65536) -> bytes:
    parts = [payload[i : i + size] for i in range(0, len(payload), size)]
    return b"".join(b"%x\r\n%s\r\n" % (len(part), part) for part in parts) + b"0\r\n\r\n"


@pytest.mark.server
def test_raw_requests_to_gunicorn_answer_the_envelope(world):
    """What only a real server shows: raw bytes in the request line, the
    headers and the body, framing, and bad request lines. Every answer is
    JSON with its documented code, never a 500."""
    close = b"Host: x\r\nConnection: close\r\n"
    bearer = b"Authorization: Bearer " + world["user"].encode() + b"\r\n"
    json_type = b"Content-Type: application/json\r\n"
    big = b'{"x": "' + b"a" * BIG + b'"}'
    deep = b"[" * 10_000 + b"]" * 10_000

    def get(target: bytes, *extra: bytes, version: bytes = b"HTTP/1.1") -> bytes:
        return b"GET " + target + b" " + version + b"\r\n" + close + b"".join(extra) + b"\r\n"

    def post(body: bytes, *extra: bytes, path: bytes = b"/api/cart", kind=json_type) -> bytes:
        head = b"POST " + path + b" HTTP/1.1\r\n" + close + bearer + kind + b"".join(extra)
        return head + b"Content-Length: %d\r\n\r\n" % len(body) + body

    def framed(extra: bytes, body: bytes) -> bytes:
        return b"POST /api/cart HTTP/1.1\r\n" + close + bearer + json_type + extra + body

    latin1 = b"Content-Type: application/json; charset=latin-1\r\n"
    chunked = b"Transfer-Encoding: chunked\r\n\r\n"
    cases = [
        (get(b"/api/products/" + b"9" * 5000), 404, "not_found"),
        (get(b"/api/health").replace(b"Host: x", b"Host: a..b"), 400, "invalid_request"),
        (b"GARBAGE\r\n\r\n", 400, "invalid_request"),
        (get(b"/api/health").replace(b"GET", b"get"), 400, "invalid_request"),
        (get(b"/api/health", version=b"HTTP/9.9"), 400, "invalid_request"),
        (get(b"/api/products/\xff"), 400, "invalid_request"),
        (get(b"/api/products?q=" + b"a" * 9000), 414, "uri_too_long"),
        (get(b"/api/products?q=%ff%c0%af"), 200, None),
        (get(b"/api/cart", b"Authorization: Bearer \xc3\xa9\r\n"), 401, "token_invalid"),
        (get(b"/api/cart", bearer, bearer), 401, "token_invalid"),
        (
            post(b"{}", b"Idempotency-Key: \xc3\xa9\r\n", path=b"/api/orders"),
            422,
            "validation_failed",
        ),
        (
            post(b"{}", b"Idempotency-Key: " + b"k" * 1000 + b"\r\n", path=b"/api/orders"),
            422,
            "validation_failed",
        ),
        (post(b'{"product_id": 1}', kind=latin1), 415, "unsupported_media_type"),
        (post(b'{"quantity": 1, "quantity": 2}'), 422, "validation_failed"),
        (post(b'{"name": "\xc0\xaf"}'), 400, "invalid_json"),
        (post(deep), 400, "invalid_json"),
        (post(b"[1]"), 422, "validation_failed"),
        (post(big), 413, "payload_too_large"),
        (framed(chunked, _chunked(big)), 413, "payload_too_large"),
        (framed(chunked, b"zz\r\n{}\r\n0\r\n\r\n"), 400, "invalid_request"),
        (framed(b"Transfer-Encoding: bogus\r\n\r\n", b"{}"), 501, "not_implemented"),
        (framed(b"Expect: bogus\r\nContent-Length: 2\r\n\r\n", b"{}"), 417, "expectation_failed"),
        (get(b"/api/cart", bearer).replace(b"GET", b"PATCH"), 405, "method_not_allowed"),
    ]
    before = row_counts()
    with gunicorn(DATABASE_URL, workers=1, threads=2) as live:
        port = int(live.url.rsplit(":", 1)[1])
        for data, status, code in cases:
            got, headers, body = raw_request(port, data)
            label = data[:60]
            assert got == status, (label, got, body[:200])
            assert headers["content-type"] == "application/json", label
            if code is not None:
                answer = json.loads(body)
                assert answer["code"] == code, (label, answer)
                assert answer["message"] and "Bad Request" not in answer["message"], label
    assert row_counts() == before
