"""The one place that turns every error into the JSON envelope of API.md."""

from __future__ import annotations

import logging
import math
import time
from http import HTTPStatus
from typing import Any

from flask import Flask, Response, jsonify
from werkzeug.exceptions import HTTPException, InternalServerError

from app.extensions import db

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


class ApiError(Exception):
    """A domain error with an HTTP status and a human-readable message."""

    status = 400

    def __init__(self, message: str | None = None, errors: dict | None = None, status=None):
        super().__init__(message)
        if status is not None:
            self.status = status
        self.message = message or MESSAGES.get(self.status, HTTPStatus(self.status).phrase)
        self.errors = errors


class Unauthorized(ApiError):
    status = 401


class Forbidden(ApiError):
    status = 403


class NotFound(ApiError):
    status = 404


class Conflict(ApiError):
    status = 409


class ValidationFailed(ApiError):
    status = 422


class OutOfStock(Conflict):
    def __init__(self, name: str, available: int):
        super().__init__(f"Not enough stock for '{name}': {available} left")


class InvalidTransition(Conflict):
    def __init__(self, current: str, new: str):
        super().__init__(f"Order cannot go from '{current}' to '{new}'")


def error_body(status: int, message: str | None = None, errors: dict | None = None) -> dict:
    body: dict[str, Any] = {"message": message or MESSAGES.get(status, "Error")}
    if errors:
        body["errors"] = errors
    return body


def error_response(status: int, message=None, errors=None, headers=None) -> Response:
    response = jsonify(error_body(status, message, errors))
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
    db.session.rollback()
    status = error.code or 500
    data = getattr(error, "data", None) or {}
    message = data.get("message")
    errors = data.get("errors")
    if errors is None and "messages" in data:
        errors = _flatten_webargs(data["messages"])
        if status == 400:  # webargs' invalid-JSON abort
            message, errors = "Request body is not valid JSON", None
    if message is None and status not in MESSAGES:
        message = error.name
    headers = dict(data.get("headers") or {})
    if status == 405 and getattr(error, "valid_methods", None):
        headers["Allow"] = ", ".join(error.valid_methods)
    if status == 429:
        message = f"Too many requests: limit of {error.description}" if error.description else None
        headers["Retry-After"] = str(_retry_after())
    return error_response(status, message, errors, headers)


def _retry_after() -> int:
    """Seconds until the breached limit's window resets."""
    from app.extensions import limiter

    current = limiter.current_limit
    if current is None:
        return 60
    return max(1, math.ceil(current.reset_at - time.time()))


def handle_api_error(error: ApiError) -> Response:
    db.session.rollback()
    return error_response(error.status, error.message, error.errors)


def handle_unexpected(error: Exception) -> Response:
    db.session.rollback()
    original = getattr(error, "original_exception", None) or error
    log.exception("unhandled error", exc_info=original)
    return error_response(500)


def register_error_handlers(app: Flask) -> None:
    app.register_error_handler(ApiError, handle_api_error)
    app.register_error_handler(HTTPException, http_error_response)
    app.register_error_handler(InternalServerError, handle_unexpected)
    app.register_error_handler(Exception, handle_unexpected)


# --- Reviews (issue 17) ---------------------------------------------------------


class NotABuyer(Forbidden):
    code = "not_a_buyer"

    def __init__(self):
        super().__init__("Only a customer with a delivered order of this product may review it")


class AlreadyReviewed(Conflict):
    code = "already_reviewed"

    def __init__(self):
        super().__init__("You have already reviewed this product")
