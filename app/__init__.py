"""The application factory."""

from __future__ import annotations

import os
from typing import Any

from flask import Flask

import config


def create_app(config_name: str | None = None, overrides: dict[str, Any] | None = None) -> Flask:
    """Build the app for `config_name` (default: $FLASK_CONFIG or development);
    `instance/config.py`, then `overrides` (for tests), win over the class."""
    from app.commands import register_commands
    from app.errors import register_error_handlers
    from app.web.hooks import register_hooks
    from app.web.json import DecimalJSONProvider

    name = config_name or os.environ.get("FLASK_CONFIG") or "development"
    message = config.unknown_config(name)
    if message:
        if config_name:  # the caller's mistake
            raise RuntimeError(message)
        # The environment's: one line, as every other setting's refusal (a
        # traceback; found by review).
        raise SystemExit(message)
    app = Flask(
        __name__, instance_path=str(config.BASE_DIR / "instance"), instance_relative_config=True
    )
    app.config.from_object(config.CONFIGS[name])
    app.config.from_pyfile("config.py", silent=True)
    app.config.update(overrides or {})
    if name == "production":
        config.ProductionConfig.check(app.config)

    app.json = DecimalJSONProvider(app)
    register_hooks(app)
    register_extensions(app)
    register_blueprints(app)
    register_error_handlers(app)
    register_commands(app)
    register_background(app)
    return app


def init_migrations(app: Flask) -> None:
    """Flask-Migrate, bound only where migrations run: the `flask` CLI (Flask
    sets FLASK_RUN_FROM_CLI for every command, `flask db` included) and the
    test suite. Alembic with Mako and Pygments is 11.6 MB of a process's
    memory, which a web or Celery worker never uses."""
    if not (app.testing or os.environ.get("FLASK_RUN_FROM_CLI") == "true"):
        return
    from flask_migrate import Migrate

    from app.extensions import db
    from app.models.types import include_in_autogenerate, render_migration_type

    Migrate(
        app,
        db,
        render_as_batch=True,
        compare_type=True,
        render_item=render_migration_type,
        include_object=include_in_autogenerate,
    )


def register_extensions(app: Flask) -> None:
    from app import models  # noqa: F401 - the models must be known to Alembic
    from app.db import init_db
    from app.extensions import cors, limiter
    from app.services.catalog_cache import init_catalog_cache
    from app.services.matches import init_matches
    from app.services.passwords import init_password_hashing
    from app.services.search import init_search
    from app.web.api import api
    from app.web.hooks import cors_only_with_origin, literal_origins
    from app.web.jwt import init_jwt

    init_db(app)
    init_catalog_cache(app)
    init_matches(app)
    init_search(app)
    init_migrations(app)
    init_jwt(app)
    init_password_hashing(app)
    cors.init_app(
        app,
        resources={r"/api/*": {"origins": literal_origins(app.config["CORS_ORIGINS"])}},
        # If-None-Match and ETag: a storefront on another origin may keep a
        # catalog answer and revalidate it itself (a 304), not only through
        # the browser's cache.
        allow_headers=[
            "Authorization",
            "Content-Type",
            "Idempotency-Key",
            "If-None-Match",
            "X-Request-ID",
        ],
        expose_headers=["ETag", "Retry-After", "X-Request-ID", "Idempotent-Replayed"],
        max_age=600,
        always_send=False,  # no CORS headers for requests without an Origin
    )
    cors_only_with_origin(app)
    api.init_app(app)
    limiter.init_app(app)


def register_blueprints(app: Flask) -> None:
    from app.routes import (
        auth,
        cart,
        docs,
        health,
        inventory,
        orders,
        payments,
        products,
        reviews,
    )
    from app.web.api import api
    from app.web.blueprint import reject_unexpected_bodies
    from app.web.converters import IdConverter
    from app.web.hooks import reject_non_json_bodies

    app.url_map.converters["int"] = IdConverter  # before any rule is added
    # `/api//products` is an unknown path (a JSON 404), not werkzeug's 308
    # redirect to the merged path, whose body is HTML.
    app.url_map.merge_slashes = False
    api.register_blueprint(health.blp, url_prefix="/api")
    api.register_blueprint(auth.blp, url_prefix="/api/auth")
    api.register_blueprint(products.blp, url_prefix="/api/products")
    api.register_blueprint(cart.blp, url_prefix="/api/cart")
    api.register_blueprint(orders.blp, url_prefix="/api/orders")
    api.register_blueprint(payments.blp, url_prefix="/api")
    api.register_blueprint(reviews.blp, url_prefix="/api")
    api.register_blueprint(inventory.blp, url_prefix="/api")
    app.register_blueprint(docs.blp)  # a page, not an API operation: not in the document
    # After the rate limiter's check: a client over its limit gets a 429 whatever it sends.
    app.before_request(reject_non_json_bodies)
    app.before_request(reject_unexpected_bodies)


def register_background(app: Flask) -> None:
    from app.services.mail import format_money
    from app.tasks import init_background

    app.jinja_env.filters["money"] = format_money
    init_background(app)
