"""The one place that turns every error into the JSON envelope of API.md."""

from __future__ import annotations

import logging
import math
import time
from http import HTTPStatus
from typing import Any

from flask import Flask, Response, g, jsonify, request
from sqlalchemy.exc import InternalError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from werkzeug.exceptions import HTTPException, InternalServerError

from app.extensions import limiter

log = logging.getLogger(__name__)

MESSAGES = {
    400: "Bad request",
    401: "Authentication required",
    403: "Forbidden",
    404: "Not found",
    405: "Method not allowed",
    409: "Conflict",
    413: "Request body too large",
    415: "Content type must be application/json",
    422: "Validation failed",
    429: "Too many requests",
    500: "Internal server error",
    503: "Service unavailable",
}


# The stable `code` of each status, for errors that name no code of their own
# (werkzeug's HTTP errors, `ApiError(..., status=...)`). A client branches on it.
CODES = {
    400: "invalid_json",
    401: "token_invalid",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "validation_failed",
    429: "rate_limited",
    500: "internal_error",
    503: "unavailable",
}


def code_for(status: int) -> str:
    if status in CODES:
        return CODES[status]
    try:
        return HTTPStatus(status).name.lower()
    except ValueError:
        return "error"


class ApiError(Exception):
    """A domain error: subclasses set `status` and `code` (snake_case, stable,
    listed in docs/API.md) and may pass `details` (a small JSON object)."""

    status: int = 400
    code: str | None = None  # None: the status's code (CODES)
    retry_after: int | None = None  # seconds, sent as Retry-After (a 503 that will pass)

    def __init__(
        self,
        message: str | None = None,
        errors: dict | None = None,
        status: int | None = None,
        *,
        code: str | None = None,
        details: dict | None = None,
    ):
        super().__init__(message)
        if status is not None:
            self.status = status
        if code is not None:
            self.code = code
        elif self.code is None or (status is not None and type(self).status != status):
            self.code = code_for(self.status)
        self.message = message or MESSAGES.get(self.status, HTTPStatus(self.status).phrase)
        self.errors = errors
        self.details = details


class Unauthorized(ApiError):
    status = 401
    code = "token_invalid"


class UserGone(Unauthorized):
    """The token's account was deleted (in SQL: no API deletes one) while
    the request ran, or after this process kept its user (ACCOUNT_CACHE_TTL).
    The JWT user lookup's 401 says the same (`app.web.jwt`)."""

    MESSAGE = "The token's user no longer exists"

    def __init__(self):
        super().__init__(self.MESSAGE)


class InvalidCredentials(Unauthorized):
    code = "invalid_credentials"


class TokenRevoked(Unauthorized):
    """The caller's token was revoked while its request waited (the answer a
    revoked token gets before its request starts, app/web/jwt.py)."""

    code = "token_revoked"

    def __init__(self):
        super().__init__("Token has been revoked")


class Forbidden(ApiError):
    status = 403
    code = "forbidden"


class NotFound(ApiError):
    status = 404
    code = "not_found"


class Conflict(ApiError):
    status = 409
    code = "conflict"


class ValidationFailed(ApiError):
    status = 422
    code = "validation_failed"


class Duplicate(Conflict):
    """A unique value (`field`) another row already holds."""

    code = "duplicate"

    def __init__(self, field: str, message: str | None = None):
        super().__init__(message or f"That {field} is already taken", details={"field": field})


class OutOfStock(Conflict):
    code = "out_of_stock"

    def __init__(self, name: str, available: int, product_id: int):
        super().__init__(
            f"Not enough stock for '{name}': {available} left",
            details={"product_id": product_id, "available": available},
        )


class InvalidTransition(Conflict):
    code = "invalid_transition"

    def __init__(self, current: str, new: str):
        super().__init__(
            f"Order cannot go from '{current}' to '{new}'", details={"from": current, "to": new}
        )


class EmptyCart(Conflict):
    code = "empty_cart"


class CartLimit(Conflict):
    code = "cart_limit"


class OrderNotPending(Conflict):
    code = "order_not_pending"


class IdempotencyInFlight(Conflict):
    code = "idempotency_in_flight"


class IdempotencyKeyReused(ValidationFailed):
    code = "idempotency_key_reused"


def error_body(
    status: int,
    message: str | None = None,
    errors: dict | None = None,
    *,
    code: str | None = None,
    details: dict | None = None,
) -> dict:
    body: dict[str, Any] = {
        "code": code or code_for(status),
        "message": message or MESSAGES.get(status, "Error"),
    }
    if errors:
        body["errors"] = errors
    if details:
        body["details"] = details
    return body


