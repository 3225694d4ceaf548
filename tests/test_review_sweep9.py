"""Review (sweep, round 9): the payment-timeout sweep past a product row that
stays locked, and an Idempotency-Key header sent twice."""

from __future__ import annotations

import http.client
import json
import time
import uuid
from contextlib import contextmanager
from datetime import timedelta
from urllib.parse import urlsplit

import pytest
from sqlalchemy import text

from app.db import unit_of_work
from app.models.types import utcnow
from app.services.payment_timeouts import cancel_expired_orders
from tests.helpers import DATABASE_URL, IS_POSTGRES, SHIPPING, fill_cart, order_for, scalar, stock
from tests.live import gunicorn

pg_only = pytest.mark.skipif(not IS_POSTGRES, reason="row locks: PostgreSQL only")


def _expire(db, *orders) -> None:
    """Make the orders look older than ORDER_PAYMENT_TIMEOUT (1800 s)."""
    for n, order in enumerate(orders):
        db.session.execute(
            text("UPDATE orders SET created_at = :at WHERE id = :id"),
            {"at": utcnow() - timedelta(seconds=3600 - n), "id": order["id"]},
        )
    db.session.commit()


def _status(order) -> str:
    return scalar("SELECT status FROM orders WHERE id = :i", i=order["id"])


def _cancel_movements(order) -> int:
    """How many ledger rows the order's cancellation wrote (one per line)."""
    return scalar(
        "SELECT count(*) FROM stock_movements WHERE order_id = :i AND reason = 'cancel'",
        i=order["id"],
    )


@contextmanager
def _row_held(db, product):
    """A second real connection holds the product's row lock (FOR UPDATE, as
    a long admin edit or a stuck transaction would) until the block ends."""
    with db.engine.connect() as holder:
        holder.execute(text("SELECT id FROM products WHERE id = :i FOR UPDATE"), {"i": product.id})
        try:
            yield
        finally:
            holder.rollback()


def _sweep(app) -> list[int]:
    """One run of the sweep, as `flask cancel-expired-orders` runs it."""
    with app.app_context(), unit_of_work():
        return [order.id for order in cancel_expired_orders()]


# The engine's own statement timeout (production's default is 30 s, as the
# suite's): the sweep gave up at it and raised, ending the whole run.
SETTINGS = {
    "statement_timeout=300ms": {"connect_args": {"options": "-c statement_timeout=300"}},
    "the suite's (30 s)": None,
}


@pg_only
@pytest.mark.parametrize("setting", SETTINGS)
def test_a_product_locked_past_the_timeout_skips_its_orders_not_the_rest(
    app, make_app, db, client, buyer, make_product, setting
):
    """Found by review: the sweep waited on a held product row until the
    statement timeout, which raised and ended the run; the next run started
    at that same order again, so one locked row kept every later expired
    order (and its stock) from ever being cancelled. Now an order whose rows
    stay locked is left to a later run (all of it: none of its lines come
    back alone) and the sweep goes on; once the lock is gone it is taken."""
    _, token = buyer
    held, p2, p3 = (make_product(stock=10) for _ in range(3))
    o1 = order_for(client, token, (held, 2))  # the first the sweep meets
    o2 = order_for(client, token, (p2, 3))
    o3 = order_for(client, token, (p3, 4), (held, 1))  # one line of it locked
    o4 = order_for(client, token, (p2, 1), (p3, 1))
    _expire(db, o1, o2, o3, o4)
    assert (stock(held), stock(p2), stock(p3)) == (7, 6, 5)
    sweeper = (
        app
        if SETTINGS[setting] is None
        else make_app(overrides={"SQLALCHEMY_ENGINE_OPTIONS": SETTINGS[setting]})
    )

    with _row_held(db, held):
        started = time.monotonic()
        first = _sweep(sweeper)
        elapsed = time.monotonic() - started
        again = _sweep(sweeper)  # the lock still there: nothing more, no error
        assert first == [o2["id"], o4["id"]]
        assert again == []
        assert elapsed < 10, elapsed  # not a statement timeout per locked order
        assert [_status(o) for o in (o1, o2, o3, o4)] == [
            "pending",
            "cancelled",
            "pending",
            "cancelled",
        ]
        # o3's p3 line did not come back without its held line.
        assert (stock(held), stock(p2), stock(p3)) == (7, 10, 6)

    assert _sweep(sweeper) == [o1["id"], o3["id"]]  # the lock gone: a later run
    assert _sweep(sweeper) == []
    assert (stock(held), stock(p2), stock(p3)) == (10, 10, 10)
    assert [_status(o) for o in (o1, o2, o3, o4)] == ["cancelled"] * 4
    # Each order's stock came back exactly once, each line in the ledger once,
    # and each customer email was queued once.
    assert [_cancel_movements(o) for o in (o1, o2, o3, o4)] == [1, 1, 2, 2]
    for product in (held, p2, p3):
        assert scalar(
            "SELECT coalesce(sum(delta), 0) FROM stock_movements WHERE product_id = :i",
            i=product.id,
        ) == stock(product)
    assert scalar("SELECT count(*) FROM outbox WHERE topic = 'order_cancelled'") == 4
    history = scalar("SELECT count(*) FROM order_status_history WHERE status = 'cancelled'")
    assert history == 4


