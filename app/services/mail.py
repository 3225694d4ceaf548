"""Emails: rendered from the Jinja2 templates in app/templates/email/, sent by
the configured backend (`console` or `smtp`).

SMTP uses the standard library (`email.message.EmailMessage` builds the MIME,
`smtplib` talks the protocol): both are maintained with Python itself, cover
plain text + HTML alternatives, STARTTLS, SSL and AUTH, and add no dependency
that could lag behind a Python release. Flask-Mailman would wrap the same two
modules and add a Flask extension for one call site."""

from __future__ import annotations

import logging
import smtplib
import socket
import ssl
import threading
import time
from contextlib import suppress
from datetime import UTC, datetime
from decimal import Decimal
from email.header import Header
from email.headerregistry import HeaderRegistry, UnstructuredHeader
from email.message import EmailMessage
from email.policy import default as default_policy
from email.utils import format_datetime, parseaddr
from typing import Any

import idna
from flask import current_app

from app.utils.money import exponent
from app.utils.text import close_bidi

log = logging.getLogger(__name__)


def format_money(amount: Any, currency: str | None = None) -> str:
    """`1234.5` -> `1,234.50 USD`, `3000` -> `3,000 JPY`: exact (Decimal,
    never a float), with the currency's decimals (ISO 4217)."""
    currency = currency or current_app.config["SHOP_CURRENCY"]
    places = exponent(currency)
    exact = Decimal(str(amount))
    value = exact.quantize(Decimal(1).scaleb(-places))
    if value != exact:
        # Finer than the currency's unit (a price in cents from before the
        # shop took the yen): written in cents, as stored, or finer, never
        # rounded - a 10.50 JPY order was emailed as "10 JPY" (found by review).
        places = max(2, -exact.normalize().as_tuple().exponent)
        value = exact.quantize(Decimal(1).scaleb(-places))
    return f"{value:,.{places}f} {currency}"


def check_template(template: str) -> None:
    """Raise now (in the request) if `email/<template>` does not exist, rather
    than when the worker renders it (Jinja keeps loaded templates)."""
    current_app.jinja_env.get_template(f"email/{template}.subject.txt")