def error_response(
    status: int, message=None, errors=None, headers=None, *, code=None, details=None
) -> Response:
    response = jsonify(error_body(status, message, errors, code=code, details=details))
    response.status_code = status
    if headers:
        response.headers.update(headers)
    return response


def _flatten_webargs(messages: dict) -> dict:
    """webargs nests messages by location ({"json": {...}}); API.md wants fields."""
    flat: dict[str, Any] = {}
    for value in messages.values():
        if isinstance(value, dict):
            flat.update(value)
        else:
            flat.setdefault("_schema", []).extend(value if isinstance(value, list) else [value])
    return flat


def http_error_response(error: HTTPException) -> Response:
    status = error.code or 500
    data = getattr(error, "data", None) or {}
    message = data.get("message")
    errors = data.get("errors")
    code = None
    if errors is None and "messages" in data:
        errors = _flatten_webargs(data["messages"])
        if status == 400:  # webargs' invalid-JSON abort
            message, errors = "Request body is not valid JSON", None
    elif status == 400 and "JSON" not in str(error.description):
        # werkzeug's own 400s are about the HTTP request, not a body: a Host
        # header it cannot read (`a..b`, 5,000 characters) was answered
        # `invalid_json` (found by review). The code gunicorn's refusals use.
        message, code = message or "Malformed HTTP request", "invalid_request"
    if message is None and status not in MESSAGES:
        message = error.name
    headers = dict(data.get("headers") or {})
    if status == 405 and getattr(error, "valid_methods", None):
        headers["Allow"] = ", ".join(error.valid_methods)
    if status == 429:
        message = _limit_message()
        headers["Retry-After"] = str(_retry_after())
    return error_response(status, message, errors, headers, code=code)


def _limit_message() -> str | None:
    """The 429 message in the project's words ("Too many requests: at most 10 per 15 minutes")
    (the limits library's own read "limit of 10 per 15 minute"; found by
    review); None (the status's message) when no limit is at hand."""
    current = limiter.current_limit
    item = getattr(current, "limit", None)
    try:
        amount, multiples = int(item.amount), int(item.multiples)
        unit = str(item.GRANULARITY.name)
    except (AttributeError, TypeError, ValueError):
        return None
    per = unit if multiples == 1 else f"{multiples} {unit}s"
    return f"Too many requests: at most {amount} per {per}"


def _retry_after() -> int:
    """Seconds until the breached limit's window resets."""
    current = limiter.current_limit
    if current is None:
        return 60
    return max(1, math.ceil(current.reset_at - time.time()))


def handle_api_error(error: ApiError) -> Response:
    headers = {"Retry-After": str(error.retry_after)} if error.retry_after else None
    if isinstance(error, Unauthorized):
        headers = {"WWW-Authenticate": "Bearer"}
    return error_response(
        error.status, error.message, error.errors, headers, code=error.code, details=error.details
    )


def handle_unexpected(error: Exception) -> Response:
    original = getattr(error, "original_exception", None) or error
    if type(original).__module__.startswith("gunicorn.http"):
        # gunicorn reads a body as the app asks for it: a chunked body with
        # broken framing (a bad chunk size, a missing CRLF) raises there, in
        # whatever view read it. The client's mistake, a 400 in the envelope
        # gunicorn.conf.py gives the requests gunicorn refuses itself (it was a
        # 500 with a logged traceback; found by review).
        return error_response(400, "Malformed HTTP request body", code="invalid_request")
    fields = {"method": request.method, "path": request.path, "request_id": g.get("request_id")}
    log.error(
        "unhandled error on %s %s (request %s)",
        *fields.values(),
        exc_info=original,
        extra={"fields": fields},
    )
    return error_response(500)


BUSY = ("database is locked", "database table is locked", "database is busy")
# SQLSTATE of a write refused by a read-only PostgreSQL (a hot standby during a
# failover, default_transaction_read_only in a maintenance window): psycopg
# raises it as an InternalError, which was a 500 (found by review).
READ_ONLY_SQL_TRANSACTION = "25006"
# SQLite refusing writes: its disk (or the page limit) full, its file or mount
# read-only. Both were 500s with a traceback (found by review); the operator
# must act, the client can only retry later. (PostgreSQL's disk_full, 53100,
# is an OperationalError of psycopg's: a 503 already.)
SQLITE_WRITES_REFUSED = ("SQLITE_FULL", "SQLITE_READONLY")


