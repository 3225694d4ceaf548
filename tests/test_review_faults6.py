"""Review (faults and operations, round 6): real faults on real processes.
PostgreSQL backends terminated mid-request (`pg_terminate_backend`), a
gunicorn worker SIGKILLed mid-checkout, Redis paused under a running
gunicorn, migrations down and up with data, the CLI with odd arguments."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import threading
import time
import uuid
from contextlib import contextmanager
from pathlib import Path

import psycopg
import pytest
from sqlalchemy import event, text

from app.extensions import db
from app.services.outbox import queue_email
from tests.helpers import (
    DATABASE_URL,
    IS_POSTGRES,
    SHIPPING,
    auth,
    fill_cart,
    place_order,
    run_in_new_process,
    scalar,
)
from tests.live import eventually, gunicorn
from tests.test_celery import _verify_context
from tests.test_review_faults import paused_redis  # noqa: F401 - a fixture

ROOT = Path(__file__).resolve().parent.parent
pg_only = pytest.mark.skipif(not IS_POSTGRES, reason="terminating backends is PostgreSQL's")
LIBPQ_URL = DATABASE_URL.replace("postgresql+psycopg://", "postgresql://")


def _terminate(pid: int) -> None:
    with psycopg.connect(LIBPQ_URL, autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", (pid,))


# --- the outbox: a send that succeeded is never a failed attempt ----------------------


@pg_only
def test_an_email_sent_whose_sent_mark_meets_a_dropped_connection_is_not_failed(
    app, make_user, smtp_server, deliver_outbox
):
    """README (Email): "A worker killed mid-delivery leaves its row to the
    next worker ... (a crash between the SMTP server's "250" and the `sent`
    mark, or a send cut at its deadline ... are the only ways to get a copy
    twice"; a failure is "SMTP down, a 4xx reply, ..."; after
    MAIL_MAX_ATTEMPTS "the row is `failed` and an ERROR is logged".
    Here the relay accepts the email and the database connection is lost
    (a restart, a failover) as the worker records it sent: `deliver_batch`
    catches that error as if the *send* had failed and records a failed
    attempt on a new connection. With MAIL_MAX_ATTEMPTS=1 the delivered email
    is marked `failed` (logged as an ERROR, listed by `flask mail failed`,
    sent again by `flask mail retry --all`); with more attempts its retry is
    scheduled, and it goes out a second time."""
    user = make_user()
    queue_email(user.email, "verify_email", _verify_context(user))
    db.session.commit()
    dropped = []

    def drop_at_the_sent_mark(conn, _cursor, statement, *_args):
        if not dropped and statement.lstrip().upper().startswith("UPDATE OUTBOX SET STATUS"):
            dropped.append(True)
            _terminate(conn.connection.dbapi_connection.info.backend_pid)

    saved = app.config["MAIL_MAX_ATTEMPTS"]
    app.config["MAIL_MAX_ATTEMPTS"] = 1
    event.listen(db.engine, "before_cursor_execute", drop_at_the_sent_mark)
    try:
        deliver_outbox()
    finally:
        event.remove(db.engine, "before_cursor_execute", drop_at_the_sent_mark)
        app.config["MAIL_MAX_ATTEMPTS"] = saved
    assert dropped
    assert len(smtp_server.messages) == 1  # the relay took it
    status, error = db.session.execute(text("SELECT status, last_error FROM outbox")).one()
    db.session.rollback()
    assert status == "sent", (status, error)


# --- a PostgreSQL backend terminated mid-request -------------------------------------


def _waiting_backend(query_start: str, timeout: float = 10) -> int:
    """The pid of the backend of this database waiting on a lock whose query
    starts with `query_start`."""
    found: list[int] = []

    def waiting() -> bool:
        with psycopg.connect(LIBPQ_URL, autocommit=True) as conn:
            rows = conn.execute(
                "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
                "AND wait_event_type = 'Lock' AND query ILIKE %s",
                (query_start + "%",),
            ).fetchall()
        found[:] = [row[0] for row in rows]
        return bool(found)

    eventually(waiting, timeout, f"no backend waiting in {query_start!r}")
    return found[0]


@contextmanager
def table_locked(table: str):
    """Another session holds `table` in EXCLUSIVE mode (reads pass, writes wait)."""
    with psycopg.connect(LIBPQ_URL, autocommit=True) as holder:
        holder.execute("BEGIN")
        holder.execute(f"LOCK TABLE {table} IN EXCLUSIVE MODE")
        try:
            yield
        finally:
            holder.execute("ROLLBACK")


@pg_only
def test_a_checkout_whose_backend_is_terminated_mid_way_is_a_503_and_writes_nothing(
    client, buyer, make_product
):
    """docs/API.md: a database that cannot answer is a 503 the client may
    retry; the checkout is all or nothing; a server error is not kept for
    the Idempotency-Key. The checkout's backend is terminated while it waits
    to write its email (its cart lines deleted, stock taken, order inserted,
    all uncommitted): 503 with Retry-After, no order, the stock and the cart
    as before, and the retry with the same key places the order once."""
    _, token = buyer
    product = make_product(stock=5)
    fill_cart(client, token, (product, 2))
    answers = []
    key = {"Idempotency-Key": "killed-" + uuid.uuid4().hex}
    with table_locked("outbox"):
        worker = threading.Thread(
            target=lambda: answers.append(place_order(client, token, **key)), daemon=True
        )
        worker.start()
        _terminate(_waiting_backend("INSERT INTO outbox"))
        worker.join(15)
    assert answers, "the checkout never answered"
    first = answers[0]
    assert first.status_code == 503, first.get_json()
    assert first.get_json()["code"] == "unavailable" and first.headers["Retry-After"] == "1"
    assert scalar("SELECT count(*) FROM orders") == 0
    assert scalar("SELECT stock FROM products WHERE id = :i", i=product.id) == 5
    assert scalar("SELECT count(*) FROM stock_movements WHERE reason = 'order'") == 0
    assert scalar("SELECT coalesce(sum(quantity), 0) FROM cart_items") == 2
    assert scalar("SELECT count(*) FROM outbox") == 0

    retry = place_order(client, token, **key)  # the pool serves the next request
    assert retry.status_code == 201, retry.get_json()
    assert scalar("SELECT stock FROM products WHERE id = :i", i=product.id) == 3
    replay = place_order(client, token, **key)
    assert replay.status_code == 201 and replay.get_json() == retry.get_json()
    assert scalar("SELECT count(*) FROM orders") == 1


# --- a gunicorn worker SIGKILLed mid-checkout ------------------------------------------


def _children(pid: int) -> list[int]:
    out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True, text=True)
    return [int(line) for line in out.stdout.split()]


@contextmanager
def writes_held():
    """Hold the database's writers: PostgreSQL's outbox table (a checkout
    waits at its last INSERT, everything before it done), SQLite's write lock."""
    if IS_POSTGRES:
        with table_locked("outbox"):
            yield
        return
    import sqlite3

    holder = sqlite3.connect(db.engine.url.database, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        yield
    finally:
        holder.execute("ROLLBACK")
        holder.close()


@pytest.mark.server
def test_a_worker_killed_mid_checkout_leaves_no_order_and_the_key_recovers(
    make_user, login, make_product
):
    """README (Orders): a claim whose request has run longer than
    IDEMPOTENCY_ABANDONED_AFTER "may be taken over by a retry"; checkout is
    all or nothing. The only gunicorn worker is SIGKILLed while its checkout
    waits to write: no order, stock and cart as before; a retry with the key
    is a 409 `idempotency_in_flight` until the claim is abandoned, then
    places the order once, and a second retry replays it."""
    user = make_user()
    token = login(user)["access_token"]
    product = make_product(stock=5)
    # The claim must still be young when the first retry arrives, after a new
    # worker has started: under CI load that took over a second (stop 41).
    env = {"IDEMPOTENCY_ABANDONED_AFTER": "6", "SQLITE_BUSY_TIMEOUT_MS": "20000"}
    key = {"Idempotency-Key": "sigkill-" + uuid.uuid4().hex}
    with gunicorn(DATABASE_URL, workers=1, threads=2, extra_env=env) as live:
        status, _ = live.request(
            "POST", "/api/cart", {"product_id": product.id, "quantity": 2}, token
        )
        assert status == 201
        (victim,) = _children(live.process.pid)
        failures = []

        def checkout() -> None:
            try:
                live.request("POST", "/api/orders", SHIPPING, token, headers=key, timeout=15)
            except OSError as error:  # the worker died under it
                failures.append(error)

        thread = threading.Thread(target=checkout, daemon=True)
        with writes_held():
            thread.start()
            if IS_POSTGRES:
                _waiting_backend("INSERT INTO outbox")
            else:
                time.sleep(1)
            os.kill(victim, signal.SIGKILL)
            thread.join(10)
        assert failures, "the checkout answered though its worker was killed"
        eventually(lambda: _children(live.process.pid) not in ([], [victim]), 20, "no new worker")
        eventually(lambda: live.request("GET", "/api/health", timeout=5)[0] == 200, 20)
        if IS_POSTGRES:  # the dead worker's backend ends its transaction
            eventually(
                lambda: (
                    scalar(
                        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                        "AND query ILIKE 'INSERT INTO outbox%' AND state <> 'idle'"
                    )
                    == 0
                ),
                10,
            )
        assert scalar("SELECT count(*) FROM orders") == 0
        assert scalar("SELECT stock FROM products WHERE id = :i", i=product.id) == 5
        assert scalar("SELECT coalesce(sum(quantity), 0) FROM cart_items") == 2

        status, body = live.request("POST", "/api/orders", SHIPPING, token, headers=key)
        if IS_POSTGRES:  # the claim committed before the view ran
            assert (status, body.get("code")) == (409, "idempotency_in_flight"), body
            answers = []

            def taken_over() -> bool:
                answers.append(live.request("POST", "/api/orders", SHIPPING, token, headers=key))
                return answers[-1][0] != 409

            eventually(taken_over, 15, "the abandoned claim was never taken over")
            status, body = answers[-1]
        assert status == 201, body
        assert live.request("POST", "/api/orders", SHIPPING, token, headers=key) == (201, body)
    assert scalar("SELECT count(*) FROM orders") == 1
    assert scalar("SELECT stock FROM products WHERE id = :i", i=product.id) == 3
    assert scalar("SELECT sum(delta) FROM stock_movements WHERE product_id = :i", i=product.id) == 3


# --- migrations: down and up again with data present -----------------------------------


def _schema() -> set[tuple]:
    """Every index, trigger, function body, column and constraint of the schema."""
    if IS_POSTGRES:
        queries = [
            "SELECT 'index', indexname, indexdef FROM pg_indexes WHERE schemaname = 'public'",
            "SELECT 'trigger', tgname, pg_get_triggerdef(oid) FROM pg_trigger "
            "WHERE NOT tgisinternal",
            "SELECT 'function', proname, prosrc FROM pg_proc "
            "WHERE pronamespace = 'public'::regnamespace",
            "SELECT 'column', table_name || '.' || column_name, data_type || ' ' || "
            "coalesce(generation_expression, '') || ' ' || coalesce(column_default, '') "
            "FROM information_schema.columns WHERE table_schema = 'public'",
            "SELECT 'constraint', conname, pg_get_constraintdef(oid) FROM pg_constraint "
            "WHERE connamespace = 'public'::regnamespace",
        ]
    else:
        queries = ["SELECT type, name, sql FROM sqlite_master WHERE name NOT LIKE 'sqlite_%'"]
    with db.engine.connect() as conn:
        rows = {tuple(row) for query in queries for row in conn.exec_driver_sql(query)}
    if IS_POSTGRES:
        return rows
    return {
        (kind, name, _constraints_sorted(sql) if kind == "table" else sql)
        for kind, name, sql in rows
    }


def _constraints_sorted(sql: str) -> str:
    """A SQLite table's DDL with its table constraints in one order: a batch
    rebuild (f43e8b2d4c17 and its downgrade) writes them in the order it
    reflected them, which means nothing to SQLite; the columns keep theirs."""
    lines = [line.strip().rstrip(",").strip() for line in sql.splitlines()]
    constraints = sorted(line for line in lines if line.startswith("CONSTRAINT"))
    return "\n".join([line for line in lines if not line.startswith("CONSTRAINT")] + constraints)


def _search(client, q: str) -> list[str]:
    response = client.get("/api/products", query_string={"q": q})
    assert response.status_code == 200, response.get_json()
    return sorted(item["name"] for item in response.get_json()["items"])


@pytest.mark.filterwarnings("ignore:Skipped unsupported reflection")
@pytest.mark.parametrize("target", ["f38b4e6a8c12", "f37a2c4e6b89", "f29a1c3e5b70"])
def test_a_downgrade_and_upgrade_with_data_keeps_the_schema_and_the_data(
    client, make_product, make_user, target
):
    """`flask db downgrade` then `upgrade` (a rolled-back release) must give
    back the schema head makes, and keep every row: the search (the sigma
    fold of f38b4e6a8c12), the suggestions' vocabulary and the rating recount
    trigger (f39c5a7e2b16) work as before."""
    from flask_migrate import downgrade, upgrade

    lens = make_product(name="ΦΑΚΟΣ Lens", stock=3)
    make_product(name="Φακος Case", stock=4)
    buyer = make_user()
    db.session.execute(
        text(
            "INSERT INTO reviews (product_id, user_id, rating, title, body, created_at, "
            "updated_at) VALUES (:p, :u, 4, '', '', :t, :t)"
        ),
        {"p": lens.id, "u": buyer.id, "t": "2026-01-01 00:00:00"},
    )
    db.session.execute(
        text(
            "UPDATE products SET rating_count = 1, rating_sum = 4, rating_average = 4 WHERE id = :p"
        ),
        {"p": lens.id},
    )
    db.session.commit()
    before = _schema()
    counts = {t: scalar(f"SELECT count(*) FROM {t}") for t in ("products", "reviews", "users")}  # noqa: S608
    db.session.remove()
    try:
        downgrade(revision=target)
    finally:
        db.session.remove()
        upgrade()
    assert _schema() == before
    assert {t: scalar(f"SELECT count(*) FROM {t}") for t in counts} == counts  # noqa: S608
    assert _search(client, "ΦΑΚΟΣ") == sorted(["Φακος Case", "ΦΑΚΟΣ Lens"])
    suggestions = client.get("/api/products/suggest", query_string={"q": "φακ"}).get_json()
    assert sorted(suggestions["suggestions"]) == sorted(["Φακος Case", "ΦΑΚΟΣ Lens"])
    db.session.execute(text("DELETE FROM reviews WHERE product_id = :p"), {"p": lens.id})
    db.session.commit()
    detail = client.get(f"/api/products/{lens.id}").get_json()
    assert (detail["rating_count"], detail["rating_average"]) == (0, None)


# --- Redis restarted under a Celery worker and a web app ------------------------------

FAST = {
    "OUTBOX_SWEEP_INTERVAL": "0.5",
    "OUTBOX_SWEEP_GRACE": "0",
    "OUTBOX_LEASE": "3",
    "MAIL_TIMEOUT": "2",
}


@pytest.mark.server
@pytest.mark.skipif(shutil.which("redis-server") is None, reason="redis-server is not installed")
def test_an_order_placed_after_a_redis_restart_is_emailed(
    make_app, make_user, login, make_product, smtp_server
):
    """README: a row whose enqueue was lost (Redis down at that moment) waits
    and the beat re-enqueues it; "the broker only carries row ids; the
    database stays the truth". Redis (no persistence) is restarted under a
    running worker and web app: the next order's confirmation is delivered."""
    from tests.live import celery_worker, free_port
    from tests.test_faults import redis_server

    port = free_port()
    url = f"redis://127.0.0.1:{port}/0"
    web = make_app("testing", {"BACKGROUND_MODE": "celery", "REDIS_URL": url})
    client = web.test_client()
    user = make_user()
    token = login(user)["access_token"]
    env = {**FAST, **smtp_server.env()}
    redis = redis_server(port)
    redis.__enter__()
    try:
        with celery_worker(DATABASE_URL, url, name="steady", extra_env=env):
            fill_cart(client, token, (make_product(stock=5), 1))
            assert place_order(client, token).status_code == 201
            smtp_server.wait_for(1, timeout=20)
            redis.__exit__(None, None, None)
            redis = None
            redis = redis_server(port)
            redis.__enter__()
            fill_cart(client, token, (make_product(stock=5), 1))
            second = place_order(client, token)
            assert second.status_code == 201
            smtp_server.wait_for(2, timeout=20)
            eventually(lambda: scalar("SELECT count(*) FROM outbox WHERE status = 'sent'") == 2)
    finally:
        if redis is not None:
            redis.__exit__(None, None, None)
    subjects = [m["Subject"] for m in smtp_server.messages]
    assert f"Shop: order #{second.get_json()['id']} confirmed" in subjects


# --- the embedded worker: a gunicorn worker SIGKILLed mid-email ------------------------


@pytest.mark.server
def test_an_email_whose_gunicorn_worker_was_killed_mid_send_is_sent_after_the_lease(
    make_user, login, make_product, smtp_server
):
    """README (Email): without REDIS_URL each app process delivers in a
    thread; "A worker killed mid-delivery leaves its row to the next worker
    once the lease (`OUTBOX_LEASE`) ends, so delivery is at least once". The
    only gunicorn worker is SIGKILLed while its thread waits in the relay's
    DATA step: its replacement (after its first request) sends the email."""
    user = make_user()
    token = login(user)["access_token"]
    product = make_product(stock=5)
    env = {**FAST, **smtp_server.env(), "BACKGROUND_MODE": "thread"}
    smtp_server.sink.stall = 8
    with gunicorn(DATABASE_URL, workers=1, threads=2, extra_env=env) as live:
        (victim,) = _children(live.process.pid)
        assert live.request("POST", "/api/cart", {"product_id": product.id}, token)[0] == 201
        status, order = live.request("POST", "/api/orders", SHIPPING, token)
        assert status == 201
        eventually(lambda: smtp_server.sink.attempts > 0, 10, "the thread never sent")
        os.kill(victim, signal.SIGKILL)
        smtp_server.sink.stall = 0
        eventually(lambda: _children(live.process.pid) not in ([], [victim]), 20, "no new worker")
        eventually(lambda: live.request("GET", "/api/health", timeout=5)[0] == 200, 20)
        eventually(
            lambda: scalar("SELECT status FROM outbox") == "sent", 20, "the email was not sent"
        )
    subjects = [m["Subject"] for m in smtp_server.messages]
    assert f"Shop: order #{order['id']} confirmed" in subjects


@pytest.mark.server
def test_a_worker_killed_after_its_checkout_committed_replays_the_order_to_the_retry(
    own_redis, client, make_user, login, make_product
):
    """The worker dies after the commit, before its answer reaches the client
    (here: while the broker, paused, holds the enqueue of the confirmation).
    The retry with the same Idempotency-Key replays the order committed (201,
    the same body), and nothing is ordered twice."""
    url, redis_process = own_redis
    user = make_user()
    token = login(user)["access_token"]
    product = make_product(stock=5)
    fill_cart(client, token, (product, 2))
    env = {"REDIS_URL": url, "BACKGROUND_MODE": "celery"}
    key = {"Idempotency-Key": "after-commit-" + uuid.uuid4().hex}
    with gunicorn(DATABASE_URL, workers=1, threads=2, extra_env=env) as live:
        (victim,) = _children(live.process.pid)
        failures = []

        def checkout() -> None:
            try:
                failures.append(live.request("POST", "/api/orders", SHIPPING, token, headers=key))
            except OSError as error:
                failures.append(error)

        thread = threading.Thread(target=checkout, daemon=True)
        os.kill(redis_process.pid, signal.SIGSTOP)
        try:
            thread.start()
            eventually(lambda: scalar("SELECT count(*) FROM orders") == 1, 10, "no order")
            os.kill(victim, signal.SIGKILL)
            thread.join(10)
        finally:
            os.kill(redis_process.pid, signal.SIGCONT)
        assert failures and isinstance(failures[0], OSError), failures
        eventually(lambda: _children(live.process.pid) not in ([], [victim]), 20, "no new worker")
        eventually(lambda: live.request("GET", "/api/health", timeout=5)[0] == 200, 20)
        status, body = live.request("POST", "/api/orders", SHIPPING, token, headers=key)
    assert status == 201, body
    assert body["id"] == scalar("SELECT id FROM orders")
    assert scalar("SELECT count(*) FROM orders") == 1
    assert scalar("SELECT stock FROM products WHERE id = :i", i=product.id) == 3
    assert scalar("SELECT count(*) FROM outbox WHERE status = 'pending'") == 1  # swept later


# --- a PostgreSQL that takes no writes now (a standby, a maintenance window) ------------


@pg_only
def test_a_write_to_a_read_only_postgresql_is_a_503_not_a_500(
    make_app, make_user, login, make_product
):
    """docs/API.md: 500 is for unexpected errors; a database that cannot
    serve the request now is a 503 `unavailable` with Retry-After (the error
    module: "A database that cannot answer now ... is a 503 the client may
    retry"). During a failover or a maintenance window PostgreSQL refuses
    writes ("cannot execute INSERT in a read-only transaction", SQLSTATE
    25006: a hot standby, `default_transaction_read_only`); psycopg raises
    that as an InternalError, which reached the catch-all: 500
    `internal_error` and a logged traceback for every write, while reads
    and /api/health answered 200."""
    product = make_product(stock=5)
    token = login(make_user())["access_token"]
    read_only = make_app(
        "testing",
        {
            "SQLALCHEMY_ENGINE_OPTIONS": {
                "connect_args": {"options": "-c default_transaction_read_only=on"}
            }
        },
    )
    client = read_only.test_client()
    assert client.get(f"/api/products/{product.id}").status_code == 200
    response = client.post("/api/cart", json={"product_id": product.id}, headers=auth(token))
    assert response.status_code == 503, response.get_json()
    assert response.get_json()["code"] == "unavailable"
    assert response.headers["Retry-After"] == "1"
    assert scalar("SELECT count(*) FROM cart_items") == 0


# --- the CLI with odd arguments -------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["seed", "--products", "0"], "0 is not in the range"),
        (["seed", "--products", "many"], "is not a valid integer"),
        (["seed", "extra"], "unexpected extra argument"),
        (["mail", "retry"], "give message ids, or --all"),
        (["mail", "retry", "0"], "0 is not in the range"),
        (["mail", "retry", "99999999999"], "is not in the range"),
        (["mail", "failed", "--limit", "-1"], "is not in the range"),
        (["cancel-expired-orders", "now"], "unexpected extra argument"),
        (["create-admin"], "Missing option '--username'"),
        (
            ["create-admin", "--username", "x", "--email", "x@example.com", "--password", "p"],
            "3-80",
        ),
        (
            ["create-admin", "--username", "ops", "--email", "not-an-email", "--password", "p" * 9],
            "Not a valid email address",
        ),
        (
            ["create-admin", "--username", "ops", "--email", "ops@example.com", "--password", "p"],
            "Length must be between 8 and 128",
        ),
    ],
)
def test_cli_odd_arguments_are_clear_errors_not_tracebacks(app, args, message):
    result = app.test_cli_runner().invoke(args=args)
    assert result.exit_code in (1, 2), (result.exit_code, result.output)
    assert isinstance(result.exception, SystemExit), result.exception
    assert "Error:" in result.output and message in result.output, result.output
    assert "Traceback" not in result.output


