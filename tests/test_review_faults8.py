"""Review (faults and load, round 8): PostgreSQL backends terminated at each
statement of a checkout, lock and statement timeouts, an exhausted pool, a
gunicorn worker SIGKILLed under concurrent checkouts, and a webhook, a cancel
and the payment timeout racing on one order. Every answer is JSON (a success
or an error with a code), the retry with the same Idempotency-Key gives the
same order or a clear error, never a second order, and the books balance."""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, suppress
from datetime import timedelta
from pathlib import Path

import psycopg
import pytest
from sqlalchemy import event

from app.extensions import db
from app.models.types import utcnow
from tests.helpers import (
    DATABASE_URL,
    IS_POSTGRES,
    SHIPPING,
    auth,
    buyers_with_carts,
    fill_cart,
    pay,
    place_order,
    race,
    scalar,
)
from tests.live import eventually, gunicorn
from tests.test_payments_stripe import (  # noqa: F401 - fixtures
    signed,
    stripe_app,
    stripe_client,
    stripe_http,
    succeeded,
)

pg_only = pytest.mark.skipif(not IS_POSTGRES, reason="terminating backends is PostgreSQL's")
LIBPQ_URL = DATABASE_URL.replace("postgresql+psycopg://", "postgresql://")


def _terminate(pid: int) -> None:
    """End one backend of this test's own database (never another's)."""
    with psycopg.connect(LIBPQ_URL, autocommit=True) as admin:
        admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE pid = %s AND datname = current_database()",
            (pid,),
        )


def _books_balance() -> None:
    """Stock plus what orders hold is each product's ledger; no order lacks lines."""
    assert (
        scalar(
            "SELECT count(*) FROM products p WHERE p.stock <> "
            "(SELECT coalesce(sum(delta), 0) FROM stock_movements m WHERE m.product_id = p.id)"
        )
        == 0
    )
    assert (
        scalar(
            "SELECT count(*) FROM orders o WHERE NOT EXISTS "
            "(SELECT 1 FROM order_items i WHERE i.order_id = o.id)"
        )
        == 0
    )
    assert (
        scalar(
            "SELECT count(*) FROM orders o WHERE o.total_amount <> "
            "(SELECT sum(subtotal) FROM order_items i WHERE i.order_id = o.id)"
        )
        == 0
    )


# --- a backend terminated at each statement of a keyed checkout -----------------------


@contextmanager
def killed_at(step: int):
    """Terminate the backend at the `step`th statement or COMMIT (from 0) in the block."""
    seen: list[str] = []

    def at(conn, what: str) -> None:
        if len(seen) == step:
            _terminate(conn.connection.dbapi_connection.info.backend_pid)
        seen.append(what)

    def statement(conn, _cursor, text_, *_args):
        at(conn, text_)

    def commit(conn):
        at(conn, "COMMIT")

    event.listen(db.engine, "before_cursor_execute", statement)
    event.listen(db.engine, "commit", commit)
    try:
        yield seen
    finally:
        event.remove(db.engine, "before_cursor_execute", statement)
        event.remove(db.engine, "commit", commit)


# A keyed checkout on PostgreSQL: BEGIN, the user, three sweeps of old keys,
# the claim, COMMIT; BEGIN, the cart lines, the stock, the order, its lines,
# the ledger, the history, the email, the stored answer, COMMIT.
CHECKOUT_STEPS = 17


@pg_only
@pytest.mark.parametrize("step", range(CHECKOUT_STEPS))
def test_a_checkout_whose_backend_dies_at_any_step_answers_json_and_orders_once(
    client, buyer, make_product, step
):
    """docs/API.md: a database that cannot answer is a 503; checkout is all
    or nothing; a retry with the same Idempotency-Key gives the first answer
    and creates nothing. The backend dies at each statement and COMMIT in
    turn: a 503 (nothing written) or the 201, and the retry places the order
    once. Killed at the UPDATE that stores the answer, the claim was never
    released: every retry was a 409 `idempotency_in_flight` ("still in
    progress") for IDEMPOTENCY_ABANDONED_AFTER (60 s), though nothing ran."""
    _, token = buyer
    product = make_product(stock=5)
    fill_cart(client, token, (product, 2))
    key = {"Idempotency-Key": "step-" + uuid.uuid4().hex}
    with killed_at(step) as seen:
        first = place_order(client, token, **key)
    assert len(seen) > step, seen
    killed = seen[step].split("(")[0]
    body = first.get_json()
    assert body is not None, first.data
    assert first.status_code in (201, 503), (killed, first.status_code, body)
    if first.status_code == 503:
        assert body["code"] == "unavailable" and first.headers["Retry-After"], body
        assert scalar("SELECT count(*) FROM orders") == 0, killed
        assert scalar("SELECT stock FROM products WHERE id = :i", i=product.id) == 5
        assert scalar("SELECT coalesce(sum(quantity), 0) FROM cart_items") == 2
    retry = place_order(client, token, **key)
    assert retry.status_code == 201, (killed, retry.get_json())
    if first.status_code == 201:
        assert retry.get_json() == body
    again = place_order(client, token, **key)
    assert again.status_code == 201 and again.get_json() == retry.get_json()
    assert scalar("SELECT count(*) FROM orders") == 1
    assert scalar("SELECT stock FROM products WHERE id = :i", i=product.id) == 3
    assert scalar("SELECT coalesce(sum(quantity), 0) FROM cart_items") == 0
    _books_balance()


