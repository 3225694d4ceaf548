"""Order emails through the transactional outbox (API.md, Notifications),
received by a real SMTP server; retries, failure and the CLI."""

from __future__ import annotations

import logging
import time
from decimal import Decimal

import pytest

from app.models import OutboxMessage
from app.services.mail import format_money
from tests.helpers import auth, scalar
from tests.smtp import parts

ADDRESS = {"shipping_address": "221B Baker Street, London"}


def checkout(client, token, *lines):
    for product, quantity in lines:
        response = client.post(
            "/api/cart", json={"product_id": product.id, "quantity": quantity}, headers=auth(token)
        )
        assert response.status_code == 201, response.get_json()
    return client.post("/api/orders", json=ADDRESS, headers=auth(token))


def outbox_rows(db) -> list[OutboxMessage]:
    db.session.remove()
    rows = db.session.query(OutboxMessage).order_by(OutboxMessage.id).all()
    db.session.expunge_all()  # keep them readable after the rollback below
    db.session.rollback()
    return rows


def test_money_is_formatted_exactly(app):
    assert format_money(Decimal("1234.5")) == "1,234.50 USD"
    assert format_money(Decimal("0.1") * 3) == "0.30 USD"
    assert format_money(Decimal("999999999999.99"), "EUR") == "999,999,999,999.99 EUR"


def test_order_confirmation_is_delivered_with_items_and_total(
    app, client, buyer, make_product, smtp_server, deliver_outbox
):
    user, token = buyer
    cheap = make_product(name="Sticker", price="0.10", stock=5)
    laptop = make_product(name="Nimbus <14> Laptop", price="1299.00", stock=2)
    response = checkout(client, token, (cheap, 3), (laptop, 1))
    assert response.status_code == 201
    order_id = response.get_json()["id"]
    assert smtp_server.messages == []  # recorded, not sent by the request itself

    assert deliver_outbox() == 1
    [message] = smtp_server.wait_for(1)
    assert message["To"] == user.email and message["X-Rcpt-To"] == user.email
    assert message["Subject"] == f"Shop: order #{order_id} confirmed"
    assert message["From"] == app.config["MAIL_DEFAULT_SENDER"]
    text, html = parts(message)
    for body in (text, html):
        assert f"#{order_id}" in body and "Shop" in body
        assert "0.10 USD" in body and "0.30 USD" in body
        assert "1,299.00 USD" in body and "1,299.30 USD" in body
    assert "- Sticker x 3 @ 0.10 USD = 0.30 USD" in text
    assert "Nimbus <14> Laptop x 1 @ 1,299.00 USD = 1,299.00 USD" in text
    assert "Total: 1,299.30 USD" in text
    assert "Nimbus &lt;14&gt; Laptop" in html and "<14>" not in html  # escaped
    [row] = outbox_rows(app.extensions["sqlalchemy"])
    assert (row.status, row.attempts, row.recipient) == ("sent", 1, user.email)
    assert deliver_outbox() == 0  # nothing twice


def test_each_status_change_sends_one_email(
    client, buyer, make_product, admin_token, smtp_server, deliver_outbox
):
    user, token = buyer
    order_id = checkout(client, token, (make_product(price="5.00"), 2)).get_json()["id"]
    for status in ("processing", "shipped", "delivered"):
        response = client.put(
            f"/api/orders/{order_id}", json={"status": status}, headers=auth(admin_token)
        )
        assert response.status_code == 200
    other = checkout(client, token, (make_product(price="1.00"), 1)).get_json()["id"]
    assert client.post(f"/api/orders/{other}/cancel", headers=auth(token)).status_code == 200
    # A refused change records nothing.
    assert client.post(f"/api/orders/{other}/cancel", headers=auth(token)).status_code == 409

    assert deliver_outbox() == 6
    subjects = [m["Subject"] for m in smtp_server.wait_for(6)]
    assert subjects == [
        f"Shop: order #{order_id} confirmed",
        f"Shop: order #{order_id} is being prepared",
        f"Shop: order #{order_id} has shipped",
        f"Shop: order #{order_id} was delivered",
        f"Shop: order #{other} confirmed",
        f"Shop: order #{other} was cancelled",
    ]
    assert all(m["To"] == user.email for m in smtp_server.messages)
    text, _html = parts(smtp_server.messages[3])
    assert "delivered" in text and "Total: 10.00 USD" in text


def test_a_checkout_that_fails_records_no_email(client, buyer, make_product, db):
    _user, token = buyer
    product = make_product(stock=1)
    assert client.post("/api/orders", json=ADDRESS, headers=auth(token)).status_code == 409
    client.post("/api/cart", json={"product_id": product.id, "quantity": 1}, headers=auth(token))
    db.session.execute(db.text("UPDATE products SET stock = 0"))
    db.session.commit()
    assert client.post("/api/orders", json=ADDRESS, headers=auth(token)).status_code == 409
    assert scalar("SELECT count(*) FROM outbox") == 0
    assert scalar("SELECT count(*) FROM orders") == 0


