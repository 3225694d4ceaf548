"""Unbound extension objects, bound to an app in `create_app`."""

from http import HTTPStatus

from flask_cors import CORS
from flask_jwt_extended import JWTManager
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address
from flask_migrate import Migrate
from flask_smorest import Api as SmorestApi
from flask_sqlalchemy import SQLAlchemy
from sqlalchemy import MetaData
from sqlalchemy.orm import DeclarativeBase

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class Api(SmorestApi):
    """flask-smorest's Api, answering errors with the project's one envelope and
    documenting them with its schema (see `app.utils.openapi`)."""

    # No catch-all "default" response: each operation lists the errors it can
    # give, so a client (and schemathesis) can hold the API to that list.
    DEFAULT_ERROR_RESPONSE_NAME = None

    def init_app(self, app, *, spec_kwargs=None):
        from app.schemas.common import ErrorSchema
        from app.utils.openapi import API_DESCRIPTION, ERROR_DESCRIPTIONS, money2properties
        from app.utils.openapi_contract import ContractPlugin

        self.ERROR_SCHEMA = ErrorSchema
        self.error_descriptions = ERROR_DESCRIPTIONS
        spec_kwargs = {
            "info": {"description": API_DESCRIPTION},
            "extra_plugins": [ContractPlugin()],
            **(spec_kwargs or {}),
        }
        super().init_app(app, spec_kwargs=spec_kwargs)
        self.ma_plugin.converter.add_attribute_function(money2properties)

    def _register_responses(self):
        """One lazy component per status (named as flask-smorest names them, e.g.
        UNAUTHORIZED), each with the error envelope and the project's wording."""
        from flask_smorest.utils import prepare_response

        from app.utils.openapi_contract import error_component_headers

        for status in HTTPStatus:
            if status < 400:
                continue
            response = {
                "description": self.error_descriptions.get(status, status.phrase),
                "schema": self.ERROR_SCHEMA,
                "headers": error_component_headers(status),
            }
            prepare_response(response, self.spec, self.DEFAULT_RESPONSE_CONTENT_TYPE)
            self.spec.components.response(status.name, response, lazy=True)

    def _register_pagination_header(self):
        """Not used: lists answer the page envelope of API.md, not a header."""

    def handle_http_exception(self, error):
        from app.errors import http_error_response

        return http_error_response(error)


# Objects stay readable after commit: views serialize what they just wrote
# without a reload query per object.
db = SQLAlchemy(model_class=Base, session_options={"expire_on_commit": False})
migrate = Migrate()
jwt = JWTManager()
cors = CORS()
api = Api()
limiter = Limiter(key_func=get_remote_address)