# --- statement_timeout / lock_timeout hit while a checkout waits on a lock ------------


@contextmanager
def held(sql: str, **params):
    """Another transaction runs `sql` (takes a lock) and keeps it until the block ends."""
    with psycopg.connect(LIBPQ_URL, autocommit=True) as holder:
        holder.execute("BEGIN")
        holder.execute(sql, params)
        try:
            yield
        finally:
            holder.execute("ROLLBACK")


TIMEOUTS = {
    "statement_timeout": "-c statement_timeout=300",
    "lock_timeout": "-c statement_timeout=30000 -c lock_timeout=300",
}
LOCKS = {
    "the product row": "SELECT 1 FROM products WHERE id = %(product)s FOR UPDATE",
    "the outbox table": "LOCK TABLE outbox IN EXCLUSIVE MODE",
    "the user row": "SELECT 1 FROM users WHERE id = %(user)s FOR UPDATE",
}


@pg_only
@pytest.mark.parametrize("timeout", TIMEOUTS)
@pytest.mark.parametrize("lock", LOCKS)
def test_a_checkout_that_times_out_on_a_lock_is_a_503_and_its_key_retries(
    make_app, buyer, make_product, timeout, lock
):
    user, token = buyer
    product = make_product(stock=5)
    options = {"connect_args": {"options": TIMEOUTS[timeout]}, "hide_parameters": True}
    client = make_app(overrides={"SQLALCHEMY_ENGINE_OPTIONS": options}).test_client()
    fill_cart(client, token, (product, 2))
    key = {"Idempotency-Key": "timeout-" + uuid.uuid4().hex}
    with held(LOCKS[lock], product=product.id, user=user.id):
        started = time.monotonic()
        first = place_order(client, token, **key)
        elapsed = time.monotonic() - started
    body = first.get_json()
    assert first.status_code == 503, body
    assert body["code"] == "unavailable" and first.headers["Retry-After"] == "1"
    assert elapsed < 5, elapsed
    assert scalar("SELECT count(*) FROM orders") == 0
    assert scalar("SELECT stock FROM products WHERE id = :i", i=product.id) == 5
    assert scalar("SELECT coalesce(sum(quantity), 0) FROM cart_items") == 2
    retry = place_order(client, token, **key)
    assert retry.status_code == 201, retry.get_json()
    assert place_order(client, token, **key).get_json() == retry.get_json()
    assert scalar("SELECT count(*) FROM orders") == 1
    assert scalar("SELECT stock FROM products WHERE id = :i", i=product.id) == 3
    _books_balance()


# --- the pool exhausted: more concurrent checkouts than pool + overflow --------------

# SQLAlchemy's QueuePool in testing: 5 + 10 overflow connections per process.
POOL_ROOM = 15


def _keyed_checkout(live, token: str, key: str) -> tuple[int, dict]:
    try:
        return live.request(
            "POST", "/api/orders", SHIPPING, token, headers={"Idempotency-Key": key}, timeout=60
        )
    except OSError as error:  # the test fails on it below, with what happened
        return 0, {"error": repr(error)}


def _settle(live, token: str, key: str, timeout: float = 30) -> tuple[int, dict]:
    """Retry a keyed checkout until it has a final answer (not 503, not in flight)."""
    deadline = time.monotonic() + timeout
    while True:
        status, body = _keyed_checkout(live, token, key)
        transient = status == 503 or (status == 409 and body.get("code") == "idempotency_in_flight")
        if not transient or time.monotonic() > deadline:
            return status, body
        time.sleep(0.2)


