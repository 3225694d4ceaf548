"""Unbound extension objects, bound to an app in `create_app`. Imports nothing
from the app: every layer may import these. (flask-smorest's `api` is in
`app.web.api`, with the subclass that renders our errors.)"""

from flask_cors import CORS
from flask_jwt_extended import JWTManager
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address
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


# Objects stay readable after commit: views serialize what they just wrote
# without a reload query per object.
db = SQLAlchemy(model_class=Base, session_options={"expire_on_commit": False})
jwt = JWTManager()
cors = CORS()
limiter = Limiter(key_func=get_remote_address)


@limiter.request_filter
def _cors_preflight() -> bool:
    """A CORS preflight is never limited, nor counted: limited, it was a 429 a
    browser turns into an opaque network error, so a page over its limit could
    never send the request whose 429 (and Retry-After) it would read; and each
    preflight spent one request of the budget (found by review)."""
    from flask import request

    return request.method == "OPTIONS" and "Access-Control-Request-Method" in request.headers
