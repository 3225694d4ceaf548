"""Review (mail2) of the session's fixes outside auth and search."""

from __future__ import annotations

import contextlib
import socket
import time
from datetime import UTC, datetime

import pytest
from sqlalchemy import insert, select

from app.db import unit_of_work
from app.extensions import db
from app.models import Order, Product, User
from app.services import outbox
from app.tasks import runner
from tests.smtp import LOW_STOCK, outbox_rows


def _product_row(n: int, **extra) -> dict:
    return {
        "name": f"Seeded {n}",
        "description": "",
        "price": "1.00",
        "stock": 1,
        "low_stock_threshold": 0,
        **extra,
    }


def test_multi_row_insert_of_products_takes_its_updated_at_default():
    """`as_created` (app/models/types.py), the new `updated_at` default of
    products, users, orders and reviews, calls
    `context.get_current_parameters()`, which raises KeyError
    ('products.name_m0') on a multi-row `insert(Model).values([...])`: the
    very statement `flask seed` uses (app/commands.py) and the one its comment
    recommends over executemany. Before 5ba474d (`default=utcnow`) the same
    INSERT worked; now it is a StatementError unless every row names its own
    `updated_at` (seed's rows happen to). Expected: the rows inserted, each
    with updated_at == created_at (the commit's promise: "a new row's
    updated_at is its created_at")."""
    when = datetime(2020, 1, 1, tzinfo=UTC)
    rows = [_product_row(0), _product_row(1, created_at=when)]
    db.session.execute(insert(Product).values(rows))
    db.session.commit()
    got = db.session.execute(
        select(Product.name, Product.created_at, Product.updated_at).order_by(Product.id)
    ).all()
    assert len(got) == 2
    assert all(created == updated for _, created, updated in got)
    assert got[1].created_at == when


def test_multi_row_insert_of_users_takes_its_updated_at_default():
    """Same as above for users (User.updated_at default=as_created)."""
    rows = [
        {"username": f"bulk{n}", "email": f"bulk{n}@example.com", "password_hash": "x"}
        for n in range(2)
    ]
    db.session.execute(insert(User).values(rows))
    db.session.commit()
    got = db.session.execute(select(User.created_at, User.updated_at)).all()
    assert len(got) == 2
    assert all(created == updated for created, updated in got)


def _config_accepts(**env: str) -> bool:
    import os
    import subprocess
    import sys

    result = subprocess.run(
        [sys.executable, "-c", "import config"],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
    )
    return result.returncode == 0


@pytest.mark.parametrize("value", ["nan", "inf"])
def test_a_lease_that_is_not_a_finite_number_either_stops_start_up_or_still_sends(
    app, db, smtp_server, value
):
    """406edcd: "Start-up refuses a mail timeout, lease, sweep interval ...
    out of its range"; README: OUTBOX_LEASE is "seconds ...; more than
    MAIL_TIMEOUT". config.env_float reads `float("nan")` / `float("inf")`
    and its checks (`OUTBOX_LEASE <= MAIL_TIMEOUT`, `value <= above`) are
    all False for NaN (inf passes them too), so start-up accepts
    OUTBOX_LEASE=nan (also OUTBOX_SWEEP_INTERVAL=nan, OUTBOX_SWEEP_GRACE=nan).
    Then no email leaves: the claim's `timedelta(seconds=lease)` raises
    (ValueError for NaN, OverflowError for inf). Expected: start-up refuses
    a non-finite value naming the setting, or the email is still sent."""
    if not _config_accepts(OUTBOX_LEASE=value):
        return  # refused at start-up: fixed
    saved = app.config["OUTBOX_LEASE"]
    app.config["OUTBOX_LEASE"] = float(value)
    try:
        with unit_of_work():
            outbox.queue_email("someone@example.com", "low_stock", LOW_STOCK)
        db.session.remove()
        try:
            runner.deliver_one()
        except Exception as error:  # noqa: BLE001 - the defect itself
            pytest.fail(f"the worker crashed on OUTBOX_LEASE={value}: {error!r}")
        db.session.remove()
        [row] = outbox_rows(db)
        assert row.status == "sent", (row.status, row.last_error)
    finally:
        app.config["OUTBOX_LEASE"] = saved


