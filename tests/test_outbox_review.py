"""Notifications, the outbox and payments, found by review (each failed
before its fix): permanent SMTP refusals, rows never finished, leases that
ran out, a slow relay, the Date header, mailable addresses, zero-decimal
currencies, paying a cancelled order, production's mail backend."""

from __future__ import annotations

import logging
import threading
import time

from aiosmtpd.controller import Controller
from sqlalchemy import event, text

from app.db import unit_of_work
from app.services import outbox
from app.services.background import task_handler
from app.tasks import runner
from tests.helpers import DATABASE_URL, IS_POSTGRES, auth, order_for, pay, scalar
from tests.live import free_port
from tests.smtp import LOW_STOCK, SlowSink, outbox_rows

ADDRESS = {"shipping_address": "221B Baker Street, London"}


def test_paying_a_cancelled_refunded_order_is_invalid_transition(client, buyer, make_product):
    """API.md, Payments: "Paying a paid order is a 409 `already_paid`; a
    cancelled one a 409 `invalid_transition`." A paid order that was cancelled
    (and so refunded) is a cancelled order, not a paid one, yet paying it
    answers `already_paid` / "This order is already paid" - false, the money
    was given back. `pay_order` checks `payment_status != "unpaid"` before
    the order's status."""
    _, token = buyer
    order = order_for(client, token, (make_product(), 1))
    assert pay(client, token, order["id"]).status_code == 200
    cancelled = client.post(f"/api/orders/{order['id']}/cancel", headers=auth(token))
    assert cancelled.status_code == 200
    assert cancelled.get_json()["payment_status"] == "refunded"

    response = pay(client, token, order["id"])

    assert response.status_code == 409
    assert response.get_json()["code"] == "invalid_transition", response.get_json()


def test_a_permanent_smtp_refusal_is_not_retried(
    app, client, buyer, make_product, smtp_server, deliver_outbox, db
):
    """API.md, Notifications: emails are "retried with backoff for
    MAIL_MAX_ATTEMPTS ... then marked failed and logged" - retries are for
    failures that may pass. A 5xx reply is SMTP's *permanent* negative
    completion (RFC 5321 4.2.1: "the SMTP client SHOULD NOT repeat the exact
    request"); the worker treats a 550 "mailbox unavailable" exactly like a
    451 "try again later" and sends the same message to the refusing server
    again and again (`runner.deliver_batch` / `outbox.mark_failed_attempt`
    never look at the reply code). Expected: failed after the first 5xx."""
    _user, token = buyer
    app.config.update(MAIL_RETRY_BACKOFF=0.05, MAIL_RETRY_BACKOFF_MAX=0.05)
    try:
        smtp_server.sink.refuse = "550 5.1.1 Mailbox unavailable"
        product = make_product()
        client.post(
            "/api/cart", json={"product_id": product.id, "quantity": 1}, headers=auth(token)
        )
        assert client.post("/api/orders", json=ADDRESS, headers=auth(token)).status_code == 201

        assert deliver_outbox() == 1
        time.sleep(0.2)
        deliver_outbox()  # a retry would happen here
        [row] = outbox_rows(db)
        assert smtp_server.sink.attempts == 1, "the permanently refused email was sent again"
        assert row.status == "failed", (row.status, row.attempts, row.last_error)
    finally:
        app.config.update(MAIL_RETRY_BACKOFF=30.0, MAIL_RETRY_BACKOFF_MAX=3600.0)


def test_a_message_whose_deliveries_never_finish_stops_after_max_attempts(app, db):
    """API.md, Notifications: a committed email is delivered at least once,
    "retried with backoff for `MAIL_MAX_ATTEMPTS`, default 5, then marked
    failed and logged". When a delivery never records its outcome (the worker
    is killed or hangs while sending - a poison message kills every worker
    that takes it), the row comes back after each lease and is claimed again
    forever: `outbox.claim_due` counts the attempt but never checks it
    against MAIL_MAX_ATTEMPTS, so `attempts` climbs past the limit (here 6
    claims with a limit of 2) and the row is never marked failed."""
    app.config.update(MAIL_MAX_ATTEMPTS=2, OUTBOX_LEASE=0.05)
    try:
        with unit_of_work():
            outbox.queue_email("poison@example.com", "order_placed", {})
        claims = 0
        for _ in range(6):
            with unit_of_work():
                claimed = outbox.claim_due(1)
            claims += len(claimed)
            time.sleep(0.1)  # the worker died: its lease ends
        db.session.remove()
        [row] = outbox_rows(db)
        assert claims <= 2, f"claimed {claims} times, attempts={row.attempts}, MAIL_MAX_ATTEMPTS=2"
        # The claim that found it past its limit was no attempt: the row
        # shows the two it had, not three.
        assert (row.status, row.attempts) == ("failed", 2)
        assert row.last_error == "LeaseExpired: no outcome recorded"
    finally:
        app.config.update(MAIL_MAX_ATTEMPTS=5, OUTBOX_LEASE=120.0)


