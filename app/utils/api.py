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
SURROGATE_MESSAGE = "Must be valid Unicode text (no lone surrogate escapes)."
MAX_JSON_DEPTH = 32


def _bad_text(value: str) -> str | None:
    """Why a string cannot be stored or compared (PostgreSQL cannot hold a NUL;
    no database driver or hash can encode a lone surrogate), or None."""
    if "\x00" in value:
        return NUL_MESSAGE
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return SURROGATE_MESSAGE
    return None


def _first_problem(value) -> str | None:
    """The first unusable string in `value`, walked with a stack of our own so
    that no nesting depth can exhaust Python's; too deep a body is a 400."""
    stack = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, str):
            problem = _bad_text(item)
            if problem:
                return problem
        elif isinstance(item, (dict, list)):
            if depth >= MAX_JSON_DEPTH:
                raise ApiError(
                    f"Request body is nested more than {MAX_JSON_DEPTH} levels deep", status=400
                )
            children = [*item.keys(), *item.values()] if isinstance(item, dict) else item
            stack.extend((child, depth + 1) for child in children)
    return None


def reject_bad_text(data) -> None:
    """422 naming the field for a NUL or a lone surrogate anywhere in the input
    (either would be a 500 further in), 400 for nesting past MAX_JSON_DEPTH."""
    errors = {}
    if isinstance(data, dict):
        for key, value in data.items():
            problem = _first_problem(key) or _first_problem(value)
            if problem:
                errors[str(key)] = [problem]
    else:
        problem = _first_problem(data)
        if problem:
            errors["_schema"] = [problem]
    if errors:
        raise ValidationFailed(errors=errors)


def _reject_truncated_stream(req, body: bytes) -> None:
    """A chunked body (no Content-Length) is read up to MAX_CONTENT_LENGTH and
    silently cut there; reading on past the limit raises werkzeug's 413."""
    limit = req.max_content_length
    if req.content_length is None and limit is not None and len(body) >= limit:
        req.stream.read(1)


class JSONBodyParser(FlaskParser):
    def _raw_load_json(self, req):
        body = req.get_data(cache=True)
        if not body:
            return core.missing
        _reject_truncated_stream(req, body)
        try:
            data = current_app.json.loads(body)
        except (ValueError, UnicodeDecodeError):
            raise ApiError("Request body is not valid JSON", status=400) from None
        reject_bad_text(data)
        return data

    def load_querystring(self, req, schema):
        reject_bad_text(req.args.to_dict(flat=False))
        return super().load_querystring(req, schema)


class Blueprint(flask_smorest.Blueprint):
    ARGUMENTS_PARSER = JSONBodyParser()

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._prepare_doc_cbks.append(standard_error_responses)

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
        super().register_views_in_doc(api, app, spec, name=name, parameters=parameters)


def reject_non_json_bodies() -> None:
    """415 for a body sent as anything but JSON, before any view runs."""
    has_body = bool(request.content_length) or "chunked" in request.headers.get(
        "Transfer-Encoding", ""
    )
    if has_body and not is_json_mimetype(request.mimetype or ""):
        raise ApiError("Content type must be application/json", status=415)
