"""The embedded worker (no Redis), periodic jobs, and a web process killed
right after a commit: committed messages are still delivered."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import time
from decimal import Decimal
from pathlib import Path

import pytest

from app.extensions import db as _db
from app.models import User
from app.services.background import PERIODIC_JOBS, periodic
from app.tasks import runner
from tests.helpers import DATABASE_URL, PASSWORD, REDIS_URL, auth, scalar
from tests.live import eventually, gunicorn

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
        eventually(lambda: scalar("SELECT status FROM outbox") == "sent")
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


def test_a_worker_asks_for_a_periodic_job_only_when_its_turn_may_have_come(
    app, counting_job, count_queries
):
    """The embedded worker ticks on every order placed: between a job's runs
    its ticks cost no statement, and after another worker's run it asks again
    within a tenth of the interval."""
    parked = {name: PERIODIC_JOBS.pop(name) for name in list(PERIODIC_JOBS)}
    PERIODIC_JOBS["test.counting"] = parked.pop("test.counting")
    try:
        mine, other = {}, {}
        runner.run_due_jobs(mine)
        assert len(counting_job) == 1
        with count_queries() as q:
            for _ in range(20):
                runner.run_due_jobs(mine)  # within the interval: nothing asked
        assert q.count == 0 and len(counting_job) == 1
        runner.run_due_jobs(other)  # another worker asks, finds it started
        assert len(counting_job) == 1
        assert 0 < other["test.counting"] - time.monotonic() <= 0.05 + 0.01
        time.sleep(0.5)
        runner.run_due_jobs(mine)
        assert len(counting_job) == 2
    finally:
        PERIODIC_JOBS.update(parked)


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
        eventually(lambda: scalar("SELECT status FROM outbox") == "sent")
    assert message["Subject"] == f"Shop: order #{order['id']} confirmed"


@pytest.mark.server
def test_two_processes_racing_over_200_messages_send_each_once(make_user, smtp_server):
    from app.services.outbox import queue_email

    user = make_user()
    for n in range(200):
        queue_email(f"buyer{n}@example.com", "order_delivered", _order_context(n, user))
    _db.session.commit()
    env = {
        **os.environ,
        "FLASK_CONFIG": "testing",
        "FLASK_APP": "app:create_app",
        "TEST_DATABASE_URL": DATABASE_URL,
        "LOG_LEVEL": "WARNING",
        **smtp_server.env(),
    }
    flask = Path(sys.executable).with_name("flask")
    workers = [
        subprocess.Popen(
            [str(flask), "mail", "deliver"], env=env, stdout=subprocess.PIPE, text=True
        )
        for _ in range(2)
    ]
    outputs = [worker.communicate(timeout=120)[0] for worker in workers]
    counts = [int(re.search(r"Processed (\d+)", out).group(1)) for out in outputs]
    assert sum(counts) == 200, outputs
    recipients = [m["To"] for m in smtp_server.wait_for(200)]
    assert sorted(recipients) == sorted(f"buyer{n}@example.com" for n in range(200))
    assert len({m["Message-ID"] for m in smtp_server.messages}) == 200
    assert scalar("SELECT count(*) FROM outbox WHERE status = 'sent' AND attempts = 1") == 200


def _order_context(n: int, user) -> dict:
    return {
        "user": {"username": user.username},
        "order": {
            "id": n,
            "status": "delivered",
            "total": Decimal("1.00"),
            "shipping_address": "Somewhere 1",
            "currency": "USD",
            "lines": [],
        },
        "orders_url": f"http://localhost:3000/orders/{n}",
    }


@pytest.mark.skipif(not REDIS_URL, reason="needs REDIS_URL (revocations live there)")
def test_the_api_answers_when_the_broker_is_down(make_app, make_user, make_product):
    from tests.live import free_port

    nowhere = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    application = make_app(
        "testing",
        {"BACKGROUND_MODE": "celery", "REDIS_URL": REDIS_URL, "CELERY": {"broker_url": nowhere}},
    )
    client = application.test_client()
    user = make_user()
    product = make_product()
    token = client.post(
        "/api/auth/login", json={"email": user.email, "password": PASSWORD}
    ).get_json()["access_token"]
    client.post("/api/cart", json={"product_id": product.id, "quantity": 1}, headers=auth(token))
    started = time.monotonic()
    response = client.post("/api/orders", json=ADDRESS, headers=auth(token))
    assert response.status_code == 201
    assert time.monotonic() - started < 5
    # The committed row waits for a worker's sweep.
    assert scalar("SELECT status FROM outbox") == "pending"


def test_worker_command_needs_redis(app):
    result = app.test_cli_runner().invoke(args=["worker"])
    assert result.exit_code != 0 and "REDIS_URL is not set" in result.output


def test_unknown_background_mode_is_refused(make_app):
    with pytest.raises(RuntimeError, match="unknown BACKGROUND_MODE"):
        make_app("testing", {"BACKGROUND_MODE": "sometimes"})


@pytest.mark.server
def test_a_delivering_process_killed_mid_delivery_loses_nothing(
    app, make_user, smtp_server, deliver_outbox
):
    from app.services.outbox import queue_email

    user = make_user()
    queue_email(user.email, "order_delivered", _order_context(7, user))
    _db.session.commit()
    smtp_server.sink.stall = 30  # the DATA step hangs: the process is mid-delivery
    env = {
        **os.environ,
        "FLASK_CONFIG": "testing",
        "FLASK_APP": "app:create_app",
        "TEST_DATABASE_URL": DATABASE_URL,
        "OUTBOX_LEASE": "5",  # the send is held by its DATA until the kill, or its deadline
        "MAIL_TIMEOUT": "4",  # below the lease, as start-up requires
        **smtp_server.env(),
    }
    flask = Path(sys.executable).with_name("flask")
    doomed = subprocess.Popen([str(flask), "mail", "deliver"], env=env)
    try:
        eventually(lambda: smtp_server.sink.attempts == 1, 30, "delivery never started")
    finally:
        doomed.kill()
        doomed.wait()
    assert scalar("SELECT status FROM outbox") == "pending"
    assert deliver_outbox() == 0  # still leased to the dead process
    smtp_server.sink.stall = 0
    eventually(lambda: deliver_outbox() == 1, 15, "the lease never ended")
    assert scalar("SELECT status FROM outbox") == "sent"
    assert scalar("SELECT attempts FROM outbox") == 2
    assert any(m["Subject"] == "Shop: order #7 was delivered" for m in smtp_server.messages)


class Recorder:
    def __init__(self) -> None:
        self.ids: list[int] = []

    def notify(self, ids: list[int]) -> None:
        self.ids.extend(ids)

    def stop(self) -> None:
        pass


@pytest.fixture
def recorded(app):
    saved = app.extensions["shop_background"]
    app.extensions["shop_background"] = recorder = Recorder()
    yield recorder
    app.extensions["shop_background"] = saved


def test_only_committed_rows_are_handed_to_the_workers(app, make_user, recorded):
    from app.services.outbox import queue_email

    user = make_user()
    context = _order_context(1, user)
    kept = queue_email(user.email, "order_delivered", context)
    with contextlib.suppress(RuntimeError), _db.session.begin_nested():
        queue_email("gone@example.com", "order_delivered", context)
        _db.session.flush()
        raise RuntimeError("the savepoint rolls back")
    with _db.session.begin_nested():  # released: its row stays, not its inner savepoint's
        released = queue_email(user.email, "order_delivered", context)
        with contextlib.suppress(RuntimeError), _db.session.begin_nested():
            queue_email("gone-too@example.com", "order_delivered", context)
            raise RuntimeError("the inner savepoint rolls back")
    after = queue_email(user.email, "order_shipped", {**context, "order": context["order"]})
    _db.session.commit()
    assert recorded.ids == [kept, released, after]
    assert scalar("SELECT count(*) FROM outbox") == 3
    queue_email(user.email, "order_delivered", context)
    _db.session.rollback()
    _db.session.commit()
    assert recorded.ids == [kept, released, after]  # a rolled-back row is never handed on


def test_a_stopping_embedded_worker_records_the_batch_it_sent(make_app, make_user, smtp_server):
    """stop() (gunicorn's worker_exit hook) lets the thread finish its batch
    and mark it sent before it ends: killed mid-batch, the daemon thread
    left sent emails pending, to be sent again after their lease."""
    from app.services import outbox

    application = make_app(
        "testing",
        {"BACKGROUND_MODE": "thread", "OUTBOX_SWEEP_INTERVAL": 30, **smtp_server.config()},
    )
    worker = application.extensions["shop_background"]
    smtp_server.sink.stall = 0.3
    with application.app_context():
        for n in range(12):
            product = {"id": n, "name": f"Lamp {n}", "stock": 1, "low_stock_threshold": 5}
            context = {"user": {"username": f"admin{n}"}, "product": product}
            outbox.queue_email(f"stop{n}@example.com", "low_stock", context)
        _db.session.commit()
    try:
        worker.ensure_started()
        smtp_server.wait_for(1, timeout=15)  # a batch is being sent
    finally:
        worker.stop(timeout=30)
    assert worker.thread is None
    sent = scalar("SELECT count(*) FROM outbox WHERE status = 'sent'")
    assert 1 <= sent < 12  # it stopped between batches, not after draining everything
    assert sent == len(smtp_server.messages)  # every email it sent is recorded
    assert scalar("SELECT count(*) FROM outbox WHERE status = 'pending' AND attempts > 0") == 0


def test_gunicorn_stops_the_background_work_of_a_leaving_worker(app):
    """gunicorn.conf.py's worker_exit hook calls the app's dispatcher's stop()."""
    import runpy
    from types import SimpleNamespace

    hooks = runpy.run_path(str(Path(__file__).resolve().parent.parent / "gunicorn.conf.py"))
    stopped = []

    class Recorder:
        def stop(self, timeout: float = 0) -> None:
            stopped.append(timeout)

    leaving = SimpleNamespace(
        wsgi=SimpleNamespace(extensions={"shop_background": Recorder()}),
        cfg=SimpleNamespace(graceful_timeout=30),
    )
    hooks["worker_exit"](None, leaving)
    assert stopped == [28]
    hooks["worker_exit"](None, SimpleNamespace(wsgi=app, cfg=SimpleNamespace(graceful_timeout=30)))