def test_health_answers_quickly_while_redis_does_not_answer(paused_redis, make_app):  # noqa: F811
    """README: Redis down is reported ("degraded") but stays a 200, so a
    balancer keeps every instance. With Redis accepting connections but
    answering nothing (paused, a partition), each health check waited out a
    1 s ping: a balancer whose check times out at 1 s (Kubernetes' default)
    took every instance out, the outage the 200 is there to avoid. The ping
    now gives up after a quarter of a second."""
    client = make_app(overrides={"REDIS_URL": paused_redis.url}).test_client()
    assert client.get("/api/health").get_json()["redis"] == "ok"
    paused_redis.pause()
    try:
        for _ in range(2):
            started = time.monotonic()
            response = client.get("/api/health")
            elapsed = time.monotonic() - started
            assert response.status_code == 200
            assert response.get_json()["redis"] == "unavailable"
            assert response.get_json()["status"] == "degraded"
            assert elapsed < 0.6, elapsed
    finally:
        paused_redis.resume()


@pytest.mark.parametrize(
    "args",
    [
        ["seed"],
        ["create-admin", "--username", "ops", "--email", "ops@example.com", "--password", "p" * 9],
        ["cancel-expired-orders"],
        ["mail", "failed"],
        ["mail", "retry", "--all"],
        ["mail", "deliver"],
    ],
)
def test_cli_on_a_database_with_no_tables_says_to_migrate_first(tmp_path, args):
    """A command run before `flask db upgrade` (a newcomer's first step
    skipped, a new database URL) printed a SQL traceback ("no such table");
    it is a one-line error naming the command to run."""
    result = run_in_new_process(
        tmp_path, ["-m", "flask", *args], FLASK_APP="app:create_app", FLASK_CONFIG="development"
    )
    output = result.stdout + result.stderr
    assert result.returncode == 1, (result.returncode, output)
    assert "flask db upgrade" in output, output
    assert "Traceback" not in output, output
