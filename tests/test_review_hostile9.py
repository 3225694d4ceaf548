"""Review round 9, hostile HTTP against the real gunicorn (gunicorn.conf.py):
methods, request targets, headers, framing and body codings, sent as raw
bytes where a client library would tidy the request. Every answer is the
JSON envelope of API.md (or gunicorn's own, in the same envelope with the
security headers), never a 500, and nothing a request smuggles is run.

Pinned elsewhere and not repeated here: hostile bodies, charsets, bad ids,
405s with `Allow` and HEAD/OPTIONS through the test client, a bogus
Transfer-Encoding (501), a bogus Expect (417), a bad chunk size, a chunked
body past the limit, a 9,000-byte URI (414) and a lowercase method
(tests/test_review_hostile7.py, tests/test_review_hostile8.py); ProxyFix only
with TRUST_PROXY (tests/test_hardening.py); the security headers through the
test client (tests/test_hardening.py)."""

from __future__ import annotations

import gzip
import json
import re
import socket
import zlib

import pytest

from tests.helpers import DATABASE_URL, auth
from tests.live import gunicorn
from tests.test_review_hostile7 import assert_envelope, build_world
from tests.test_review_hostile8 import operations, row_counts

SECURITY_HEADERS = {
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "no-referrer",
}


@pytest.fixture
def world(client, make_user, login, make_product):
    return build_world(client, make_user, login, make_product)


@pytest.fixture(scope="module")
def port(app):
    """One gunicorn for the module, on the test database (`app` made its tables)."""
    with gunicorn(DATABASE_URL, workers=1, threads=2) as live:
        yield int(live.url.rsplit(":", 1)[1])


