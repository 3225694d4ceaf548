"""The embedded worker (no Redis), periodic jobs, and a web process killed
right after a commit: committed messages are still delivered."""

from __future__ import annotations

import contextlib
import os
import signal
import time

import pytest

from app.extensions import db as _db
from app.models import User
from app.services.background import PERIODIC_JOBS, periodic
from app.tasks import runner
from tests.conftest import DATABASE_URL, PASSWORD, auth, scalar
from tests.live import gunicorn

ADDRESS = {"shipping_address": "221B Baker Street, London"}


def test_embedded_thread_delivers_after_each_commit(make_app, make_user, make_product, smtp_server):
    application = make_app(
        "testing",
        {"BACKGROUND_MODE": "thread", "OUTBOX_SWEEP_INTERVAL": 0.2, **smtp_server.config()},
    )
    worker = application.extensions["shop_background"]
    try:
        client = application.test_client()
        user = make_user()
        product = make_product(price="2.50")
        token = client.post(
            "/api/auth/login", json={"email": user.email, "password": PASSWORD}
        ).get_json()["access_token"]
        client.post(
            "/api/cart", json={"product_id": product.id, "quantity": 4}, headers=auth(token)
        )
        response = client.post("/api/orders", json=ADDRESS, headers=auth(token))
        assert response.status_code == 201
        [message] = smtp_server.wait_for(1, timeout=15)
        assert message["To"] == user.email
        assert "Total: 10.00 USD" in message.get_body(("plain",)).get_content()
        assert scalar("SELECT status FROM outbox") == "sent"
    finally:
        worker.stop()


@pytest.fixture
def counting_job():
    runs = []

    @periodic("test.counting", every=0.5)
    def count() -> None:
        runs.append(time.monotonic())

    yield runs
    PERIODIC_JOBS.pop("test.counting")


def test_a_periodic_job_runs_once_per_interval_however_many_ask(app, counting_job):
    assert runner.run_job("test.counting") is True
    assert runner.run_job("test.counting") is False  # another worker's tick, same interval
    assert len(counting_job) == 1
    time.sleep(0.5)
    assert runner.run_job("test.counting") is True
    assert len(counting_job) == 2


def test_a_periodic_job_that_raises_is_rolled_back_and_logged(app, make_user, caplog):
    user = make_user()

    @periodic("test.failing", every=60)
    def failing() -> None:
        _db.session.get(User, user.id).username = "changed"
        raise RuntimeError("boom")

    try:
        assert runner.run_job("test.failing") is False
    finally:
        PERIODIC_JOBS.pop("test.failing")
    assert scalar("SELECT username FROM users WHERE id = :i", i=user.id) == user.username
    assert "periodic job test.failing failed" in caplog.text


def test_periodic_jobs_tick_in_the_embedded_thread(make_app, counting_job):
    application = make_app("testing", {"BACKGROUND_MODE": "thread", "OUTBOX_SWEEP_INTERVAL": 0.1})
    worker = application.extensions["shop_background"]
    try:
        assert application.test_client().get("/api/health").status_code == 200  # starts it
        deadline = time.monotonic() + 10
        while len(counting_job) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        worker.stop()
    assert len(counting_job) >= 2
    assert counting_job[1] - counting_job[0] >= 0.4


@pytest.mark.server
def test_web_process_killed_right_after_the_commit_loses_nothing(
    make_user, make_product, smtp_server
):
    user = make_user()
    product = make_product(price="3.00", stock=5)
    # First server: records only (as if its enqueue never happened), then dies.
    off = {"BACKGROUND_MODE": "off"}
    # (the server is gone when the block ends: nothing left to stop)
    with (
        contextlib.suppress(ProcessLookupError),
        gunicorn(DATABASE_URL, workers=1, extra_env=off) as server,
    ):
        _status, body = server.request(
            "POST", "/api/auth/login", {"email": user.email, "password": PASSWORD}
        )
        token = body["access_token"]
        server.request("POST", "/api/cart", {"product_id": product.id, "quantity": 2}, token)
        status, order = server.request("POST", "/api/orders", ADDRESS, token)
        assert status == 201
        os.killpg(server.process.pid, signal.SIGKILL)
        server.process.wait()
    assert scalar("SELECT count(*) FROM outbox WHERE status = 'pending'") == 1
    assert smtp_server.messages == []
    # The next process (embedded mode) finds and delivers it on its first tick.
    env = {"BACKGROUND_MODE": "thread", "OUTBOX_SWEEP_INTERVAL": "0.2", **smtp_server.env()}
    with gunicorn(DATABASE_URL, workers=1, extra_env=env) as server:
        [message] = smtp_server.wait_for(1, timeout=20)
    assert message["Subject"] == f"Shop: order #{order['id']} confirmed"
    assert scalar("SELECT status FROM outbox") == "sent"