def test_emails_in_a_zero_decimal_currency_show_no_cents(
    make_app, make_user, login, make_product, smtp_server, deliver_outbox
):
    """API.md: order emails name "its items and total"; money is exact and
    `order.currency` is the ISO 4217 `SHOP_CURRENCY`. The yen has no minor
    unit (the app's own `app.utils.money.exponent('JPY') == 0`, and it
    charges 1500.00 JPY as 1500), yet `mail.format_money` always prints two
    decimals: the confirmation says "3,000.00 JPY", which is not how an
    amount of yen is written ("3,000 JPY")."""
    other = make_app("testing", {"SHOP_CURRENCY": "JPY", **smtp_server.config()})
    client = other.test_client()
    token = login(make_user())["access_token"]
    order = order_for(client, token, (make_product(price="1500.00"), 2))
    assert order["currency"] == "JPY"
    with other.app_context():
        runner.drain()
    [message] = smtp_server.wait_for(1)
    text = message.get_body(("plain",)).get_content()
    assert "3,000 JPY" in text and ".00 JPY" not in text, text


def test_an_accepted_email_address_can_be_mailed(
    client, make_product, smtp_server, deliver_outbox, db
):
    """API.md, Auth: "email: a valid address"; Notifications: a committed
    email "is sent ... at least once". Signup accepts `"a\\x1cb"@example.com`
    (marshmallow's quoted local part lets control characters through
    `app/schemas/user.py` `EmailAddress`), an address no SMTP message can
    carry: building the message raises "Header values may not contain
    linefeed or carriage return characters" (\\x1c is a line boundary to
    Python), so every email to that account - verification, order
    confirmation - fails on every attempt and is never delivered. Either
    signup refuses the address (422) or the email must arrive."""
    email = '"a\x1cb"@example.com'
    response = client.post(
        "/api/auth/signup",
        json={"username": "ctrlchar", "email": email, "password": "correct-horse-9"},
    )
    if response.status_code == 422:
        return
    assert response.status_code == 201
    token = response.get_json()["access_token"]
    product = make_product()
    client.post("/api/cart", json={"product_id": product.id, "quantity": 1}, headers=auth(token))
    assert client.post("/api/orders", json=ADDRESS, headers=auth(token)).status_code == 201

    assert deliver_outbox() == 2
    rows = outbox_rows(db)
    assert [r.status for r in rows] == ["sent", "sent"], [(r.topic, r.last_error) for r in rows]


_SLOW_TASK_CALLS: list[int] = []
_SLOW_TASK_RELEASE = threading.Event()


@task_handler("review.slow_task")
def _slow_task(args: dict) -> None:
    """A task whose first run outlasts its lease (a slow lock wait, a pause):
    its database effect is one more outbox email row."""
    _SLOW_TASK_CALLS.append(1)
    if len(_SLOW_TASK_CALLS) == 1:
        _SLOW_TASK_RELEASE.wait(10)
    outbox.queue_email("effect@example.com", "order_placed", {})


