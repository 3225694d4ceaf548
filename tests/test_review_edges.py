"""Review of the request edges (Idempotency-Key, rate limits, CORS, request ids):
each test shows a defect against API.md, docs/API.md or the README."""

from __future__ import annotations

import http.client
import sqlite3
import urllib.parse

import pytest
from sqlalchemy import event

from app.extensions import db
from app.web.hooks import REQUEST_ID
from tests.helpers import DATABASE_URL, IS_POSTGRES, PASSWORD, fill_cart, place_order, scalar
from tests.live import gunicorn

ORIGIN = "http://localhost:3000"  # a development origin, allowed in `testing`
DEFAULT_LIMIT = 4


def _raw(server, method: str, path: str, headers: dict | None = None, body: bytes | None = None):
    """One request on its own connection: (status, headers, body bytes)."""
    url = urllib.parse.urlsplit(server.url)
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=10)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        conn.close()


@pytest.fixture(scope="module")
def limited(app):
    """One gunicorn worker with small limits behind a (pretend) trusted proxy:
    each test is a client of its own X-Forwarded-For address."""
    env = {
        "RATELIMIT_ENABLED": "true",
        "RATELIMIT_STORAGE_URI": "memory://",
        "TRUST_PROXY": "1",
        "RATELIMIT_DEFAULT": f"{DEFAULT_LIMIT} per minute",
    }
    with gunicorn(DATABASE_URL, workers=1, threads=2, extra_env=env) as live:
        yield live


# --- Idempotency-Key ----------------------------------------------------------


@pytest.mark.skipif(IS_POSTGRES, reason="SQLite's write lock held past the busy timeout")
def test_a_checkout_answered_503_busy_can_be_retried_with_its_key(
    make_app, client, buyer, make_product
):
    """README (Orders): "Answers to a body that is no JSON (400) or invalid
    input (422) and server errors are not kept, so those can be retried with
    the same key"; docs/API.md: a busy database is a 503 with `Retry-After: 1`,
    "nothing written". Here SQLite's write lock is held by another writer past
    the busy timeout from the moment the claim is committed: the checkout
    answers 503 with Retry-After: 1, but `_release` cannot delete the claim (it
    needs the same lock) and the failure escapes, so the claim stays written
    with no answer. The client's retry with the same key, once the lock is
    free, is a 409 `idempotency_in_flight` ("still in progress") although
    nothing runs, and stays so for IDEMPOTENCY_ABANDONED_AFTER (60 s)."""
    _, token = buyer
    fill_cart(client, token, (make_product(stock=5), 1))
    busy = make_app("testing", {"SQLITE_BUSY_TIMEOUT_MS": 200})
    with busy.app_context():
        engine = db.engine
    other_writer = sqlite3.connect(
        DATABASE_URL.removeprefix("sqlite:///"), isolation_level=None, check_same_thread=False
    )
    commits, held = [], []

    def claimed(_conn):
        commits.append(True)

    def take_the_lock(_conn):
        # The checkout's own transaction begins after the claim's commit: take
        # SQLite's write lock just before it, as a long write elsewhere would.
        if commits and not held:
            other_writer.execute("BEGIN IMMEDIATE")
            held.append(True)

    event.listen(engine, "commit", claimed)
    event.listen(engine, "begin", take_the_lock)
    try:
        with busy.test_client() as busy_client:
            first = place_order(busy_client, token, **{"Idempotency-Key": "busy-1"})
    finally:
        event.remove(engine, "begin", take_the_lock)
        event.remove(engine, "commit", claimed)
        if held:
            other_writer.execute("ROLLBACK")
        other_writer.close()
    assert held and first.status_code == 503, first.get_json()
    assert first.headers["Retry-After"] == "1"

    retry = place_order(client, token, **{"Idempotency-Key": "busy-1"})
    assert retry.status_code == 201, retry.get_json()
    assert scalar("SELECT count(*) FROM orders") == 1


# --- rate limits and CORS -----------------------------------------------------


