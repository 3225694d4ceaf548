"""Review (notify): email notifications on background workers and inventory alerts."""

from __future__ import annotations

import threading
import time

from aiosmtpd.controller import Controller
from sqlalchemy import update

from app.db import unit_of_work
from app.models import OutboxMessage
from app.models.types import utcnow
from app.services import outbox
from app.tasks import runner
from tests.helpers import auth
from tests.live import free_port
from tests.reviewing import cancel_expired_in_a_cli_process
from tests.smtp import LOW_STOCK, MAIL_KEYS, Sink, SlowSink, outbox_rows

ADDRESS = {"shipping_address": "221B Baker Street, London"}


def _smtp(app, sink, **config):
    port = free_port()
    controller = Controller(sink, hostname="127.0.0.1", port=port)
    controller.start()
    saved = {key: app.config[key] for key in MAIL_KEYS}
    app.config.update(MAIL_BACKEND="smtp", MAIL_SERVER="127.0.0.1", MAIL_PORT=port, **config)
    return controller, saved


def test_one_email_that_outlives_its_lease_is_never_sent_twice(app, db):
    """README: "a crash between the SMTP server's 250 and the sent mark is the
    only way to get a copy twice". MAIL_TIMEOUT bounds each socket read, not
    a delivery: a relay answering each of EHLO, MAIL, RCPT and DATA in 0.9 s
    (MAIL_TIMEOUT 1 s) takes 3.6 s for one email, longer than OUTBOX_LEASE
    (2 s, a valid setting: above MAIL_TIMEOUT; batch_size() is 1). Nothing
    crashed, yet once the lease ended a second worker claimed the row the
    first was still sending, and the recipient got the email twice (found by
    review). Now a send ends before its lease does: the first worker gives
    up, records the failed attempt (a retry later), and no second worker
    ever sends while it still is."""
    sink = SlowSink(0.9)  # EHLO, MAIL, RCPT and DATA each in 0.9 s
    controller, saved = _smtp(app, sink, MAIL_TIMEOUT=1, OUTBOX_LEASE=2.0)
    try:
        with unit_of_work():
            outbox.queue_email("slow@example.com", "low_stock", LOW_STOCK)
        assert runner.batch_size() == 1

        def first_worker():
            with app.app_context():
                runner.drain()

        thread = threading.Thread(target=first_worker)
        thread.start()
        deadline = time.monotonic() + 10
        while True:  # wait for the first worker's claim, then for its lease to end
            [row] = outbox_rows(db)
            if row.attempts == 1 or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        assert row.attempts == 1
        time.sleep(max(0.0, (row.available_at - utcnow()).total_seconds()) + 0.1)
        assert not thread.is_alive()  # it gave up before its lease ended
        runner.drain()  # a second worker: the row waits for its retry
        db.session.remove()
        thread.join(30)
        assert sink.messages == []
        [row] = outbox_rows(db)
        assert (row.status, row.attempts) == ("pending", 1), row
        assert "lease" in row.last_error, row.last_error
    finally:
        app.config.update(saved)
        controller.stop()


class _BadQuitSink(Sink):
    """A relay that accepts the message (250) and then answers QUIT with
    421 (shutting down) instead of 221."""

    async def handle_QUIT(self, server, session, envelope):  # noqa: N802
        return "421 closing"


def test_an_accepted_email_is_not_retried_for_a_bad_quit_reply(app, db):
    """README: a failure "schedules a retry"; a copy twice only for a crash
    between the server's 250 and the sent mark. A relay that accepts the
    message (250 after DATA) and answers QUIT with 421 makes
    `smtplib.SMTP.__exit__` raise SMTPResponseException, which
    `runner.deliver_batch` takes for a failed delivery: the delivered email
    is scheduled for a retry (and sent again on every attempt, then marked
    failed after MAIL_MAX_ATTEMPTS copies)."""
    sink = _BadQuitSink()
    controller, saved = _smtp(app, sink, MAIL_TIMEOUT=5, OUTBOX_LEASE=120)
    try:
        with unit_of_work():
            outbox.queue_email("quit@example.com", "low_stock", LOW_STOCK)
        assert runner.drain() == 1
        assert [m["To"] for m in sink.messages] == ["quit@example.com"]  # accepted
        [row] = outbox_rows(db)
        assert (row.status, row.attempts, row.last_error) == ("sent", 1, None)
    finally:
        app.config.update(saved)
        controller.stop()


