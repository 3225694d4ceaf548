"""Review (fixes): the fixes made on main since 9404984."""

from __future__ import annotations

import threading
import time

import pytest
from aiosmtpd.controller import Controller

from app.db import unit_of_work
from app.models import OutboxMessage
from app.models.types import utcnow
from app.services import outbox
from app.tasks import runner
from tests.live import free_port
from tests.reviewing import cancel_expired_in_a_cli_process
from tests.smtp import LOW_STOCK, MAIL_KEYS, SlowSink, outbox_rows


def test_a_slow_goodbye_after_the_deadline_lets_a_second_worker_send_the_email_again(app, db):
    """README/mail.SmtpBackend: "An email's send ends before the lease does
    (LEASE_MARGIN), or fails ... past it another worker may claim the row";
    a copy twice only after a crash. The watchdog that enforces the deadline
    is cancelled before `smtp.quit()`, and QUIT's read keeps the timeout
    computed at the start (min(MAIL_TIMEOUT, whole lease left)), so the
    goodbye runs past the deadline and past the lease: OUTBOX_LEASE 3 s
    (deadline 2.7 s), MAIL_TIMEOUT 1.5 s, the relay accepts at ~2 s and
    never answers QUIT: the first worker is still in QUIT (until ~3.5 s)
    when a second worker claims the expired row at ~3.1 s, and the
    recipient gets the email twice."""
    sink = SlowSink(1.0, frozenset({"EHLO", "MAIL"}), quit_delay=5)
    port = free_port()
    controller = Controller(sink, hostname="127.0.0.1", port=port)
    controller.start()
    saved = {key: app.config[key] for key in MAIL_KEYS}
    app.config.update(
        MAIL_BACKEND="smtp", MAIL_SERVER="127.0.0.1", MAIL_PORT=port, MAIL_TIMEOUT=1.5,
        OUTBOX_LEASE=3.0,
    )  # fmt: skip
    try:
        with unit_of_work():
            outbox.queue_email("twice@example.com", "low_stock", LOW_STOCK)
        db.session.remove()

        def first_worker():
            with app.app_context():
                runner.drain()

        thread = threading.Thread(target=first_worker)
        thread.start()
        deadline = time.monotonic() + 10
        while True:  # the first worker's claim
            [row] = outbox_rows(db)
            if row.attempts == 1 or time.monotonic() > deadline:
                break
            time.sleep(0.02)
        assert row.attempts == 1
        time.sleep(max(0.0, (row.available_at - utcnow()).total_seconds()) + 0.1)
        first_still_sending = thread.is_alive()
        runner.drain()  # a second worker, once the first one's lease ended
        db.session.remove()
        thread.join(30)
        recipients = [m["X-Rcpt-To"] for m in sink.messages]
        assert recipients == ["twice@example.com"], (first_still_sending, recipients)
    finally:
        app.config.update(saved)
        controller.stop()


def test_accounts_stored_under_the_old_email_spelling_still_own_their_mailbox(
    app, db, client, make_user
):
    """Commit a660cd4 changed how an email is normalised (a quoted local part
    unquoted, domains read by IDNA 2008 / UTS 46: `xn--strae-oqa.de` is now
    `straße.de`, a soft hyphen dropped) with no migration for the addresses
    already stored, as f30d5e7a9b14 did for the last such change. An
    account signed up before the upgrade with `"bob"@example.com` (stored
    as typed) or `bob@xn--strae-oqa.de` (IDNA 2003 could not read it: kept)
    no longer logs in with the address it signed up with (the lookup
    normalises it to `bob@example.com` / `bob@straße.de`, which no row
    holds: 401), and a second account is signed up for the same mailbox
    (201 where 409). The schema is taken back to the revision of 9404984
    (f34e7a9c1f25) with those rows in, then upgraded to head."""
    from flask_migrate import downgrade, upgrade
    from sqlalchemy import text

    from tests.helpers import PASSWORD

    old = {"quoted": '"bob"@example.com', "strasse": "bob@xn--strae-oqa.de"}
    ids = []
    for name, email in old.items():
        user = make_user(name)
        db.session.execute(
            text("UPDATE users SET email = :e WHERE id = :i"), {"e": email, "i": user.id}
        )
        ids.append(user.id)
    db.session.commit()
    db.session.remove()
    downgrade(revision="f34e7a9c1f25")
    upgrade()
    db.session.remove()

    logins = {
        name: client.post("/api/auth/login", json={"email": email, "password": PASSWORD})
        for name, email in old.items()
    }
    assert {name: r.status_code for name, r in logins.items()} == {
        "quoted": 200,
        "strasse": 200,
    }, {name: r.get_json() for name, r in logins.items()}
    signups = {
        address: client.post(
            "/api/auth/signup",
            json={"username": f"second{n}", "email": address, "password": PASSWORD},
        ).status_code
        for n, address in enumerate(["bob@example.com", "bob@straße.de"])
    }
    assert signups == {"bob@example.com": 409, "bob@straße.de": 409}