@pytest.mark.parametrize("setting", ["OUTBOX_SWEEP_INTERVAL", "OUTBOX_SWEEP_GRACE"])
def test_a_sweep_setting_of_nan_stops_start_up(setting):
    """README: OUTBOX_SWEEP_INTERVAL "more than 0", OUTBOX_SWEEP_GRACE "at
    least 0"; 406edcd says start-up refuses values out of range. NaN is
    neither, yet `import config` accepts it (every comparison with NaN is
    False). Expected: start-up refuses it, naming the setting."""
    assert not _config_accepts(**{setting: "nan"})


def test_seeded_demo_orders_were_updated_no_earlier_than_their_last_status_change(app, db):
    """5ba474d (`as_created`): an Order's `updated_at` default is now its
    `created_at`. app/services/demo.py `_delivered_order` (run by `flask
    seed`) builds a delivered order created 10 days ago whose history moves
    it to shipped and delivered days later (`at = start + 2*day days`), and
    names no updated_at: the order now reads updated 10 days ago, before its
    own status changes (its "delivered" event is 4 days ago). Before the
    change it read the seed's time. Expected: an order's updated_at is no
    earlier than the last change of its status history (the API shows both:
    docs/API.md order object `updated_at`, `status_history[].at`)."""
    result = app.test_cli_runner().invoke(args=["seed"])
    assert result.exit_code == 0, result.output
    db.session.remove()
    orders = db.session.scalars(select(Order)).all()
    assert orders
    stale = [
        (order.id, order.updated_at, order.status_history[-1].at)
        for order in orders
        if order.updated_at < max(event.at for event in order.status_history)
    ]
    assert not stale, stale


def test_a_send_whose_deadline_passed_before_the_connection_existed_does_not_deliver(
    app, smtp_server, monkeypatch
):
    """SmtpBackend.send: "`deadline`: the whole delivery ends by then, or
    fails"; README: "One email's send ends before the lease does ... or
    counts as a failed attempt, so two workers never send one row at once";
    `_Watchdog`: a connection still being opened (a slow DNS lookup, TCP
    connect or TLS handshake) is shut "as soon as it exists, so its greeting
    is never read". It is not: past the deadline the watchdog only *polls*
    for `smtp.sock` every POLL seconds, and nothing in the sending thread
    looks at the deadline once the connection exists, so a relay that
    answers quickly takes the whole message (greeting, EHLO, MAIL, RCPT,
    DATA: a few ms) before the next poll. With a lookup that outlives the
    lease (not only the deadline) another worker may have claimed and sent
    the row meanwhile: the email twice. POLL is raised here only to make the
    window (50 ms by default, longer than a local relay's whole transaction)
    deterministic. Expected: DeadlinePassed and nothing delivered (e.g. the
    sending thread checks the deadline once `connect` returns, or the
    watched object shuts its own socket when it is assigned after the
    deadline)."""
    from app.services import mail
    from app.services.mail import DeadlinePassed, _Watchdog

    monkeypatch.setattr(_Watchdog, "POLL", 3.0)
    lookup = socket.getaddrinfo

    def slow_lookup(*args, **kwargs):  # a slow DNS answer for the relay's name
        time.sleep(0.6)
        return lookup(*args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", slow_lookup)
    content = {"subject": "Hello", "text": "Hello", "html": "<p>Hello</p>"}
    started = time.monotonic()
    with contextlib.suppress(DeadlinePassed):
        mail.send("bob@example.com", content, "<late@example.com>", started + 0.3)
    monkeypatch.setattr(socket, "getaddrinfo", lookup)
    time.sleep(0.5)
    assert smtp_server.messages == [], "delivered after its deadline had passed"
