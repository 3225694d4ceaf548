"""SmtpBackend's connection: its smtplib object is made without a host, so
that the deadline's watchdog runs before the connection is made (a slow
greeting, a slow name lookup); TLS (MAIL_USE_SSL, MAIL_USE_TLS) still checks
the relay's certificate against MAIL_SERVER."""

from __future__ import annotations

import shutil
import socket
import ssl
import subprocess
import time

import pytest
from aiosmtpd.controller import Controller

from app.services import mail
from app.services.mail import DeadlinePassed
from tests.live import free_port
from tests.smtp import MAIL_KEYS, DrippingGreeter, Sink

CONTENT = {"subject": "Hello", "text": "Hello", "html": "<p>Hello</p>"}


@pytest.fixture
def certificate(tmp_path):
    """A self-signed certificate for `localhost` (openssl), and its key."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-keyout", str(key), "-out", str(cert), "-subj", "/CN=localhost",
         "-addext", "subjectAltName=DNS:localhost"],
        check=True, capture_output=True,
    )  # fmt: skip
    return cert, key


@pytest.mark.parametrize("mode", ["ssl", "starttls"])
def test_tls_reaches_the_relay_by_its_name_and_refuses_another(app, certificate, monkeypatch, mode):
    cert, key = certificate
    trusted = ssl.create_default_context

    def trusting(*args, **kwargs):  # the client trusts the test's own certificate
        context = trusted(*args, **kwargs)
        context.load_verify_locations(cert)
        return context

    monkeypatch.setattr(ssl, "create_default_context", trusting)
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(cert, key)
    tls = {"ssl_context": server} if mode == "ssl" else {"tls_context": server}
    sink, port = Sink(), free_port()
    controller = Controller(
        sink, hostname="127.0.0.1", port=port, server_hostname="localhost", **tls
    )
    controller.start()
    saved = {key: app.config[key] for key in (*MAIL_KEYS, "MAIL_USE_SSL", "MAIL_USE_TLS")}
    app.config.update(
        MAIL_BACKEND="smtp", MAIL_SERVER="localhost", MAIL_PORT=port,
        MAIL_USE_SSL=mode == "ssl", MAIL_USE_TLS=mode == "starttls",
    )  # fmt: skip
    try:
        with app.app_context():
            mail.send("bob@example.com", CONTENT, "<tls@example.com>", time.monotonic() + 10)
            for _ in range(100):
                if sink.messages:
                    break
                time.sleep(0.05)
            assert [message["X-Rcpt-To"] for message in sink.messages] == ["bob@example.com"]
            # The certificate names localhost, not 127.0.0.1: refused.
            app.config["MAIL_SERVER"] = "127.0.0.1"
            with pytest.raises(ssl.SSLCertVerificationError):
                mail.send("bob@example.com", CONTENT, "<tls2@example.com>", time.monotonic() + 10)
    finally:
        app.config.update(saved)
        controller.stop()


def test_a_deadline_passed_while_connecting_cuts_the_greeting_as_soon_as_the_socket_exists(
    app, monkeypatch
):
    """The local name lookup (socket.getfqdn, for EHLO) is made before the
    connection, and no socket exists to shut while it runs: when it outlives
    the deadline, the connection made after it is shut at once, and a relay
    greeting a line now and then does not hold the send."""
    relay = DrippingGreeter(every=0.3, seconds=10.0)
    lookup = socket.getfqdn

    def slow_lookup(*args):
        time.sleep(1.5)
        return lookup(*args)

    monkeypatch.setattr(socket, "getfqdn", slow_lookup)
    saved = {key: app.config[key] for key in MAIL_KEYS}
    app.config.update(MAIL_BACKEND="smtp", MAIL_SERVER="127.0.0.1", MAIL_PORT=relay.port)
    try:
        with app.app_context():
            started = time.monotonic()
            with pytest.raises(DeadlinePassed):
                mail.send("bob@example.com", CONTENT, "<slow@example.com>", started + 1.0)
            assert time.monotonic() - started < 4.0
    finally:
        app.config.update(saved)
        relay.close()


def test_a_non_ascii_local_part_goes_to_a_relay_with_smtputf8_and_only_it_is_permanent(app):
    """`josé@example.com` has no ASCII form: a relay offering SMTPUTF8 takes
    it; one without refuses it at every attempt (mail.NeedsSmtpUtf8, a
    permanent failure). A relay lacking STARTTLS or AUTH (smtplib's
    SMTPNotSupportedError too) concerns every message: retried."""
    import smtplib

    sink, port = Sink(), free_port()
    controller = Controller(sink, hostname="127.0.0.1", port=port, enable_SMTPUTF8=True)
    controller.start()
    saved = {key: app.config[key] for key in MAIL_KEYS}
    app.config.update(MAIL_BACKEND="smtp", MAIL_SERVER="127.0.0.1", MAIL_PORT=port)
    try:
        with app.app_context():
            mail.send("josé@exämple.com", CONTENT, "<utf8@example.com>", time.monotonic() + 10)
            for _ in range(100):
                if sink.messages:
                    break
                time.sleep(0.05)
            assert [message["X-Rcpt-To"] for message in sink.messages] == [
                "josé@xn--exmple-cua.com"
            ]
    finally:
        app.config.update(saved)
        controller.stop()
    assert mail.is_permanent(mail.NeedsSmtpUtf8("josé@example.com needs SMTPUTF8"))
    assert not mail.is_permanent(smtplib.SMTPNotSupportedError("STARTTLS extension not supported"))