def exchange(port: int, data: bytes, timeout: float = 20) -> bytes:
    """Send `data` on one connection and read until the server closes it."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(data)
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
    return received


def responses(data: bytes, bodiless: frozenset[int] = frozenset()) -> list[tuple[int, dict, bytes]]:
    """The answers in a byte stream, in order: (status, headers, body). The
    answers numbered in `bodiless` are to HEAD requests (a Content-Length, no
    body). Leftover bytes are a framing error."""
    found = []
    while data:
        head, separator, data = data.partition(b"\r\n\r\n")
        assert separator, f"bytes after the last answer: {head[:200]!r}"
        lines = head.decode("latin-1").split("\r\n")
        headers: dict[str, str] = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers.setdefault(name.strip().lower(), value.strip())
        status = int(lines[0].split()[1])
        length = 0
        if len(found) not in bodiless and status not in (100, 204, 304):
            length = int(headers.get("content-length", 0))
        found.append((status, headers, data[:length]))
        data = data[length:]
    return found


def assert_json_error(answer: tuple[int, dict, bytes], status: int, code: str) -> dict:
    got, headers, body = answer
    assert got == status, (got, body[:300])
    assert headers["content-type"] == "application/json", headers
    for name, value in SECURITY_HEADERS.items():
        assert headers[name] == value, (name, headers)
    assert len(headers["x-request-id"]) == 32
    parsed = json.loads(body)
    assert parsed["code"] == code and parsed["message"], parsed
    assert "Traceback" not in body.decode()
    return parsed


CLOSE = b"Host: shop.test\r\nConnection: close\r\n"
LAST = b"GET /api/nope HTTP/1.1\r\n" + CLOSE + b"\r\n"


def get(target: bytes, *extra: bytes, method: bytes = b"GET") -> bytes:
    return method + b" " + target + b" HTTP/1.1\r\n" + CLOSE + b"".join(extra) + b"\r\n"


# --- Headers named like WSGI variables --------------------------------------------------


@pytest.mark.server
def test_a_header_named_like_a_wsgi_variable_changes_nothing(port):
    """gunicorn lets a peer in FORWARDED_ALLOW_IPS (127.0.0.1 by default)
    set the WSGI `SCRIPT_NAME` with a `SCRIPT_NAME:` header: one the path
    does not start with was a 500 `internal_error` (gunicorn's
    ConfigurationProblem), and one it does start with remapped the path
    (`/x/api/health` with `SCRIPT_NAME: /x` served `/api/health`; found by
    review). The API is served at `/api` only: such headers are dropped."""
    cases = [
        (get(b"/api/health", b"SCRIPT_NAME: /zzz\r\n"), 200),
        (get(b"/api/health", b"SCRIPT_NAME: /api\r\n"), 200),
        (get(b"/x/api/health", b"SCRIPT_NAME: /x\r\n"), 404),
        (get(b"/api/health", b"PATH_INFO: /api/nope\r\n"), 200),
        (get(b"/api/health", b"SCRIPT_NAME: /zzz\r\nSCRIPT_NAME: /y\r\n"), 200),
    ]
    for data, status in cases:
        [answer] = responses(exchange(port, data))
        if status == 200:
            assert answer[0] == 200, (data[:80], answer[0], answer[2][:200])
            assert json.loads(answer[2])["status"] == "ok"
        else:
            assert_json_error(answer, 404, "not_found")


# --- Content codings --------------------------------------------------------------------

PLAIN = json.dumps({"name": "Coded", "price": 1, "stock": 1}).encode()
CODED = [
    ("gzip", gzip.compress(PLAIN)),
    ("gzip", PLAIN),  # says gzip, is not: was read as plain JSON
    ("x-gzip", PLAIN),
    ("deflate", zlib.compress(PLAIN)),
    ("br", PLAIN),
    ("compress", PLAIN),
    ("bogus", PLAIN),
    ("gzip, identity", PLAIN),
    ("identity, gzip", PLAIN),
]


@pytest.mark.parametrize(
    ("coding", "data"), CODED, ids=[f"{c}-{n}" for n, (c, _) in enumerate(CODED)]
)
def test_a_body_in_a_content_coding_is_a_415_naming_identity(client, world, coding, data):
    """A body declared compressed was read as if it were not: a gzipped body
    was "not valid JSON" (400), and a plain one declared gzip was accepted,
    though a proxy or WAF that decodes what it is told reads something else
    (found by review). The API reads `identity` only: any other coding is a
    415 with `Accept-Encoding: identity` (RFC 9110 15.5.16, RFC 7694), and
    nothing is written."""
    before = row_counts()
    response = client.post(
        "/api/products",
        data=data,
        headers={
            **auth(world["admin"]),
            "Content-Type": "application/json",
            "Content-Encoding": coding,
        },
    )
    body = assert_envelope(response, 415, "unsupported_media_type")
    assert "Content-Encoding" in body["message"]
    assert response.headers["Accept-Encoding"] == "identity"
    assert row_counts() == before


def test_identity_or_no_content_coding_is_read_and_a_bodiless_request_may_name_one(client, world):
    for coding in ("identity", "IDENTITY", ""):
        response = client.post(
            "/api/products",
            data=PLAIN.replace(b"Coded", f"Coded {coding or 'none'}".encode()),
            headers={
                **auth(world["admin"]),
                "Content-Type": "application/json",
                "Content-Encoding": coding,
            },
        )
        assert response.status_code == 201, (coding, response.get_json())
    # No body, nothing to decode: a GET naming a coding is served.
    response = client.get("/api/products", headers={"Content-Encoding": "gzip"})
    assert response.status_code == 200 and response.get_json()["total"] == 4


# --- Method overrides -------------------------------------------------------------------

OVERRIDES = ["X-HTTP-Method-Override", "X-HTTP-Method", "X-Method-Override"]


def test_method_override_headers_and_parameters_never_change_the_method(client, world):
    """No header or parameter turns a request into another method: a POST
    saying DELETE on a path without POST is a 405, a GET saying DELETE is
    the GET, and the product is still there."""
    admin = auth(world["admin"])
    product = f"/api/products/{world['p']}"
    for name in OVERRIDES:
        response = client.post(product, json={}, headers={**admin, name: "DELETE"})
        assert_envelope(response, 405, "method_not_allowed")
        response = client.get(product, headers={**admin, name: "DELETE"})
        assert response.status_code == 200 and response.get_json()["id"] == world["p"]
        response = client.post("/api/products", json={}, headers={**admin, name: "GET"})
        assert_envelope(response, 422, "validation_failed")
    response = client.post(f"{product}?_method=DELETE", json={}, headers=admin)
    assert_envelope(response, 405, "method_not_allowed")
    response = client.get(f"{product}?_method=DELETE", headers=admin)
    assert response.status_code == 200
    response = client.post(
        product, data="_method=DELETE", headers={**admin, "Content-Type": "text/plain"}
    )
    assert_envelope(response, 405, "method_not_allowed")
    assert client.get(product).status_code == 200


# --- The real server: methods on every route -------------------------------------------


def _path_ids(world) -> dict:
    """The URL map's id arguments, filled from the world's rows."""
    return {
        "product_id": world["p"],
        "order_id": world["o"],
        "item_id": world["i"],
        "review_id": world["r"],
        "user_id": world["user_id"],
    }


@pytest.mark.server
def test_head_and_options_on_every_path_keep_the_connection_framed(app, port, world):
    """HEAD and OPTIONS on every path of the URL map, pipelined on one
    connection: each HEAD answer has headers and no body (else the next
    answer would be read from its bytes), each OPTIONS answer names the
    path's methods, no body, and the last request is answered intact."""
    ids = _path_ids(world)
    paths: dict[str, set[str]] = {}
    for _method, rule, methods in operations(app):
        paths[re.sub(r"<int:(\w+)>", lambda m: str(ids[m.group(1)]), rule)] = methods
    bearer = b"Authorization: Bearer " + world["admin"].encode() + b"\r\n"
    data, bodiless, expected = b"", set(), []
    for path, methods in sorted(paths.items()):
        for method in ("HEAD", "OPTIONS"):
            if method == "HEAD":
                bodiless.add(len(expected))
            data += f"{method} {path} HTTP/1.1\r\nHost: shop.test\r\n".encode() + bearer + b"\r\n"
            expected.append((method, path, methods))
    answers = responses(exchange(port, data + LAST), frozenset(bodiless))
    assert len(answers) == len(expected) + 1
    for (method, path, methods), (status, headers, body) in zip(expected, answers, strict=False):
        assert body == b"", (method, path)
        for name, value in SECURITY_HEADERS.items():
            assert headers[name] == value, (method, path, name)
        if method == "OPTIONS":
            assert status == 200, (path, status)
            assert set(headers["allow"].split(", ")) == methods, path
            assert "content-type" not in headers, path
        else:
            assert status < 500 and headers["content-type"].startswith("application/json")
            if "GET" not in methods:
                assert status == 405 and set(headers["allow"].split(", ")) == methods, path
    assert_json_error(answers[-1], 404, "not_found")