def handle_database_busy(error: OperationalError | InternalError | PoolTimeout) -> Response:
    """A database that cannot answer now - SQLite's lock still held after the
    busy timeout, PostgreSQL's statement or lock timeout, a lost connection,
    a server taking no writes, no pooled connection free in time, SQLite's
    disk full or file read-only - is a 503 the client may retry, not a bug.
    Other OperationalErrors (SQLite's "no such table") and InternalErrors
    stay 500s."""
    orig = getattr(error, "orig", None)
    driver = type(orig).__module__
    if getattr(orig, "sqlite_errorname", "").startswith(SQLITE_WRITES_REFUSED):
        log.error("database refuses writes on %s %s: %s", request.method, request.path, orig)
        return error_response(
            503,
            "The database cannot take writes now; try again later",
            headers={"Retry-After": "30"},
        )
    transient = (
        isinstance(error, PoolTimeout)
        or getattr(error, "connection_invalidated", False)
        # psycopg's OperationalErrors: connection, timeouts, locks
        or (isinstance(error, OperationalError) and driver.startswith("psycopg"))
        or getattr(orig, "sqlstate", None) == READ_ONLY_SQL_TRANSACTION
        or any(text in str(orig or "").lower() for text in BUSY)
    )
    if not transient:
        return handle_unexpected(error)
    log.warning(
        "database unavailable on %s %s: %s",
        request.method,
        request.path,
        str(getattr(error, "orig", error)).strip(),
    )
    return error_response(
        503, "The database is busy; try again in a moment", headers={"Retry-After": "1"}
    )


def register_error_handlers(app: Flask) -> None:
    app.register_error_handler(ApiError, handle_api_error)
    app.register_error_handler(OperationalError, handle_database_busy)
    app.register_error_handler(InternalError, handle_database_busy)
    app.register_error_handler(PoolTimeout, handle_database_busy)
    app.register_error_handler(HTTPException, http_error_response)
    app.register_error_handler(InternalServerError, handle_unexpected)
    app.register_error_handler(Exception, handle_unexpected)


# Reliability (issue 13)


class StockLimit(Conflict):
    code = "stock_limit"


class ServerBusy(ApiError):
    status = 503
    code = "unavailable"
    retry_after = 1


# Payments (issue 20)


class PaymentDeclined(ApiError):
    status = 402
    code = "payment_declined"


class AlreadyPaid(Conflict):
    code = "already_paid"

    def __init__(self, message: str = "This order is already paid"):
        super().__init__(message)


class AmountTooSmall(Conflict):
    """The order's total is below the least the provider charges (Stripe:
    about 0.50 in most currencies): no attempt could ever succeed."""

    code = "amount_too_small"

    def __init__(self):
        super().__init__(
            "This order's total is below the smallest amount the payment provider "
            "can charge; it cannot be paid online"
        )


class AmountTooLarge(Conflict):
    """The order's total is above the most the provider charges at once
    (Stripe: 999,999.99 in most currencies): no attempt could ever succeed."""

    code = "amount_too_large"

    def __init__(self):
        super().__init__(
            "This order's total is above the largest amount the payment provider "
            "can charge; it cannot be paid online"
        )


class PaymentProviderError(ApiError):
    """The provider could not be reached or refused the call for its own reasons."""

    status = 502
    code = "payment_provider_error"


class RefundFailed(PaymentProviderError):
    code = "refund_failed"


class InvalidWebhook(ApiError):
    status = 400
    code = "invalid_signature"


# Password reset and email verification (issue 16)
class InvalidAccountToken(ApiError):
    """An unknown, used, expired or tampered reset or verification token."""

    status = 400
    code = "token_invalid"

    def __init__(self, message: str = "This link is invalid or has expired"):
        super().__init__(message)


# Inventory (issue 18)
class InsufficientStock(Conflict):
    """An adjustment that would take the stock below zero."""

    code = "insufficient_stock"

    def __init__(self, product, delta: int):
        super().__init__(
            f"Not enough stock for '{product.name}': {product.stock} left, cannot remove {-delta}",
            details={"product_id": product.id, "available": product.stock},
        )


# --- Reviews (issue 17) ---------------------------------------------------------


class NotABuyer(Forbidden):
    code = "not_a_buyer"

    def __init__(self):
        super().__init__("Only a customer with a delivered order of this product may review it")


class AlreadyReviewed(Conflict):
    code = "already_reviewed"

    def __init__(self):
        super().__init__("You have already reviewed this product")
