"""Review (fixes2): the fixes made on main since e2dc61b."""

from __future__ import annotations

import asyncio

from aiosmtpd.controller import Controller

from app.db import unit_of_work
from app.services import outbox
from app.tasks import runner
from tests.live import free_port
from tests.smtp import LOW_STOCK, MAIL_KEYS, Sink, outbox_rows


class _RefusingSlowRset(Sink):
    """A relay that refuses the recipient at once (550: no such mailbox) and
    is slow to answer the RSET smtplib sends right after a refusal."""

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):  # noqa: N802
        return "550 5.1.1 No such mailbox"

    async def handle_RSET(self, server, session, envelope):  # noqa: N802
        await asyncio.sleep(6)
        return "250 OK"


def test_a_recipient_refused_with_550_stays_a_permanent_failure_when_the_rset_after_it_is_slow(
    app, db
):
    """mail.SmtpBackend: "Cut by the watchdog (a broken connection): the
    lease's end. A reply the relay gave (a 5xx refusal) stays what it is."
    The test `isinstance(error, (OSError, SMTPServerDisconnected))` is true
    of every smtplib error (SMTPException subclasses OSError): the relay's
    550 for the recipient arrives at once, smtplib then sends RSET (and
    swallows its cut), and SMTPRecipientsRefused is raised after the
    deadline: turned into DeadlinePassed, a retried failure, where
    is_permanent made it `failed` at once (no retry of a refused mailbox)."""
    sink = _RefusingSlowRset()
    port = free_port()
    controller = Controller(sink, hostname="127.0.0.1", port=port)
    controller.start()
    saved = {key: app.config[key] for key in MAIL_KEYS}
    app.config.update(
        MAIL_BACKEND="smtp", MAIL_SERVER="127.0.0.1", MAIL_PORT=port, MAIL_TIMEOUT=10,
        OUTBOX_LEASE=2.0,
    )  # fmt: skip
    try:
        with unit_of_work():
            outbox.queue_email("nobody@example.com", "low_stock", LOW_STOCK)
        db.session.remove()
        runner.drain()
        db.session.remove()
        [row] = outbox_rows(db)
        assert (row.status, row.attempts) == ("failed", 1), (row.status, row.last_error)
        assert row.last_error.startswith("SMTPRecipientsRefused"), row.last_error
    finally:
        app.config.update(saved)
        controller.stop()


def test_an_account_left_under_its_old_email_spelling_signs_in_by_its_username(
    app, db, client, make_user
):
    """Migration f37a2c4e6b89: "A row whose rewritten address another account
    already holds is left as it is (two accounts cannot be merged here; each
    still logs in with the spelling it was stored under)". It does not: the
    login normalises `"bob"@example.com` to `bob@example.com` and looks the
    account up by `User.email == ...` only, so the account left as
    `"bob"@example.com` is never found by its email again (401 with its
    own password; the other account's password would open the other
    account), and a password reset for it reaches the other account."""
    from flask_migrate import downgrade, upgrade
    from sqlalchemy import text

    kept = make_user("quoted", password="quoted-password-1")
    make_user("bob", password="bob-password-1")  # bob@example.com
    db.session.execute(
        text("UPDATE users SET email = :e WHERE id = :i"),
        {"e": '"bob"@example.com', "i": kept.id},
    )
    db.session.commit()
    db.session.remove()
    downgrade(revision="f36d1b3c5e78")
    upgrade()
    db.session.remove()
    stored = db.session.execute(text("SELECT email FROM users WHERE id = :i"), {"i": kept.id})
    assert stored.scalar_one() == '"bob"@example.com'  # left as it is (no merge)
    db.session.remove()
    # Two accounts for one mailbox are not merged: the one left under its old
    # spelling signs in by its username (README, Auth), never as the other.
    response = client.post(
        "/api/auth/login", json={"username": "quoted", "password": "quoted-password-1"}
    )
    assert response.status_code == 200, response.get_json()
    assert response.get_json()["user"]["id"] == kept.id
    response = client.post(
        "/api/auth/login", json={"email": '"bob"@example.com', "password": "quoted-password-1"}
    )
    assert response.status_code == 401