@pytest.mark.server
def test_trace_connect_and_unknown_methods_are_json_envelopes(port):
    cases = [
        (get(b"/api/health", method=b"TRACE"), 405, "method_not_allowed"),
        (get(b"/api/products", b"Max-Forwards: 0\r\n", method=b"TRACE"), 405, None),
        (get(b"shop.test:443", method=b"CONNECT"), 404, "not_found"),
        (get(b"/api/health", method=b"CONNECT"), 405, "method_not_allowed"),
        (get(b"*", method=b"OPTIONS"), 404, "not_found"),
        (get(b"/api/health", method=b"FOO-BAR"), 405, "method_not_allowed"),
        (get(b"/api/health", method=b"PROPFIND"), 405, "method_not_allowed"),
        (get(b"/api/health", method=b"G@T"), 400, "invalid_request"),
        (get(b"/api/health", method=b"M" * 40), 400, "invalid_request"),
    ]
    for data, status, code in cases:
        [answer] = responses(exchange(port, data))
        assert_json_error(answer, status, code or "method_not_allowed")
        if status == 405:
            assert answer[1]["allow"]


# --- The real server: request targets ---------------------------------------------------


@pytest.mark.server
def test_request_targets_that_name_no_route_are_a_404_without_a_redirect(port, world):
    """Trailing slashes, doubled slashes, encoded slashes and dots, overlong
    UTF-8, `;` parameters and traversal into the docs' files: a 404 envelope,
    never a redirect (no `Location`, which werkzeug would build from the
    Host header) and never a file outside Swagger UI's folder."""
    p = str(world["p"]).encode()
    targets = [
        b"/api/products/",
        b"/api/products//",
        b"/api/products/" + p + b"/",
        b"/api//products",
        b"/api/products/%2e%2e/health",
        b"/api/%2E%2E/api/health",
        b"/api/products/../health",
        b"/api/products/%c0%ae%c0%ae/health",
        b"/api/products/%c0%af",
        b"/api/products;x=1",
        b"/api/products/" + p + b";jsessionid=1",
        b"/api/health\\..\\",
        b"/api/docs/",
        b"/api/docs/assets/",
        b"/api/docs/assets/../../../../etc/passwd",
        b"/api/docs/assets/..%2f..%2f..%2f..%2fetc%2fpasswd",
        b"/api/docs/assets/%2e%2e/%2e%2e/__init__.py",
        b"/api/docs/assets/..%5c..%5c__init__.py",
        b"/api/docs/assets/swagger-ui.css%00.js",
        b"/api/docs/assets/%00",
    ]
    hostile = b"Host: evil.example\r\nConnection: close\r\n"
    for target in targets:
        data = b"GET " + target + b" HTTP/1.1\r\n" + hostile + b"\r\n"
        [answer] = responses(exchange(port, data))
        assert_json_error(answer, 404, "not_found")
        assert "location" not in answer[1], target
        assert b"evil" not in answer[2] and b"root:" not in answer[2], target
    # An encoded slash is a slash: WSGI's PATH_INFO is decoded (by gunicorn),
    # so it names the same product, as a proxy decoding the path would read it.
    [answer] = responses(exchange(port, get(b"/api/products%2F" + p)))
    assert answer[0] == 200 and json.loads(answer[2])["id"] == world["p"]
    # The docs' own files are served (the traversal above is refused, not everything).
    [answer] = responses(exchange(port, get(b"/api/docs/assets/swagger-ui.css")))
    assert answer[0] == 200 and answer[1]["content-type"].startswith("text/css")


