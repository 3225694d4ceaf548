"""flask-smorest's Api, answering errors with the project's one envelope and
documenting them with its schema (see `app.web.openapi`). Its object lives
here, next to its class, rather than in `app.extensions`: the class needs the
schemas and the error module, which the models' layer must not import."""

from __future__ import annotations

from http import HTTPStatus

from flask_smorest import Api as SmorestApi
from flask_smorest.utils import prepare_response

from app.errors import http_error_response
from app.schemas.common import ErrorSchema
from app.web.openapi import API_DESCRIPTION, ERROR_DESCRIPTIONS, money2properties


class Api(SmorestApi):
    # No catch-all "default" response: each operation lists the errors it can
    # give, so a client (and schemathesis) can hold the API to that list.
    DEFAULT_ERROR_RESPONSE_NAME = None
    ERROR_SCHEMA = ErrorSchema

    def init_app(self, app, *, spec_kwargs=None):
        self.error_descriptions = ERROR_DESCRIPTIONS
        spec_kwargs = {"info": {"description": API_DESCRIPTION}, **(spec_kwargs or {})}
        super().init_app(app, spec_kwargs=spec_kwargs)
        self.ma_plugin.converter.add_attribute_function(money2properties)

    def _register_responses(self):
        """One lazy component per status (named as flask-smorest names them, e.g.
        UNAUTHORIZED), each with the error envelope and the project's wording."""
        for status in HTTPStatus:
            if status < 400:
                continue
            response = {
                "description": self.error_descriptions.get(status, status.phrase),
                "schema": self.ERROR_SCHEMA,
            }
            prepare_response(response, self.spec, self.DEFAULT_RESPONSE_CONTENT_TYPE)
            self.spec.components.response(status.name, response, lazy=True)

    def handle_http_exception(self, error):
        return http_error_response(error)


api = Api()