def test_a_cli_process_leaving_waits_for_the_email_its_thread_is_sending(
    app, db, client, buyer, make_product
):
    """Commit 2953a01/3eca75f: "a leaving process records the email its
    thread is sending" (README: the embedded thread stopped at any
    process's exit). The atexit hook joins the thread for MAIL_TIMEOUT + 5
    s only, while a send now legitimately lasts until its lease's deadline
    (MAIL_TIMEOUT bounds each read, not a delivery). A relay answering each
    command in 2.5 s (MAIL_TIMEOUT 3 s, OUTBOX_LEASE 60 s): the send takes
    ~10 s, the join gives up after 8 s, the interpreter ends the daemon
    thread after the relay received the message and before it was marked:
    the row stays `pending`, claimed by a process that is gone, and is sent
    again once the lease ends."""
    from datetime import timedelta

    from sqlalchemy import update

    from app.models import Order
    from tests.helpers import auth

    _user, token = buyer
    product = make_product(stock=100)
    client.post("/api/cart", json={"product_id": product.id, "quantity": 1}, headers=auth(token))
    placed = client.post(
        "/api/orders", json={"shipping_address": "221B Baker Street, London"}, headers=auth(token)
    )
    assert placed.status_code == 201
    db.session.execute(update(OutboxMessage).values(status="sent"))  # the confirmation
    db.session.execute(update(Order).values(created_at=utcnow() - timedelta(hours=2)))
    db.session.commit()
    db.session.remove()

    sink = SlowSink(2.5, received_first=True)  # each step in 2.5 s, the message kept first
    port = free_port()
    controller = Controller(sink, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        out = cancel_expired_in_a_cli_process(
            MAIL_BACKEND="smtp",
            MAIL_SERVER="127.0.0.1",
            MAIL_PORT=str(port),
            MAIL_TIMEOUT="3",
            OUTBOX_LEASE="60",
        )
        assert "Cancelled 1 unpaid order(s)." in out
        time.sleep(3)
        [row] = [r for r in outbox_rows(db) if r.topic == "order_cancelled"]
        received = len(sink.messages)
        assert (received, row.status) == (1, "sent"), (received, row.status, row.attempts)
    finally:
        controller.stop()


ACCOUNT_GUESSES = 3


@pytest.fixture(scope="module")
def account_limited_server(app):
    from tests.helpers import DATABASE_URL
    from tests.live import gunicorn

    env = {
        "RATELIMIT_ENABLED": "true",
        "RATELIMIT_STORAGE_URI": "memory://",  # one worker: one set of counters
        "TRUST_PROXY": "1",
        "RATELIMIT_LOGIN": "1000 per minute",  # per client: out of the way
        "RATELIMIT_LOGIN_ATTEMPTS": "1000 per minute",
        "RATELIMIT_LOGIN_ACCOUNT": f"{ACCOUNT_GUESSES} per minute",
        "RATELIMIT_DEFAULT": "100000 per minute",
    }
    with gunicorn(DATABASE_URL, workers=1, threads=2, extra_env=env) as live:
        yield live


@pytest.mark.server
def test_profile_password_guesses_and_failed_logins_spend_one_account_budget(
    account_limited_server, make_user
):
    """README (RATELIMIT_LOGIN_ACCOUNT): "failed logins per account, from any
    client ...; a wrong `current_password` in `PUT /api/auth/profile` spends
    the same budget" (commit a660cd4: "the latter shared with the login's").
    The two routes use `limiter.limit(..., scope="login-account")`, which
    Flask-Limiter buckets per endpoint (`auth.login:login-account`,
    `auth.update_profile:login-account`; only `shared_limit` drops the
    endpoint): after the account's whole budget went on failed logins (the
    next login is a 429), a wrong `current_password` is still checked (422),
    and the holder of a stolen token gets a second full budget of guesses."""
    from tests.helpers import PASSWORD

    live = account_limited_server
    victim = make_user()
    status, tokens = live.request(
        "POST", "/api/auth/login", {"email": victim.email, "password": PASSWORD},
        headers={"X-Forwarded-For": "198.51.100.1"},
    )  # fmt: skip
    assert status == 200
    wrong = {"email": victim.email, "password": "not-the-password"}
    logins = [
        live.request(
            "POST", "/api/auth/login", wrong, headers={"X-Forwarded-For": f"198.51.100.{10 + n}"}
        )[0]
        for n in range(ACCOUNT_GUESSES + 1)
    ]
    assert logins == [401] * ACCOUNT_GUESSES + [429], logins  # the account's budget is spent
    guess = {"email": "thief@example.com", "current_password": "not-the-password"}
    status, body = live.request(
        "PUT", "/api/auth/profile", guess, token=tokens["access_token"],
        headers={"X-Forwarded-For": "198.51.100.99"},
    )  # fmt: skip
    assert status == 429, (status, body)
