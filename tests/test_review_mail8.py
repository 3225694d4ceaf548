"""Review round 8 of the emails and their delivery: the low-stock alert of a
product PUT that raises the threshold, the second charge refunded, partial
refunds, escaping and headers, retries, and real Celery workers."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import os
import signal
import subprocess
import sys
import time
from email.utils import parsedate_to_datetime
from pathlib import Path

import pytest
from sqlalchemy import text

from app.db import unit_of_work
from app.extensions import db
from app.models.types import utcnow
from app.services import catalog
from app.services.outbox import queue_email
from app.services.payment_providers import make_provider
from app.tasks.runner import drain
from tests.helpers import (
    DATABASE_URL,
    IS_POSTGRES,
    PASSWORD,
    REDIS_URL,
    auth,
    order_for,
    pay,
    scalar,
)
from tests.live import ROOT, celery_worker, eventually
from tests.smtp import LOW_STOCK, outbox_rows, parts
from tests.test_celery import redis_queue  # noqa: F401 - a fixture
from tests.test_payments_stripe import RecordingHTTPClient
from tests.test_review_payments8 import refunded_charge

SECRET = "whsec_mail8_0123456789abcdef"
STRIPE = {
    "PAYMENT_PROVIDER": "stripe",
    "STRIPE_SECRET_KEY": "sk_test_offline",
    "STRIPE_WEBHOOK_SECRET": SECRET,
}
REFUNDED = {"id": "re_1", "object": "refund", "status": "succeeded"}
HOSTILE = 'Crème <b>"brûlée"</b> & <script>x</script> ☃'


def _message_checks(app, message, to: str) -> tuple[str, str]:
    """The headers every email carries; its text and HTML parts."""
    assert message["To"] == to and message["X-Rcpt-To"] == to
    assert message["From"] == app.config["MAIL_DEFAULT_SENDER"]
    assert str(message["Message-ID"]).startswith("<outbox-")
    sent = parsedate_to_datetime(str(message["Date"]))
    assert abs((utcnow() - sent).total_seconds()) < 60
    assert "\n" not in str(message["Subject"]) and "\r" not in str(message["Subject"])
    return parts(message)


# --- the low-stock alert of a product PUT ------------------------------------------------


def test_a_put_raising_the_threshold_alerts_every_admin_once_escaped(
    app, client, make_user, login, make_product, smtp_server, deliver_outbox
):
    """README (Alerts): a PUT that raises `low_stock_threshold` to or past the
    stock sends every admin one `low_stock` email; nothing more while the
    product stays low; lowering the threshold below the stock re-arms it. The
    product's name (markup, quotes, unicode) is escaped in HTML, verbatim in
    the text part and the subject."""
    admin = make_user(admin=True)
    other = make_user(admin=True)
    make_user()  # a customer: not told
    token = login(admin)["access_token"]
    product = make_product(name=HOSTILE, stock=10, low_stock_threshold=5)

    def put(body):
        response = client.put(f"/api/products/{product.id}", json=body, headers=auth(token))
        assert response.status_code == 200, response.get_json()

    put({"low_stock_threshold": 10})  # 10 <= 10: newly low
    put({"low_stock_threshold": 12})  # still low: nothing
    put({"description": "still low"})  # nothing
    assert deliver_outbox() == 2
    messages = sorted(smtp_server.wait_for(2), key=lambda m: str(m["To"]))
    assert [m["To"] for m in messages] == sorted([admin.email, other.email])
    for message in messages:
        text, html = _message_checks(app, message, str(message["To"]))
        assert message["Subject"] == f"Shop: low stock of {HOSTILE} (#{product.id}): 10 left"
        assert HOSTILE in text and "10 left, at or below its threshold of 10" in text
        assert "<script>" not in html and "&lt;script&gt;" in html
        assert "Crème &lt;b&gt;&#34;brûlée&#34;&lt;/b&gt; &amp;" in html
        assert "<strong>10</strong> left, at or below its threshold of 10" in html
    assert len({m["Message-ID"] for m in messages}) == 2

    put({"low_stock_threshold": 9})  # above again: re-armed, no email
    put({"low_stock_threshold": 10, "stock": 10})  # low again: alert
    put({"stock": 60, "low_stock_threshold": 50})  # above: nothing
    assert deliver_outbox() == 2
    assert len(smtp_server.messages) == 4
    topics = [row.topic for row in outbox_rows(db)]
    assert topics.count("low_stock") == 4
    assert scalar("SELECT count(*) FROM outbox WHERE status <> 'sent'") == 0


def test_a_rolled_back_put_leaves_no_alert(app, make_user, make_product, deliver_outbox):
    """The alert is a row of the edit's own transaction: an edit rolled back
    after it raised the alert sends nothing."""
    admin = make_user(admin=True)
    product = make_product(stock=10, low_stock_threshold=5)
    db.session.remove()
    with pytest.raises(RuntimeError), unit_of_work():
        catalog.update_product(product.id, {"low_stock_threshold": 20}, admin)
        raise RuntimeError("a later step failed")
    db.session.remove()
    assert outbox_rows(db) == []
    assert deliver_outbox() == 0
    assert scalar("SELECT low_stock_threshold FROM products WHERE id = :id", id=product.id) == 5


@pytest.mark.parametrize(
    "name",
    [
        ("Crème brûlée ☃ " * 12).strip(),
        "Thé ☕ vert " * 10 + "bio",
        "Ωμέγα " + "x" * 60 + " ☃ " + "y" * 60,
    ],
)
def test_a_long_unicode_product_name_keeps_its_spaces_in_the_subject(
    app, client, admin_token, make_product, smtp_server, deliver_outbox, name
):
    """The subject holds the product's name. A long non-ASCII subject is
    folded into several RFC 2047 encoded words; the whitespace between two
    encoded words is no text (RFC 2047 6.2), and Python's folder (before
    gh-144156) left the name's spaces there: "Thé ☕ vert Thé" arrived as
    "Thé ☕ vertThé", in every mail client."""
    product = make_product(name=name, stock=3, low_stock_threshold=2)
    response = client.put(
        f"/api/products/{product.id}", json={"low_stock_threshold": 3}, headers=auth(admin_token)
    )
    assert response.status_code == 200, response.get_json()
    assert deliver_outbox() == 1
    [message] = smtp_server.wait_for(1)
    assert str(message["Subject"]) == f"Shop: low stock of {name} (#{product.id}): 3 left"
    raw = message.as_bytes()
    head = raw.split(b"\n\n", 1)[0]
    assert all(len(line.rstrip(b"\r")) <= 78 for line in head.split(b"\n")), head


@pytest.mark.parametrize("name", ["Evil\r\nBcc: victim@example.com", "Evil\nBcc: x@example.com"])
def test_a_product_name_cannot_inject_a_header(client, admin_token, make_product, name):
    product = make_product(stock=10, low_stock_threshold=5)
    response = client.put(
        f"/api/products/{product.id}",
        json={"name": name, "low_stock_threshold": 50},
        headers=auth(admin_token),
    )
    assert response.status_code == 422, response.get_json()
    assert scalar("SELECT count(*) FROM outbox WHERE topic = 'low_stock'") == 0


# --- refunds the customer is told of -----------------------------------------------------


@pytest.fixture
def wire():
    return RecordingHTTPClient()


@pytest.fixture
def shop(make_app, wire, smtp_server):
    """An app on the `stripe` provider (faked at the library's HTTP boundary),
    sending to the test's SMTP server."""
    application = make_app("testing", {**STRIPE, **smtp_server.config()})
    application.extensions["payment_provider"] = make_provider(application.config, http_client=wire)
    return application


def _intent(status, intent_id="pi_1", amount=3998):
    return {"id": intent_id, "object": "payment_intent", "status": status, "amount": amount}


def _webhook(client, kind: str, obj: dict, event_id: str):
    payload = json.dumps(
        {"id": event_id, "object": "event", "type": kind, "data": {"object": obj}}
    ).encode()
    at = int(time.time())
    digest = hmac.new(SECRET.encode(), f"{at}.".encode() + payload, hashlib.sha256).hexdigest()
    headers = {"Content-Type": "application/json", "Stripe-Signature": f"t={at},v1={digest}"}
    return client.post("/api/payments/webhook", data=payload, headers=headers)


def _paid_order(client, wire, token, product) -> dict:
    order = order_for(client, token, (product, 2))
    wire.answers = [(200, _intent("requires_payment_method")), (200, _intent("succeeded"))]
    assert pay(client, token, order["id"]).status_code == 200
    return order


def _deliver(application) -> int:
    with application.app_context():
        db.session.remove()
        try:
            return drain()
        finally:
            db.session.remove()


def test_a_refunded_second_charge_is_told_to_the_customer_once(
    shop, wire, buyer, make_product, smtp_server
):
    """A second PaymentIntent that succeeds for a paid order is refunded at
    Stripe (README, Webhook): the customer sees two charges on their card
    and, as for a late payment (`order_refunded`), is told the second went
    back, with its amount in the order's currency; once, however often the
    event arrives. Before, nothing was sent."""
    user, token = buyer
    client = shop.test_client()
    product = make_product(name=HOSTILE, price="19.99", stock=5)
    order = _paid_order(client, wire, token, product)
    assert _deliver(shop) == 2  # the confirmation and "processing"
    smtp_server.sink.messages.clear()

    second = {
        **_intent("succeeded", "pi_2"),
        "amount_received": 3998,
        "currency": "usd",
        "metadata": {"order_id": str(order["id"])},
    }
    wire.answers = [(200, {**REFUNDED, "id": "re_dup"})]
    for event_id in ("evt_dup", "evt_dup", "evt_dup_2"):
        response = _webhook(client, "payment_intent.succeeded", second, event_id)
        assert response.status_code == 200, response.get_json()
    assert _deliver(shop) == 1
    [message] = smtp_server.wait_for(1)
    text, html = _message_checks(shop, message, user.email)
    assert message["Subject"] == f"Shop: a second payment for order #{order['id']} was refunded"
    for body in (text, html):
        assert "charged twice" in body
        assert "Refunded: 39.98 USD" in body
        assert "Total: 39.98 USD" in body or "39.98 USD</th>" in body
    assert HOSTILE in text
    assert "<script>" not in html and "Crème &lt;b&gt;" in html
    time.sleep(0.2)
    assert len(smtp_server.messages) == 1


def test_a_failed_refund_of_a_second_charge_emails_nothing(
    shop, wire, buyer, make_product, smtp_server
):
    """The refund failing rolls the webhook back (502): no email tells of a
    refund that did not happen; the redelivery that refunds sends one."""
    _user, token = buyer
    client = shop.test_client()
    order = _paid_order(client, wire, token, make_product(price="19.99", stock=5))
    second = {
        **_intent("succeeded", "pi_2"),
        "currency": "usd",
        "metadata": {"order_id": str(order["id"])},
    }
    refused = {"error": {"type": "api_error", "message": "try later"}}
    wire.answers = [(400, refused)]
    assert _webhook(client, "payment_intent.succeeded", second, "evt_dup").status_code == 502
    assert [row.topic for row in outbox_rows(db)] == ["order_placed", "order_processing"]
    wire.answers = [(200, REFUNDED)]
    assert _webhook(client, "payment_intent.succeeded", second, "evt_dup").status_code == 200
    topics = [row.topic for row in outbox_rows(db)]
    assert topics[2:] == ["second_payment_refunded"]


# --- real Celery workers on Redis (PostgreSQL leg) ---------------------------------------

celery_leg = pytest.mark.skipif(
    not (REDIS_URL and IS_POSTGRES), reason="needs REDIS_URL and PostgreSQL (the CI leg)"
)
FAST = {
    "OUTBOX_SWEEP_INTERVAL": "0.5",
    "OUTBOX_SWEEP_GRACE": "0",
    "OUTBOX_LEASE": "10",
    "MAIL_TIMEOUT": "1",
    "MAIL_RETRY_BACKOFF": "1",
}


@celery_leg
@pytest.mark.server
def test_a_worker_sends_the_threshold_alert_once_after_a_refusal(
    make_app,
    make_user,
    login,
    make_product,
    smtp_server,
    redis_queue,  # noqa: F811 - test_celery's fixture
):
    """A PUT raising the threshold, committed by a web app in Celery mode:
    the relay answers 451 (temporary) first, so the worker retries after
    MAIL_RETRY_BACKOFF and each admin gets the alert exactly once."""
    web = make_app("testing", {"BACKGROUND_MODE": "celery", "REDIS_URL": REDIS_URL})
    client = web.test_client()
    admins = [make_user(admin=True), make_user(admin=True)]
    token = client.post(
        "/api/auth/login", json={"email": admins[0].email, "password": PASSWORD}
    ).get_json()["access_token"]
    product = make_product(name="Thé ☕ <i>vert</i>", stock=7, low_stock_threshold=2)
    smtp_server.sink.refuse = "451 4.3.0 try again later"
    response = client.put(
        f"/api/products/{product.id}", json={"low_stock_threshold": 7}, headers=auth(token)
    )
    assert response.status_code == 200, response.get_json()
    env = {**FAST, **smtp_server.env()}
    with celery_worker(DATABASE_URL, redis_queue, name="alerts", extra_env=env):
        eventually(lambda: smtp_server.sink.attempts >= 2, 40, "no attempt")
        smtp_server.sink.refuse = None
        messages = smtp_server.wait_for(2, timeout=40)
        eventually(lambda: scalar("SELECT count(*) FROM outbox WHERE status = 'sent'") == 2)
        time.sleep(1.5)  # room for a duplicate
    assert sorted(str(m["To"]) for m in smtp_server.messages) == sorted(a.email for a in admins)
    assert scalar("SELECT min(attempts) FROM outbox") >= 2
    for message in messages:
        assert (
            message["Subject"] == f"Shop: low stock of Thé ☕ <i>vert</i> (#{product.id}): 7 left"
        )
        text, html = parts(message)
        assert "Thé ☕ <i>vert</i>" in text and "Thé ☕ &lt;i&gt;vert&lt;/i&gt;" in html


@celery_leg
@pytest.mark.server
def test_a_5xx_refusal_fails_the_row_at_once_under_celery(
    make_user,
    smtp_server,
    redis_queue,  # noqa: F811 - test_celery's fixture
):
    """RFC 5321: a 5xx is permanent, the row `failed` after one attempt (a
    4xx is retried: the test above)."""
    queue_email(make_user().email, "low_stock", LOW_STOCK)
    db.session.commit()
    smtp_server.sink.refuse = "550 5.1.1 no such user"
    env = {**FAST, **smtp_server.env()}
    with celery_worker(DATABASE_URL, redis_queue, name="refused", extra_env=env):
        eventually(lambda: scalar("SELECT status FROM outbox") == "failed", 40, "not failed")
        time.sleep(1.5)  # no retry follows
    assert scalar("SELECT attempts FROM outbox") == 1
    assert smtp_server.sink.attempts == 1
    assert "550" in scalar("SELECT last_error FROM outbox")


def _stall_the_second(sink):
    """The relay takes the first message, then hangs on the second's DATA."""
    original = type(sink).handle_DATA

    async def stall_second(server, session, envelope):
        with sink.lock:
            stalled = sink.attempts == 1
            if stalled:
                sink.attempts += 1
        if stalled:
            await asyncio.sleep(30)
            return "451 too late"
        return await original(sink, server, session, envelope)

    sink.handle_DATA = stall_second


def _statuses() -> dict[int, tuple[str, int]]:
    rows = db.session.execute(text("SELECT id, status, attempts FROM outbox")).all()
    db.session.rollback()
    return {row.id: (row.status, row.attempts) for row in rows}


@pytest.mark.server
def test_mail_deliver_killed_mid_batch_leaves_the_rest_to_the_next_once(
    make_user, smtp_server, tmp_path
):
    """`flask mail deliver` claims four emails as one batch (OUTBOX_LEASE 10
    / 2 / MAIL_TIMEOUT 1: 5 a batch); the relay hangs on the second; the
    process is killed. The first stays sent; the three others wait for the
    lease, then the next run sends each exactly once."""
    ids = [queue_email(f"batch{n}@example.com", "low_stock", LOW_STOCK) for n in range(4)]
    db.session.commit()
    sink = smtp_server.sink
    _stall_the_second(sink)
    env = {
        **os.environ,
        **FAST,
        **smtp_server.env(),
        "FLASK_CONFIG": "testing",
        "FLASK_APP": "app:create_app",
        "DATABASE_URL": DATABASE_URL,
        "BACKGROUND_MODE": "off",
    }
    env.pop("REDIS_URL", None)
    flask = str(Path(sys.executable).with_name("flask"))
    doomed = subprocess.Popen([flask, "mail", "deliver"], env=env, cwd=ROOT, start_new_session=True)
    try:
        eventually(lambda: sink.attempts >= 2, 40, "the second send never started")
    finally:
        os.killpg(doomed.pid, signal.SIGKILL)
        doomed.wait()
    assert [m["To"] for m in smtp_server.messages] == ["batch0@example.com"]
    assert _statuses() == {
        ids[0]: ("sent", 1),
        ids[1]: ("pending", 1),
        ids[2]: ("pending", 1),
        ids[3]: ("pending", 1),
    }
    del sink.handle_DATA  # the plain relay again
    early = subprocess.run([flask, "mail", "deliver"], env=env, cwd=ROOT, timeout=60)
    assert early.returncode == 0
    assert len(smtp_server.messages) == 1  # leased still: nobody takes them
    time.sleep(10)
    late = subprocess.run([flask, "mail", "deliver"], env=env, cwd=ROOT, timeout=60)
    assert late.returncode == 0
    recipients = sorted(str(m["To"]) for m in smtp_server.messages)
    assert recipients == [f"batch{n}@example.com" for n in range(4)]
    assert _statuses() == {
        ids[0]: ("sent", 1),
        ids[1]: ("sent", 2),
        ids[2]: ("sent", 2),
        ids[3]: ("sent", 2),
    }


@celery_leg
@pytest.mark.server
def test_a_celery_worker_killed_mid_send_loses_nothing_and_sends_once(
    make_user,
    smtp_server,
    redis_queue,  # noqa: F811 - test_celery's fixture
):
    """Under Celery each row is one task (two threads a worker): the worker
    is killed while the relay hangs on one; that row is sent by the next
    worker after its lease; every row exactly once."""
    ids = [queue_email(f"celery{n}@example.com", "low_stock", LOW_STOCK) for n in range(4)]
    db.session.commit()
    sink = smtp_server.sink
    _stall_the_second(sink)
    env = {**FAST, **smtp_server.env()}
    with celery_worker(DATABASE_URL, redis_queue, name="doomed", extra_env=env) as doomed:
        eventually(lambda: sink.attempts >= 2, 40, "the second send never started")
        time.sleep(0.5)
        os.killpg(doomed.pid, signal.SIGKILL)
        doomed.wait()
    stuck = [i for i, (status, _) in _statuses().items() if status != "sent"]
    assert stuck, "the hung row cannot have been recorded"
    del sink.handle_DATA
    with celery_worker(DATABASE_URL, redis_queue, name="heir", extra_env=env):
        eventually(
            lambda: scalar("SELECT count(*) FROM outbox WHERE status = 'sent'") == 4,
            40,
            "not all delivered",
        )
        time.sleep(1.5)
    recipients = sorted(str(m["To"]) for m in smtp_server.messages)
    assert recipients == [f"celery{n}@example.com" for n in range(4)]
    assert len({m["Message-ID"] for m in smtp_server.messages}) == 4
    assert set(_statuses()) == set(ids)


def test_a_partial_refund_emails_nothing_and_the_cancel_tells_what_it_gave_back(
    shop, wire, buyer, make_product, smtp_server
):
    """A partial refund made at Stripe sends no email (README lists none; the
    order stays paid). Cancelling the order then refunds the rest (24.98 of
    39.98) and its one cancellation email says what this cancel gave back,
    in the order's currency (it said 39.98, as if all of it went back now);
    a cancel whose refund fails emails nothing."""
    user, token = buyer
    client = shop.test_client()
    order = _paid_order(client, wire, token, make_product(price="19.99", stock=5))
    charge = refunded_charge(order["id"], 1500)
    assert _webhook(client, "charge.refunded", charge, "evt_part").status_code == 200
    assert [row.topic for row in outbox_rows(db)] == ["order_placed", "order_processing"]

    refused = {"error": {"type": "api_error", "message": "try later"}}
    wire.answers = [(400, refused)]
    cancel = client.post(f"/api/orders/{order['id']}/cancel", headers=auth(token))
    assert cancel.status_code == 502, cancel.get_json()
    assert [row.topic for row in outbox_rows(db)] == ["order_placed", "order_processing"]

    wire.answers = [(200, REFUNDED)]
    cancel = client.post(f"/api/orders/{order['id']}/cancel", headers=auth(token))
    assert cancel.status_code == 200, cancel.get_json()
    assert wire.requests[-1]["form"]["amount"] == "2498"
    assert _deliver(shop) == 3
    messages = smtp_server.wait_for(3)
    [cancelled] = [m for m in messages if "cancelled" in str(m["Subject"])]
    assert cancelled["Subject"] == f"Shop: order #{order['id']} was cancelled"
    text, html = _message_checks(shop, cancelled, user.email)
    for body in (text, html):
        assert "Refunded: 24.98 USD to your original payment method." in body
        assert body.count("Refunded:") == 1
