"""The project's flask-smorest Blueprint: each view runs in one unit of work
(`app.db.unit_of_work`), JSON bodies are parsed by the app's own provider
(exact decimals, depth-safe, no NUL characters), private routes and standard
errors are documented as such (`app.web.openapi`)."""

from __future__ import annotations

from functools import wraps

import flask_smorest
from flask import current_app
from webargs import core
from webargs.flaskparser import FlaskParser

from app.db import unit_of_work
from app.errors import ApiError, ValidationFailed
from app.web.jwt import admin_required, auth_required
from app.web.openapi import response_schema, standard_error_responses
from app.web.openapi_contract import operation_extras
from app.web.overrides import add_doc_callback, set_doc_info

BEARER = [{"bearerAuth": []}]
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
    def load_json(self, req, schema):
        """The body, parsed by the app's JSON provider; `missing` if empty."""
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
            set_doc_info(documented, access="admin" if admin else "user")
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


def _in_unit_of_work(view):
    @wraps(view)
    def wrapper(*args, **kwargs):
        with unit_of_work():
            return view(*args, **kwargs)

    return wrapper
