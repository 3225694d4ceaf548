"""flask-smorest's Api, answering errors with the project's one envelope and
documenting them with its schema (see `app.web.openapi`). Its object lives
here, next to its class, rather than in `app.extensions`: the class needs the
schemas and the error module, which the models' layer must not import."""

from __future__ import annotations

from app.errors import http_error_response
from app.schemas.common import ErrorSchema
from app.web.openapi import (
    ERROR_DESCRIPTIONS,
    SETTINGS,
    email2properties,
    money2properties,
    nonblank2properties,
    nonzero2properties,
    url2properties,
)
from app.web.openapi_contract import ContractPlugin, error_component_headers
from app.web.overrides import ApiWithErrorComponents


class Api(ApiWithErrorComponents):
    # No catch-all "default" response: each operation lists the errors it can
    # give, so a client (and schemathesis) can hold the API to that list.
    DEFAULT_ERROR_RESPONSE_NAME = None
    ERROR_SCHEMA = ErrorSchema
    error_descriptions = ERROR_DESCRIPTIONS

    def init_app(self, app, *, spec_kwargs=None):
        for name, value in SETTINGS.items():
            app.config.setdefault(name, value)
        spec_kwargs = {"extra_plugins": [ContractPlugin()], **(spec_kwargs or {})}
        super().init_app(app, spec_kwargs=spec_kwargs)
        self.ma_plugin.converter.add_attribute_function(money2properties)
        self.ma_plugin.converter.add_attribute_function(nonblank2properties)
        self.ma_plugin.converter.add_attribute_function(email2properties)
        self.ma_plugin.converter.add_attribute_function(url2properties)
        self.ma_plugin.converter.add_attribute_function(nonzero2properties)

    def error_headers(self, status: int) -> dict:
        return error_component_headers(status)

    def handle_http_exception(self, error):
        return http_error_response(error)


api = Api()