def test_a_domain_idna_2003_maps_to_another_domain_is_not_mailed_there(
    client, make_user, smtp_server, deliver_outbox
):
    """README: "An address whose domain is not ASCII goes out in its IDNA
    ASCII form (xn--...)". `mail.ascii_domain` uses Python's `idna` codec
    (IDNA 2003), whose nameprep maps `ß` to `ss`: `straße.de` (a domain of
    its own, `xn--strae-oqa.de` under IDNA 2008 / UTS 46, as registries
    and mail clients use) becomes `strasse.de`, another domain. Signup
    accepts `bob@straße.de`; its verification email and a password reset
    link (which opens the account) go to bob@strasse.de."""
    email = "bob@straße.de"
    response = client.post(
        "/api/auth/signup",
        json={"username": "strasse", "email": email, "password": "correct-horse-9"},
    )
    if response.status_code == 422:  # refusing the address is a fix too
        return
    assert response.status_code == 201, response.get_json()
    assert response.get_json()["user"]["email"] == email
    assert client.post("/api/auth/password-reset", json={"email": email}).status_code == 202
    deliver_outbox()
    messages = smtp_server.wait_for(2)
    subjects = sorted(m["Subject"] for m in messages)
    assert subjects == ["Shop: confirm your email address", "Shop: reset your password"]
    recipients = {m["X-Rcpt-To"] for m in messages}
    assert recipients <= {"bob@xn--strae-oqa.de", "bob@straße.de"}, recipients


def test_a_cli_command_in_embedded_mode_leaves_no_email_half_delivered(
    app, db, client, buyer, make_product, smtp_server
):
    """README, Email and background work: without REDIS_URL each app process
    runs the embedded thread that "delivers right after each commit"; a row
    waits for its lease to end, or is sent twice, only when its worker is
    killed (a gunicorn worker that leaves normally first lets the thread
    record its batch: `worker_exit`). `flask cancel-expired-orders` (the
    documented command) commits each cancellation, which starts the daemon
    thread in the CLI process; the command returns and the interpreter ends
    the thread mid-batch. Observed (a relay taking 0.5 s per DATA, both
    databases): the relay received 1 email, no row is marked sent, and that
    row stays `pending`, claimed (attempts 1, leased OUTBOX_LEASE ahead) by
    a process that is gone: it is sent again once the lease ends."""

    from datetime import timedelta

    from sqlalchemy import update

    from app.models import Order

    _user, token = buyer
    product = make_product(stock=100)
    for _ in range(12):
        client.post(
            "/api/cart", json={"product_id": product.id, "quantity": 1}, headers=auth(token)
        )
        assert client.post("/api/orders", json=ADDRESS, headers=auth(token)).status_code == 201
    db.session.execute(update(OutboxMessage).values(status="sent"))  # the confirmations
    db.session.execute(update(Order).values(created_at=utcnow() - timedelta(hours=2)))
    db.session.commit()
    db.session.remove()
    smtp_server.sink.stall = 0.5  # a relay that scans a message for half a second

    out = cancel_expired_in_a_cli_process(**smtp_server.env())
    assert "Cancelled 12 unpaid order(s)." in out
    time.sleep(3)  # whatever the relay was given has arrived
    rows = [r for r in outbox_rows(db) if r.topic == "order_cancelled"]
    assert len(rows) == 12
    received = len(smtp_server.messages)
    marked = sum(r.status == "sent" for r in rows)
    abandoned = [(r.id, r.attempts) for r in rows if r.status == "pending" and r.attempts]
    assert (received, abandoned) == (marked, []), (received, marked, abandoned)


def test_a_failure_recorded_after_another_claim_logs_no_failed_email(app, db, caplog):
    """`mark_failed_attempt` logged "failed after N attempts" at ERROR (the
    README's alert line) even when its UPDATE matched nothing, the row being
    another worker's claim by then: a failure that never happened (found by
    review). Now it says the attempt's outcome came after its lease, and
    the other worker's claim stands."""
    with unit_of_work():
        outbox.queue_email("late@example.com", "low_stock", LOW_STOCK)
    with unit_of_work():
        [mine] = outbox.claim_due(1)
        db.session.expunge(mine)
    with unit_of_work():  # its lease ran out; another worker took it
        db.session.execute(
            update(OutboxMessage)
            .where(OutboxMessage.id == mine.id)
            .values(attempts=OutboxMessage.attempts + 1)
        )
    caplog.set_level("WARNING")
    with unit_of_work():
        status = outbox.mark_failed_attempt(mine, RuntimeError("boom"), permanent=True)
    assert status == "pending"
    assert not [r for r in caplog.records if r.levelname == "ERROR"], caplog.text
    [row] = outbox_rows(db)
    assert (row.status, row.attempts, row.last_error) == ("pending", 2, None)
