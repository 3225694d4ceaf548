"""The project's flask-smorest Blueprint: JSON bodies parsed by the app's own
provider (exact decimals, depth-safe), private routes documented as such."""

from __future__ import annotations

import flask_smorest
from flask import current_app, request
from webargs import core
from webargs.flaskparser import FlaskParser

from app.errors import ApiError
from app.utils.security import admin_required, auth_required

BEARER = [{"bearerAuth": []}]


def is_json_mimetype(mimetype: str) -> bool:
    return mimetype == "application/json" or (
        mimetype.startswith("application/") and mimetype.endswith("+json")
    )


class JSONBodyParser(FlaskParser):
    def _raw_load_json(self, req):
        body = req.get_data(cache=True)
        if not body:
            return core.missing
        try:
            return current_app.json.loads(body)
        except (ValueError, UnicodeDecodeError):
            raise ApiError("Request body is not valid JSON", status=400) from None


class Blueprint(flask_smorest.Blueprint):
    ARGUMENTS_PARSER = JSONBodyParser()

    def private(self, fn=None, *, admin: bool = False):
        """Guard a view with a JWT (and, with admin=True, the admin role) and
        mark it in the OpenAPI document as needing a bearer token."""

        def decorate(view):
            guarded = (admin_required if admin else auth_required)(view)
            return self.doc(security=BEARER)(guarded)

        return decorate(fn) if fn is not None else decorate


def reject_non_json_bodies() -> None:
    """415 for a body sent as anything but JSON, before any view runs."""
    has_body = bool(request.content_length) or "chunked" in request.headers.get(
        "Transfer-Encoding", ""
    )
    if has_body and not is_json_mimetype(request.mimetype or ""):
        raise ApiError("Content type must be application/json", status=415)