def test_a_task_whose_lease_ran_out_does_not_commit_its_effects_twice(app, db):
    """`app.services.background.task_handler`: a task "runs in a transaction
    committed together with the row's completion, so its database effects
    happen once". When a run outlasts OUTBOX_LEASE, another worker claims the
    row, runs the task and completes it; the first run then commits its
    effects anyway: `runner.deliver_batch` commits `run_task` with
    `outbox.mark_sent`, whose UPDATE ... WHERE status = 'pending' matched no
    row (the other worker completed it) and nobody checks the rowcount. Here
    the task's effect (an email row) is committed twice - for
    `auth.password_reset` that is two reset emails, the first link voided."""
    _SLOW_TASK_CALLS.clear()
    _SLOW_TASK_RELEASE.clear()
    app.config.update(OUTBOX_LEASE=0.3)
    try:
        with unit_of_work():
            outbox.queue_task("review.slow_task", {})

        def first_worker():
            with app.app_context():
                runner.deliver_one()

        thread = threading.Thread(target=first_worker)
        thread.start()
        deadline = time.monotonic() + 10
        while not _SLOW_TASK_CALLS and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.5)  # the first worker's lease has ended
        assert runner.deliver_one() is True  # a second worker takes the row over
        db.session.remove()
        _SLOW_TASK_RELEASE.set()
        thread.join(15)
        effects = scalar("SELECT count(*) FROM outbox WHERE kind = 'email'")
        assert scalar("SELECT status FROM outbox WHERE kind = 'task'") == "sent"
        assert effects == 1, f"the task's effect was committed {effects} times"
    finally:
        _SLOW_TASK_RELEASE.set()
        app.config.update(OUTBOX_LEASE=120.0)


def test_production_never_logs_password_reset_links(make_app, make_user, monkeypatch, caplog):
    """API.md, Operations: "`production` refuses to start without real
    secrets"; Auth: the reset token "is stored only as a hash". MAIL_BACKEND
    defaults to `console` in every config (config.py `Config`) - API.md calls
    it the *development* default - and `ProductionConfig.check` does not
    refuse it: a production deployment that forgets MAIL_BACKEND starts,
    sends no email at all while marking every outbox row `sent`, and writes
    each password-reset link (a live account-takeover token) into the
    application log at INFO (`mail.ConsoleBackend.send`). Expected:
    production refuses to start with the console backend, or at least never
    logs the link."""
    monkeypatch.setenv("DATABASE_URL", DATABASE_URL)
    overrides = {
        "SECRET_KEY": "a-real-production-secret-key-0123456789",
        "JWT_SECRET_KEY": "a-real-production-jwt-secret-0123456789",
        "SQLALCHEMY_DATABASE_URI": DATABASE_URL,
        "RATELIMIT_ENABLED": False,
        "BACKGROUND_MODE": "off",  # a worker delivers (drained below)
    }
    try:
        production = make_app("production", overrides)
    except RuntimeError:
        return  # refused: fine
    user = make_user()
    response = production.test_client().post("/api/auth/password-reset", json={"email": user.email})
    assert response.status_code == 202
    caplog.set_level(logging.INFO)
    with production.app_context():
        runner.drain()
    assert "reset-password?token=" not in caplog.text, "a live reset link went to the log"


def test_every_email_carries_a_date_header(
    client, buyer, make_product, smtp_server, deliver_outbox
):
    """RFC 5322 3.6: "The only required header fields are the origination
    date field and the originator address field(s)" - every message must
    have a `Date:`. `mail.build_message` sets Subject, From, To and
    Message-ID but never Date, and smtplib does not add one: the SMTP server
    receives order confirmations with no Date (rejected by strict MTAs,
    scored as spam - SpamAssassin MISSING_DATE - and shown undated or at the
    wrong time by mail clients)."""
    _user, token = buyer
    order_for(client, token, (make_product(), 1))
    assert deliver_outbox() == 1
    [message] = smtp_server.wait_for(1)
    assert message["Date"] is not None, dict(message.items())


def test_a_batch_is_not_taken_over_while_its_worker_still_sends_it(app, db):
    """API.md, Notifications: "several workers ... share the work and never
    send one email twice in normal operation". `runner.batch_size` claims
    OUTBOX_LEASE / (2 * MAIL_TIMEOUT) rows at once, assuming one email takes
    at most MAIL_TIMEOUT - but MAIL_TIMEOUT bounds each socket operation, and
    one SMTP delivery is several (connect, EHLO, MAIL, RCPT, DATA, QUIT). With
    a relay that answers every command within the timeout but not at once,
    the batch outlives its lease; the rows are marked sent only after the
    whole batch, so another worker claims and sends them again while (or
    after) the first one sent them. Here 2 emails reach the server 3+ times."""
    sink = SlowSink(0.8, frozenset({"MAIL", "RCPT", "DATA"}))
    port = free_port()
    controller = Controller(sink, hostname="127.0.0.1", port=port)
    controller.start()
    saved = {
        k: app.config[k]
        for k in ("MAIL_BACKEND", "MAIL_SERVER", "MAIL_PORT", "MAIL_TIMEOUT", "OUTBOX_LEASE")
    }
    app.config.update(
        MAIL_BACKEND="smtp",
        MAIL_SERVER="127.0.0.1",
        MAIL_PORT=port,
        MAIL_TIMEOUT=1,
        OUTBOX_LEASE=4.0,
    )
    try:
        with unit_of_work():
            for n in range(2):
                outbox.queue_email(f"slow{n}@example.com", "low_stock", LOW_STOCK)
        assert runner.batch_size() == 2

        def first_worker():
            with app.app_context():
                runner.drain()

        thread = threading.Thread(target=first_worker)
        thread.start()
        time.sleep(4.3)  # the first worker is still sending; its lease has ended
        runner.drain()  # a second worker
        db.session.remove()
        thread.join(30)
        received = sorted(m["To"] for m in sink.messages)
        assert received == ["slow0@example.com", "slow1@example.com"], received
    finally:
        app.config.update(saved)
        controller.stop()


