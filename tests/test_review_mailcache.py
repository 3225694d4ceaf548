"""Review (mailcache): email notifications and the catalog cache."""

from __future__ import annotations

import time

import pytest
from aiosmtpd.controller import Controller

from app.db import unit_of_work
from app.services import outbox
from app.tasks import runner
from tests.live import free_port
from tests.smtp import LOW_STOCK, MAIL_KEYS, DrippingGreeter, Sink, outbox_rows


def test_a_relay_that_drips_its_greeting_holds_the_send_past_its_lease(app, db):
    """README (Never lost): "One email's send ends before the lease does (the
    lease less min(5 s, a tenth of it) ...) or counts as a failed attempt,
    so two workers never send one row at once"; SmtpBackend.send: "the
    whole delivery ends by then, or fails".

    The deadline's watchdog is started only after `smtplib.SMTP(host, port)`
    returns, and the constructor reads the whole greeting: a relay that
    accepts and greets slowly (a line now and then, each within the
    per-read timeout) holds the worker for as long as it likes - here 12 s
    with a 3 s lease. The worker is stuck past its lease (another worker may
    claim the row meanwhile) and the send does not end by its deadline.
    Expected: the greeting is also cut at the deadline (start the watchdog
    before connecting, or bound the connect+greeting by the time left)."""
    relay = DrippingGreeter(every=0.3, seconds=12.0)
    saved = {key: app.config[key] for key in MAIL_KEYS}
    app.config.update(
        MAIL_BACKEND="smtp", MAIL_SERVER="127.0.0.1", MAIL_PORT=relay.port, MAIL_TIMEOUT=1,
        OUTBOX_LEASE=3.0,
    )  # fmt: skip
    try:
        with unit_of_work():
            outbox.queue_email("someone@example.com", "low_stock", LOW_STOCK)
        db.session.remove()
        started = time.monotonic()
        runner.deliver_one()
        took = time.monotonic() - started
        db.session.remove()
        [row] = outbox_rows(db)
        assert row.status == "pending" and row.attempts == 1, (row.status, row.last_error)
        # The deadline is 2.7 s after the claim; 5 s leaves room for a slow machine.
        assert took < 5.0, f"the send took {took:.1f} s, past its 3 s lease"
    finally:
        app.config.update(saved)
        relay.close()


def test_an_address_with_a_non_ascii_local_part_is_not_retried_against_a_relay_without_smtputf8(
    app, db, client, deliver_outbox
):
    """Signup accepts `josé@example.com` (marshmallow's Email takes any
    letter in the local part; README: emails are NFKC-normalised and
    lower-cased, only control characters are refused). Unlike the domain
    (sent in its IDNA ASCII form: README "An address whose domain is not
    ASCII goes out in its IDNA 2008 ASCII form ..., which any relay
    takes"), a non-ASCII local part has no ASCII form: smtplib refuses it
    before RCPT unless the relay offers SMTPUTF8 (SMTPNotSupportedError).
    mail.is_permanent does not count it, so the verification email is sent
    again MAIL_MAX_ATTEMPTS times, each refused the same way for the same
    recipient, then failed - a retry of a permanent failure (README: a
    refusal of the recipient that "would be refused again" fails at once).
    Expected: the row fails at its first attempt (or the address is
    refused at signup with a 422)."""
    from tests.helpers import PASSWORD

    sink = Sink()
    port = free_port()
    controller = Controller(sink, hostname="127.0.0.1", port=port, enable_SMTPUTF8=False)
    controller.start()
    saved = {key: app.config[key] for key in MAIL_KEYS}
    app.config.update(MAIL_BACKEND="smtp", MAIL_SERVER="127.0.0.1", MAIL_PORT=port)
    try:
        response = client.post(
            "/api/auth/signup",
            json={"username": "josefina", "email": "josé@example.com", "password": PASSWORD},
        )
        if response.status_code == 422:  # refused at signup: no email can fail
            return
        assert response.status_code == 201, response.get_json()
        deliver_outbox()
        [row] = outbox_rows(db)
        assert row.status == "failed" and row.attempts == 1, (
            row.status, row.attempts, row.last_error,
        )  # fmt: skip
    finally:
        app.config.update(saved)
        controller.stop()


def test_readme_says_how_long_a_leaving_cli_process_waits_for_its_thread_as_the_code_does():
    """README ("Never lost, never invented"): a process that started the
    embedded thread (a CLI command whose commits woke it) lets it record
    its batch "at exit, within `MAIL_TIMEOUT` + 5 s". Commit beb3b70 made
    that wait a whole lease (app/tasks/thread.py registers
    `atexit.register(self.stop, float(OUTBOX_LEASE))`: "MAIL_TIMEOUT + 5 s
    was shorter than a slow send"), and the README's own "Who delivers"
    paragraph and docs/ARCHITECTURE.md say "waiting up to `OUTBOX_LEASE`".
    The sentence left behind tells an operator a CLI command ends within
    15 s of its work (defaults) where it may wait 120 s. Expected: the
    README says OUTBOX_LEASE there too."""
    import inspect
    from pathlib import Path

    from app.tasks import thread

    assert 'atexit.register(self.stop, float(self.app.config["OUTBOX_LEASE"]))' in (
        inspect.getsource(thread.EmbeddedWorker.ensure_started)
    )
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    paragraph = readme[readme.index("**Never lost, never invented") :]
    paragraph = paragraph[: paragraph.index("```")]
    assert "within `MAIL_TIMEOUT` + 5 s" not in paragraph


