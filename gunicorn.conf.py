"""gunicorn settings: `gunicorn -c gunicorn.conf.py 'app:create_app()'`.

Every value can be set from the environment; the defaults suit one host.
"""

import multiprocessing
import os
import sys
from pathlib import Path


def _int(name: str, default: int, minimum: int | None = None) -> int:
    """The integer in `name`, or `default` when it is unset or empty (an
    empty line in an EnvironmentFile stopped gunicorn with a ValueError
    naming no variable; found by review); a malformed one, or one below
    `minimum`, stops it naming the variable."""
    value = os.environ.get(name, "").strip()
    if not value:
        return default
    try:
        number = int(value)
    except ValueError:
        raise SystemExit(f"{name} must be a whole number, not {value!r}") from None
    if minimum is not None and number < minimum:
        raise SystemExit(f"{name} must be at least {minimum}, not {number}")
    return number


def _check_settings() -> None:
    """The shop's settings (config.py, FLASK_CONFIG) read once here, in the
    master, before any worker: a refused one stops gunicorn with its one
    line. Read only in the workers, it ended each with exit code 1, which
    gunicorn answers by booting another: workers respawned forever, the port
    open and nothing served (found by review). Left as found (the
    environment `.env` adds to, the module), so each worker still reads the
    settings afresh, a reload's included."""
    # (No __file__ when the file is exec'd: it is read from the working directory.)
    here = str(Path(globals().get("__file__", "gunicorn.conf.py")).resolve().parent)
    saved = dict(os.environ)
    sys.path.insert(0, here)
    try:
        import config

        message = config.unknown_config(os.environ.get("FLASK_CONFIG") or "development")
        if message:
            raise SystemExit(message)
    finally:
        sys.modules.pop("config", None)
        sys.path.remove(here)
        os.environ.clear()
        os.environ.update(saved)


_check_settings()

bind = os.environ.get("GUNICORN_BIND", "").strip() or "127.0.0.1:8000"
# gthread: each worker process serves several requests at once with threads.
worker_class = "gthread"
# At least 1 each: 0 workers kept the port open serving nothing, forever, and
# 0 threads failed every worker's boot (found by review).
workers = _int("WEB_CONCURRENCY", multiprocessing.cpu_count() * 2 + 1, minimum=1)
threads = _int("GUNICORN_THREADS", 4, minimum=1)
timeout = _int("GUNICORN_TIMEOUT", 30)
graceful_timeout = _int("GUNICORN_GRACEFUL_TIMEOUT", 30)
keepalive = _int("GUNICORN_KEEPALIVE", 5)
# Recycle workers now and then so a slow leak can never grow without bound.
max_requests = _int("GUNICORN_MAX_REQUESTS", 20000)
max_requests_jitter = _int("GUNICORN_MAX_REQUESTS_JITTER", 2000)
# The proxy in front may set X-Forwarded-*; the app trusts them only when
# TRUST_PROXY says how many proxies there are (ProxyFix).
forwarded_allow_ips = os.environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1")
# No header sets a WSGI variable: gunicorn's default let those peers send
# `SCRIPT_NAME:` (and `PATH_INFO:`), and one the path did not start with was
# a 500, one it did remapped the path (`/x/api/health` served `/api/health`;
# found by review). The API is served at /api only, never under a prefix;
# header names with `_` are dropped (header_map's default).
forwarder_headers = ""

# Access log with the request id the app echoes (X-Request-ID) and the time in µs.
accesslog = os.environ.get("GUNICORN_ACCESSLOG", "-") or None
access_log_format = '%(h)s "%(r)s" %(s)s %(b)s %(D)sus rid=%({x-request-id}o)s'
errorlog = "-"
# One of gunicorn's levels: it read any other word as `info`, saying
# nothing (found by review).
LOG_LEVELS = ("debug", "info", "warning", "error", "critical")
loglevel = os.environ.get("GUNICORN_LOGLEVEL", "").strip().lower() or "info"
if loglevel not in LOG_LEVELS:
    raise SystemExit(f"GUNICORN_LOGLEVEL must be one of {', '.join(LOG_LEVELS)}, not {loglevel!r}")
# Request lines up to 8 KiB (gunicorn's ceiling; nginx's default buffer size),
# not 4 KiB: a list URL with many filters fits.
limit_request_line = _int("GUNICORN_LIMIT_REQUEST_LINE", 8190)


def _json_error(sock, status_int, reason, mesg):
    """gunicorn's own answers (a malformed request line or header, headers past
    limit_request_field_size, ...) in the API's JSON envelope instead of HTML;
    gunicorn's wording names its parser, so the message is the project's."""
    import json
    from http import HTTPStatus

    from gunicorn import util

    try:
        code = HTTPStatus(status_int).name.lower()
        # gunicorn gives "Bad Request" as the reason of its 501 (a
        # Transfer-Encoding it does not support): the status's own phrase.
        reason = HTTPStatus(status_int).phrase
    except ValueError:
        code = "bad_request"
    messages = {
        400: ("invalid_request", "Malformed HTTP request"),
        414: ("uri_too_long", "Request URI too long"),
        431: ("headers_too_large", "Request header fields too large"),
        500: ("internal_error", "Internal server error"),
        417: ("expectation_failed", "Expect header not supported: send 100-continue or none"),
        501: ("not_implemented", "Transfer-Encoding not supported: send chunked or none"),
    }
    code, message = messages.get(status_int, (code, reason))
    body = json.dumps({"code": code, "message": message}).encode()
    # Every answer carries an X-Request-ID (docs/API.md): gunicorn's own too,
    # a new one, since the request's could not be read (found by review).
    import secrets

    # And the security headers every answer carries (app/web/hooks.py's).
    from app.web.hooks import JSON_CSP

    head = (
        f"HTTP/1.1 {status_int} {reason}\r\nConnection: close\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
        f"X-Request-ID: {secrets.token_hex(16)}\r\n"
        "X-Content-Type-Options: nosniff\r\nX-Frame-Options: DENY\r\n"
        "Referrer-Policy: no-referrer\r\n"
        f"Content-Security-Policy: {JSON_CSP}\r\n\r\n"
    ).encode("latin-1")
    util.write_nonblock(sock, head + body)


def worker_exit(server, worker):
    """A worker leaving (reload, stop, max_requests) first lets its embedded
    background thread (BACKGROUND_MODE=thread) finish and record the batch
    it is sending, within the graceful timeout; the thread was a daemon cut
    off mid-batch, and its sent emails went again after their lease."""
    extensions = getattr(getattr(worker, "wsgi", None), "extensions", {})
    background = extensions.get("shop_background")
    if background is not None:
        background.stop(timeout=max(1, worker.cfg.graceful_timeout - 2))


def on_starting(server):
    from gunicorn import util

    util.write_error = _json_error
