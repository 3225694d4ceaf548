"""Every use of a pinned library's private internals, in one place.

Each has no public hook to do the same. `tests/test_overrides.py` checks
each against the installed library, and `CHECKED_AGAINST` names the versions
they were read from: upgrading one of those libraries fails that test until
someone re-reads the code below against the new version and updates it."""

from __future__ import annotations

from collections.abc import Callable
from http import HTTPStatus
from typing import Any

import flask_smorest
from flask import g
from flask_jwt_extended.internal_utils import (
    custom_verification_for_token,
    verify_token_not_blocklisted,
    verify_token_type,
)
from flask_jwt_extended.view_decorators import _load_user
from flask_smorest.utils import prepare_response

CHECKED_AGAINST = {
    "flask-jwt-extended": "4.7.4",
    "flask-smorest": "0.47.0",
    "marshmallow": "4.4.0",
}


class ApiWithErrorComponents(flask_smorest.Api):
    """flask-smorest registers one response component per error status from
    `_register_responses` (called by `init_app`); ours gives each the project's
    error schema and wording (`error_descriptions`, set by the subclass)."""

    error_descriptions: dict[int, str] = {}

    def error_headers(self, status: int) -> dict:
        """The headers documented on the component of `status` (a subclass's)."""
        return {}

    def _register_responses(self):
        """One lazy component per status (named as flask-smorest names them, e.g.
        UNAUTHORIZED), each with the error envelope and the project's wording."""
        for status in HTTPStatus:
            if status < 400:
                continue
            response = {
                "description": self.error_descriptions.get(status, status.phrase),
                "schema": self.ERROR_SCHEMA,
                "headers": self.error_headers(status),
            }
            prepare_response(response, self.spec, self.DEFAULT_RESPONSE_CONTENT_TYPE)
            self.spec.components.response(status.name, response, lazy=True)

    def _register_pagination_header(self):
        """flask-smorest registers a pagination header component (and with it a
        `PaginationMetadata` schema) from `init_app`; lists here answer the page
        envelope instead, so neither belongs in the document."""


def add_doc_callback(blueprint: flask_smorest.Blueprint, callback: Callable) -> None:
    """Run `callback(doc, doc_info, api=..., ...)` on every operation's document
    (flask-smorest's own list of such callbacks, `_prepare_doc_cbks`)."""
    blueprint._prepare_doc_cbks.append(callback)


def set_doc_info(view: Callable, **info: Any) -> None:
    """Attach `info` to a view's `_apidoc`, where flask-smorest keeps what its
    decorators record; doc callbacks receive it as `doc_info`."""
    view._apidoc.update(info)


def declared_fields(schema_class: type) -> dict:
    """A Marshmallow schema class's own fields, by name (`_declared_fields`:
    the class attribute SchemaMeta builds; instances only copy it)."""
    return schema_class._declared_fields


def use_verified_jwt(header: dict, claims: dict) -> None:
    """The rest of Flask-JWT-Extended's `verify_jwt_in_request()` (the private
    `_decode_jwt_from_request` after its decoding, then the `g` attributes that
    `get_jwt()` and `current_user` read) for an access token from the Authorization
    header that it already decoded and verified on an earlier request
    (`app.web.jwt.VerifiedTokens`): type, revocation, custom checks, user."""
    verify_token_type(claims, refresh=False)
    verify_token_not_blocklisted(header, claims)
    custom_verification_for_token(header, claims)
    g._jwt_extended_jwt_user = _load_user(header, claims)
    g._jwt_extended_jwt_header = header
    g._jwt_extended_jwt = claims
    g._jwt_extended_jwt_location = "headers"
