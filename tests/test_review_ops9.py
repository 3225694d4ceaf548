"""Operations review, round 9: a deploy done in the wrong order (the new code
serving, or its commands run, before `flask db upgrade`), as the README's
Production section warns against. Every test marked "found by review"
failed on the code it was written against."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from flask_migrate import upgrade
from sqlalchemy import text

from app.extensions import db as _db
from app.services.outbox import queue_email
from tests.helpers import DATABASE_URL, IS_POSTGRES, REDIS_URL, scalar
from tests.live import ROOT, gunicorn

# A revision from before users.token_version (d18a7c3e5b90): every read of
# an account names that column.
BEFORE_TOKEN_VERSION = "d17a5e0c9b21"


def _database_at(make_app, tmp_path, revision: str | None):
    """An app on a new SQLite file migrated to `revision` (None: no tables)."""
    other = make_app(
        "testing",
        {
            "SQLALCHEMY_DATABASE_URI": f"sqlite:///{tmp_path / 'deploy.db'}",
            "BACKGROUND_MODE": "off",
        },
    )
    if revision is not None:
        with other.app_context():
            upgrade(revision=revision)
    return other


@pytest.mark.parametrize("revision", [None, BEFORE_TOKEN_VERSION, "f43e8b2d4c17"])
def test_health_is_503_while_the_database_is_behind_the_code(make_app, tmp_path, revision):
    """README: `flask db upgrade` once per release, before the new code
    serves; `/api/health` is the balancer's check. A new instance started
    before the upgrade (a half-done deploy) answered 200 "ok" while its
    reads and writes of the new columns were 500s, so the balancer sent it
    traffic (found by review). Expected: a 503 that says why, the
    Retry-After of every 503, and the same for a database with no tables."""
    client = _database_at(make_app, tmp_path, revision).test_client()
    response = client.get("/api/health")
    assert response.status_code == 503, response.get_json()
    body = response.get_json()
    assert body["status"] == "unavailable" and body["code"] == "unavailable"
    assert body["database"] == "outdated"
    assert "flask db upgrade" in body["message"]
    assert response.headers["Retry-After"] == "5"


def test_health_is_200_on_a_database_a_newer_release_migrated(make_app, tmp_path):
    """The other half of a rolling deploy: the database upgraded by the new
    release while the old instances still serve. Their code does not know the
    new revision, and a migration adds to the schema, so they stay in."""
    other = _database_at(make_app, tmp_path, "head")
    with other.app_context(), _db.engine.begin() as connection:
        connection.execute(text("UPDATE alembic_version SET version_num = 'fffffffffff0'"))
    response = other.test_client().get("/api/health")
    assert response.status_code == 200, response.get_json()
    assert response.get_json()["database"] == "ok"


def test_health_is_200_at_head(client):
    response = client.get("/api/health")
    assert response.status_code == 200
    assert response.get_json()["database"] == "ok"


def test_a_command_on_a_database_behind_the_code_says_to_upgrade(make_app, tmp_path):
    """A command run on a database an upgrade has not reached (the README's
    `flask db upgrade` skipped for this release) said "the database
    (DATABASE_URL) did not answer: no such column: users.token_version" on
    SQLite, sending the operator to check the server, and printed a
    traceback on PostgreSQL (found by review). Expected: one line naming the
    revisions and the command to run, exit 1."""
    other = _database_at(make_app, tmp_path, BEFORE_TOKEN_VERSION)
    args = ["create-admin", "--username", "ops", "--email", "ops@example.com"]
    args += ["--password", "p" * 10]
    with other.app_context():
        result = other.test_cli_runner().invoke(args=args)
    assert result.exit_code == 1, (result.output, result.exception)
    assert isinstance(result.exception, SystemExit), result.exception
    lines = result.output.strip().splitlines()
    assert len(lines) == 1, result.output
    assert "did not answer" not in result.output
    assert "flask db upgrade" in result.output
    assert BEFORE_TOKEN_VERSION in result.output


def test_the_migrations_head_read_as_text_is_alembic_s():
    """The health check reads the code's head from migrations/versions as
    text (a web worker never imports Alembic); it must be Alembic's."""
    from alembic.script import ScriptDirectory

    from app.services.health import MIGRATIONS, code_revisions

    script = ScriptDirectory(str(MIGRATIONS.parent))
    revisions, heads = code_revisions()
    assert heads == frozenset(script.get_heads())
    assert revisions == frozenset(rev.revision for rev in script.walk_revisions())


