"""Review of the newest commits (owed version bumps, pending Idempotency-Key
releases, preflights, gunicorn's own answers, login's lock, suggest on
PostgreSQL): each test fails on the current code because of a defect."""

from __future__ import annotations

import psycopg
import pytest
from sqlalchemy import event

from app.extensions import db
from tests.helpers import DATABASE_URL, IS_POSTGRES, fill_cart, place_order, scalar
from tests.live import gunicorn
from tests.test_faults import raw_request


@pytest.mark.skipif(not IS_POSTGRES, reason="a PostgreSQL connection lost at COMMIT")
def test_a_checkout_answered_503_at_its_commit_can_be_retried_with_its_key(
    client, buyer, make_product
):
    """README (Orders): answers to bad input "and server errors are not kept,
    so those can be retried with the same key"; docs/API.md: a database that
    cannot answer (a lost connection) is a 503 with `Retry-After: 1`. Here
    the checkout's connection is lost at its COMMIT (the server restarted,
    a failover): nothing of the order is written and the answer is that 503,
    but the claim (committed on its own before the view ran) is never
    released - `idempotent` releases it only when the view raises, not when
    the request's unit of work fails to commit after `_store` - so the
    client's retry one second later is a 409 `idempotency_in_flight` ("still
    in progress") although nothing runs, for IDEMPOTENCY_ABANDONED_AFTER.
    (A release there is safe even if the COMMIT did land: `_ours` deletes
    only a claim with no stored answer.)"""
    _, token = buyer
    fill_cart(client, token, (make_product(stock=5), 1))
    engine = db.engine
    ordered = []

    def seen(_conn, _cursor, statement, *_args):
        if statement.lstrip().upper().startswith("INSERT INTO ORDERS"):
            ordered.append(True)

    def lose_the_connection(conn):
        if ordered and len(ordered) == 1:
            ordered.append(True)
            pid = conn.connection.dbapi_connection.info.backend_pid
            url = DATABASE_URL.replace("postgresql+psycopg://", "postgresql://")
            with psycopg.connect(url, autocommit=True) as admin:
                admin.execute("SELECT pg_terminate_backend(%s)", (pid,))

    event.listen(engine, "before_cursor_execute", seen)
    event.listen(engine, "commit", lose_the_connection)
    try:
        first = place_order(client, token, **{"Idempotency-Key": "lost-1"})
    finally:
        event.remove(engine, "commit", lose_the_connection)
        event.remove(engine, "before_cursor_execute", seen)
    assert len(ordered) == 2 and first.status_code == 503, first.get_json()
    assert scalar("SELECT count(*) FROM orders") == 0

    retry = place_order(client, token, **{"Idempotency-Key": "lost-1"})
    assert retry.status_code == 201, retry.get_json()
    assert scalar("SELECT count(*) FROM orders") == 1


@pytest.fixture(scope="module")
def server(app):
    with gunicorn(DATABASE_URL, workers=1, threads=2) as live:
        yield live


@pytest.mark.server
def test_gunicorns_own_answers_carry_the_security_headers(server):
    """README (Production): "Security headers on every response:
    `X-Content-Type-Options: nosniff`, `X-Frame-Options: DENY`,
    `Referrer-Policy: no-referrer`, a `Content-Security-Policy` of
    `default-src 'none'` for the JSON API". gunicorn's own answers (414,
    431, 400: gunicorn.conf.py's `_json_error`, which 143d550 taught an
    X-Request-ID) are JSON bodies of the API with none of them."""
    status, headers, body = raw_request(
        server, b"GET /api/products?q=" + b"a" * 9000 + b" HTTP/1.1\r\nHost: x\r\n\r\n"
    )
    assert status == 414, body
    assert headers.get("X-Request-ID"), headers
    assert headers.get("X-Content-Type-Options") == "nosniff", headers
    assert headers.get("X-Frame-Options") == "DENY", headers
    assert "default-src 'none'" in headers.get("Content-Security-Policy", ""), headers
