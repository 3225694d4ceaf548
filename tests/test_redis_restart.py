"""Shared versions in Redis survive a Redis restart without persistence
(or an evicted version key) without handing out a version used before.

They were counters (INCR from a missing key, read as "0"): after a restart
the next commits counted 1, 2, ... again, and what a process or a client
held under one of those old numbers was taken as current again - a token
revoked on another instance before the restart was accepted by read
requests once the counter reached the number the accounts cache kept its
user under; a client's ETag from before the restart got a 304 for a changed
answer. Each bump now sets a random version, and a missing one starts at a
random value (`catalog_cache.RedisStore`). Found by review; both tests
failed on the counters. They run a redis-server of their own, killed and
started again on the same port.

A restart that restores a snapshot (RDB, or an AOF) hands back an old
version with the answers kept under it: every version carries the run id of
the server that set it, and one from an earlier run is replaced (found by
review: a stale price, and a token revoked after the snapshot accepted
again on reads; both tests below failed before)."""

from __future__ import annotations

import shutil
import subprocess
import time
import uuid
from decimal import Decimal

import pytest

from tests.helpers import PASSWORD, auth
from tests.live import free_port


def _restart(url: str, process: subprocess.Popen) -> subprocess.Popen:
    """Kill the test's own redis-server and start a fresh one (no persistence)
    on the same port: what a Redis restart without RDB/AOF does."""
    import redis

    process.kill()
    process.wait()
    port = url.rsplit(":", 1)[1].split("/")[0]
    fresh = subprocess.Popen(
        [shutil.which("redis-server"), "--port", port, "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 10
    while True:
        try:
            redis.Redis.from_url(url).ping()
            return fresh
        except redis.RedisError:
            if time.monotonic() > deadline:
                fresh.kill()
                raise
            time.sleep(0.05)


def _settle(app) -> None:
    """Let each store of `app` reconnect (a failed command marks Redis down
    for `retry_after`, 1 s): wait until every shared version answers."""
    with app.app_context():
        stores = app.extensions["shared_versions"].values()
        deadline = time.monotonic() + 5
        while any(store.version() is None for store in stores):
            assert time.monotonic() < deadline
            time.sleep(0.2)


def _login(client, user) -> str:
    response = client.post("/api/auth/login", json={"email": user.email, "password": PASSWORD})
    assert response.status_code == 200, response.get_json()
    return response.get_json()["access_token"]


def _signup(client) -> None:
    name = f"u{uuid.uuid4().hex[:10]}"
    body = {"username": name, "email": f"{name}@example.com", "password": PASSWORD}
    assert client.post("/api/auth/signup", json=body).status_code == 201


def test_a_token_revoked_before_a_redis_restart_stays_refused(own_redis, make_app, make_user):
    url, process = own_redis
    web = make_app(overrides={"REDIS_URL": url})
    other = make_app(overrides={"REDIS_URL": url})
    a, b = web.test_client(), other.test_client()
    user = make_user()
    token = _login(a, user)

    _signup(b)  # any account write: a new accounts version (once "1")
    assert a.get("/api/auth/profile", headers=auth(token)).status_code == 200  # kept under it
    assert b.post("/api/auth/logout", headers=auth(token)).status_code == 200  # a newer one ("2")
    assert a.get("/api/auth/profile", headers=auth(token)).status_code == 401

    process = _restart(url, process)
    try:
        _settle(web)
        _settle(other)
        _signup(b)  # one account write after the restart (the counter made it "1" again)
        response = a.get("/api/auth/profile", headers=auth(token))
        assert response.status_code == 401, (response.status_code, response.get_json())
    finally:
        process.kill()
        process.wait()


def test_a_catalog_etag_from_before_a_redis_restart_gets_the_changed_answer(
    own_redis, make_app, make_user, make_product
):
    url, process = own_redis
    web = make_app(overrides={"REDIS_URL": url})
    other = make_app(overrides={"REDIS_URL": url})
    a, b = web.test_client(), other.test_client()
    admin = auth(_login(b, make_user(admin=True)))
    lamp = make_product(name="Lamp", price=Decimal("10.00"))
    chair = make_product(name="Chair", price=Decimal("20.00"))

    put = b.put(f"/api/products/{lamp.id}", json={"price": "11.00"}, headers=admin)
    assert put.status_code == 200  # a new catalog version (once "1")
    first = a.get("/api/products?sort=price")
    etag = first.headers["ETag"]
    assert [i["price"] for i in first.get_json()["items"]] == [Decimal("11.00"), Decimal("20.00")]
    put = b.put(f"/api/products/{lamp.id}", json={"price": "12.00"}, headers=admin)
    assert put.status_code == 200  # a newer one ("2")

    process = _restart(url, process)
    try:
        _settle(web)
        _settle(other)
        put = b.put(f"/api/products/{chair.id}", json={"price": "5.00"}, headers=admin)
        # After the restart (the counter made this "1" again): Chair 5.00, Lamp 12.00.
        assert put.status_code == 200
        again = a.get("/api/products?sort=price", headers={"If-None-Match": etag})
        assert again.status_code == 200, (again.status_code, again.headers.get("ETag"), etag)
        assert [i["name"] for i in again.get_json()["items"]] == ["Chair", "Lamp"]
    finally:
        process.kill()
        process.wait()


SNAPSHOT_OPTIONS = ("--dbfilename", "dump.rdb", "--save", "", "--appendonly", "no")


class SnapshotRedis:
    """A redis-server of the test's own that keeps an RDB file in `directory`:
    `snapshot()` is a periodic save, `crash_and_restart()` a kill -9 and a
    start that loads the file (Redis's default set-up)."""

    def __init__(self, directory):
        self.binary = shutil.which("redis-server")
        if self.binary is None:
            pytest.skip("redis-server is not installed")
        self.dir, self.port = str(directory), free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process = None
        self.start()

    def start(self) -> None:
        import redis

        self.process = subprocess.Popen(
            [self.binary, "--port", str(self.port), "--dir", self.dir, *SNAPSHOT_OPTIONS],
            stdout=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while True:
            try:
                redis.Redis.from_url(self.url).ping()
                return
            except redis.RedisError:
                assert time.monotonic() < deadline
                time.sleep(0.05)

    def snapshot(self) -> None:
        import redis

        redis.Redis.from_url(self.url).save()

    def crash_and_restart(self) -> None:
        self.process.kill()
        self.process.wait()
        self.start()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()


@pytest.fixture
def snapshot_redis(tmp_path):
    server = SnapshotRedis(tmp_path)
    yield server
    server.stop()


def test_a_catalog_restored_from_a_redis_snapshot_is_not_served(
    snapshot_redis, make_app, make_user, make_product
):
    web = make_app(overrides={"REDIS_URL": snapshot_redis.url})
    other = make_app(overrides={"REDIS_URL": snapshot_redis.url})
    a, b = web.test_client(), other.test_client()
    admin = auth(_login(b, make_user(admin=True)))
    lamp = make_product(name="Lamp", price=Decimal("10.00"))
    path = f"/api/products/{lamp.id}"
    first = a.get(path)
    assert first.get_json()["price"] == Decimal("10.00")
    etag = first.headers["ETag"]
    snapshot_redis.snapshot()  # the version and the answer kept under it
    assert b.put(path, json={"price": "12.00"}, headers=admin).status_code == 200
    assert a.get(path).get_json()["price"] == Decimal("12.00")

    snapshot_redis.crash_and_restart()
    _settle(web)
    _settle(other)
    for client in (a, b):
        again = client.get(path)
        assert again.get_json()["price"] == Decimal("12.00")
        assert client.get(path, headers={"If-None-Match": etag}).status_code == 200
    # The new run's version serves as before: kept, then a 304 for its ETag.
    fresh = a.get(path).headers["ETag"]
    assert fresh != etag
    assert b.get(path, headers={"If-None-Match": fresh}).status_code == 304


def test_a_token_revoked_after_a_redis_snapshot_stays_refused(snapshot_redis, make_app, make_user):
    web = make_app(overrides={"REDIS_URL": snapshot_redis.url})
    other = make_app(overrides={"REDIS_URL": snapshot_redis.url})
    a, b = web.test_client(), other.test_client()
    token = _login(b, make_user())
    assert a.get("/api/auth/profile", headers=auth(token)).status_code == 200  # kept on A
    snapshot_redis.snapshot()
    assert b.post("/api/auth/logout", headers=auth(token)).status_code == 200
    assert a.get("/api/auth/profile", headers=auth(token)).status_code == 401

    snapshot_redis.crash_and_restart()
    _settle(web)
    _settle(other)
    response = a.get("/api/auth/profile", headers=auth(token))
    assert response.status_code == 401, (response.status_code, response.get_json())
