"""Real Celery workers on Redis deliver the outbox (PostgreSQL leg: needs
REDIS_URL and TEST_DATABASE_URL on PostgreSQL): after each commit, after a
worker is killed mid-delivery, and two workers over 200 messages."""

from __future__ import annotations

import os
import signal
import time

import pytest

from app.extensions import db
from app.services.outbox import queue_email
from tests.helpers import DATABASE_URL, IS_POSTGRES, PASSWORD, REDIS_URL, auth, scalar
from tests.live import celery_worker, eventually

pytestmark = [
    pytest.mark.server,
    pytest.mark.skipif(
        not (REDIS_URL and IS_POSTGRES), reason="needs REDIS_URL and PostgreSQL (the CI leg)"
    ),
]
ADDRESS = {"shipping_address": "221B Baker Street, London"}
FAST = {
    "OUTBOX_SWEEP_INTERVAL": "0.5",
    "OUTBOX_SWEEP_GRACE": "0",
    "OUTBOX_LEASE": "3",
    "MAIL_TIMEOUT": "2",
}


@pytest.fixture
def redis_queue():
    """The test's Redis database, its Celery queue emptied before and after."""
    import redis

    client = redis.Redis.from_url(REDIS_URL)
    keys = ("celery", "unacked", "unacked_index", "unacked_mutex")
    client.delete(*keys)
    yield REDIS_URL
    client.delete(*keys)
    client.close()


def web_app(make_app, smtp_server):
    return make_app("testing", {"BACKGROUND_MODE": "celery", "REDIS_URL": REDIS_URL})


def test_a_worker_delivers_what_the_web_app_commits(
    make_app, make_user, make_product, smtp_server, redis_queue
):
    application = web_app(make_app, smtp_server)
    client = application.test_client()
    user = make_user()
    product = make_product(price="7.25")
    token = client.post(
        "/api/auth/login", json={"email": user.email, "password": PASSWORD}
    ).get_json()["access_token"]
    client.post("/api/cart", json={"product_id": product.id, "quantity": 2}, headers=auth(token))
    order = client.post("/api/orders", json=ADDRESS, headers=auth(token)).get_json()
    client.post(f"/api/orders/{order['id']}/cancel", headers=auth(token))
    env = {**FAST, **smtp_server.env()}
    with celery_worker(DATABASE_URL, redis_queue, name="one", extra_env=env):
        messages = smtp_server.wait_for(2, timeout=40)
        eventually(lambda: scalar("SELECT count(*) FROM outbox WHERE status = 'sent'") == 2)
    subjects = sorted(m["Subject"] for m in messages)
    assert subjects == [
        f"Shop: order #{order['id']} confirmed",
        f"Shop: order #{order['id']} was cancelled",
    ]
    assert "Total: 14.50 USD" in messages[0].get_body(("plain",)).get_content()
    assert scalar("SELECT count(*) FROM outbox WHERE status = 'sent'") == 2


def test_a_worker_killed_mid_delivery_loses_nothing(make_user, smtp_server, redis_queue):
    user = make_user()
    queue_email(user.email, "verify_email", _verify_context(user))
    db.session.commit()
    smtp_server.sink.stall = 8  # the DATA step hangs: the worker is mid-delivery
    env = {**FAST, **smtp_server.env()}  # MAIL_TIMEOUT below the lease, as start-up requires
    with celery_worker(DATABASE_URL, redis_queue, name="doomed", extra_env=env) as doomed:
        deadline = time.monotonic() + 40
        while smtp_server.sink.attempts == 0:
            assert time.monotonic() < deadline, "the worker never started delivering"
            time.sleep(0.05)
        os.killpg(doomed.pid, signal.SIGKILL)
        doomed.wait()
    assert scalar("SELECT status FROM outbox") == "pending"
    smtp_server.sink.stall = 0
    with celery_worker(DATABASE_URL, redis_queue, name="heir", extra_env=env):
        eventually(lambda: scalar("SELECT status FROM outbox") == "sent", 40, "no redelivery")
    assert scalar("SELECT attempts FROM outbox") == 2
    assert any(m["To"] == user.email for m in smtp_server.messages)


def test_two_workers_over_200_messages_send_each_exactly_once(make_user, smtp_server, redis_queue):
    user = make_user()
    for n in range(200):
        queue_email(f"buyer{n}@example.com", "verify_email", _verify_context(user))
    db.session.commit()
    env = {**FAST, **smtp_server.env()}
    with (
        celery_worker(DATABASE_URL, redis_queue, name="left", extra_env=env),
        celery_worker(DATABASE_URL, redis_queue, name="right", extra_env=env),
    ):
        smtp_server.wait_for(200, timeout=120)
        eventually(lambda: scalar("SELECT count(*) FROM outbox WHERE status = 'sent'") == 200)
        time.sleep(2)  # room for a duplicate to show up
    recipients = [m["To"] for m in smtp_server.messages]
    assert len(recipients) == 200
    assert sorted(recipients) == sorted(f"buyer{n}@example.com" for n in range(200))
    assert len({m["Message-ID"] for m in smtp_server.messages}) == 200
    assert scalar("SELECT count(*) FROM outbox WHERE status = 'sent' AND attempts = 1") == 200


def _verify_context(user) -> dict:
    return {
        "user": {"username": user.username},
        "email": user.email,
        "link": "http://localhost:3000/verify-email?token=t",
        "expires_hours": 48,
    }