@pytest.mark.server
def test_an_absolute_form_target_is_served_as_its_path_whatever_host_it_names(port, world):
    """RFC 9112 3.2.2: a server must accept the absolute form; the host in it
    (and in Host) is only a name: nothing answered is built from either."""
    p = str(world["p"]).encode()
    for target in [b"http://evil.example/api/products/" + p, b"https://x/api/products/" + p]:
        [answer] = responses(exchange(port, get(target)))
        assert answer[0] == 200 and json.loads(answer[2])["id"] == world["p"]
    [answer] = responses(exchange(port, get(b"http://evil.example/api/nope")))
    assert_json_error(answer, 404, "not_found")


HOSTILE_HOSTS = [
    b"Host: evil.example\r\n",
    b"Host: evil.example\r\nX-Forwarded-Host: evil2.example\r\n",
    b"Host: evil.example\r\nForwarded: host=evil3.example;proto=https\r\n",
    b"Host: <script>\r\n",
    b"Host: shop.test:99999\r\n",
    b"",  # none at all
]


@pytest.mark.server
def test_no_answer_is_built_from_the_host_header(port):
    """The OpenAPI document's servers, the docs page and its script, and an
    error answer name no host they were sent: links the API makes (emails)
    use FRONTEND_URL, and nothing in an answer comes from Host,
    X-Forwarded-Host or Forwarded."""
    for host in HOSTILE_HOSTS:
        for target in [b"/api/openapi.json", b"/api/docs", b"/api/docs/swagger-init.js", b"/x"]:
            data = b"GET " + target + b" HTTP/1.1\r\n" + host + b"Connection: close\r\n\r\n"
            [answer] = responses(exchange(port, data))
            assert answer[0] in (200, 404), (host, target, answer[0])
            raw = json.dumps(answer[1]).encode() + answer[2]
            assert b"evil" not in raw and b"<script>" not in raw and b"99999" not in raw
            assert "location" not in answer[1]
    data = b"GET /api/health HTTP/1.1\r\nHost: a\r\nHost: b\r\nConnection: close\r\n\r\n"
    assert_json_error(responses(exchange(port, data))[0], 400, "invalid_request")


# --- The real server: framing, smuggling, pipelining ------------------------------------


def _admin_delete(world) -> bytes:
    """A request that would delete the product, smuggled in a body."""
    return (
        f"DELETE /api/products/{world['p']} HTTP/1.1\r\nHost: shop.test\r\n"
        f"Authorization: Bearer {world['admin']}\r\nContent-Length: 0\r\n\r\n"
    ).encode()


