"""Per-request hooks: request ids, JSON-only bodies, one structured log line per
request, security headers, and trusted proxies."""

from __future__ import annotations

import json
import logging
import re
import sys
import time
import uuid

from flask import Flask, Response, g, request
from werkzeug.middleware.proxy_fix import ProxyFix

from app.errors import ApiError

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


def configure_logging(app: Flask) -> None:
    """JSON lines on stderr, unless the host (pytest, an embedding app) already
    configured logging."""
    logger = logging.getLogger("shop")
    logger.setLevel(app.config["LOG_LEVEL"])
    logging.getLogger("app").setLevel(app.config["LOG_LEVEL"])
    # `flask run` (werkzeug) logs each request too: the JSON line is the one.
    logging.getLogger("werkzeug").addFilter(_not_a_request_line)
    if logging.getLogger().handlers or logger.handlers:
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JSONFormatter())
    for name in ("shop", "app"):
        logging.getLogger(name).addHandler(handler)


def _start_request() -> None:
    incoming = request.headers.get("X-Request-ID", "")
    g.request_id = incoming if REQUEST_ID.match(incoming) else uuid.uuid4().hex
    g.request_started = time.perf_counter()


def is_json_mimetype(mimetype: str) -> bool:
    return mimetype == "application/json" or (
        mimetype.startswith("application/") and mimetype.endswith("+json")
    )


def reject_non_json_bodies() -> None:
    """415 for a body sent as anything but JSON, before any view runs."""
    has_body = bool(request.content_length) or "chunked" in request.headers.get(
        "Transfer-Encoding", ""
    )
    if has_body and not is_json_mimetype(request.mimetype or ""):
        raise ApiError("Content type must be application/json", status=415)


def _finish_request(response: Response) -> Response:
    headers = response.headers
    headers["X-Content-Type-Options"] = "nosniff"
    headers["X-Frame-Options"] = "DENY"
    headers["Referrer-Policy"] = "no-referrer"
    headers.setdefault(
        "Content-Security-Policy",
        DOCS_CSP if request.path.startswith("/api/docs") else JSON_CSP,
    )
    if "Authorization" in request.headers:
        headers["Cache-Control"] = "no-store"  # private answers stay out of shared caches
    else:
        # Only what says otherwise (catalog reads, the docs' files) may be stored.
        headers.setdefault("Cache-Control", "no-store")
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


def register_hooks(app: Flask) -> None:
    """Logging, trusted proxies, and the hooks that open and close every request
    (`reject_non_json_bodies` is registered after the rate limiter's check)."""
    configure_logging(app)
    if app.config["TRUST_PROXY"] > 0:
        hops = app.config["TRUST_PROXY"]
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=hops, x_host=hops)
    app.before_request(_start_request)
    app.after_request(_finish_request)
