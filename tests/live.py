"""Real server processes for tests whose behaviour depends on them: gunicorn
with several workers on the test database (and Redis when asked)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
GUNICORN = Path(sys.executable).with_name("gunicorn")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class LiveServer:
    def __init__(self, url: str, process: subprocess.Popen):
        self.url = url
        self.process = process

    def request(
        self,
        method: str,
        path: str,
        body=None,
        token: str | None = None,
        headers: dict | None = None,
        timeout: float = 30,
    ) -> tuple[int, dict]:
        """One HTTP request; returns (status, parsed JSON body or {})."""
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.url + path, data=data, method=method)
        if data is not None:
            req.add_header("Content-Type", "application/json")
        if token:
            req.add_header("Authorization", f"Bearer {token}")
        for name, value in (headers or {}).items():
            req.add_header(name, value)
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                raw = resp.read()
                return resp.status, json.loads(raw) if raw else {}
        except urllib.error.HTTPError as err:
            with err:
                raw = err.read()
            return err.code, json.loads(raw) if raw else {}


@contextmanager
def gunicorn(
    database_url: str, *, workers: int = 3, threads: int = 4, extra_env: dict | None = None
):
    """Serve `create_app("testing")` with gunicorn until the block ends."""
    port = free_port()
    env = {
        **os.environ,
        "FLASK_CONFIG": "testing",
        "TEST_DATABASE_URL": database_url,
        "DATABASE_URL": database_url,
        "PYTHONPATH": str(ROOT),
        "LOG_LEVEL": "WARNING",  # keep the test output readable
        "GUNICORN_ACCESSLOG": "",  # gunicorn reads ./gunicorn.conf.py; no access log here
        **(extra_env or {}),
    }
    cmd = [
        str(GUNICORN),
        "--workers",
        str(workers),
        "--threads",
        str(threads),
        "--worker-class",
        "gthread",
        "--bind",
        f"127.0.0.1:{port}",
        "--graceful-timeout",
        "5",
        "--log-level",
        "warning",
        "app:create_app('testing')",
    ]
    process = subprocess.Popen(cmd, cwd=ROOT, env=env, start_new_session=True)
    server = LiveServer(f"http://127.0.0.1:{port}", process)
    try:
        deadline = time.monotonic() + 30
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"gunicorn exited with {process.returncode}")
            try:
                if server.request("GET", "/api/health", timeout=2)[0] == 200:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("gunicorn did not become healthy in 30 s")
            time.sleep(0.2)
        yield server
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


@contextmanager
def celery_worker(database_url: str, redis_url: str, *, name: str, extra_env: dict | None = None):
    """A real Celery worker (`flask worker`, two threads, with beat) until the
    block ends; yields the process (SIGKILL its group to kill it mid-task)."""
    env = {
        **os.environ,
        "FLASK_CONFIG": "testing",
        "FLASK_APP": "app:create_app",
        "TEST_DATABASE_URL": database_url,
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "BACKGROUND_MODE": "celery",
        "PYTHONPATH": str(ROOT),
        "LOG_LEVEL": "WARNING",
        **(extra_env or {}),
    }
    flask = Path(sys.executable).with_name("flask")
    cmd = [str(flask), "worker", "-P", "threads", "-c", "2", "-n", f"{name}@%h"]
    cmd += ["--without-gossip", "--without-mingle", "--without-heartbeat"]
    process = subprocess.Popen(cmd, cwd=ROOT, env=env, start_new_session=True)
    try:
        yield process
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()


def eventually(predicate, timeout: float = 30, message: str = "condition not met") -> None:
    """Wait until `predicate()` is true (background work finishing)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"{message} within {timeout} s")
        time.sleep(0.05)