def test_an_email_goes_only_to_the_address_the_account_holds(app, db, client, smtp_server):
    """An address whose local part is an RFC 2047 encoded word is a valid
    dot-atom (`=`, `?` are atext) and signup stores it as typed. But
    mail.build_message puts it in the To header as a string, the email
    package's header parser DECODES the encoded word, and smtplib's
    send_message takes its envelope recipients from that decoded header:

    - `=?utf-8?q?victim=40gmail.com=2c?=x@example.com` is sent to TWO
      mailboxes, `victim@gmail.com` and `x@example.com` (recipient
      injection: the verification link, order details and password-reset
      links of the account go to an address of the signer's choosing,
      an address that is not the account's);
    - `=?utf-8?q?bob?=@example.com`, another account than bob@example.com
      (README: "one mailbox, one account"), has its emails delivered to
      bob@example.com.

    Expected: every email of an account reaches exactly the address it
    holds (envelope recipient = the stored address; e.g. send_message's
    `to_addrs=[to]` and a To header built from an Address), or such an
    address is refused at signup (422)."""
    from tests.helpers import PASSWORD

    stored = {}
    for n, email in enumerate(
        ("=?utf-8?q?victim=40gmail.com=2c?=x@example.com", "=?utf-8?q?bob?=@example.com")
    ):
        response = client.post(
            "/api/auth/signup",
            json={"username": f"encoded{n}", "email": email, "password": PASSWORD},
        )
        if response.status_code == 422:
            continue  # refused: no email can go astray
        assert response.status_code == 201, response.get_json()
        stored[n] = email
    db.session.remove()
    runner.drain()
    db.session.remove()
    rows = outbox_rows(db)
    assert all(row.status == "sent" for row in rows), [(r.status, r.last_error) for r in rows]
    received = sorted(message["X-Rcpt-To"] for message in smtp_server.wait_for(len(stored)))
    assert received == sorted(stored.values()), received


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


@pytest.mark.parametrize("setting", ["MAIL_TIMEOUT", "OUTBOX_LEASE"])
def test_a_mail_timeout_or_lease_of_zero_either_stops_start_up_or_still_sends(
    app, db, smtp_server, setting
):
    """MAIL_TIMEOUT=0 or OUTBOX_LEASE=0 (README: "SMTP socket timeout,
    seconds" / "seconds a worker holds a message"; 0 reads as "no timeout"
    in many tools) is accepted at start-up (config.env_int / env_float with
    no minimum), and then no email ever leaves:

    - MAIL_TIMEOUT=0: smtplib refuses it ("ValueError: Non-blocking socket
      (timeout=0) is not supported");
    - OUTBOX_LEASE=0: each send's deadline is its claim's start
      (runner.deliver_batch), so every send is DeadlinePassed.

    Every email is retried MAIL_MAX_ATTEMPTS times and ends `failed`, with
    nothing at start-up saying why (commit 50ec24d made CATALOG_CACHE_TTL=0
    stop start-up for the same kind of reason). Expected: start-up refuses
    the value naming the setting, or the email is still delivered."""
    if not _config_accepts(**{setting: "0"}):
        return  # refused at start-up: fixed
    saved = app.config[setting]
    app.config[setting] = 0
    try:
        with unit_of_work():
            outbox.queue_email("someone@example.com", "low_stock", LOW_STOCK)
        db.session.remove()
        runner.deliver_one()
        db.session.remove()
        [row] = outbox_rows(db)
        assert row.status == "sent", (row.status, row.last_error)
    finally:
        app.config[setting] = saved


@pytest.mark.parametrize(
    "setting",
    ["CATALOG_CACHE_MAX_ENTRIES", "CATALOG_MATCHES_MAX_ENTRIES", "SEARCH_RANKINGS_MAX_ENTRIES"],
)
def test_a_negative_max_entries_either_stops_start_up_or_still_answers(
    make_app, make_product, setting
):
    """README: `CATALOG_CACHE_MAX_ENTRIES` "answers each process keeps
    without Redis" (`0` turns the others off). A negative value (-1 reads
    as "no limit" in many tools) is accepted at start-up (config.env_int
    with no minimum), and without Redis LocalStore.set then pops entries
    while `len(entries) > -1`: once empty, `OrderedDict.popitem` raises
    KeyError and every catalog read that keeps an answer is a 500 (API.md:
    no 5xx). Expected: start-up refuses a negative value naming the
    setting (as 50ec24d does for CATALOG_CACHE_TTL), or reads answer 200."""
    if not _config_accepts(**{setting: "-1"}):
        return  # refused at start-up: fixed
    client = make_app(overrides={setting: -1, "REDIS_URL": None}).test_client()
    make_product(name="Brass lamp")
    for url in ("/api/products", "/api/products?q=lamp", "/api/products/facets"):
        response = client.get(url)
        assert response.status_code == 200, (url, response.status_code, response.get_data()[:200])
