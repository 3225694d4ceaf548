"""Abandoned checkouts (API.md, Payments): a pending, unpaid order older than
ORDER_PAYMENT_TIMEOUT is cancelled and its stock restored."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import text

from app.db import unit_of_work
from app.models.types import utcnow
from app.services.payment_timeouts import cancel_expired_orders
from tests.helpers import (
    DATABASE_URL,
    IS_POSTGRES,
    REDIS_URL,
    VISA,
    auth,
    order_for,
    pay,
    race,
    scalar,
    stock,
)
from tests.live import celery_worker, eventually, gunicorn


def age(db, order_id: int, seconds: int) -> None:
    """Make an order look `seconds` old."""
    db.session.execute(
        text("UPDATE orders SET created_at = :at WHERE id = :id"),
        {"at": utcnow() - timedelta(seconds=seconds), "id": order_id},
    )
    db.session.commit()


def test_expired_unpaid_orders_are_cancelled_and_restocked(app, db, client, buyer, make_product):
    _, token = buyer
    product = make_product(stock=10)
    old = order_for(client, token, (product, 3))
    fresh = order_for(client, token, (product, 2))
    paid = order_for(client, token, (product, 1))
    assert pay(client, token, paid["id"]).status_code == 200
    for order_id in (old["id"], paid["id"]):
        age(db, order_id, 1801)
    age(db, fresh["id"], 1700)
    assert stock(product) == 4

    cancelled = cancel_expired_orders()
    db.session.commit()

    assert [o.id for o in cancelled] == [old["id"]]
    assert stock(product) == 7
    body = client.get(f"/api/orders/{old['id']}", headers=auth(token)).get_json()
    assert body["status"] == "cancelled" and body["payment_status"] == "unpaid"
    assert [h["status"] for h in body["status_history"]] == ["pending", "cancelled"]
    assert scalar("SELECT status FROM orders WHERE id = :i", i=fresh["id"]) == "pending"
    assert scalar("SELECT status FROM orders WHERE id = :i", i=paid["id"]) == "processing"
    # A second sweep finds nothing more: stock comes back exactly once.
    assert cancel_expired_orders() == []
    db.session.commit()
    assert stock(product) == 7


def test_a_timeout_of_zero_turns_the_sweep_off(app, db, client, buyer, make_product):
    _, token = buyer
    product = make_product(stock=5)
    order = order_for(client, token, (product, 1))
    age(db, order["id"], 10 * 86400)
    app.config["ORDER_PAYMENT_TIMEOUT"] = 0
    try:
        assert cancel_expired_orders() == []
    finally:
        app.config["ORDER_PAYMENT_TIMEOUT"] = 1800
    assert stock(product) == 4


def test_the_cli_command_cancels_and_commits(app, db, client, buyer, make_product):
    _, token = buyer
    product = make_product(stock=5)
    order = order_for(client, token, (product, 2))
    age(db, order["id"], 3600)
    result = app.test_cli_runner().invoke(args=["cancel-expired-orders"])
    assert result.exit_code == 0, result.output
    assert "Cancelled 1 unpaid order" in result.output
    assert scalar("SELECT status FROM orders") == "cancelled"
    assert stock(product) == 5


def test_the_worker_cancels_and_the_customer_gets_the_email(
    app, db, client, make_user, login, make_product, smtp_server, deliver_outbox
):
    from app.tasks import runner

    user = make_user()
    token = login(user)["access_token"]
    product = make_product(name="Abandoned Lamp", price="12.50", stock=6)
    order = order_for(client, token, (product, 2))
    deliver_outbox()  # the confirmation of the order
    smtp_server.sink.messages.clear()
    age(db, order["id"], 1801)

    assert runner.run_job("orders.payment_timeout") is True
    assert deliver_outbox() == 1

    assert stock(product) == 6
    assert scalar("SELECT status FROM orders") == "cancelled"
    [message] = smtp_server.messages
    assert message["X-Rcpt-To"] == user.email
    assert "cancel" in message["Subject"].lower()
    text_part = message.get_body(("plain",)).get_content()
    assert f"#{order['id']}" in text_part or str(order["id"]) in text_part
    assert "Abandoned Lamp" in text_part
    assert message.get_body(("html",)) is not None


@pytest.mark.server
def test_the_sweep_racing_pays_never_cancels_a_paid_order(app, db, client, buyer, make_product):

    _, token = buyer
    product = make_product(stock=12)
    orders = [order_for(client, token, (product, 2)) for _ in range(6)]
    for order in orders:
        age(db, order["id"], 3600)

    def sweep():
        with app.app_context(), unit_of_work():
            return len(cancel_expired_orders())

    with gunicorn(DATABASE_URL, workers=2, threads=4) as server:
        calls = [
            lambda o=o: server.request("POST", f"/api/orders/{o['id']}/pay", VISA, token)
            for o in orders
        ]
        results = race([*calls, sweep])
    paid = sum(1 for status, _ in results[:-1] if status == 200)
    cancelled = results[-1]
    assert paid + cancelled == 6
    assert {status for status, _ in results[:-1]} <= {200, 409}
    for order in orders:
        state = (
            scalar("SELECT status FROM orders WHERE id = :i", i=order["id"]),
            scalar("SELECT payment_status FROM orders WHERE id = :i", i=order["id"]),
        )
        assert state in {("processing", "paid"), ("cancelled", "unpaid")}, state
    assert stock(product) == 12 - 2 * paid


@pytest.mark.server
@pytest.mark.skipif(
    not (REDIS_URL and IS_POSTGRES), reason="needs REDIS_URL and PostgreSQL (the CI leg)"
)
def test_a_celery_worker_runs_the_sweep_and_emails_the_customer(
    db, make_user, login, client, make_product, smtp_server
):
    import redis

    queue = redis.Redis.from_url(REDIS_URL)
    queue.delete("celery", "unacked", "unacked_index", "unacked_mutex")
    user = make_user()
    token = login(user)["access_token"]
    product = make_product(stock=3)
    order = order_for(client, token, (product, 3))
    age(db, order["id"], 7200)
    env = {
        **smtp_server.env(),
        "ORDER_PAYMENT_SWEEP_INTERVAL": "1",
        "OUTBOX_SWEEP_INTERVAL": "0.5",
        "OUTBOX_SWEEP_GRACE": "0",
    }
    try:
        with celery_worker(DATABASE_URL, REDIS_URL, name="sweeper", extra_env=env):
            eventually(lambda: scalar("SELECT status FROM orders") == "cancelled")
            messages = smtp_server.wait_for(2, timeout=40)  # the confirmation, then this
    finally:
        queue.delete("celery", "unacked", "unacked_index", "unacked_mutex")
        queue.close()
    assert stock(product) == 3
    cancelled = [m for m in messages if "cancelled" in m["Subject"]]
    assert len(cancelled) == 1 and cancelled[0]["X-Rcpt-To"] == user.email