@pytest.mark.server
def test_ambiguous_framing_is_refused_and_nothing_smuggled_runs(client, port, world):
    """Content-Length twice (same or different values), with
    Transfer-Encoding, malformed, or folded; chunked in HTTP/1.0; a bare LF:
    gunicorn refuses each with the JSON 400 and closes, so the request
    smuggled behind it (an admin's DELETE) never runs."""
    inner = _admin_delete(world)
    head = b"POST /api/auth/login HTTP/1.1\r\nHost: shop.test\r\nContent-Type: application/json\r\n"
    n = len(inner)
    cases = [
        head + b"Content-Length: %d\r\nContent-Length: %d\r\n\r\n" % (n, n) + inner,
        head + b"Content-Length: 0\r\nContent-Length: %d\r\n\r\n" % n + inner,
        head + b"Content-Length: %d, %d\r\n\r\n" % (n, n) + inner,
        head + b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + inner,
        head + b"Transfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n" + inner,
        head + b"Content-Length: +%d\r\n\r\n" % n + inner,
        head + b"Content-Length: -1\r\n\r\n" + inner,
        head + b"Content-Length : %d\r\n\r\n" % n + inner,
        head + b"Content-Length: 0\r\n Continued\r\n\r\n" + inner,
        head + b"Content-Length: 0\r\n\n" + inner,
        head.replace(b"HTTP/1.1", b"HTTP/1.0")
        + b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
        + inner,
        head
        + b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n".replace(b"chunked", b"chunked\x0b")
        + inner,
    ]
    for data in cases:
        answers = responses(exchange(port, data))
        assert len(answers) == 1, (data[:160], [a[0] for a in answers])
        assert_json_error(answers[0], 400, "invalid_request")
        assert answers[0][1]["connection"] == "close"
    assert client.get(f"/api/products/{world['p']}").status_code == 200


@pytest.mark.server
def test_pipelined_requests_are_answered_in_order_a_body_never_read_as_a_request(
    client, port, world
):
    """Two requests in one packet: both answered in order; a first request's
    body, read or not (a 401, 404, 405, 415, a GET's ignored body), is never
    taken for the next request, even when it is one."""
    inner = _admin_delete(world)

    def post(path: bytes, kind: bytes, body: bytes, method: bytes = b"POST") -> bytes:
        return (
            method
            + b" "
            + path
            + b" HTTP/1.1\r\nHost: shop.test\r\nContent-Type: "
            + kind
            + b"\r\nContent-Length: %d\r\n\r\n" % len(body)
            + body
        )

    j = b"application/json"
    cases = [
        (post(b"/api/auth/login", b"text/plain", inner), 415, "unsupported_media_type"),
        (post(b"/api/cart", j, inner), 401, "token_missing"),
        (post(b"/api/nowhere", j, inner), 404, "not_found"),
        (post(b"/api/health", j, inner), 405, "method_not_allowed"),
        (post(b"/api/auth/login", j, inner), 400, "invalid_json"),
        (post(b"/api/products", j, inner, method=b"GET"), 200, None),
        (post(b"/api/products", b"text/plain", inner, method=b"GET"), 415, None),
    ]
    for data, status, code in cases:
        answers = responses(exchange(port, data + LAST))
        assert [a[0] for a in answers] == [status, 404], data[:60]
        if code:
            assert_json_error(answers[0], status, code)
        assert_json_error(answers[1], 404, "not_found")
    # A chunked body, then a request: both answered, the body's bytes not a request.
    chunked = (
        b"POST /api/auth/login HTTP/1.1\r\nHost: shop.test\r\nContent-Type: text/plain\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n%x\r\n%s\r\n0\r\n\r\n" % (len(inner), inner)
    )
    answers = responses(exchange(port, chunked + LAST))
    assert [a[0] for a in answers] == [415, 404]
    # Three keep-alive reads, answered in the order sent.
    three = b"".join(
        f"GET {path} HTTP/1.1\r\nHost: shop.test\r\n\r\n".encode()
        for path in ("/api/health", f"/api/products/{world['p']}", "/api/products/2000000")
    )
    answers = responses(exchange(port, three + LAST))
    assert [a[0] for a in answers] == [200, 200, 404, 404]
    assert json.loads(answers[1][2])["id"] == world["p"]
    assert client.get(f"/api/products/{world['p']}").status_code == 200


@pytest.mark.server
def test_a_body_past_the_limit_is_a_413_envelope_and_the_connection_closes(client, port, world):
    """Declared past MAX_CONTENT_LENGTH (sent or not, or a length no integer
    type holds): the 413 envelope, before the body is read, and the
    connection closed, so what follows is never read as a request."""
    inner = _admin_delete(world)
    head = b"POST /api/products HTTP/1.1\r\nHost: shop.test\r\nContent-Type: application/json\r\n"
    head += b"Authorization: Bearer " + world["admin"].encode() + b"\r\n"
    big = b'{"name": "' + b"a" * (1024 * 1024) + b'"}'
    for data in [
        head + b"Content-Length: %d\r\n\r\n" % len(big) + big + inner,
        head + b"Content-Length: 99999999999999999999999\r\n\r\n" + inner,
        head + b"Content-Length: 2000000\r\n\r\n" + inner,
    ]:
        answers = responses(exchange(port, data))
        assert len(answers) == 1
        assert_json_error(answers[0], 413, "payload_too_large")
    assert client.get(f"/api/products/{world['p']}").status_code == 200


