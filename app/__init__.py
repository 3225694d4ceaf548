"""The application factory."""

from __future__ import annotations

import os
from typing import Any

from flask import Flask

import config


def create_app(config_name: str | None = None, overrides: dict[str, Any] | None = None) -> Flask:
    """Build the app for `config_name` (default: $FLASK_CONFIG or development);
    `instance/config.py`, then `overrides` (for tests), win over the class."""
    name = config_name or os.environ.get("FLASK_CONFIG") or "development"
    if name not in config.CONFIGS:
        raise RuntimeError(f"unknown FLASK_CONFIG {name!r}: use one of {', '.join(config.CONFIGS)}")
    app = Flask(
        __name__, instance_path=str(config.BASE_DIR / "instance"), instance_relative_config=True
    )
    app.config.from_object(config.CONFIGS[name])
    app.config.from_pyfile("config.py", silent=True)
    app.config.update(overrides or {})
    if name == "production":
        config.ProductionConfig.check(app.config)

    from app.utils.json import DecimalJSONProvider

    app.json = DecimalJSONProvider(app)
    register_http(app)
    register_extensions(app)
    register_blueprints(app)
    register_error_handlers(app)
    register_commands(app)
    return app


def register_http(app: Flask) -> None:
    from app.utils.http import register_http as register

    register(app)


def register_extensions(app: Flask) -> None:
    from app import models  # noqa: F401 - the models must be known to Alembic
    from app.extensions import api, cors, db, limiter, migrate
    from app.models.types import include_in_autogenerate, render_migration_type
    from app.utils.security import init_jwt
    from app.utils.sqlite import configure_sqlite

    if app.config["SQLALCHEMY_DATABASE_URI"].startswith("postgresql"):
        app.config["SQLALCHEMY_ENGINE_OPTIONS"] = postgres_engine_options(app.config)
    if app.config["SQLALCHEMY_DATABASE_URI"].startswith("sqlite"):
        # A database file has no server that drops idle connections: no ping
        # (an extra query) on every checkout.
        options = dict(app.config["SQLALCHEMY_ENGINE_OPTIONS"])
        options.pop("pool_pre_ping", None)
        app.config["SQLALCHEMY_ENGINE_OPTIONS"] = options
    db.init_app(app)
    # One session per request, even where the app context outlives the request
    # (tests, CLI): a request never inherits another's open transaction.
    app.teardown_request(lambda _exc: db.session.remove())
    with app.app_context():
        if db.engine.dialect.name == "sqlite":
            configure_sqlite(db.engine, app.config["SQLITE_BUSY_TIMEOUT_MS"])
    migrate.init_app(
        app,
        db,
        render_as_batch=True,
        compare_type=True,
        render_item=render_migration_type,
        include_object=include_in_autogenerate,
    )
    init_jwt(app)
    cors.init_app(
        app,
        resources={r"/api/*": {"origins": app.config["CORS_ORIGINS"]}},
        allow_headers=["Authorization", "Content-Type", "Idempotency-Key", "X-Request-ID"],
        expose_headers=["Retry-After", "X-Request-ID", "Idempotent-Replayed"],
        max_age=600,
        always_send=False,  # no CORS headers for requests without an Origin
    )
    app.config.setdefault(
        "API_SPEC_OPTIONS",
        {
            "components": {
                "securitySchemes": {
                    "bearerAuth": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}
                }
            }
        },
    )
    api.init_app(app)
    limiter.init_app(app)


def postgres_engine_options(config) -> dict[str, Any]:
    """Bounded waits on PostgreSQL: connecting, each statement (lock waits
    included) and a free connection from the pool, so a stuck server costs a
    request seconds, not every worker thread for minutes."""
    options = dict(config["SQLALCHEMY_ENGINE_OPTIONS"])
    connect_args = dict(options.get("connect_args", {}))
    connect_args.setdefault("connect_timeout", config["DB_CONNECT_TIMEOUT"])
    if config["DB_STATEMENT_TIMEOUT_MS"]:
        connect_args.setdefault(
            "options", f"-c statement_timeout={config['DB_STATEMENT_TIMEOUT_MS']}"
        )
    options["connect_args"] = connect_args
    options.setdefault("pool_timeout", config["DB_POOL_TIMEOUT"])
    return options


def register_blueprints(app: Flask) -> None:
    from app.extensions import api
    from app.routes import auth, cart, docs, health, orders, products
    from app.utils.api import IdConverter, reject_non_json_bodies

    app.url_map.converters["int"] = IdConverter  # before any rule is added
    api.register_blueprint(health.blp, url_prefix="/api")
    api.register_blueprint(auth.blp, url_prefix="/api/auth")
    api.register_blueprint(products.blp, url_prefix="/api/products")
    api.register_blueprint(cart.blp, url_prefix="/api/cart")
    api.register_blueprint(orders.blp, url_prefix="/api/orders")
    app.register_blueprint(docs.blp)  # a page, not an API operation: not in the document
    app.before_request(reject_non_json_bodies)


def register_error_handlers(app: Flask) -> None:
    from app.errors import register_error_handlers as register

    register(app)


def register_commands(app: Flask) -> None:
    from app.commands import register_commands as register

    register(app)