@pg_only
@pytest.mark.server
def test_checkouts_past_the_pool_are_503s_and_every_key_settles_once(
    make_user, login, make_product
):
    product = make_product(stock=10)
    buyers = POOL_ROOM + 9
    tokens = buyers_with_carts(make_user, login, [(product, 1)], buyers)
    keys = [f"pool-{n}-{uuid.uuid4().hex}" for n in range(buyers)]
    env = {"DB_POOL_TIMEOUT": "1"}
    with gunicorn(DATABASE_URL, workers=1, threads=buyers + 2, extra_env=env) as live:
        with ThreadPoolExecutor(buyers) as pool:
            with held(LOCKS["the product row"], product=product.id):
                futures = [
                    pool.submit(_keyed_checkout, live, t, k)
                    for t, k in zip(tokens, keys, strict=True)
                ]
                # the requests the pool had no room for answer while the lock is held
                eventually(lambda: sum(f.done() for f in futures) >= buyers - POOL_ROOM, 20)
                health = live.request("GET", "/api/health", timeout=10)
            first = [f.result() for f in futures]
        for status, body in first:
            assert status in (201, 409, 503), (status, body)
            assert isinstance(body, dict) and body.get("code" if status != 201 else "id")
            if status == 503:
                assert body["code"] == "unavailable", body
            if status == 409:
                assert body["code"] == "out_of_stock", body
        assert sum(status == 503 for status, _ in first) >= buyers - POOL_ROOM, first
        assert health[0] in (200, 503) and isinstance(health[1], dict)
        final = [_settle(live, t, k) for t, k in zip(tokens, keys, strict=True)]
        for (status, body), (first_status, first_body) in zip(final, first, strict=True):
            assert status in (201, 409), (status, body)
            if status == 409:
                assert body["code"] == "out_of_stock", body
            if first_status in (201, 409):
                assert (status, body) == (first_status, first_body)
        replays = [_keyed_checkout(live, t, k) for t, k in zip(tokens, keys, strict=True)]
    assert replays == final
    assert sum(status == 201 for status, _ in final) == 10
    assert len({body["id"] for status, body in final if status == 201}) == 10
    assert scalar("SELECT count(*) FROM orders") == 10
    assert scalar("SELECT stock FROM products WHERE id = :i", i=product.id) == 0
    _books_balance()


# --- a gunicorn worker SIGKILLed under concurrent checkouts --------------------------


def _children(pid: int) -> list[int]:
    out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True, text=True)
    return [int(line) for line in out.stdout.split()]


def _worker_waiting_on_a_lock(workers: list[int]) -> int:
    """The worker one of whose PostgreSQL connections waits on a lock (its
    client port, found among the worker's sockets in /proc)."""
    with psycopg.connect(LIBPQ_URL, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT client_port FROM pg_stat_activity "
            "WHERE datname = current_database() AND wait_event_type = 'Lock'"
        ).fetchall()
    ports = {row[0] for row in rows}
    inodes = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if int(fields[1].split(":")[1], 16) in ports:
            inodes.add(fields[9])
    for pid in workers:
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            with suppress(OSError):
                if os.readlink(fd).removeprefix("socket:[").rstrip("]") in inodes:
                    return pid
    raise AssertionError("no worker's connection waits on the lock")


def _lock_waiters() -> int:
    return scalar(
        "SELECT count(*) FROM pg_stat_activity "
        "WHERE datname = current_database() AND wait_event_type = 'Lock'"
    )