# -- Signals -------------------------------------------------------------------------------


def _raw_request(url: str, head: bytes) -> socket.socket:
    host, port = url.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)), timeout=20)
    sock.sendall(head)
    return sock


def _read_status(sock: socket.socket) -> int:
    data = b""
    while b"\r\n" not in data:
        chunk = sock.recv(4096)
        if not chunk:
            break
        data += chunk
    return int(data.split(b" ", 2)[1]) if data else 0


def test_sigterm_lets_a_request_in_flight_finish(app):
    """systemd stops the service with SIGTERM (README's unit): a request
    whose body is still arriving is answered, not cut (graceful timeout)."""
    body = json.dumps(
        {"username": "graceful1", "email": "graceful1@example.com", "password": "p" * 12}
    ).encode()
    # (suppress: the master is gone before the block's own SIGTERM)
    with (
        contextlib.suppress(ProcessLookupError),
        gunicorn(DATABASE_URL, workers=1, threads=2) as server,
    ):
        head = (
            b"POST /api/auth/signup HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            + f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
        )
        sock = _raw_request(server.url, head + body[:10])
        time.sleep(0.5)  # the worker is reading the body
        os.kill(server.process.pid, signal.SIGTERM)
        time.sleep(0.5)
        sock.sendall(body[10:])
        status = _read_status(sock)
        sock.close()
        assert server.process.wait(timeout=15) == 0
    assert status == 201


def test_sighup_reloads_without_a_failed_request(app):
    """README's unit: `ExecReload=/bin/kill -HUP $MAINPID`. Requests sent
    throughout a reload are all answered."""
    with gunicorn(DATABASE_URL, workers=2, threads=2) as server:
        statuses = []
        deadline = time.monotonic() + 4
        os.kill(server.process.pid, signal.SIGHUP)
        while time.monotonic() < deadline:
            statuses.append(server.request("GET", "/api/health", timeout=10)[0])
        assert server.process.poll() is None
    assert statuses and set(statuses) == {200}, statuses


def test_sigterm_stops_the_embedded_background_thread_promptly(app):
    """Without Redis each gunicorn worker runs the background thread
    (BACKGROUND_MODE=thread); a stop ends it at once when it is idle, not
    after OUTBOX_LEASE (the at-exit wait) nor the graceful timeout."""
    env = {"BACKGROUND_MODE": "thread", "MAIL_BACKEND": "console"}
    with (
        contextlib.suppress(ProcessLookupError),
        gunicorn(DATABASE_URL, workers=1, threads=2, extra_env=env) as server,
    ):
        body = {"username": "threaded1", "email": "threaded1@example.com", "password": "p" * 12}
        assert server.request("POST", "/api/auth/signup", body)[0] == 201  # wakes the thread
        time.sleep(1)
        started = time.monotonic()
        os.kill(server.process.pid, signal.SIGTERM)
        assert server.process.wait(timeout=30) == 0
        elapsed = time.monotonic() - started
    assert elapsed < 4, elapsed