@pytest.mark.server
def test_a_rate_limited_browser_client_can_still_read_the_429(limited):
    """README: a rate-limit breach "is a 429 with the usual JSON envelope and
    `Retry-After`", and CORS makes `Retry-After` "readable by the page".
    A storefront on another origin sends a preflight (OPTIONS) before every
    request with Authorization or If-None-Match; the Fetch standard fails the
    request outright (a network error, nothing readable) unless the preflight
    answers 2xx. The default limit is applied to preflights too: once the
    client's budget is spent, the preflight itself is a 429, so the page never
    sends the request and never sees the 429's code or Retry-After. (Each
    preflight also spends one request of the client's budget.)"""
    client = {"X-Forwarded-For": "203.0.113.41", "Origin": ORIGIN}
    statuses = [_raw(limited, "GET", "/api/products", client)[0] for _ in range(DEFAULT_LIMIT + 1)]
    assert statuses == [200] * DEFAULT_LIMIT + [429]
    preflight = {
        **client,
        "Access-Control-Request-Method": "GET",
        "Access-Control-Request-Headers": "if-none-match",
    }
    status, headers, body = _raw(limited, "OPTIONS", "/api/products", preflight)
    assert 200 <= status < 300, (status, body)
    assert headers.get("Access-Control-Allow-Origin") == ORIGIN


# --- X-Request-ID ---------------------------------------------------------------


@pytest.mark.server
@pytest.mark.parametrize(
    ("path", "headers", "status"),
    [
        ("/api/products?q=" + "a" * 9000, {}, 414),  # uri_too_long
        ("/api/products", {"X-Padding": "a" * 9000}, 431),  # headers_too_large
    ],
    ids=["uri_too_long", "headers_too_large"],
)
def test_every_answer_carries_a_request_id(limited, path, headers, status):
    """docs/API.md (Operations): "Every answer carries `X-Request-ID` (the
    client's, when it is 1 to 128 characters of `A-Z a-z 0-9 . _ : -`, else a
    new one)", and docs/API.md's error table lists gunicorn's own answers
    (400 `invalid_request`, 414 `uri_too_long`, 431 `headers_too_large`) as the
    API's. Those are written by gunicorn.conf.py's `_json_error`, with no
    X-Request-ID at all (nor the CORS headers a page would need to read them)."""
    answer_status, answer_headers, body = _raw(
        limited, "GET", path, {"X-Request-ID": "trace-1", **headers}
    )
    assert answer_status == status, body
    # The client's id, or a new one where gunicorn refused to read the headers.
    assert REQUEST_ID.match(answer_headers.get("X-Request-ID", "")), answer_headers


@pytest.mark.skipif(IS_POSTGRES, reason="SQLite's one write lock")
def test_a_login_hashing_its_password_holds_no_write_lock(client, make_user, monkeypatch):
    """A login writes nothing, but as a POST it began with BEGIN IMMEDIATE and
    held SQLite's write lock while the password was hashed (tens of ms with
    scrypt), so logins ran one at a time and every other writer waited."""
    from app.models import user as user_module

    user = make_user()
    other_writer = sqlite3.connect(DATABASE_URL.removeprefix("sqlite:///"), isolation_level=None)
    other_writer.execute("PRAGMA busy_timeout=0")
    took_the_lock = []
    check = user_module.check_password_hash

    def hashing_while_another_writer_begins(*args):
        try:
            other_writer.execute("BEGIN IMMEDIATE")
            other_writer.execute("ROLLBACK")
            took_the_lock.append(True)
        except sqlite3.OperationalError:
            took_the_lock.append(False)
        return check(*args)

    monkeypatch.setattr(user_module, "check_password_hash", hashing_while_another_writer_begins)
    try:
        response = client.post("/api/auth/login", json={"email": user.email, "password": PASSWORD})
    finally:
        other_writer.close()
    assert response.status_code == 200, response.get_json()
    assert took_the_lock == [True]