@pg_only
@pytest.mark.server
def test_a_worker_killed_under_concurrent_checkouts_loses_and_doubles_nothing(
    make_user, login, make_product
):
    products = [make_product(stock=7, price="0.10"), make_product(stock=9, price="19.99")]
    lines = [(products[0], 2), (products[1], 1)]
    buyers = 12
    tokens = buyers_with_carts(make_user, login, lines, buyers)
    keys = [f"kill-{n}-{uuid.uuid4().hex}" for n in range(buyers)]
    env = {"IDEMPOTENCY_ABANDONED_AFTER": "2"}
    with gunicorn(DATABASE_URL, workers=2, threads=6, extra_env=env) as live:
        workers = _children(live.process.pid)
        assert len(workers) == 2
        with ThreadPoolExecutor(buyers) as pool:
            with held(LOCKS["the product row"], product=products[0].id):
                futures = [
                    pool.submit(_keyed_checkout, live, t, k)
                    for t, k in zip(tokens, keys, strict=True)
                ]
                eventually(lambda: _lock_waiters() >= 4, 20, "the checkouts never waited")
                os.kill(_worker_waiting_on_a_lock(workers), signal.SIGKILL)
                time.sleep(0.2)
            first = [f.result() for f in futures]
        assert any(status == 0 for status, _ in first), first  # some died with the worker
        for status, body in first:
            assert status in (0, 201, 409, 503), (status, body)
            if status == 409:
                assert body["code"] in ("out_of_stock", "idempotency_in_flight"), body
        eventually(lambda: len(_children(live.process.pid)) == 2, 20, "no new worker")
        # the dead worker's backends end their transactions
        eventually(lambda: _lock_waiters() == 0, 20)
        final = [_settle(live, t, k) for t, k in zip(tokens, keys, strict=True)]
        for status, body in final:
            assert status in (201, 409), (status, body)
            if status == 409:
                assert body["code"] == "out_of_stock", body
        replays = [_keyed_checkout(live, t, k) for t, k in zip(tokens, keys, strict=True)]
    assert replays == final
    placed = [body for status, body in final if status == 201]
    assert len(placed) == 3  # 7 units at 2 a cart
    assert scalar("SELECT count(*) FROM orders") == 3
    assert scalar("SELECT count(DISTINCT user_id) FROM orders") == 3
    for product, quantity in lines:
        assert (
            scalar("SELECT stock FROM products WHERE id = :i", i=product.id)
            + scalar(
                "SELECT coalesce(sum(quantity), 0) FROM order_items WHERE product_id = :i",
                i=product.id,
            )
            == product.stock
        )
        # every buyer's line is in their cart or in their order, never both, never neither
        assert (
            scalar(
                "SELECT count(*) FROM users u WHERE u.is_admin = false AND "
                "(SELECT coalesce(sum(c.quantity), 0) FROM cart_items c JOIN carts k ON "
                "k.id = c.cart_id WHERE k.user_id = u.id AND c.product_id = :p) + "
                "(SELECT coalesce(sum(i.quantity), 0) FROM order_items i JOIN orders o ON "
                "o.id = i.order_id WHERE o.user_id = u.id AND i.product_id = :p) <> :q",
                p=product.id,
                q=quantity,
            )
            == 0
        )
    for body in placed:
        assert body["total_amount"] == pytest.approx(20.19) and len(body["items"]) == 2
    _books_balance()


# --- a webhook, a cancel and the payment timeout at once on one order -----------------


def _in_thread(call):
    """Start `call` in a thread; the returned function joins it and gives its result."""
    result: dict = {}
    thread = threading.Thread(target=lambda: result.setdefault("value", call()), daemon=True)
    thread.start()

    def join():
        thread.join(60)
        return result["value"]

    return join


def _waiting_on_locks(count: int) -> None:
    eventually(lambda: _lock_waiters() >= count, 10, "the requests never waited on the lock")


