"""The project's flask-smorest Blueprint: each view runs in one unit of work
(`app.db.unit_of_work`), JSON bodies are parsed by the app's own provider
(exact decimals, depth-safe, no NUL characters), private routes and standard
errors are documented as such (`app.web.openapi`)."""

from __future__ import annotations

from functools import wraps

import flask_smorest
from flask import current_app, request
from webargs import core
from webargs.flaskparser import FlaskParser

from app.db import READ_METHODS, defer_write_lock, run_in_unit_of_work
from app.errors import ApiError, ValidationFailed
from app.extensions import limiter
from app.utils.text import bad_text
from app.web.caching import catalog_read
from app.web.json import DuplicateKey
from app.web.jwt import admin_required, auth_required
from app.web.openapi import response_schema, standard_error_responses
from app.web.openapi_contract import operation_extras
from app.web.overrides import add_doc_callback, set_doc_info

BEARER = [{"bearerAuth": []}]
CATALOG_READ_HEADERS = {
    "ETag": {
        "description": "A hash of the answer's bytes: send it back in an If-None-Match header.",
        "schema": {"type": "string"},
    },
    "Cache-Control": {
        "description": "`no-cache`: may be stored, revalidated every time.",
        "schema": {"type": "string"},
    },
}
MAX_JSON_DEPTH = 32


def _first_problem(value) -> str | None:
    """The first unusable string in `value`, walked with a stack of our own so
    that no nesting depth can exhaust Python's; too deep a body is a 400."""
    stack = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, str):
            problem = bad_text(item)
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
                # A key with a lone surrogate is named escaped ("\\ud800"): as
                # itself the answer could not be encoded, a 500 (found by review).
                errors[key.encode("utf-8", "backslashreplace").decode()] = [problem]
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
    def load_json(self, req, schema):
        """The body, parsed by the app's JSON provider; `missing` if empty."""
        body = req.get_data(cache=True)
        if not body:
            return core.missing
        _reject_truncated_stream(req, body)
        try:
            data = current_app.json.loads(body)
        except DuplicateKey as exc:  # valid JSON, but which value is meant?
            field = exc.key.encode("utf-8", "backslashreplace").decode()
            raise ValidationFailed(errors={field: ["Given more than once."]}) from None
        except (ValueError, UnicodeDecodeError):
            raise ApiError("Request body is not valid JSON", status=400) from None
        reject_bad_text(data)
        return data

    def load_querystring(self, req, schema):
        """The query, after a 422 for unusable text and for a parameter the
        schema reads once given more than once (`?sort=price&sort=-price`
        was read at its first value, where a JSON body's repeated key was
        already a 422; found by review). Unknown parameters stay ignored,
        repeated or not, and a multi-valued field (a List) takes several."""
        reject_bad_text(req.args.to_dict(flat=False))
        proxy = super().load_querystring(req, schema)
        repeated = [key for key, values in req.args.lists() if len(values) > 1]
        if repeated:
            read = {field.data_key or name for name, field in schema.load_fields.items()}
            single = read - proxy.multiple_keys
            twice = {key: ["Given more than once."] for key in repeated if key in single}
            if twice:
                raise ValidationFailed(errors=twice)
        return proxy


def _takes_json_body(view) -> bool:
    """Whether the operation reads a JSON body: parsed by its schema, or
    documented as a body it reads itself (the payment webhook)."""
    doc = getattr(view, "_apidoc", {})
    parameters = doc.get("arguments", {}).get("parameters", [])
    documented = "requestBody" in doc.get("manual_doc", {})
    return documented or any(parameter.get("in") == "json" for parameter in parameters)


def _refuse_unexpected_body() -> None:
    """A body sent to a write operation that takes none is read as any body
    is: not JSON is a 400, past MAX_CONTENT_LENGTH a 413, anything but `{}`
    a 422 naming its fields. Ignored, `{"is_admin": true}` or a 2 MB body
    was answered 200 by a cancel, a refresh or a logout-all."""
    environ = request.environ
    if not environ.get("CONTENT_LENGTH") and "HTTP_TRANSFER_ENCODING" not in environ:
        return  # no body: every GET, most writes
    view = current_app.view_functions.get(request.endpoint)
    if view is None or request.method in READ_METHODS or _takes_json_body(view):
        return
    data = Blueprint.ARGUMENTS_PARSER.load_json(request, None)
    if data is core.missing or data == {}:
        return
    if isinstance(data, dict):
        raise ValidationFailed(errors={str(key): ["Unknown field."] for key in data})
    raise ValidationFailed(errors={"_schema": ["This operation takes no request body."]})


