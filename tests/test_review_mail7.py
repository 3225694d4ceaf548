"""Review round 7 of the email outbox, its workers and SMTP delivery (found
by review: each test failed before its fix)."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from email.utils import parsedate_to_datetime

from sqlalchemy import update

from app.extensions import db
from app.models import OutboxMessage
from app.models.types import utcnow
from app.services import mail
from app.services.outbox import due_ids, queue_email
from app.tasks import runner
from tests.helpers import order_for
from tests.smtp import LOW_STOCK, outbox_rows, parts


def test_deliver_does_not_stop_at_a_batch_of_rows_failed_at_their_claim(app, smtp_server):
    """`flask mail deliver` "deliver[s] everything due now" (README). Rows
    claimed MAIL_MAX_ATTEMPTS times by workers that died are failed at their
    next claim; a batch made only of such rows counted as nothing claimed,
    and the drain stopped there, leaving a fresh email due and unsent."""
    dead = [queue_email(f"dead{n}@example.com", "low_stock", LOW_STOCK) for n in range(8)]
    fresh = queue_email("fresh@example.com", "low_stock", LOW_STOCK)
    db.session.commit()
    limit = app.config["MAIL_MAX_ATTEMPTS"]
    # Each dead row was claimed `limit` times, its last lease long over.
    db.session.execute(
        update(OutboxMessage)
        .where(OutboxMessage.id.in_(dead))
        .values(attempts=limit, available_at=utcnow() - timedelta(hours=1))
    )
    db.session.commit()
    db.session.remove()

    result = app.test_cli_runner().invoke(args=["mail", "deliver"])
    assert result.exit_code == 0, result.output

    rows = {row.id: row for row in outbox_rows(db)}
    assert {rows[i].status for i in dead} == {"failed"}
    assert rows[fresh].status == "sent", result.output
    assert [m["To"] for m in smtp_server.messages] == ["fresh@example.com"]


def test_the_message_id_names_the_senders_domain_alone(make_app):
    """A sender written `shop@example.com (Shop)` (RFC 5322's comment form,
    which start-up accepts) made every Message-ID
    `<outbox-1.170...@example.com (Shop)>`: a space and a comment inside the
    brackets, no msg-id (RFC 5322 3.6.4)."""
    for sender, domain in (
        ("shop@example.com (Shop)", "example.com"),
        ("Shop <shop@example.com> (main desk)", "example.com"),
        ("Shop <no-reply@localhost>", "localhost"),
        ("Bücher <shop@bücher.de>", "xn--bcher-kva.de"),
    ):
        with make_app("testing", {"MAIL_DEFAULT_SENDER": sender}).app_context():
            assert mail.message_id(7, 1700000000.9) == f"<outbox-7.1700000000@{domain}>", sender


def test_the_date_header_says_universal_time(
    client, buyer, make_product, smtp_server, deliver_outbox
):
    """RFC 5322 3.3: UTC "SHOULD" be written `+0000`; `-0000` says the time
    zone is unknown (the sending system's local zone, not given).
    `formatdate(localtime=False)` wrote `-0000` on every email."""
    _user, token = buyer
    order_for(client, token, (make_product(), 1))
    before = utcnow().replace(microsecond=0)
    assert deliver_outbox() == 1
    [message] = smtp_server.wait_for(1)
    assert str(message["Date"]).endswith(" +0000"), message["Date"]
    sent = parsedate_to_datetime(str(message["Date"]))
    assert before <= sent <= utcnow()


def test_an_amount_finer_than_the_currency_is_emailed_exactly_not_rounded(
    make_app, make_user, login, make_product, smtp_server
):
    """README: amounts in emails "are formatted exactly from Decimal". A
    price in cents from before the shop switched to the yen (SHOP_CURRENCY
    is "of new orders") makes a JPY order of 10.50: the API answers 10.50
    (and refuses to charge it, 409), but the confirmation said "10 JPY",
    rounded half to even."""
    assert mail.format_money(Decimal("10.50"), "JPY") == "10.50 JPY"
    assert mail.format_money(Decimal("1234.5"), "JPY") == "1,234.50 JPY"
    assert mail.format_money(Decimal("3000.00"), "JPY") == "3,000 JPY"
    assert mail.format_money(Decimal("1.5"), "KWD") == "1.500 KWD"

    shop = make_app("testing", {"SHOP_CURRENCY": "JPY", **smtp_server.config()})
    client = shop.test_client()
    token = login(make_user())["access_token"]
    order = order_for(client, token, (make_product(price="10.50"), 1))
    assert (order["currency"], Decimal(str(order["total_amount"]))) == ("JPY", Decimal("10.50"))
    with shop.app_context():
        runner.drain()
    [message] = smtp_server.wait_for(1)
    text, html = parts(message)
    for body in (text, html):
        assert "10.50 JPY" in body and "10 JPY" not in body, body


def test_the_sweep_takes_a_due_retry_without_waiting_the_grace(app):
    """README: OUTBOX_SWEEP_GRACE is "how old a never-tried message must be
    for the sweep to take it" (its enqueue after the commit may be on its
    way). A retry, or a row whose worker died, has no other enqueue: the
    sweep also held those back the grace (10 s by default) past their due
    time, on top of the backoff."""
    fresh = queue_email("fresh@example.com", "low_stock", LOW_STOCK)
    retry = queue_email("retry@example.com", "low_stock", LOW_STOCK)
    lost = queue_email("lost@example.com", "low_stock", LOW_STOCK)
    db.session.commit()
    now = utcnow()
    for message_id, attempts, due in (
        (retry, 1, now - timedelta(seconds=1)),  # its backoff ended a second ago
        (lost, 0, now - timedelta(seconds=60)),  # committed a minute ago, never tried
    ):
        db.session.execute(
            update(OutboxMessage)
            .where(OutboxMessage.id == message_id)
            .values(attempts=attempts, available_at=due)
        )
    db.session.commit()
    assert due_ids(grace=10) == [lost, retry]
    assert fresh not in due_ids(grace=10)