@pg_only
@pytest.mark.parametrize("first", ["race", "race again", "webhook", "cancel", "sweep"])
def test_a_webhook_a_cancel_and_the_timeout_at_once_refund_and_restock_once(
    stripe_app,  # noqa: F811 - the imported fixture
    stripe_client,  # noqa: F811
    stripe_http,  # noqa: F811
    buyer,
    make_product,
    first,
):
    """The succeeded event of an unpaid order arrives as its owner cancels it
    and the payment-timeout sweep takes it: whichever wins, the order ends
    cancelled and refunded, the money goes back once, the stock once, and a
    redelivery of the event changes nothing. `first` orders them by a lock
    (the order's row; for the sweep, the product's, which it takes after the
    order's), or lets them race."""
    from app.services.payment_timeouts import cancel_expired_orders

    _, token = buyer
    product = make_product(stock=5, price="19.99")
    fill_cart(stripe_client, token, (product, 1))
    placed = place_order(stripe_client, token)
    assert placed.status_code == 201, placed.get_json()
    order_id = placed.get_json()["id"]
    refund = (200, {"id": "re_race", "object": "refund", "status": "succeeded"})
    stripe_http.answers = [refund, refund]  # one is used; a second would be a double refund
    payload = succeeded(order_id, intent_id="pi_race", event_id=f"evt_race_{order_id}")
    headers = {"Content-Type": "application/json", "Stripe-Signature": signed(payload)}

    def webhook():
        return stripe_client.post("/api/payments/webhook", data=payload, headers=headers)

    def cancel():
        return stripe_client.post(f"/api/orders/{order_id}/cancel", headers=auth(token))

    def sweep():
        with stripe_app.app_context():
            try:
                return [o.id for o in cancel_expired_orders(now=utcnow() + timedelta(days=1))]
            finally:
                db.session.remove()

    if first.startswith("race"):
        hook, cancelled, swept = race([webhook, cancel, sweep])
    elif first == "sweep":
        with held(LOCKS["the product row"], product=product.id):
            swept_done = _in_thread(sweep)
            _waiting_on_locks(1)
            hook_done, cancel_done = _in_thread(webhook), _in_thread(cancel)
            _waiting_on_locks(3)
        hook, cancelled, swept = hook_done(), cancel_done(), swept_done()
    else:
        one, other = (webhook, cancel) if first == "webhook" else (cancel, webhook)
        with held("SELECT 1 FROM orders WHERE id = %(order)s FOR UPDATE", order=order_id):
            one_done = _in_thread(one)
            _waiting_on_locks(1)
            other_done = _in_thread(other)
            _waiting_on_locks(2)
            swept = sweep()  # skips the order another writer holds
            assert swept == []
        hook, cancelled = (one_done(), other_done())[:: 1 if first == "webhook" else -1]
    assert hook.status_code == 200, hook.get_json()
    assert cancelled.status_code in (200, 409), cancelled.get_json()
    if cancelled.status_code == 409:
        assert cancelled.get_json()["code"] == "invalid_transition"
    else:
        assert cancelled.get_json()["status"] == "cancelled"
    assert swept in ([], [order_id])
    assert (cancelled.status_code == 200) != (swept == [order_id])
    assert scalar("SELECT status FROM orders WHERE id = :i", i=order_id) == "cancelled"
    assert scalar("SELECT payment_status FROM orders WHERE id = :i", i=order_id) == "refunded"
    refunds = [r for r in stripe_http.requests if r["path"] == "/v1/refunds"]
    assert len(refunds) == 1, stripe_http.requests
    assert refunds[0]["form"]["amount"] == "1999"
    assert scalar("SELECT stock FROM products WHERE id = :i", i=product.id) == 5
    assert scalar("SELECT count(*) FROM stock_movements WHERE reason = 'cancel'") == 1
    assert scalar("SELECT count(*) FROM order_status_history WHERE status = 'cancelled'") == 1
    assert scalar("SELECT count(*) FROM payments WHERE status = 'refunded'") == 1
    assert webhook().status_code == 200  # a redelivery changes nothing
    assert len([r for r in stripe_http.requests if r["path"] == "/v1/refunds"]) == 1
    _books_balance()


# --- reads whose connection dies: answered again on a new one -------------------------

READS = [
    "/api/cart",
    "/api/orders",
    "/api/orders/{order}",
    "/api/products",
    "/api/products/{product}",
    "/api/products/facets",
    "/api/auth/profile",
    "/api/health",
]


@contextmanager
def terminated_at(step: int, engine):
    """Terminate the backend that runs `engine`'s `step`th statement (from 0) in the block."""
    seen: list[str] = []

    def statement(conn, _cursor, text_, *_args):
        if len(seen) == step:
            _terminate(conn.connection.dbapi_connection.info.backend_pid)
        seen.append(text_)

    event.listen(engine, "before_cursor_execute", statement)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", statement)


@pg_only
@pytest.mark.parametrize(
    ("path", "step"),
    [(path, 0) for path in READS] + [("/api/cart", 1), ("/api/orders", 1)],
)
def test_a_read_whose_backend_dies_mid_request_answers_200(
    make_app, buyer, make_product, path, step
):
    """README: a read whose connection the database dropped runs once more
    on a new one. Caches off, so each read reaches the database."""
    _, token = buyer
    uncached = {"CATALOG_CACHE": False, "ACCOUNT_CACHE_TTL": 0}
    other = make_app(overrides=uncached)
    client = other.test_client()
    product = make_product(stock=5)
    fill_cart(client, token, (product, 1))
    order = place_order(client, token).get_json()
    path = path.format(order=order["id"], product=product.id)
    client.get(path, headers=auth(token))  # the thread keeps a read connection
    with other.app_context():
        engine = db.engine
    with terminated_at(step, engine) as seen:
        response = client.get(path, headers=auth(token))
    body = response.get_json()
    assert body is not None, response.data
    assert len(seen) > step + 1, seen  # killed at `step`, then run again
    assert response.status_code == 200, (seen, body)


