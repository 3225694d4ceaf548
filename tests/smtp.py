"""A real SMTP server for the tests (aiosmtpd on a free port) that keeps what
it receives, and can be told to refuse or to stall."""

from __future__ import annotations

import asyncio
import email
import email.policy
import socket
import threading
import time
from email.message import EmailMessage

from aiosmtpd.controller import Controller

from tests.live import free_port

# An email context the low-stock template renders, for tests that queue one.
LOW_STOCK = {
    "user": {"username": "admin"},
    "product": {"id": 1, "name": "Phone", "stock": 1, "low_stock_threshold": 5},
}
# The settings a test pointing the app at its own relay changes (and restores).
MAIL_KEYS = ("MAIL_BACKEND", "MAIL_SERVER", "MAIL_PORT", "MAIL_TIMEOUT", "OUTBOX_LEASE")


def outbox_rows(db) -> list:
    """Every outbox row as committed now, oldest first, detached."""
    from app.models import OutboxMessage

    db.session.remove()
    rows = db.session.query(OutboxMessage).order_by(OutboxMessage.id).all()
    db.session.expunge_all()
    db.session.rollback()
    return rows


class Sink:
    """aiosmtpd handler: each accepted message, parsed; `refuse` answers a
    temporary failure instead; `stall` keeps the DATA step waiting."""

    def __init__(self) -> None:
        self.messages: list[EmailMessage] = []
        self.refuse: str | None = None
        self.stall = 0.0
        self.attempts = 0
        self.lock = threading.Lock()

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 - aiosmtpd's name
        with self.lock:
            self.attempts += 1
        if self.refuse:
            return self.refuse
        if self.stall:
            await asyncio.sleep(self.stall)
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        message["X-Rcpt-To"] = ", ".join(envelope.rcpt_tos)
        with self.lock:
            self.messages.append(message)
        return "250 Message accepted"


class SlowSink(Sink):
    """A busy or tarpitting relay: each command in `steps` (EHLO, MAIL, RCPT,
    DATA) answered after `delay` seconds, every step succeeding; with
    `received_first` the message is kept before DATA's wait (the relay has it
    before its reply); QUIT answered after `quit_delay`."""

    ALL = frozenset({"EHLO", "MAIL", "RCPT", "DATA"})

    def __init__(
        self,
        delay: float,
        steps: frozenset[str] = ALL,
        *,
        received_first: bool = False,
        quit_delay: float = 0.0,
    ) -> None:
        super().__init__()
        self.delay, self.steps = delay, steps
        self.received_first, self.quit_delay = received_first, quit_delay

    async def _wait(self, step: str) -> None:
        if step in self.steps:
            await asyncio.sleep(self.delay)

    async def handle_EHLO(self, server, session, envelope, hostname, responses):  # noqa: N802
        await self._wait("EHLO")
        session.host_name = hostname
        return responses

    async def handle_MAIL(self, server, session, envelope, address, mail_options):  # noqa: N802
        await self._wait("MAIL")
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):  # noqa: N802
        await self._wait("RCPT")
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):  # noqa: N802
        if self.received_first:
            reply = await super().handle_DATA(server, session, envelope)
            await self._wait("DATA")
            return reply
        await self._wait("DATA")
        return await super().handle_DATA(server, session, envelope)

    async def handle_QUIT(self, server, session, envelope):  # noqa: N802
        if self.quit_delay:
            await asyncio.sleep(self.quit_delay)
        return "221 Bye"


class DrippingGreeter:
    """A relay (or tarpit) that accepts the connection and then greets one
    continuation line ("220-...") every `every` seconds for `seconds`, each
    line well inside the socket timeout, then closes."""

    def __init__(self, every: float, seconds: float) -> None:
        self.every, self.seconds = every, seconds
        self.port = free_port()
        self.listener = socket.socket()
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", self.port))
        self.listener.listen(5)
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        try:
            conn, _ = self.listener.accept()
        except OSError:
            return
        with conn:
            ends = time.monotonic() + self.seconds
            try:
                while time.monotonic() < ends:
                    conn.sendall(b"220-slowly greeting\r\n")
                    time.sleep(self.every)
            except OSError:
                pass

    def close(self) -> None:
        self.listener.close()


class SmtpServer:
    def __init__(self) -> None:
        self.sink = Sink()
        self.port = free_port()
        self.controller = Controller(self.sink, hostname="127.0.0.1", port=self.port)
        self.running = False

    @property
    def messages(self) -> list[EmailMessage]:
        with self.sink.lock:
            return list(self.sink.messages)

    def config(self) -> dict:
        return {"MAIL_BACKEND": "smtp", "MAIL_SERVER": "127.0.0.1", "MAIL_PORT": self.port}

    def env(self) -> dict[str, str]:
        return {key: str(value) for key, value in self.config().items()}

    def start(self) -> SmtpServer:
        self.controller.start()
        self.running = True
        return self

    def stop(self) -> None:
        """Stop listening (the port then refuses connections); idempotent."""
        if self.running:
            self.controller.stop()
            self.running = False

    def wait_for(self, count: int, timeout: float = 30) -> list[EmailMessage]:
        """At least `count` messages, waiting up to `timeout` seconds."""
        deadline = time.monotonic() + timeout
        while len(self.messages) < count:
            if time.monotonic() > deadline:
                raise AssertionError(f"expected {count} emails, got {len(self.messages)}")
            time.sleep(0.05)
        return self.messages


def parts(message: EmailMessage) -> tuple[str, str]:
    """The plain-text and HTML bodies."""
    return (
        message.get_body(("plain",)).get_content(),
        message.get_body(("html",)).get_content(),
    )
