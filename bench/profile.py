"""Profile the benchmarked endpoints in-process with pyinstrument.

    .venv/bin/python bench/profile.py [ENDPOINT ...]   (default: every endpoint)

Builds a throw-away SQLite database (or uses DATABASE_URL) with the same data
as `make bench`, then runs each endpoint N times (PROFILE_REQUESTS, default
2000) through the WSGI app with the production config, and prints the time
per request next to the hello-world app's, and pyinstrument's call tree.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import tempfile
import time
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
    PASSWORD_HASH_METHOD="pbkdf2:sha256:1000",  # noqa: S106 - a method name
    FLASK_APP="app:create_app",
)

from pyinstrument import Profiler  # noqa: E402

from bench import fixtures  # noqa: E402
from bench.hello import app as hello_app  # noqa: E402

REQUESTS = int(os.environ.get("PROFILE_REQUESTS", "2000"))
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
}


def per_request_ms(client, path: str, headers: dict, count: int) -> float:
    started = time.perf_counter()
    for _ in range(count):
        response = client.get(path, headers=headers)
        assert response.status_code == 200, (path, response.status_code)
    return (time.perf_counter() - started) * 1000 / count


def main() -> None:
    flask = [str(Path(sys.executable).parent / "flask")]
    for args in (["db", "upgrade"], ["seed", "--products", "10000"]):
        subprocess.run([*flask, *args], cwd=ROOT, check=True, capture_output=True)
    from app import create_app

    app = create_app()
    with app.app_context():
        data = fixtures.setup(50)
    hello = hello_app.test_client()
    hello_ms = per_request_ms(hello, "/hello", {}, REQUESTS)
    print(f"hello-world: {hello_ms:.3f} ms per request in-process")
    client = app.test_client()
    for name in sys.argv[1:] or ENDPOINTS:
        _method, path, token_key = ENDPOINTS[name]
        path = path.format(**data)
        headers = {"Authorization": f"Bearer {data[token_key]}"} if token_key else {}
        per_request_ms(client, path, headers, 200)  # warm up
        ms = per_request_ms(client, path, headers, REQUESTS)
        print(f"\n=== {name}: {ms:.3f} ms per request ({ms / hello_ms:.1f}x hello-world) ===")
        profiler = Profiler(interval=0.0002)
        profiler.start()
        per_request_ms(client, path, headers, REQUESTS)
        profiler.stop()
        print(profiler.output_text(unicode=False, color=False, show_all=False, short_mode=True))


if __name__ == "__main__":
    main()
