"""The project's flask-smorest Blueprint: JSON bodies parsed by the app's own
provider (exact decimals, depth-safe), private routes documented as such."""

from __future__ import annotations

import flask_smorest
from flask import current_app, request
from webargs import core
from webargs.flaskparser import FlaskParser

from app.errors import ApiError
from app.utils.openapi import standard_error_responses
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

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._prepare_doc_cbks.append(standard_error_responses)

    def private(self, fn=None, *, admin: bool = False):
        """Guard a view with a JWT (and, with admin=True, the admin role) and
        mark it in the OpenAPI document as needing a bearer token."""

        def decorate(view):
            guarded = (admin_required if admin else auth_required)(view)
            documented = self.doc(security=BEARER)(guarded)
            documented._apidoc["access"] = "admin" if admin else "user"
            return documented

        return decorate(fn) if fn is not None else decorate

    def register_views_in_doc(self, api, app, spec, *, name, parameters):
        """Tell the doc callbacks which operations take an id in their path."""
        for endpoint, methods in self._docs.items():
            rule = next(app.url_map.iter_rules(f"{name}.{endpoint}"))
            for method, info in methods.items():
                if method != "parameters":
                    info["has_path_args"] = bool(rule.arguments)
        super().register_views_in_doc(api, app, spec, name=name, parameters=parameters)


def reject_non_json_bodies() -> None:
    """415 for a body sent as anything but JSON, before any view runs."""
    has_body = bool(request.content_length) or "chunked" in request.headers.get(
        "Transfer-Encoding", ""
    )
    if has_body and not is_json_mimetype(request.mimetype or ""):
        raise ApiError("Content type must be application/json", status=415)