@pytest.mark.server
def test_expect_continue_http10_keep_alive_and_connection_upgrade(port, world):
    """`Expect: 100-continue` gets the interim 100 before the body is sent,
    then the answer; HTTP/1.0 is answered and closed unless it asks to keep
    alive; an h2c upgrade is ignored (answered over HTTP/1.1)."""
    body = b'{"email": "nobody@example.com", "password": "wrong-password"}'
    with socket.create_connection(("127.0.0.1", port), timeout=20) as sock:
        sock.sendall(
            b"POST /api/auth/login HTTP/1.1\r\n"
            + CLOSE
            + b"Content-Type: application/json\r\nExpect: 100-continue\r\n"
            + b"Content-Length: %d\r\n\r\n" % len(body)
        )
        assert sock.recv(1024) == b"HTTP/1.1 100 Continue\r\n\r\n"
        sock.sendall(body)
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
    assert_json_error(responses(received)[0], 401, "invalid_credentials")
    two = b"GET /api/health HTTP/1.0\r\n%s\r\nGET /api/products HTTP/1.0\r\n\r\n"
    answers = responses(exchange(port, two % b"Connection: keep-alive\r\n"))
    assert [a[0] for a in answers] == [200, 200]
    assert answers[0][1]["connection"] == "keep-alive" and answers[1][1]["connection"] == "close"
    answers = responses(exchange(port, two % b""))
    assert [a[0] for a in answers] == [200]
    h2c = get(
        b"/api/health",
        b"Upgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n",
    ).replace(b"Connection: close", b"Connection: close, Upgrade, HTTP2-Settings")
    [answer] = responses(exchange(port, h2c))
    assert answer[0] == 200 and json.loads(answer[2])["status"] == "ok"


WEBSOCKET = {
    "Connection": "Upgrade",
    "Upgrade": "websocket",
    "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
    "Sec-WebSocket-Version": "13",
}


def test_a_websocket_handshake_is_answered_as_the_plain_request(app, client, world):
    """The API offers no WebSocket, and may ignore an Upgrade (RFC 9110
    7.8). werkzeug's routing matched a websocket handshake against rules
    that are not websocket ones: `GET /api/health` was a 400 "Malformed HTTP
    request", `GET /api/products` a 405 whose `Allow` left out GET (found by
    review). Each GET path answers as without the headers (no 101, so a
    browser's WebSocket fails as it should), and a 405 names every method."""
    ids = _path_ids(world)
    admin = auth(world["admin"])
    checked = 0
    for method, rule, methods in operations(app):
        path = re.sub(r"<int:(\w+)>", lambda m: str(ids[m.group(1)]), rule)
        if method != "GET":
            continue
        plain = client.get(path, headers=admin)
        upgraded = client.get(path, headers={**admin, **WEBSOCKET})
        assert upgraded.status_code == plain.status_code, (path, upgraded.get_json())
        assert upgraded.status_code not in (101, 400, 405), path
        if "POST" not in methods:
            refused = client.post(path, json={}, headers={**admin, **WEBSOCKET})
            assert_envelope(refused, 405, "method_not_allowed")
            assert set(refused.headers["Allow"].split(", ")) == methods, path
        checked += 1
    assert checked >= 15
    assert client.get("/api/docs", headers=WEBSOCKET).status_code == 200
    assert_envelope(client.get("/api/nope", headers=WEBSOCKET), 404, "not_found")


# --- Rate limits and forwarded addresses ------------------------------------------------

SPOOFS = ["X-Forwarded-For", "X-Real-IP", "True-Client-IP", "CF-Connecting-IP", "Client-IP"]


def _failed_logins(client, address: str, headers_for) -> list[int]:
    statuses = []
    for n in range(4):
        response = client.post(
            "/api/auth/login",
            json={"email": f"nobody{n}@example.com", "password": "wrong-password"},
            headers=headers_for(n),
            environ_base={"REMOTE_ADDR": address},
        )
        statuses.append(response.status_code)
    return statuses


