"""Profile the benchmarked endpoints in-process with pyinstrument.

    .venv/bin/python bench/profile.py [ENDPOINT ...]   (default: every endpoint)

Builds a throw-away SQLite database (or uses DATABASE_URL) with the same data
as `make bench`, then runs each endpoint N times (PROFILE_REQUESTS, default
2000) through the WSGI app with the production config, and prints the time
per request next to the hello-world app's, the statements and round trips of
one request, and pyinstrument's call tree (PROFILE_ALL=1: every frame, libraries' too).

`checkout` places real orders (POST /api/orders, 3 lines) as PROFILE_BUYERS
buyers (default 500) in turn; every buyer's cart is refilled
(`fixtures.refill`) before each pass over them, outside the timing.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
WORKDIR = Path(tempfile.mkdtemp(prefix="shop-profile-"))
os.environ.setdefault("DATABASE_URL", f"sqlite:///{WORKDIR}/profile.db")
os.environ.update(
    FLASK_CONFIG="production",
    SECRET_KEY=secrets.token_urlsafe(32),
    JWT_SECRET_KEY=secrets.token_urlsafe(32),
    RATELIMIT_ENABLED="false",
    LOG_LEVEL="WARNING",
    MAIL_BACKEND="console",
    PAYMENT_PROVIDER="test",
    PASSWORD_HASH_METHOD="pbkdf2:sha256:1000",  # noqa: S106 - a method name
    FLASK_APP="app:create_app",
)

from pyinstrument import Profiler  # noqa: E402
from sqlalchemy import event  # noqa: E402

from app.extensions import db  # noqa: E402
from bench import fixtures  # noqa: E402
from bench.hello import app as hello_app  # noqa: E402

REQUESTS = int(os.environ.get("PROFILE_REQUESTS", "2000"))
BUYERS = int(os.environ.get("PROFILE_BUYERS", "500"))
ADDRESS = {"shipping_address": "1 Benchmark Road, Testville"}
ENDPOINTS = {
    "list": ("GET", "/api/products?page=37&per_page=20", None),
    "search": ("GET", "/api/products?q=Lamp&sort=price", None),
    "search1": ("GET", "/api/products?q=lamp", None),
    "search2": ("GET", "/api/products?q=smart%20lamp", None),
    "facets": ("GET", "/api/products/facets?q=lamp", None),
    "facets-all": ("GET", "/api/products/facets", None),
    "suggest": ("GET", "/api/products/suggest?q=lam", None),
    "detail": ("GET", "/api/products/{product_id}", None),
    "cart": ("GET", "/api/cart", "reader_token"),
    "order": ("GET", "/api/orders/{order_id}", "orderer_token"),
    "checkout": ("POST", "/api/orders", "buyer_tokens"),
}


def per_request_ms(client, path: str, headers: dict, count: int) -> float:
    started = time.perf_counter()
    for _ in range(count):
        response = client.get(path, headers=headers)
        assert response.status_code == 200, (path, response.status_code)
    return (time.perf_counter() - started) * 1000 / count


class Checkouts:
    """Orders placed by the buyers in turn, their carts refilled (untimed)
    whenever every buyer has ordered once."""

    def __init__(self, app, client, tokens: list[str]):
        self.app, self.client, self.tokens, self.used = app, client, tokens, len(tokens)

    def next_headers(self) -> dict:
        if self.used == len(self.tokens):
            with self.app.app_context():
                fixtures.refill()
            self.used = 0
        self.used += 1
        return {"Authorization": f"Bearer {self.tokens[self.used - 1]}"}

    def run(self, count: int, profiler: Profiler | None = None) -> float:
        """Place `count` orders; the milliseconds per order (refills excluded)."""
        spent = 0.0
        for _ in range(count):
            headers = self.next_headers()
            if profiler is not None:
                profiler.start()
            started = time.perf_counter()
            response = self.client.post("/api/orders", json=ADDRESS, headers=headers)
            spent += time.perf_counter() - started
            if profiler is not None:
                profiler.stop()
            assert response.status_code == 201, response.get_data(as_text=True)
        return spent * 1000 / count


class RoundTrips:
    """Counts one request's statements and its round trips to the database:
    the statements, BEGIN, COMMIT or ROLLBACK, and the pool's pre-ping when it
    is on. Only this thread's (the embedded worker that delivers emails has
    its own); the listeners are installed once, before any request, as adding
    one while another thread runs a statement breaks that statement."""

    def __init__(self, engine):
        self.thread, self.on = threading.get_ident(), False
        self.counts = {"statements": 0, "round trips": 0}
        events = [
            (engine, "before_cursor_execute", self._statement),
            (engine, "begin", self._other),
            (engine, "commit", self._other),
            (engine, "rollback", self._other),
        ]
        if engine.pool._pre_ping:
            events.append((engine.pool, "checkout", self._other))
        for target, name, fn in events:
            event.listen(target, name, fn)

    def _statement(self, _conn, _cursor, statement, *_args):
        # SQLite's BEGIN is sent from the "begin" event, counted there.
        if self.on and threading.get_ident() == self.thread and not statement.startswith("BEGIN"):
            self.counts["statements"] += 1
            self.counts["round trips"] += 1

    def _other(self, *_args):
        if self.on and threading.get_ident() == self.thread:
            self.counts["round trips"] += 1

    @contextmanager
    def counting(self):
        self.counts = {"statements": 0, "round trips": 0}
        self.on = True
        try:
            yield self.counts
        finally:
            self.on = False


def main() -> None:
    flask = [str(Path(sys.executable).parent / "flask")]
    for args in (["db", "upgrade"], ["seed", "--products", "10000"]):
        subprocess.run([*flask, *args], cwd=ROOT, check=True, capture_output=True)
    from app import create_app

    app = create_app()
    with app.app_context():
        # Before the fixtures' order starts the embedded worker's thread: a
        # listener added while that thread runs a statement breaks it.
        round_trips = RoundTrips(db.engine)
        data = fixtures.setup(BUYERS)
    hello = hello_app.test_client()
    hello_ms = per_request_ms(hello, "/hello", {}, REQUESTS)
    print(f"hello-world: {hello_ms:.3f} ms per request in-process")
    client = app.test_client()
    for name in sys.argv[1:] or ENDPOINTS:
        method, path, token_key = ENDPOINTS[name]
        profiler = Profiler(interval=0.0002)
        if method == "POST":
            checkouts = Checkouts(app, client, data[token_key])
            checkouts.run(200)  # warm up
            ms = checkouts.run(REQUESTS)
            with round_trips.counting() as counts:
                checkouts.run(1)
            checkouts.run(REQUESTS, profiler)
        else:
            path = path.format(**data)
            headers = {"Authorization": f"Bearer {data[token_key]}"} if token_key else {}
            per_request_ms(client, path, headers, 200)  # warm up
            ms = per_request_ms(client, path, headers, REQUESTS)
            with round_trips.counting() as counts:
                per_request_ms(client, path, headers, 1)
            profiler.start()
            per_request_ms(client, path, headers, REQUESTS)
            profiler.stop()
        print(
            f"\n=== {name}: {ms:.3f} ms per request ({ms / hello_ms:.1f}x hello-world); "
            f"{counts['statements']} statements, {counts['round trips']} round trips ==="
        )
        whole = os.environ.get("PROFILE_ALL") == "1"  # every frame, not the short tree
        print(
            profiler.output_text(unicode=False, color=False, show_all=whole, short_mode=not whole)
        )


if __name__ == "__main__":
    main()