@pg_only
def test_a_checkout_whose_release_also_dies_frees_its_key_soon(client, buyer, make_product):
    """Two faults in a row: the checkout's backend dies at its stock UPDATE
    (a 503), then the backend of the claim's release dies too. The release
    is left pending and made in the background: a retry with the key is a
    clear 409 `idempotency_in_flight` at worst, and soon places the order once."""
    _, token = buyer
    product = make_product(stock=5)
    fill_cart(client, token, (product, 2))
    key = {"Idempotency-Key": "twice-" + uuid.uuid4().hex}
    killed: list[str] = []

    def statement(conn, _cursor, text_, *_args):
        stock_update = text_.startswith("UPDATE products") and not killed
        release = text_.startswith("DELETE FROM idempotency_keys") and "claim_token" in text_
        if stock_update or (release and len(killed) == 1):
            killed.append(text_.split("(")[0])
            _terminate(conn.connection.dbapi_connection.info.backend_pid)

    event.listen(db.engine, "before_cursor_execute", statement)
    try:
        first = place_order(client, token, **key)
    finally:
        event.remove(db.engine, "before_cursor_execute", statement)
    assert len(killed) == 2, killed
    assert first.status_code == 503 and first.get_json()["code"] == "unavailable"
    answers = []

    def settled() -> bool:
        answers.append(place_order(client, token, **key))
        if answers[-1].status_code == 409:
            assert answers[-1].get_json()["code"] == "idempotency_in_flight"
            return False
        return True

    eventually(settled, 10, "the key was never released")
    assert answers[-1].status_code == 201, answers[-1].get_json()
    assert place_order(client, token, **key).get_json() == answers[-1].get_json()
    assert scalar("SELECT count(*) FROM orders") == 1
    assert scalar("SELECT stock FROM products WHERE id = :i", i=product.id) == 3
    _books_balance()


# --- a backend terminated at each statement of a pay, and of a cancel -----------------


@pg_only
@pytest.mark.parametrize("action", ["pay", "cancel", "pay then cancel"])
def test_a_pay_or_cancel_whose_backend_dies_at_any_step_is_503_or_done_once(
    client, buyer, make_product, action
):
    _, token = buyer
    product = make_product(stock=500, price="0.10")

    def fresh_order() -> int:
        fill_cart(client, token, (product, 3))
        response = place_order(client, token)
        assert response.status_code == 201, response.get_json()
        if action == "pay then cancel":
            assert pay(client, token, response.get_json()["id"]).status_code == 200
        return response.get_json()["id"]

    def act(order_id: int):
        if action == "pay":
            return pay(client, token, order_id)
        return client.post(f"/api/orders/{order_id}/cancel", headers=auth(token))

    steps = 0
    for step in itertools.count():
        order_id = fresh_order()
        with killed_at(step) as seen:
            first = act(order_id)
        steps += 1
        if len(seen) <= step:  # ran past the last statement: nothing was killed
            assert first.status_code == 200, first.get_json()
            break
        assert first.status_code in (200, 503), (step, first.get_json())
        assert first.get_json()["code" if first.status_code == 503 else "id"]
        if first.status_code == 503:
            want = ("pending", "unpaid") if action == "pay" else None
            row = (
                scalar("SELECT status FROM orders WHERE id = :i", i=order_id),
                scalar("SELECT payment_status FROM orders WHERE id = :i", i=order_id),
            )
            assert row == (want or ("processing" if "pay" in action else "pending", row[1]))
        retry = act(order_id)
        if first.status_code == 200:
            assert retry.status_code == 409, retry.get_json()
        else:
            assert retry.status_code == 200, (step, retry.get_json())
        final = client.get(f"/api/orders/{order_id}", headers=auth(token)).get_json()
        if action == "pay":
            assert (final["status"], final["payment_status"]) == ("processing", "paid")
        else:
            assert final["status"] == "cancelled"
            assert final["payment_status"] == ("refunded" if "pay" in action else "unpaid")
        assert [e["status"] for e in final["status_history"]].count(final["status"]) == 1
        _books_balance()
    assert steps > 5
    assert scalar("SELECT stock FROM products WHERE id = :i", i=product.id) == (
        500 - 3 * steps if action == "pay" else 500
    )
    assert scalar("SELECT count(*) FROM payments WHERE status IN ('succeeded', 'refunded')") == (
        0 if action == "cancel" else steps
    )