def refuse_body(view):
    """Check the body inside the token check (under `jwt_required` or
    `Blueprint.private`), so a request without a valid token is a 401
    first, as on an operation that takes a body."""

    @wraps(view)
    def wrapper(*args, **kwargs):
        _refuse_unexpected_body()
        return view(*args, **kwargs)

    return wrapper


def reject_unexpected_bodies() -> None:
    """`_refuse_unexpected_body` before the view, for an operation that needs
    no token (one that does checks it after the token: `refuse_body`)."""
    view = current_app.view_functions.get(request.endpoint)
    if view is not None and "security" in getattr(view, "_apidoc", {}).get("manual_doc", {}):
        return
    _refuse_unexpected_body()


class Blueprint(flask_smorest.Blueprint):
    ARGUMENTS_PARSER = JSONBodyParser()

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        add_doc_callback(self, standard_error_responses)
        add_doc_callback(self, operation_extras)

    def add_url_rule(self, rule, endpoint=None, view_func=None, *args, **kwargs):
        """Register the view inside a unit of work: its writes commit when it
        returns and roll back when it raises, so views never commit."""
        if isinstance(view_func, type):
            raise TypeError("API views are functions (each runs in a unit of work)")
        if view_func is not None:
            view_func = _in_unit_of_work(view_func)
        return super().add_url_rule(rule, endpoint, view_func, *args, **kwargs)

    def arguments(self, schema, *args, **kwargs):
        """flask-smorest's `arguments`, with a schema class instantiated once
        here: webargs would make a new instance for every request (its fields
        deep-copied, ~0.05 ms; 5 % of a product list page)."""
        return super().arguments(schema() if isinstance(schema, type) else schema, *args, **kwargs)

    def response(self, status_code, schema=None, *, dump=None, **kwargs):
        """Document (and dump) `schema` as a response: all its fields required.
        `dump`: a function that returns what the schema's `dump()` would (a
        test holds them equal), used instead of it on a hot read."""
        if schema is not None:
            schema = response_schema(schema)
        documented = super().response(status_code, schema, **kwargs)
        if dump is None:
            return documented

        def decorator(view):
            @wraps(view)
            def dumped(*args, **kwargs):
                response = current_app.json.response(dump(view(*args, **kwargs)))
                response.status_code = status_code
                return response  # flask-smorest passes a response through as it is

            return documented(dumped)

        return decorator

    def alt_response(self, status_code, response=None, *, schema=None, **kwargs):
        if schema is not None:
            schema = response_schema(schema)
        return super().alt_response(status_code, response, schema=schema, **kwargs)

    def private(self, fn=None, *, admin: bool = False):
        """Guard a view with a JWT (and, with admin=True, the admin role) and
        mark it in the OpenAPI document as needing a bearer token."""

        def decorate(view):
            guarded = (admin_required if admin else auth_required)(refuse_body(view))
            documented = self.doc(security=BEARER)(guarded)
            set_doc_info(documented, access="admin" if admin else "user")
            return documented

        return decorate(fn) if fn is not None else decorate

    @staticmethod
    def unlimited(view):
        """Exempt from every rate limit (health checks, a provider's
        retries), and documented without a 429."""
        exempt = limiter.exempt(view)
        set_doc_info(exempt, rate_limited=False)
        return exempt

    # A write view whose reads run before it takes SQLite's write lock (app.db).
    defer_write_lock = staticmethod(defer_write_lock)

    def catalog_read(self, view):
        """A public catalog read: served from the catalog cache with an ETag
        (304 for a matching If-None-Match), and documented as such."""
        # The 304 carries the validators too (app.web.caching, as RFC 9110 asks):
        # documented on the 200 only, a typed client could not read them (found
        # by review).
        cached = self.alt_response(
            304,
            description="Not modified: the request's If-None-Match names the current ETag",
            headers=CATALOG_READ_HEADERS,
        )(catalog_read(view))
        responses = cached._apidoc["response"]["responses"]
        responses[200] = [{**doc, "headers": CATALOG_READ_HEADERS} for doc in responses[200]]
        return cached

    def register_views_in_doc(self, api, app, spec, *, name, parameters):
        """Tell the doc callbacks which operations take an id in their path."""
        for endpoint, methods in self._docs.items():
            rule = next(app.url_map.iter_rules(f"{name}.{endpoint}"))
            for method, info in methods.items():
                if method != "parameters":
                    info["has_path_args"] = bool(rule.arguments)
                    info["endpoint"], info["blueprint"] = endpoint, name
        super().register_views_in_doc(api, app, spec, name=name, parameters=parameters)


def _in_unit_of_work(view):
    @wraps(view)
    def wrapper(*args, **kwargs):
        return run_in_unit_of_work(view, *args, **kwargs)

    return wrapper
