"""Review of the emails and background work (session 14): the `flask mail`
commands an operator recovers with after a relay outage, and the sender's
address."""

from __future__ import annotations

import pytest
from aiosmtpd.controller import Controller
from sqlalchemy import insert

from app.db import unit_of_work
from app.models import OutboxMessage
from app.services.outbox import queue_email
from tests.helpers import scalar
from tests.live import free_port
from tests.smtp import LOW_STOCK, MAIL_KEYS, Sink, outbox_rows


def test_retry_all_after_a_long_outage_queues_every_failed_message(app, db):
    """README ("flask mail retry queues failed rows anew once the cause is
    fixed"; `--all`: every failed message). `outbox.retry_failed` read the
    failed ids, then sent them back in `WHERE id IN (...)`, one bind
    parameter each: after an outage that failed more than 65,535 emails,
    PostgreSQL refused the query ("number of parameters must be between 0
    and 65535"), the command ended in a traceback and nothing was retried.
    Expected: every failed row pending again, with fresh attempts."""
    count = 66_000
    db.session.execute(
        insert(OutboxMessage),
        [
            {
                "kind": "email",
                "topic": "low_stock",
                "recipient": f"admin{n}@example.com",
                "payload": {"template": "low_stock", "context": LOW_STOCK},
                "status": "failed",
                "attempts": 5,
                "last_error": "SMTPServerDisconnected: down",
            }
            for n in range(count)
        ],
    )
    db.session.commit()
    db.session.remove()

    result = app.test_cli_runner().invoke(args=["mail", "retry", "--all"])

    assert result.exit_code == 0, (result.output[-300:], result.exception)
    assert result.output.startswith(f"Queued {count} message(s) again: 1, 2, 3,")
    assert scalar("SELECT count(*) FROM outbox WHERE status = 'failed'") == 0
    assert scalar("SELECT count(*) FROM outbox WHERE status = 'pending' AND attempts = 0") == count


@pytest.mark.parametrize(
    "args",
    [
        ["mail", "retry", "99999999999999999999"],
        ["mail", "retry", "2147483648"],
        ["mail", "failed", "--limit", "99999999999999999999"],
    ],
)
def test_a_number_too_large_for_the_database_is_a_usage_error(app, args):
    """`flask mail retry ID` and `flask mail failed --limit N` took any
    positive number and sent it to the database as it was: an id past the
    outbox's 32-bit id column (PostgreSQL: "integer out of range"; SQLite:
    "Python int too large to convert to SQLite INTEGER") or a limit past 64
    bits ended the command in a DataError / OverflowError traceback.
    Expected: click's usage error (exit code 2), as for 0 or a word."""
    result = app.test_cli_runner().invoke(args=args)
    assert result.exit_code == 2, (result.output, repr(result.exception))
    assert "is not in the range" in result.output


def test_a_sender_whose_domain_is_not_ascii_goes_out_in_its_ascii_form(app, db, deliver_outbox):
    """README: "An address whose domain is not ASCII goes out in its IDNA
    2008 ASCII form (`xn--...`), which any relay takes." `mail.ascii_domain`
    did that for the recipient only: with `MAIL_DEFAULT_SENDER=Bücherei
    <shop@bücher.de>` smtplib took the envelope sender from the From
    header as written, and a relay without SMTPUTF8 refused every email
    ("require internationalized email support"), each retried until it
    failed. Expected: sent, from `shop@xn--bcher-kva.de` (envelope, From and
    Message-ID)."""
    sink = Sink()
    port = free_port()
    controller = Controller(sink, hostname="127.0.0.1", port=port, enable_SMTPUTF8=False)
    controller.start()
    saved = {key: app.config[key] for key in (*MAIL_KEYS, "MAIL_DEFAULT_SENDER")}
    app.config.update(
        MAIL_BACKEND="smtp",
        MAIL_SERVER="127.0.0.1",
        MAIL_PORT=port,
        MAIL_DEFAULT_SENDER="Bücherei Müller <shop@bücher.de>",
    )
    try:
        with unit_of_work():
            queue_email("admin@example.com", "low_stock", LOW_STOCK)
        deliver_outbox()
        [row] = outbox_rows(db)
        assert row.status == "sent", (row.status, row.last_error)
        [message] = sink.messages
        assert message["From"].addresses[0].addr_spec == "shop@xn--bcher-kva.de"
        assert message["From"].addresses[0].display_name == "Bücherei Müller"
        assert message["Message-ID"].endswith("@xn--bcher-kva.de>")
    finally:
        app.config.update(saved)
        controller.stop()