def test_an_order_the_shop_accepted_can_be_paid(make_app, make_user, login):
    """API.md, Payments: "Paying an `unpaid`, `pending` order charges
    `total_amount` in `currency`"; Errors: the codes a client can branch on
    are listed, and `conflict` is not one of them. With SHOP_CURRENCY=JPY (a
    zero-decimal currency, as `app.utils.money` knows) the catalog still
    accepts a price of 1500.50 and checkout makes a 1500.50 JPY order, which
    then can never be paid: POST /pay answers 409 with the undocumented code
    `conflict` ("1500.50 cannot be charged in JPY", `payments._amount`), and
    the payment timeout later cancels the customer's order. Either the price
    is refused where it is written, or the order can be paid."""
    shop = make_app("testing", {"SHOP_CURRENCY": "JPY"})
    client = shop.test_client()
    admin_token = login(make_user(admin=True))["access_token"]
    created = client.post(
        "/api/products",
        json={"name": "Tea", "price": "1500.50", "stock": 5},
        headers=auth(admin_token),
    )
    if created.status_code == 422:
        return  # refused where it is written: fine
    assert created.status_code == 201, created.get_json()
    token = login(make_user())["access_token"]
    assert (
        client.post(
            "/api/cart", json={"product_id": created.get_json()["id"]}, headers=auth(token)
        ).status_code
        == 201
    )
    placed = client.post("/api/orders", json=ADDRESS, headers=auth(token))
    if placed.status_code == 422 or placed.status_code == 409:
        return  # refused at checkout with a documented answer: acceptable
    assert placed.status_code == 201

    response = pay(client, token, placed.get_json()["id"])

    assert response.status_code == 200, response.get_json()


def test_recording_an_email_sent_finds_its_row_by_primary_key(app, db):
    """`mark_sent` (and `release`) find the claimed rows by (id, attempts):
    SQLite planned that row-value IN by the status index, a scan of every
    pending row, so recording one email as sent took 0.43 ms with 2,200
    queued (0.006 ms by primary key) and grew with the queue: a backlog
    after an SMTP outage drained ever more slowly (PostgreSQL's planner found
    the primary key already). The plan of the statement mark_sent runs, with
    300 emails queued."""
    with unit_of_work():
        outbox.queue_emails(
            [(f"buyer{n}@example.com", "verify_email", {"email": "x"}) for n in range(300)]
        )
    with unit_of_work():
        [message] = outbox.claim_due(1)
    if IS_POSTGRES:
        db.session.execute(text("ANALYZE outbox"))
        db.session.commit()
    statements = []

    def record(_conn, _cursor, statement, parameters, *_args):
        if statement.lstrip().upper().startswith("UPDATE OUTBOX"):
            statements.append((statement, parameters))

    event.listen(db.engine, "before_cursor_execute", record)
    try:
        with unit_of_work():
            assert outbox.mark_sent(message) == 1
    finally:
        event.remove(db.engine, "before_cursor_execute", record)
    [(statement, parameters)] = statements
    explain = "EXPLAIN " if IS_POSTGRES else "EXPLAIN QUERY PLAN "
    with db.engine.connect() as conn:
        plan = " ".join(str(row) for row in conn.exec_driver_sql(explain + statement, parameters))
    assert ("pk_outbox" if IS_POSTGRES else "INTEGER PRIMARY KEY") in plan, plan