def test_refusing_smtp_is_retried_with_backoff_then_failed_and_logged(
    app, client, buyer, make_product, smtp_server, deliver_outbox, caplog, db
):
    _user, token = buyer
    app.config.update(MAIL_MAX_ATTEMPTS=3, MAIL_RETRY_BACKOFF=0.3)
    try:
        smtp_server.sink.refuse = "451 4.3.0 Try again later"
        assert checkout(client, token, (make_product(), 1)).status_code == 201
        caplog.set_level(logging.WARNING, logger="app.services.outbox")
        delays = []
        for attempt in (1, 2, 3):
            assert deliver_outbox() == 1
            [row] = outbox_rows(db)
            assert row.attempts == attempt
            if attempt < 3:
                assert row.status == "pending"
                delays.append((row.available_at - row.created_at).total_seconds())
                assert deliver_outbox() == 0  # not before the backoff
                time.sleep(0.3 * 2 ** (attempt - 1) + 0.05)
        assert row.status == "failed" and "451" in row.last_error
        assert smtp_server.sink.attempts == 3 and smtp_server.messages == []
        assert delays[1] - delays[0] >= 0.5  # 0.3 s, then 0.6 s after the second try
        assert any(
            r.levelno == logging.ERROR and "failed after 3 attempts" in r.message
            for r in caplog.records
        )

        result = app.test_cli_runner().invoke(args=["mail", "failed"])
        assert result.exit_code == 0 and f"{row.id}\temail\torder_placed" in result.output
        assert "451" in result.output

        smtp_server.sink.refuse = None
        result = app.test_cli_runner().invoke(args=["mail", "retry", "--all"])
        assert result.exit_code == 0 and f"Queued 1 message(s) again: {row.id}." in result.output
        assert deliver_outbox() == 1
        assert len(smtp_server.wait_for(1)) == 1
        assert outbox_rows(db)[0].status == "sent"
        assert "No failed messages." in app.test_cli_runner().invoke(args=["mail", "failed"]).output
    finally:
        app.config.update(MAIL_MAX_ATTEMPTS=5, MAIL_RETRY_BACKOFF=30.0)


def test_smtp_down_keeps_the_message_pending_and_the_api_answering(
    app, client, buyer, make_product, smtp_server, deliver_outbox, db
):
    _user, token = buyer
    smtp_server.stop()  # nothing listens on its port now
    assert checkout(client, token, (make_product(), 1)).status_code == 201
    assert deliver_outbox() == 1
    [row] = outbox_rows(db)
    assert row.status == "pending" and row.attempts == 1
    assert "Connection refused" in row.last_error or "ConnectionRefused" in row.last_error
    assert client.get("/api/health").status_code == 200


def test_retry_cli_needs_ids_or_all(app):
    result = app.test_cli_runner().invoke(args=["mail", "retry"])
    assert result.exit_code != 0 and "give message ids, or --all" in result.output
    result = app.test_cli_runner().invoke(args=["mail", "retry", "12345"])
    assert result.exit_code == 0 and "Queued 0 message(s)" in result.output


def test_console_backend_logs_the_message(app, client, buyer, make_product, deliver_outbox, caplog):
    _user, token = buyer
    assert app.config["MAIL_BACKEND"] == "console"
    caplog.set_level(logging.INFO, logger="app.services.mail")
    assert checkout(client, token, (make_product(name="Lamp", price="49.90"), 2)).status_code == 201
    assert deliver_outbox() == 1
    assert "order #" in caplog.text and "Lamp x 2 @ 49.90 USD = 99.80 USD" in caplog.text


def test_cancelling_a_paid_order_mails_the_refund(
    client, buyer, make_product, smtp_server, deliver_outbox
):
    _user, token = buyer
    order_id = checkout(client, token, (make_product(price="12.34"), 2)).get_json()["id"]
    paid = client.post(
        f"/api/orders/{order_id}/pay", json={"payment_method": "pm_card_visa"}, headers=auth(token)
    )
    assert paid.status_code == 200 and paid.get_json()["status"] == "processing"
    assert client.post(f"/api/orders/{order_id}/cancel", headers=auth(token)).status_code == 200
    assert deliver_outbox() == 3
    placed, processing, cancelled = smtp_server.wait_for(3)
    assert processing["Subject"] == f"Shop: order #{order_id} is being prepared"
    assert cancelled["Subject"] == f"Shop: order #{order_id} was cancelled"
    text, html = parts(cancelled)
    assert "Refunded: 24.68 USD" in text and "Refunded: 24.68 USD" in html
    assert "Refunded" not in parts(placed)[0]


