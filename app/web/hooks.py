"""Per-request hooks: request ids, JSON-only bodies, one structured log line per
request, security headers, and trusted proxies."""

from __future__ import annotations

import json
import logging
import random
import re
import sys
import time

from flask import Flask, Response, g, request
from flask.sessions import SessionInterface
from werkzeug.middleware.proxy_fix import ProxyFix

from app.errors import ApiError, error_response
from app.web.caching import CACHE_CONTROL as CATALOG_CACHE_CONTROL

log = logging.getLogger("shop.request")
REQUEST_ID = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")

JSON_CSP = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'"
# Swagger UI (served from our own files, no inline script) needs its scripts,
# styles, images (some as data: URIs) and calls to this API.
DOCS_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; "
    "img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'"
)


class JSONFormatter(logging.Formatter):
    """One JSON object per line: easy to ship to any log store."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S%z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        entry.update(getattr(record, "fields", {}))
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def _not_a_request_line(record: logging.LogRecord) -> bool:
    # werkzeug's access-log format, at INFO (its error lines stay)
    return not (record.levelno == logging.INFO and " - - [" in str(record.msg))


# The shop's loggers, and Flask-Limiter's: its "Rate limit storage unreachable
# - falling back to in-memory storage" warning (README: "a warning is
# logged") went to the NullHandler it installs, never to the log (found by
# review).
JSON_LOGGERS = ("shop", "app", "flask-limiter")


def configure_logging(app: Flask) -> None:
    """JSON lines on stderr, unless the host (pytest, an embedding app) already
    configured logging."""
    logger = logging.getLogger("shop")
    for name in JSON_LOGGERS:
        logging.getLogger(name).setLevel(app.config["LOG_LEVEL"])
    # `flask run` (werkzeug) logs each request too: the JSON line is the one.
    logging.getLogger("werkzeug").addFilter(_not_a_request_line)
    if logging.getLogger().handlers or logger.handlers:
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JSONFormatter())
    for name in JSON_LOGGERS:
        named = logging.getLogger(name)
        named.addHandler(handler)
        # Not also to the root logger a host sets up later: `flask worker`'s
        # Celery hijacks it, and each line was logged twice, once as JSON and
        # once in Celery's format (found by review).
        named.propagate = False


class NoCookieSessions(SessionInterface):
    """An API authenticated by bearer tokens keeps no cookie session: Flask's
    default builds a signing serializer for every request (about 10 µs) to
    read a cookie we never set. `flask.session` is a read-only NullSession."""

    def open_session(self, app, request):
        return self.make_null_session(app)

    def save_session(self, app, session, response):
        pass


def _start_request() -> None:
    incoming = request.headers.get("X-Request-ID", "")
    # An id to correlate log lines, not a secret: no os.urandom call per request.
    g.request_id = incoming if REQUEST_ID.match(incoming) else f"{random.getrandbits(128):032x}"
    g.request_started = time.perf_counter()
    # The scheme's name is case-insensitive (RFC 9110, 11.1): `bearer <token>`
    # is `Bearer <token>`, which Flask-JWT-Extended matches exactly (found by
    # review: a 401 "Malformed").
    authorization = request.environ.get("HTTP_AUTHORIZATION")
    if authorization and authorization[:7].lower() == "bearer " and authorization[:7] != "Bearer ":
        request.environ["HTTP_AUTHORIZATION"] = "Bearer " + authorization[7:]


UTF_8 = frozenset({"utf-8", "utf8"})


def is_json_mimetype(mimetype: str) -> bool:
    return mimetype == "application/json" or (
        mimetype.startswith("application/") and mimetype.endswith("+json")
    )


def _codings(header: str, understood: frozenset[str] = frozenset({"identity"})) -> list[str]:
    """The codings a request's `header` names beyond those `understood`."""
    named = (coding.strip().lower() for coding in request.headers.get(header, "").split(","))
    return [coding for coding in named if coding and coding not in understood]


def reject_non_json_bodies() -> Response | None:
    """415 for a body sent as anything but JSON (or compressed), 501 for a
    transfer coding gunicorn leaves undone, before any view runs. A
    request no route takes is left to its 404 or 405 (API.md's table): a
    form posted to a mistyped path was told its type, not that the path is
    wrong (found by review)."""
    if request.routing_exception is not None:
        return None
    environ = request.environ
    if not environ.get("CONTENT_LENGTH") and "HTTP_TRANSFER_ENCODING" not in environ:
        return None  # no body (every GET): nothing to parse
    has_body = bool(request.content_length) or "chunked" in request.headers.get(
        "Transfer-Encoding", ""
    )
    # The body was read as it came, whatever coding it named: a gzipped body
    # was "not valid JSON", and a plain one labelled gzip was taken, where a
    # proxy or WAF that decodes it reads other bytes (found by review).
    # gunicorn undoes `chunked` only, and takes `gzip, chunked` as well.
    if _codings("Transfer-Encoding", frozenset({"identity", "chunked"})):
        return error_response(
            501, "Transfer-Encoding not supported: send chunked or none", code="not_implemented"
        )
    if has_body and _codings("Content-Encoding"):
        # Bodies come uncompressed; RFC 7694: the answer names what is read.
        return error_response(
            415,
            "Content-Encoding not supported: send the body uncompressed (identity)",
            headers={"Accept-Encoding": "identity"},
            code="unsupported_media_type",
        )
    if has_body and not is_json_mimetype(request.mimetype or ""):
        raise ApiError("Content type must be application/json", status=415)
    # JSON is UTF-8 (RFC 8259): a body declared in another charset was read
    # as UTF-8 all the same, its text misread or a 400 "not valid JSON" that
    # hid the reason (found by review).
    charset = request.mimetype_params.get("charset", "utf-8").lower()
    if has_body and charset not in UTF_8:
        raise ApiError("JSON bodies must be UTF-8: send charset=utf-8 or none", status=415)
    return None


