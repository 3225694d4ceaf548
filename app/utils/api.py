"""The project's flask-smorest Blueprint: JSON bodies parsed by the app's own
provider (exact decimals, depth-safe, no NUL characters), private routes and
standard errors documented as such (`app.utils.openapi`); path ids bounded."""

from __future__ import annotations

import flask_smorest
from flask import current_app, request
from webargs import core
from webargs.flaskparser import FlaskParser
from werkzeug.exceptions import NotFound
from werkzeug.routing import IntegerConverter

from app.errors import ApiError, ValidationFailed
from app.schemas.common import MAX_INT
from app.utils.openapi import response_schema, standard_error_responses
from app.utils.openapi_contract import operation_extras
from app.utils.security import admin_required, auth_required

BEARER = [{"bearerAuth": []}]


def is_json_mimetype(mimetype: str) -> bool:
    return mimetype == "application/json" or (
        mimetype.startswith("application/") and mimetype.endswith("+json")
    )


class IdConverter(IntegerConverter):
    """`<int:...>` in our routes: an id, documented as 1 to the INTEGER maximum.
    Any other number names no row: a 404 here, instead of a query that
    PostgreSQL refuses (a 500 for ids past INTEGER). Not a ValidationError,
    which would make werkzeug answer 405 when the path has other methods."""

    def __init__(self, map, *args, **kwargs):
        super().__init__(map, *args, **kwargs)
        self.min, self.max = 1, MAX_INT  # flask-smorest documents these bounds

    def to_python(self, value: str) -> int:
        number = int(value)
        if not self.min <= number <= self.max:
            raise NotFound()
        return number


NUL_MESSAGE = "Must not contain the NUL character."


def _has_nul(value) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_has_nul(k) or _has_nul(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_has_nul(item) for item in value)
    return False


def reject_nul(data) -> None:
    """422 for a NUL character anywhere in the input: PostgreSQL cannot store or
    compare one in text (it would be a 500), and no field of ours wants it."""
    if isinstance(data, dict):
        errors = {str(k): [NUL_MESSAGE] for k, v in data.items() if _has_nul(k) or _has_nul(v)}
    else:
        errors = {"_schema": [NUL_MESSAGE]} if _has_nul(data) else {}
    if errors:
        raise ValidationFailed(errors=errors)


class JSONBodyParser(FlaskParser):
    def _raw_load_json(self, req):
        body = req.get_data(cache=True)
        if not body:
            return core.missing
        try:
            data = current_app.json.loads(body)
        except (ValueError, UnicodeDecodeError):
            raise ApiError("Request body is not valid JSON", status=400) from None
        reject_nul(data)
        return data

    def load_querystring(self, req, schema):
        reject_nul(req.args.to_dict(flat=False))
        return super().load_querystring(req, schema)


class Blueprint(flask_smorest.Blueprint):
    ARGUMENTS_PARSER = JSONBodyParser()

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._prepare_doc_cbks.extend([standard_error_responses, operation_extras])

    def response(self, status_code, schema=None, **kwargs):
        """Document (and dump) `schema` as a response: all its fields required."""
        if schema is not None:
            schema = response_schema(schema)
        return super().response(status_code, schema, **kwargs)

    def alt_response(self, status_code, response=None, *, schema=None, **kwargs):
        if schema is not None:
            schema = response_schema(schema)
        return super().alt_response(status_code, response, schema=schema, **kwargs)

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
                    info["endpoint"], info["blueprint"] = endpoint, name
        super().register_views_in_doc(api, app, spec, name=name, parameters=parameters)


def reject_non_json_bodies() -> None:
    """415 for a body sent as anything but JSON, before any view runs."""
    has_body = bool(request.content_length) or "chunked" in request.headers.get(
        "Transfer-Encoding", ""
    )
    if has_body and not is_json_mimetype(request.mimetype or ""):
        raise ApiError("Content type must be application/json", status=415)