def test_the_sweep_still_runs_on_any_database(app, db, client, buyer, make_product):
    """SQLite has no row locks (nor SKIP LOCKED, nor lock_timeout): the
    sweep's per-order lock bound is PostgreSQL's only, and the sweep cancels
    and restocks there as before."""
    _, token = buyer
    p1, p2 = make_product(stock=10), make_product(stock=10)
    o1 = order_for(client, token, (p1, 2), (p2, 1))
    o2 = order_for(client, token, (p2, 4))
    _expire(db, o1, o2)
    assert _sweep(app) == [o1["id"], o2["id"]]
    assert _sweep(app) == []
    assert (stock(p1), stock(p2)) == (10, 10)
    assert [_status(o) for o in (o1, o2)] == ["cancelled", "cancelled"]


def _post_order(server, token: str, keys: list[str]) -> tuple[int, dict, dict]:
    """POST /api/orders with one `Idempotency-Key` header line per key, sent
    as separate lines on the wire (urllib keeps one value per name)."""
    url = urlsplit(server.url)
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=30)
    try:
        body = json.dumps(SHIPPING).encode()
        conn.putrequest("POST", "/api/orders")
        conn.putheader("Content-Type", "application/json")
        conn.putheader("Content-Length", str(len(body)))
        conn.putheader("Authorization", f"Bearer {token}")
        for key in keys:
            conn.putheader("Idempotency-Key", key)
        conn.endheaders(body)
        response = conn.getresponse()
        raw = response.read()
        return response.status, json.loads(raw) if raw else {}, dict(response.getheaders())
    finally:
        conn.close()


@pytest.mark.server
def test_an_idempotency_key_sent_twice_is_one_key_joined_by_a_comma(client, buyer, make_product):
    """Two `Idempotency-Key` lines reach the app as one WSGI value: gunicorn
    joins repeated fields with "," (as werkzeug's server does) and keeps
    nothing else of them in the environ, so the app cannot tell `a` + `b`
    from one key `a,b`, which the API allows (1 to 255 characters). What
    README and docs/API.md say is pinned here: the request is keyed by the
    joined value, which a retry must send again (as two lines or as one),
    and a joined value past 255 characters is a 422 naming the header."""
    _, token = buyer
    product = make_product(stock=5)
    first, second = "sweep9-" + uuid.uuid4().hex, "sweep9-" + uuid.uuid4().hex
    with gunicorn(DATABASE_URL, workers=1, threads=2) as server:
        fill_cart(client, token, (product, 2))
        status, order, headers = _post_order(server, token, [first, second])
        assert status == 201, order
        assert "Idempotent-Replayed" not in headers
        # The same two lines again, and the joined value as one line: both
        # are the same key, and replay the first answer.
        for keys in ([first, second], [f"{first},{second}"]):
            status, body, headers = _post_order(server, token, keys)
            assert (status, body) == (201, order), keys
            assert headers.get("Idempotent-Replayed") == "true", keys
        # Either key alone is another key: nothing to replay, and the cart
        # the order emptied makes it a 409, not a second order.
        status, body, _ = _post_order(server, token, [first])
        assert (status, body["code"]) == (409, "empty_cart"), body
        # Two keys of 200 characters each: the joined one is past 255.
        fill_cart(client, token, (product, 1))
        status, body, _ = _post_order(server, token, ["a" * 200, "b" * 200])
        assert status == 422, body
        assert body["code"] == "validation_failed"
        assert list(body["errors"]) == ["Idempotency-Key"], body
    assert scalar("SELECT count(*) FROM orders") == 1
    assert stock(product) == 3
    kept = scalar("SELECT key FROM idempotency_keys WHERE response_status = 201")
    assert kept == f"{first},{second}"