def _finish_request(response: Response) -> Response:
    headers = response.headers
    # Appended, not set: nothing else writes these three.
    headers.add("X-Content-Type-Options", "nosniff")
    headers.add("X-Frame-Options", "DENY")
    headers.add("Referrer-Policy", "no-referrer")
    if "Content-Security-Policy" not in headers:
        headers.add(
            "Content-Security-Policy",
            DOCS_CSP if request.path.startswith("/api/docs") else JSON_CSP,
        )
    if "Authorization" in request.headers and headers.get("Cache-Control") != CATALOG_CACHE_CONTROL:
        # Private answers stay out of every cache. A catalog read is the same
        # bytes for everyone (its cache is keyed by the request, never the
        # user): its own no-cache stands, so a signed-in client reuses the ETag.
        headers["Cache-Control"] = "no-store"
    elif "Cache-Control" not in headers:
        # Only what says otherwise (catalog reads, the docs' files) may be stored.
        headers.add("Cache-Control", "no-store")
    if request.is_secure:
        headers["Strict-Transport-Security"] = "max-age=31536000; includeSubDomains"
    request_id = g.get("request_id")
    if request_id:
        headers["X-Request-ID"] = request_id
    if request_id and log.isEnabledFor(logging.INFO):
        started = g.get("request_started", time.perf_counter())
        # Path only: query strings and bodies never reach the log.
        log.info(
            "%s %s %s",
            request.method,
            request.path,
            response.status_code,
            extra={
                "fields": {
                    "method": request.method,
                    "path": request.path,
                    "status": response.status_code,
                    "duration_ms": round((time.perf_counter() - started) * 1000, 2),
                    "request_id": request_id,
                    "remote_addr": request.remote_addr,
                }
            },
        )
    return response


def literal_origins(origins: list[str]) -> list[re.Pattern]:
    """The configured origins as flask-cors must match them: each whole and
    as written (ignoring case). flask-cors reads a string holding `[`, `]`,
    `(`, `?`, `$`, ... as a regular expression matched at the start only, so
    an IPv6 origin (`http://[::1]:5173`, which CORS_ORIGINS accepts) never
    matched itself and allowed `http://1:5173...` instead (found by review)."""
    return [re.compile(re.escape(origin) + r"\Z", re.IGNORECASE) for origin in origins]


def cors_only_with_origin(app: Flask) -> None:
    """Run flask-cors's after-request hook only for requests with an Origin
    header: without one it adds nothing (`always_send=False`), but it still
    matched every response's path against its resources (~10 µs a request).
    Every answer says `Vary: Origin`, as the Fetch standard asks: its CORS
    headers depend on the Origin, and flask-cors says so only to an allowed
    one, so a shared cache could give the answer to a request without an
    Origin (public catalog reads are storable) to the storefront's (found
    by review)."""
    funcs = app.after_request_funcs.setdefault(None, [])
    for index, func in enumerate(funcs):
        if getattr(func, "__name__", "") == "cors_after_request":

            def with_origin(response: Response, cors=func) -> Response:
                if "HTTP_ORIGIN" in request.environ:
                    response = cors(response)
                if "Origin" not in response.headers.get("Vary", ""):
                    response.headers.add("Vary", "Origin")
                return response

            funcs[index] = with_origin


def bodiless_options_answers(app: Flask) -> None:
    """Flask's automatic OPTIONS answer (the `Allow` list, and the CORS
    preflight's 200) is an empty body labelled `text/html; charset=utf-8`,
    the only answer of the API that named HTML (found by review): it names
    no type now, as a 304 names none."""
    make_default = app.make_default_options_response

    def options_response() -> Response:
        response = make_default()
        del response.headers["Content-Type"]
        return response

    app.make_default_options_response = options_response  # type: ignore[method-assign]


def without_upgrades(wsgi_app):
    """The API offers no other protocol, so it ignores `Upgrade` (RFC 9110
    7.8). werkzeug's routing read a WebSocket handshake as a request for a
    websocket rule, which none is: `GET /api/health` was a 400 "Malformed
    HTTP request" and `GET /api/products` a 405 whose Allow left out GET
    (found by review). The request is answered as plain HTTP (no 101)."""

    def app(environ, start_response):
        environ.pop("HTTP_UPGRADE", None)
        return wsgi_app(environ, start_response)

    return app


def register_hooks(app: Flask) -> None:
    """Logging, trusted proxies, and the hooks that open and close every request
    (`reject_non_json_bodies` is registered after the rate limiter's check)."""
    configure_logging(app)
    app.session_interface = NoCookieSessions()
    bodiless_options_answers(app)
    if app.config["TRUST_PROXY"] > 0:
        hops = app.config["TRUST_PROXY"]
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=hops, x_host=hops)
    app.wsgi_app = without_upgrades(app.wsgi_app)
    app.before_request(_start_request)
    app.after_request(_finish_request)