def test_a_failing_task_is_retried_then_failed(app, deliver_outbox, db, caplog):
    from app.services.background import TASK_HANDLERS, task_handler
    from app.services.outbox import queue_task

    calls = []

    @task_handler("test.flaky")
    def flaky(args: dict) -> None:
        calls.append(args)
        raise RuntimeError("not today")

    app.config.update(MAIL_MAX_ATTEMPTS=2, MAIL_RETRY_BACKOFF=0.2)
    try:
        queue_task("test.flaky", {"n": 1})
        db.session.commit()
        assert deliver_outbox() == 1
        time.sleep(0.25)
        assert deliver_outbox() == 1
        [row] = outbox_rows(db)
        assert (row.kind, row.status, row.attempts) == ("task", "failed", 2)
        assert row.last_error == "RuntimeError: not today" and calls == [{"n": 1}, {"n": 1}]
        assert "failed after 2 attempts" in caplog.text
    finally:
        TASK_HANDLERS.pop("test.flaky")
        app.config.update(MAIL_MAX_ATTEMPTS=5, MAIL_RETRY_BACKOFF=30.0)


def test_an_unknown_task_is_refused_at_queue_time(app):
    from app.services.outbox import queue_task

    with pytest.raises(LookupError):
        queue_task("no.such.task", {})


def test_an_email_is_rendered_by_the_worker_and_an_older_rendered_row_still_goes(
    app, db, client, buyer, make_product, smtp_server, deliver_outbox
):
    """The row holds the template and its context (decimals as exact strings),
    not the rendered bodies: rendering is the worker's, outside the checkout's
    locks. A row queued rendered (before that change) is delivered as it is."""
    from app.services import mail

    user, token = buyer
    sticker = make_product(name="Sticker", price="0.10", stock=5)
    assert checkout(client, token, (sticker, 3)).status_code == 201
    [row] = outbox_rows(db)
    assert row.payload["template"] == "order_placed"
    context = row.payload["context"]
    assert context["order"]["total"] == "0.30" and context["order"]["lines"][0]["quantity"] == 3
    assert "subject" not in row.payload

    old = OutboxMessage(
        kind="email",
        topic="order_placed",
        recipient="old@example.com",
        payload=mail.render("order_placed", context),
    )
    db.session.add(old)
    db.session.commit()
    assert deliver_outbox() == 2
    new_message, old_message = sorted(smtp_server.wait_for(2), key=lambda m: m["To"] != user.email)
    assert new_message["Subject"] == old_message["Subject"]
    assert parts(new_message) == parts(old_message)
    assert "0.30 USD" in parts(new_message)[0]


def test_an_unknown_email_template_is_refused_at_queue_time(app):
    from jinja2 import TemplateNotFound

    from app.services.outbox import queue_email

    with pytest.raises(TemplateNotFound):
        queue_email("someone@example.com", "no_such_template", {})


@pytest.mark.parametrize("limit", [1, 2, 6])
def test_a_claim_takes_exactly_its_limit(app, db, limit):
    """PostgreSQL ran the claim's IN (subquery ... LIMIT n FOR UPDATE SKIP
    LOCKED) once per row scanned, skipping what it had just claimed: a
    claim of 1 took 6 rows, of 2 took 24, batches past their lease."""
    from app.services import outbox

    for n in range(30):
        outbox.queue_email(f"claim{n}@example.com", "order_placed", {})
    db.session.commit()
    claimed = outbox.claim_due(limit)
    db.session.commit()
    assert len(claimed) == limit
    assert scalar("SELECT count(*) FROM outbox WHERE attempts = 1") == limit
    oldest = scalar("SELECT min(id) FROM outbox")
    assert sorted(m.id for m in claimed) == list(range(oldest, oldest + limit))


def test_the_envelope_names_the_stored_address_not_the_parsed_to_header(
    app, db, smtp_server, deliver_outbox, monkeypatch
):
    """smtplib took the recipients from the parsed To header, which decodes an
    RFC 2047 encoded word (an account stored before signup refused them had
    its emails sent to two other mailboxes) and drops a quoted local part's
    quotes (`".a"@example.com` became `.a@example.com`, another mailbox)."""
    import smtplib

    from app.db import unit_of_work
    from app.services import outbox
    from tests.smtp import LOW_STOCK

    envelopes = []
    sendmail = smtplib.SMTP.sendmail

    def recording(self, from_addr, to_addrs, *args, **kwargs):
        envelopes.append(list(to_addrs))
        return sendmail(self, from_addr, to_addrs, *args, **kwargs)

    monkeypatch.setattr(smtplib.SMTP, "sendmail", recording)
    encoded, quoted = "=?utf-8?q?victim=40gmail.com=2c?=x@example.com", '".a"@example.com'
    for address in (encoded, quoted):
        with unit_of_work():
            outbox.queue_email(address, "low_stock", LOW_STOCK)
        deliver_outbox()
    # aiosmtpd refuses the encoded word's RCPT (501); a relay taking it
    # literally delivers to that mailbox, never to victim@gmail.com.
    # (aiosmtpd reports the quoted one's RCPT without its quotes.)
    assert envelopes == [[encoded], [quoted]]
    assert len(smtp_server.wait_for(1)) == 1