def jsonable(value: Any) -> Any:
    """`value` for a JSON column: decimals as exact strings, tuples as lists."""
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, dict):
        return {key: jsonable(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(item) for item in value]
    return value


def render(template: str, context: dict[str, Any]) -> dict[str, str]:
    """Subject, text and HTML of `email/<template>.*`; HTML autoescaped."""
    env = current_app.jinja_env
    # What a user wrote (a product's name, an address) ends its own bidi
    # overrides: one left open ran on into the template's words (found by review).
    context = {"shop_name": current_app.config["SHOP_NAME"], **_bidi_closed(context)}
    if "link_seed" in context:  # an account link: its token exists only here
        from app.services.account_tokens import link_for  # it queues through this module

        context["link"] = link_for(**context.pop("link_seed"))
    for key, unit in (("expires_hours", "hours"), ("expires_minutes", "minutes")):
        # A link's lifetime as rows queued before `account_tokens.lifetime_text` hold it.
        if key in context:
            context.setdefault("expires", f"{context.pop(key)} {unit}")
    subject = env.get_template(f"email/{template}.subject.txt").render(context)
    return {
        "subject": " ".join(subject.split()),
        "text": env.get_template(f"email/{template}.txt").render(context),
        "html": env.get_template(f"email/{template}.html").render(context),
    }


def _bidi_closed(value: Any) -> Any:
    """`value` (a JSON context) with each string's open bidi controls closed."""
    if isinstance(value, str):
        return close_bidi(value)
    if isinstance(value, dict):
        return {key: _bidi_closed(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_bidi_closed(item) for item in value]
    return value


class _Subject(UnstructuredHeader):
    """A subject folded into RFC 2047 encoded words by `email.header.Header`,
    which keeps its spaces inside them. The policy's folder (Python before
    gh-144156) left a space between two encoded words, where it is no text
    (RFC 2047 6.2): a long product name in a low-stock alert arrived as
    "Thé ☕ vertThé" (found by review). An ASCII subject, or one sent as
    UTF-8 (SMTPUTF8), needs no encoded words and folds as before.

    The subject is the text it was given: an encoded word written in it (a
    product's name `=?utf-8?q?x=0D=0ABcc:_y@example.com?=`) was decoded
    when the header was set, its `=0D=0A` a line break on the wire, a `Bcc`
    or a body of the name's choosing (found by review). Such text is sent
    inside encoded words of its own, which a reader decodes back to it."""

    @classmethod
    def parse(cls, value, kwds):
        super().parse(value, kwds)
        kwds["decoded"] = value  # as written, never decoded

    def fold(self, *, policy):
        if "=?" not in self and (policy.utf8 or str(self).isascii()):
            return super().fold(policy=policy)
        limit = policy.max_line_length or 78
        header = Header(str(self), "utf-8", limit, header_name=self.name)
        return f"{self.name}: {header.encode(linesep=policy.linesep)}{policy.linesep}"


_HEADERS = HeaderRegistry()
_HEADERS.map_to_type("subject", _Subject)
POLICY = default_policy.clone(header_factory=_HEADERS)


def build_message(to: str, content: dict[str, str], message_id: str) -> EmailMessage:
    message = EmailMessage(policy=POLICY)
    message["Subject"] = content["subject"]
    message["From"] = sender()
    message["To"] = ascii_domain(to)
    message["Message-ID"] = message_id
    # RFC 5322 3.6: required. In UTC as `+0000` (3.3: `-0000` says the zone
    # is unknown; `formatdate` wrote it on every email, found by review).
    message["Date"] = format_datetime(datetime.now(UTC))
    message.set_content(content["text"])
    message.add_alternative(content["html"], subtype="html")
    return message


def ascii_domain(address: str) -> str:
    """The address with its domain in IDNA 2008's ASCII form (`bob@exämple.com`
    -> `bob@xn--exmple-cua.com`), as DNS and a relay without SMTPUTF8 take
    it; as written when it has no such form. IDNA 2008 with UTS 46 (the
    `idna` package), as browsers and registries read domains: the standard
    library's codec is IDNA 2003, which sent mail for `straße.de` to
    `strasse.de`, someone else's domain (found by review)."""
    local, at, domain = address.rpartition("@")
    if not at or domain.isascii():
        return address
    try:
        return local + at + idna.encode(domain, uts46=True).decode("ascii")
    except (idna.IDNAError, UnicodeError, ValueError):
        return address


def sender() -> str:
    """MAIL_DEFAULT_SENDER with its address's domain in ASCII, as `ascii_domain`
    sends a recipient's: smtplib takes the envelope sender from the From
    header, and `Shop <shop@bücher.de>` had every email refused by a relay
    without SMTPUTF8, retried until failed (found by review)."""
    configured = current_app.config["MAIL_DEFAULT_SENDER"]
    address = parseaddr(configured)[1]
    head, found, tail = configured.rpartition(address) if address else ("", "", "")
    return head + ascii_domain(address) + tail if found else configured


def message_id(outbox_id: int, created_at: float) -> str:
    """A stable id per outbox row, so a redelivered copy can be recognised.
    The domain is the sender's address's: read from the whole `From`, a
    sender written `shop@example.com (Shop)` put `example.com (Shop)` in
    every Message-ID, which is then no msg-id (found by review)."""
    domain = parseaddr(sender())[1].rpartition("@")[2] or "localhost"
    return f"<outbox-{outbox_id}.{int(created_at)}@{domain}>"


class ConsoleBackend:
    """Development: the message goes to the log, nothing leaves the machine.
    No MIME message is built for it: that took 1.7 ms of the 4.2 ms an
    email's delivery cost in the embedded worker, for a log line that is
    usually below the log level."""

    def send(
        self, to: str, content: dict[str, str], message_id: str, deadline: float | None = None
    ) -> None:
        log.info("email to %s: %s\n%s", to, content["subject"], content["text"])


class DeadlinePassed(OSError):
    """The send outlived the time its worker's lease left it."""


class NeedsSmtpUtf8(smtplib.SMTPNotSupportedError):
    """The recipient's address is not ASCII (`josé@example.com`: a local part
    has no ASCII form) and the relay does not offer SMTPUTF8 (RFC 6531):
    refused before MAIL, and again at every retry to that relay."""


class SmtpBackend:
    def send(
        self, to: str, content: dict[str, str], message_id: str, deadline: float | None = None
    ) -> None:
        """Send through the configured relay. `deadline` (time.monotonic()):
        the whole delivery ends by then, or fails. MAIL_TIMEOUT bounds each
        socket read, not a delivery: a relay slow on every command outlived
        the worker's lease, and another worker sent the row again (found by
        review); at the deadline the socket is shut and the send fails (a
        retry later, never two workers at once). Once the relay accepted the
        message, a failed goodbye (QUIT answered 421, a dropped connection)
        changes nothing (it had counted as a failure: the email was sent
        again at every retry)."""
        message = build_message(to, content, message_id)
        config = current_app.config
        timeout = config["MAIL_TIMEOUT"]
        if deadline is not None:
            left = deadline - time.monotonic()
            if left <= 0:
                raise DeadlinePassed("no time left in the lease to send")
            timeout = min(timeout, left)
        # The watchdog runs before the connection is made: it was started
        # once `smtplib.SMTP(host)` returned, after the whole greeting, and a
        # relay greeting a line now and then held the send past its lease
        # (found by review). The object is handed to it before its
        # constructor connects (`_Watched`).
        watchdog = _Watchdog(deadline) if deadline is not None else None
        smtp = None
        try:
            try:
                if config["MAIL_USE_SSL"]:
                    smtp = _WatchedSSL(
                        watchdog,
                        config["MAIL_SERVER"],
                        config["MAIL_PORT"],
                        timeout=timeout,
                        context=ssl.create_default_context(),
                    )
                else:
                    smtp = _WatchedSMTP(
                        watchdog, config["MAIL_SERVER"], config["MAIL_PORT"], timeout=timeout
                    )
                # The watchdog looks for a connection being opened only now
                # and then: one made past the deadline (a slow name lookup)
                # could take a quick relay's whole transaction first (found
                # by review). Past it here, or before the message, nothing
                # is sent.
                _in_time(deadline)
                if config["MAIL_USE_TLS"]:
                    smtp.starttls(context=ssl.create_default_context())
                if config["MAIL_USERNAME"]:
                    smtp.login(config["MAIL_USERNAME"], config["MAIL_PASSWORD"] or "")
                recipient = ascii_domain(to)
                if not recipient.isascii():  # a non-ASCII local part has no ASCII form
                    smtp.ehlo_or_helo_if_needed()
                    if not smtp.has_extn("smtputf8"):
                        raise NeedsSmtpUtf8(f"{recipient!r} needs SMTPUTF8: the relay lacks it")
                # The envelope names the stored address itself: smtplib read
                # it from the parsed To header, which decodes an encoded word
                # (`=?utf-8?q?victim=40gmail.com=2c?=x@...` went to two other
                # mailboxes) and drops a local part's quotes (found by review).
                _in_time(deadline)
                smtp.send_message(message, to_addrs=[recipient])
            except BaseException as error:
                # (A constructor that failed is the watchdog's object.)
                opened = smtp or (watchdog.smtp if watchdog is not None else None)
                if opened is not None:
                    opened.close()
                # Cut by the watchdog (a broken connection): the lease's end.
                # A reply the relay gave (a 5xx refusal) stays what it is.
                # (smtplib's errors are OSErrors too: a reply is not a cut.)
                replied = (smtplib.SMTPResponseException, smtplib.SMTPRecipientsRefused)
                cut = isinstance(error, OSError) and not isinstance(error, replied)
                if cut and deadline is not None and time.monotonic() >= deadline:
                    raise DeadlinePassed(f"the lease ran out while sending: {error}") from error
                raise
            # The goodbye too ends by the deadline (the watchdog is still on):
            # a relay that never answered QUIT held the send past its lease,
            # and a second worker sent it again (found by review).
            try:
                smtp.quit()
            except (smtplib.SMTPException, OSError):  # accepted already
                smtp.close()
        finally:
            if watchdog is not None:
                watchdog.stop()


def _in_time(deadline: float | None) -> None:
    if deadline is not None and time.monotonic() >= deadline:
        raise DeadlinePassed("the lease ran out while connecting")


class _Watched:
    """An SMTP connection its watchdog knows from the start: handed to it
    before the constructor connects and reads the greeting (a subclass, as
    the constructor is what connects with the host TLS checks the
    certificate against)."""

    def __init__(self, watchdog: _Watchdog | None, *args: Any, **kwargs: Any) -> None:
        if watchdog is not None:
            watchdog.smtp = self
        super().__init__(*args, **kwargs)


class _WatchedSMTP(_Watched, smtplib.SMTP):
    pass


class _WatchedSSL(_Watched, smtplib.SMTP_SSL):
    pass


class _Watchdog:
    """At `deadline`, shuts the connection a send is blocked on: the one open
    then, or one still being opened (a slow DNS lookup, TCP connect or TLS
    handshake, which holds no socket `smtp.sock` names yet) as soon as it
    exists, so its greeting is never read."""

    POLL = 0.05  # seconds between two looks for a connection being opened

    def __init__(self, deadline: float) -> None:
        self.deadline = deadline
        self.smtp: smtplib.SMTP | None = None
        self.ended = threading.Event()
        threading.Thread(target=self._watch, daemon=True).start()

    def _watch(self) -> None:
        if self.ended.wait(max(self.deadline - time.monotonic(), 0)):
            return
        while True:
            sock = self.smtp.sock if self.smtp is not None else None
            if sock is not None:
                with suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                return
            if self.ended.wait(self.POLL):
                return

    def stop(self) -> None:
        self.ended.set()


BACKENDS = {"console": ConsoleBackend, "smtp": SmtpBackend}


def is_permanent(error: BaseException) -> bool:
    """Whether a failed send must not be repeated: the server refused this
    message's recipient or content with a 5xx reply (RFC 5321 4.2.1,
    "permanent negative completion": the client SHOULD NOT repeat the exact
    request). A 5xx to the shop's own login or sender (a rotated password,
    a wrong MAIL_DEFAULT_SENDER) concerns every message and passes once
    fixed: retried as any failure. A recipient the relay cannot carry
    (`NeedsSmtpUtf8`) is permanent too: it was tried MAIL_MAX_ATTEMPTS
    times, refused the same way each time (found by review); a relay
    lacking STARTTLS or AUTH (SMTPNotSupportedError as well) concerns every
    message: retried."""
    if isinstance(error, NeedsSmtpUtf8):
        return True
    if isinstance(error, smtplib.SMTPRecipientsRefused):
        codes = [code for code, _ in error.recipients.values()]
        return bool(codes) and all(500 <= code < 600 for code in codes)
    if isinstance(error, smtplib.SMTPDataError):
        return 500 <= error.smtp_code < 600
    return False


def send(to: str, content: dict[str, str], message_id: str, deadline: float | None = None) -> None:
    """Send one rendered email now, by `deadline` (time.monotonic()) if given;
    raises when the backend fails."""
    name = current_app.config["MAIL_BACKEND"]
    if name not in BACKENDS:
        raise RuntimeError(f"unknown MAIL_BACKEND {name!r}: use one of {', '.join(BACKENDS)}")
    BACKENDS[name]().send(to, content, message_id, deadline)