@pytest.mark.skipif(
    not (REDIS_URL and IS_POSTGRES), reason="needs REDIS_URL and PostgreSQL (the CI leg)"
)
@pytest.mark.parametrize("pool", [["-P", "threads", "-c", "2"], ["-c", "2"]])
def test_a_worker_stopped_mid_delivery_finishes_the_email(make_user, smtp_server, pool):
    """The README's worker unit (KillMode=mixed) stops `flask worker` with a
    SIGTERM to its main process: the email being sent is finished and marked
    sent, once, with either pool; the worker exits 0. (systemd's default,
    every process of the unit at once, kills a prefork child mid-send: the
    test below pins the unit.)"""
    import redis

    client = redis.Redis.from_url(REDIS_URL)
    client.delete("celery", "unacked", "unacked_index", "unacked_mutex")
    user = make_user()
    context = {
        "user": {"username": user.username},
        "email": user.email,
        "link": "http://localhost:3000/verify-email?token=t",
        "expires_hours": 48,
    }
    queue_email(user.email, "verify_email", context)
    _db.session.commit()
    smtp_server.sink.stall = 3  # the DATA step takes a while: the worker is mid-delivery
    env = {
        **os.environ,
        **smtp_server.env(),
        "FLASK_CONFIG": "testing",
        "FLASK_APP": "app:create_app",
        "TEST_DATABASE_URL": DATABASE_URL,
        "DATABASE_URL": DATABASE_URL,
        "REDIS_URL": REDIS_URL,
        "BACKGROUND_MODE": "celery",
        "OUTBOX_SWEEP_INTERVAL": "0.5",
        "OUTBOX_SWEEP_GRACE": "0",
        "OUTBOX_LEASE": "30",
        "MAIL_TIMEOUT": "10",
        "LOG_LEVEL": "WARNING",
    }
    flask = Path(sys.executable).with_name("flask")
    cmd = [str(flask), "worker", "--", *pool, "-n", "stopped@%h"]
    cmd += ["--without-gossip", "--without-mingle", "--without-heartbeat"]
    process = subprocess.Popen(cmd, cwd=ROOT, env=env, start_new_session=True)
    try:
        deadline = time.monotonic() + 40
        while smtp_server.sink.attempts == 0:
            assert time.monotonic() < deadline, "the worker never started delivering"
            time.sleep(0.05)
        os.kill(process.pid, signal.SIGTERM)  # the main process, as KillMode=mixed does
        assert process.wait(timeout=30) == 0
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        client.delete("celery", "unacked", "unacked_index", "unacked_mutex")
        client.close()
    assert scalar("SELECT status FROM outbox") == "sent"
    assert scalar("SELECT attempts FROM outbox") == 1
    assert len(smtp_server.messages) == 1


def test_the_readme_s_worker_unit_lets_the_current_email_finish():
    """README: "Run the workers under the service manager like gunicorn (a
    second unit ...)". systemd's default KillMode sends SIGTERM to every
    process of the unit: `flask worker`'s prefork children (the default pool,
    `-- --concurrency 4`) died mid-send, the email left to be sent again
    after its lease (found by review). The unit shown sends it to the main
    process only (Celery's own advice), which waits for the task, and gives
    it longer than a send can take (OUTBOX_LEASE) before SIGKILL."""
    readme = (ROOT / "README.md").read_text()
    units = re.findall(r"```ini\n(.*?)```", readme, re.S)
    worker = [unit for unit in units if re.search(r"^ExecStart=.*flask .*worker", unit, re.M)]
    assert len(worker) == 1, units
    assert re.search(r"^KillMode=mixed$", worker[0], re.M), worker[0]
    stop = re.search(r"^TimeoutStopSec=(\d+)$", worker[0], re.M)
    assert stop and int(stop.group(1)) > 120, worker[0]


def test_env_example_names_every_setting_production_requires():
    """`.env.example` is the file an operator copies (README: Configuration);
    production refuses to start without a named MAIL_BACKEND, which it did not
    mention, nor where the other settings are listed (found by review)."""
    text_ = (ROOT / ".env.example").read_text()
    named = set(re.findall(r"^#? ?([A-Z][A-Z0-9_]+)=", text_, re.M))
    required = {"FLASK_CONFIG", "SECRET_KEY", "JWT_SECRET_KEY", "DATABASE_URL", "REDIS_URL"}
    required |= {"MAIL_BACKEND", "MAIL_SERVER", "MAIL_PORT", "PAYMENT_PROVIDER"}
    assert required <= named, required - named
    assert "README" in text_ and "Configuration" in text_
