"""Faults degrade instead of failing: Redis stopped and restarted under a
running gunicorn (a redis-server this test starts on a free port of its own),
a database server that never answers, and requests gunicorn itself refuses."""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from contextlib import contextmanager

import pytest

from tests.helpers import DATABASE_URL, PASSWORD
from tests.live import free_port, gunicorn

REDIS_SERVER = shutil.which("redis-server")


@contextmanager
def redis_server(port: int):
    """A private redis-server without persistence (as a restart loses all)."""
    workdir = tempfile.mkdtemp(prefix="shop-redis-")
    process = subprocess.Popen(
        [REDIS_SERVER, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
         "--appendonly", "no", "--dir", workdir],
        stdout=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
                    sock.sendall(b"PING\r\n")
                    if sock.recv(16).startswith(b"+PONG"):
                        break
            except OSError:
                pass
            assert time.monotonic() < deadline, "redis-server did not start"
            time.sleep(0.05)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        process.terminate()
        process.wait(10)
        shutil.rmtree(workdir, ignore_errors=True)


@pytest.mark.server
@pytest.mark.skipif(REDIS_SERVER is None, reason="redis-server is not installed")
def test_redis_down_degrades_and_a_restart_brings_no_token_back(make_user):
    port = free_port()
    url = f"redis://127.0.0.1:{port}/0"
    env = {
        "REDIS_URL": url,
        "RATELIMIT_ENABLED": "true",
        "RATELIMIT_STORAGE_URI": url,
        "RATELIMIT_KEY_PREFIX": f"faults-{uuid.uuid4().hex}",
    }
    user = make_user()
    credentials = {"email": user.email, "password": PASSWORD}
    redis = redis_server(port)
    redis.__enter__()
    try:
        with gunicorn(DATABASE_URL, workers=2, threads=2, extra_env=env) as live:
            assert live.request("GET", "/api/health") == (
                200,
                {"status": "ok", "database": "ok", "redis": "ok"},
            )
            status, tokens = live.request("POST", "/api/auth/login", credentials)
            assert status == 200
            kept, revoked = tokens["access_token"], tokens["refresh_token"]

            redis.__exit__(None, None, None)  # Redis goes away
            redis = None
            for _ in range(4):  # every worker meets the dead Redis
                assert live.request("GET", "/api/products")[0] == 200
                assert live.request("GET", "/api/auth/profile", token=kept)[0] == 200
            assert live.request("POST", "/api/auth/login", credentials)[0] == 200
            assert live.request("GET", "/api/health") == (
                200,
                {"status": "degraded", "database": "ok", "redis": "unavailable"},
            )
            # Revocation keeps working without Redis.
            status, _ = live.request(
                "POST", "/api/auth/logout", {"refresh_token": revoked}, token=kept
            )
            assert status == 200
            assert live.request("GET", "/api/auth/profile", token=kept)[0] == 401
            assert live.request("POST", "/api/auth/refresh", token=revoked)[0] == 401

            redis = redis_server(port)  # back, empty: nothing was persisted
            redis.__enter__()
            assert live.request("GET", "/api/health")[1]["redis"] == "ok"
            for _ in range(4):
                status, body = live.request("GET", "/api/auth/profile", token=kept)
                assert (status, body["code"]) == (401, "token_revoked")
            assert live.request("POST", "/api/auth/refresh", token=revoked)[0] == 401
    finally:
        if redis is not None:
            redis.__exit__(None, None, None)


@contextmanager
def silent_server():
    """A TCP server that accepts connections and never answers."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        yield listener.getsockname()[1]


def test_health_answers_quickly_when_the_database_never_answers(make_app):
    with silent_server() as port:
        app = make_app(
            "testing",
            {
                "SQLALCHEMY_DATABASE_URI": f"postgresql+psycopg://shop@127.0.0.1:{port}/shop",
                "DB_CONNECT_TIMEOUT": 1,
            },
        )
        started = time.monotonic()
        response = app.test_client().get("/api/health")
        elapsed = time.monotonic() - started
    assert response.status_code == 503
    assert response.get_json()["database"] == "unavailable"
    assert elapsed < 4, elapsed


def test_postgres_sessions_have_a_statement_timeout(app, db):
    if db.engine.dialect.name != "postgresql":
        pytest.skip("PostgreSQL setting")
    with db.engine.connect() as conn:
        assert conn.exec_driver_sql("SHOW statement_timeout").scalar() == "30s"
    assert db.engine.pool.timeout() == app.config["DB_POOL_TIMEOUT"]


# --- answers gunicorn gives itself are JSON too ---------------------------------------


@pytest.fixture(scope="module")
def server(app):
    with gunicorn(DATABASE_URL, workers=1, threads=2) as live:
        yield live


def raw_request(server, data: bytes) -> tuple[int, dict[str, str], bytes]:
    import json

    port = int(server.url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(data)
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
    head, _, body = received.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines[1:])
    return int(lines[0].split()[1]), headers, json.loads(body)


@pytest.mark.server
@pytest.mark.parametrize(
    ("request_bytes", "status", "code"),
    [
        (
            b"GET /api/auth/profile HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "
            + b"a" * 9000
            + b"\r\nConnection: close\r\n\r\n",
            431,
            "headers_too_large",
        ),
        (
            b"POST /api/orders HTTP/1.1\r\nHost: x\r\nIdempotency-Key: a\x01b\r\n"
            b"Content-Type: application/json\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}",
            400,
            "invalid_request",
        ),
        (b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 414, "uri_too_long"),
    ],
)
def test_requests_gunicorn_refuses_get_the_json_envelope(server, request_bytes, status, code):
    got, headers, body = raw_request(server, request_bytes)
    assert got == status
    assert headers["Content-Type"] == "application/json"
    assert body["code"] == code and body["message"]


@pytest.mark.server
def test_a_chunked_body_past_the_limit_is_413(server):
    payload = b'{"email": "' + b"a" * 2_600_000 + b'", "password": "x"}'
    chunks = b"".join(
        b"%x\r\n%s\r\n" % (len(payload[i : i + 65536]), payload[i : i + 65536])
        for i in range(0, len(payload), 65536)
    )
    status, headers, body = raw_request(
        server,
        b"POST /api/auth/login HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
        b"Content-Type: application/json\r\nConnection: close\r\n\r\n" + chunks + b"0\r\n\r\n",
    )
    assert (status, body["code"]) == (413, "payload_too_large")
    assert headers["Content-Type"] == "application/json"


# --- a database that cannot answer now is a 503, not a 500 ---------------------------


def test_sqlite_lock_held_past_the_busy_timeout_is_a_503(make_app, db, make_user, login):
    """Another writer holds SQLite's write lock longer than the busy timeout:
    the write answers 503 `unavailable` with Retry-After, writes nothing, and
    works once the lock is free."""
    if db.engine.dialect.name != "sqlite":
        pytest.skip("SQLite's database-wide write lock")
    import sqlite3

    app = make_app(overrides={"SQLITE_BUSY_TIMEOUT_MS": 50})
    client = app.test_client()
    user = make_user()
    token = login(user)["access_token"]
    holder = sqlite3.connect(db.engine.url.database, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        response = client.put(
            "/api/auth/profile",
            json={"username": "renamed"},
            headers={"Authorization": f"Bearer {token}"},
        )
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert response.status_code == 503, response.get_json()
    assert response.get_json()["code"] == "unavailable"
    assert response.headers["Retry-After"] == "1"
    profile = client.get("/api/auth/profile", headers={"Authorization": f"Bearer {token}"})
    assert profile.get_json()["username"] == user.username  # nothing half-written
    again = client.put(
        "/api/auth/profile",
        json={"username": "renamed"},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert again.status_code == 200, again.get_json()


def test_a_sqlite_writer_gets_the_lock_as_soon_as_it_is_free(make_app, db, make_user, login):
    """A write waiting for SQLite's write lock takes it within a millisecond
    or so of its release (`app.db.begin_immediate`), not at the next wake-up
    of SQLite's busy handler (which sleeps 100 ms between tries after the
    first 0.33 s: a release at 0.35 s would be seen at ~0.43 s)."""
    if db.engine.dialect.name != "sqlite":
        pytest.skip("SQLite's database-wide write lock")
    import sqlite3
    import threading
    import time

    client = make_app().test_client()
    token = login(make_user())["access_token"]
    holder = sqlite3.connect(db.engine.url.database, isolation_level=None, check_same_thread=False)
    holder.execute("BEGIN IMMEDIATE")
    released = []

    def release_later():
        time.sleep(0.35)
        holder.execute("ROLLBACK")
        released.append(time.monotonic())

    thread = threading.Thread(target=release_later)
    thread.start()
    try:
        response = client.put(
            "/api/auth/profile",
            json={"username": "renamed"},
            headers={"Authorization": f"Bearer {token}"},
        )
        answered = time.monotonic()
    finally:
        thread.join()
        holder.close()
    assert response.status_code == 200, response.get_json()
    assert released and 0 < answered - released[0] < 0.05, answered - released[0]


def test_postgres_statement_timeout_is_a_503(make_app, db, make_product, admin_token):
    """A statement PostgreSQL cancels at its statement_timeout (waiting on a
    row lock held elsewhere, here) answers 503 with Retry-After, never a 500,
    and writes nothing."""
    if db.engine.dialect.name != "postgresql":
        pytest.skip("PostgreSQL setting")
    product = make_product(stock=5)
    client = make_app(overrides={"DB_STATEMENT_TIMEOUT_MS": 200}).test_client()
    holder = db.engine.connect()
    holder.exec_driver_sql("BEGIN")
    holder.exec_driver_sql("SELECT 1 FROM products WHERE id = %s FOR UPDATE", (product.id,))
    try:
        response = client.put(
            f"/api/products/{product.id}",
            json={"name": "Renamed"},
            headers={"Authorization": f"Bearer {admin_token}"},
        )
    finally:
        holder.exec_driver_sql("ROLLBACK")
        holder.close()
    assert response.status_code == 503, response.get_json()
    assert response.get_json()["code"] == "unavailable"
    assert response.headers["Retry-After"] == "1"
    assert client.get(f"/api/products/{product.id}").get_json()["name"] == product.name


def test_the_sqlite_writer_turn_is_free_after_every_kind_of_ending(
    client, db, make_product, user_token, admin_token
):
    """A write that commits, one the app refuses (rolled back), one that fails
    on a constraint and a read: none leaves this process's writer turn taken
    (the next writer would wait out the busy timeout)."""
    if db.engine.dialect.name != "sqlite":
        pytest.skip("SQLite's writer turn")
    from app.db import WRITER_TURN

    raw = db.engine.raw_connection()
    turn = raw.info[WRITER_TURN]
    raw.close()
    product = make_product(stock=1)
    headers = {"Authorization": f"Bearer {user_token}"}
    assert client.post("/api/cart", json={"product_id": product.id}, headers=headers).status_code
    assert not turn.locked()
    assert client.post("/api/cart", json={"product_id": 999999}, headers=headers).status_code == 404
    assert not turn.locked()
    admin = {"Authorization": f"Bearer {admin_token}"}
    bad = client.put(f"/api/products/{product.id}", json={"stock": -5}, headers=admin)
    assert bad.status_code == 422
    assert not turn.locked()
    assert client.get("/api/cart", headers=headers).status_code == 200
    assert not turn.locked()
    order = client.post("/api/orders", json={"shipping_address": "1 Main St"}, headers=headers)
    assert order.status_code == 201
    assert not turn.locked()