def test_the_rate_limit_keys_on_no_header_a_client_can_forge(make_app):
    """README: the client is the remote address, and X-Forwarded-For counts
    only with TRUST_PROXY. Without it, a new forwarding header per request
    (any of the usual names, or `Forwarded`) does not make a new client;
    with one proxy, only the address the proxy appended (the last) counts,
    so a forged first value changes nothing, and another real address is
    another client."""
    limits = {"RATELIMIT_ENABLED": True, "RATELIMIT_LOGIN": "2 per minute"}
    direct = make_app("testing", {**limits, "RATELIMIT_STORAGE_URI": "memory://"}).test_client()

    def forged(n: int) -> dict:
        return {
            **{name: f"198.51.100.{n + 10}" for name in SPOOFS},
            "Forwarded": f"for=198.51.100.{n + 10}",
        }

    assert _failed_logins(direct, "192.0.2.71", forged) == [401, 401, 429, 429]
    proxied = make_app(
        "testing", {**limits, "RATELIMIT_STORAGE_URI": "memory://", "TRUST_PROXY": 1}
    ).test_client()
    statuses = _failed_logins(
        proxied, "10.0.0.1", lambda n: {"X-Forwarded-For": f"198.51.100.{n}, 203.0.113.201"}
    )
    assert statuses == [401, 401, 429, 429]
    other = _failed_logins(proxied, "10.0.0.1", lambda n: {"X-Forwarded-For": "203.0.113.202"})
    assert other[:2] == [401, 401]


@pytest.mark.server
def test_the_request_size_limits_answer_the_envelope_at_their_edges(port):
    """gunicorn.conf.py: request lines up to 8190 bytes reach the app (a
    too-long `q` is the app's 422 naming it), a longer one is a 414; a
    64 KB header and more than 100 headers are a 431; each in the envelope
    with the security headers."""
    line = b"GET /api/products?q=" + b"a" * (8190 - len(b"GET /api/products?q= HTTP/1.1"))
    assert len(line + b" HTTP/1.1") == 8190
    body = assert_json_error(
        responses(exchange(port, line + b" HTTP/1.1\r\n" + CLOSE + b"\r\n"))[0],
        422,
        "validation_failed",
    )
    assert list(body["errors"]) == ["q"]
    longer = line + b"a HTTP/1.1\r\n" + CLOSE + b"\r\n"
    assert_json_error(responses(exchange(port, longer))[0], 414, "uri_too_long")
    cases = [
        get(b"/api/health", b"X-Big: " + b"a" * 65536 + b"\r\n"),
        get(b"/api/health", *[b"X-H%d: 1\r\n" % n for n in range(101)]),
    ]
    for data in cases:
        assert_json_error(responses(exchange(port, data))[0], 431, "headers_too_large")


@pytest.mark.server
@pytest.mark.parametrize("coding", [b"gzip", b"deflate", b"compress", b"x-gzip"])
def test_a_transfer_coding_gunicorn_does_not_decode_is_a_501(port, world, coding):
    """gunicorn takes `Transfer-Encoding: gzip, chunked` (and deflate,
    compress) but undoes only the chunking: the app read the still-coded
    bytes, so a gzipped body was "not valid JSON" and a plain one labelled
    gzip created the product (found by review). Such a coding is not
    understood: a 501 (RFC 9112 6.1), gunicorn's own answer to a coding it
    does not know, and nothing is written."""
    before = row_counts()
    head = (
        b"POST /api/products HTTP/1.1\r\n"
        + CLOSE
        + b"Content-Type: application/json\r\nAuthorization: Bearer "
        + world["admin"].encode()
        + b"\r\nTransfer-Encoding: "
        + coding
        + b", chunked\r\n\r\n"
    )
    for body in (PLAIN, gzip.compress(PLAIN)):
        data = head + b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body)
        body = assert_json_error(responses(exchange(port, data))[0], 501, "not_implemented")
        assert "Transfer-Encoding" in body["message"]
    assert row_counts() == before
    # identity is no coding: read as the chunked body it is.
    data = head.replace(coding, b"identity") + b"%x\r\n%s\r\n0\r\n\r\n" % (len(PLAIN), PLAIN)
    assert responses(exchange(port, data))[0][0] == 201
