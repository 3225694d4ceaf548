"""The skeleton: config, health, the error envelope, SQLite settings, CLI."""

from __future__ import annotations

import pytest
from sqlalchemy import text

from app import create_app
from tests.helpers import IS_POSTGRES, PASSWORD


def test_health_ok(client):
    response = client.get("/api/health")
    assert response.status_code == 200
    assert response.get_json() == {"status": "ok", "database": "ok", "redis": "disabled"}


def test_health_503_when_database_unreachable(make_app):
    unreachable = "postgresql+psycopg://nobody@127.0.0.1:1/none?connect_timeout=2"
    app = make_app("testing", {"SQLALCHEMY_DATABASE_URI": unreachable})
    response = app.test_client().get("/api/health")
    assert response.status_code == 503
    body = response.get_json()
    assert body == {
        "status": "unavailable",
        "database": "unavailable",
        "redis": "disabled",
        "code": "unavailable",
        "message": "Database unavailable",
    }


@pytest.mark.parametrize(
    ("method", "path", "kwargs", "status"),
    [
        ("get", "/api/nowhere", {}, 404),
        ("get", "/nowhere", {}, 404),
        ("delete", "/api/health", {}, 405),
        ("post", "/api/auth/login", {"data": "{not json", "content_type": "application/json"}, 400),
        ("post", "/api/auth/login", {"data": "x=1", "content_type": "text/plain"}, 415),
        ("post", "/api/auth/login", {"data": "x=1", "content_type": "multipart/form-data"}, 415),
        ("post", "/api/auth/login", {"json": {"password": "x", "email": "a@b.c", "extra": 1}}, 422),
        ("post", "/api/auth/login", {"data": "[NaN]", "content_type": "application/json"}, 400),
        ("post", "/api/auth/login", {"data": b"\xff\xfe", "content_type": "application/json"}, 400),
        ("post", "/api/auth/login", {"json": [1, 2]}, 422),
    ],
)
def test_errors_are_the_json_envelope(client, method, path, kwargs, status):
    response = getattr(client, method)(path, **kwargs)
    assert response.status_code == status
    assert response.mimetype == "application/json"
    body = response.get_json()
    assert isinstance(body["message"], str) and body["message"]
    if status == 422:
        assert isinstance(body["errors"], dict)


def test_wrong_method_lists_allowed_methods(client):
    response = client.delete("/api/health")
    assert "GET" in response.headers["Allow"]


def test_body_over_one_mebibyte_is_413(client):
    body = '{"email": "' + "a" * (1024 * 1024 + 10) + '", "password": "x"}'
    response = client.post("/api/auth/login", data=body, content_type="application/json")
    assert response.status_code == 413
    assert response.get_json()["code"] == "payload_too_large"


def test_deeply_nested_json_is_400_not_500(client):
    response = client.post("/api/auth/login", data="[" * 100_000, content_type="application/json")
    assert response.status_code == 400
    assert response.get_json() == {
        "code": "invalid_json",
        "message": "Request body is not valid JSON",
    }


def test_unexpected_exception_is_500_without_traceback(make_app):
    app = make_app()

    @app.route("/api/_boom_test")
    def boom():
        raise RuntimeError("secret internals")

    response = app.test_client().get("/api/_boom_test")
    assert response.status_code == 500
    assert response.get_json() == {"code": "internal_error", "message": "Internal server error"}
    assert b"secret" not in response.data and b"Traceback" not in response.data


@pytest.mark.skipif(IS_POSTGRES, reason="SQLite connection settings")
def test_sqlite_pragmas(db):
    with db.engine.connect() as conn:
        assert conn.execute(text("PRAGMA foreign_keys")).scalar() == 1
        assert conn.execute(text("PRAGMA journal_mode")).scalar() == "wal"
        assert conn.execute(text("PRAGMA busy_timeout")).scalar() >= 1000


@pytest.mark.parametrize("missing", ["SECRET_KEY", "JWT_SECRET_KEY", "DATABASE_URL"])
def test_production_refuses_to_start_without_real_secrets(monkeypatch, missing):
    env = {
        "SECRET_KEY": "s" * 40,
        "JWT_SECRET_KEY": "j" * 40,
        "DATABASE_URL": "sqlite:////tmp/prod-check.db",
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv(missing)
    import importlib

    import config

    importlib.reload(config)
    try:
        with pytest.raises(RuntimeError, match=missing):
            create_app("production")
    finally:
        monkeypatch.undo()
        importlib.reload(config)


def test_production_refuses_development_default_secret(monkeypatch):
    import importlib

    import config

    monkeypatch.setenv("SECRET_KEY", config.DEV_SECRET)
    monkeypatch.setenv("JWT_SECRET_KEY", "j" * 40)
    monkeypatch.setenv("DATABASE_URL", "sqlite:////tmp/prod-check.db")
    importlib.reload(config)
    try:
        with pytest.raises(RuntimeError, match="SECRET_KEY"):
            create_app("production")
    finally:
        monkeypatch.undo()
        importlib.reload(config)


def test_unknown_config_name_is_refused():
    with pytest.raises(RuntimeError, match="FLASK_CONFIG"):
        create_app("staging")


def test_cli_create_admin_creates_then_promotes(app, db, make_user):
    from app.models import User

    runner = app.test_cli_runner()
    result = runner.invoke(
        args=[
            "create-admin",
            "--username",
            "boss",
            "--email",
            "Boss@Example.com",
            "--password",
            "longenough1",
        ]
    )
    assert result.exit_code == 0, result.output
    boss = db.session.scalar(db.select(User).where(User.username == "boss"))
    assert boss.is_admin and boss.email == "boss@example.com"

    plain = make_user("plain")
    args = ["create-admin", "--username", "plain", "--email", "x@example.com", "--password"]
    # Not its password: someone else's account, maybe a squatter's (nothing changes).
    result = runner.invoke(args=[*args, "whatever1"])
    assert result.exit_code != 0 and "nothing changed" in result.output, result.output
    assert not db.session.get(User, plain.id).is_admin
    result = runner.invoke(args=[*args, PASSWORD])
    assert result.exit_code == 0, result.output
    assert db.session.get(User, plain.id).is_admin
    # A username and an email that name two accounts: refused.
    other = make_user("other")
    result = runner.invoke(
        args=[
            "create-admin",
            "--username",
            "other",
            "--email",
            "plain@example.com",
            "--password",
            PASSWORD,
        ]
    )
    assert result.exit_code != 0 and "nothing changed" in result.output, result.output
    assert not db.session.get(User, other.id).is_admin


def test_cli_create_admin_rejects_bad_input(app):
    result = app.test_cli_runner().invoke(
        args=["create-admin", "--username", "x", "--email", "nope", "--password", "short"]
    )
    assert result.exit_code != 0
    assert "invalid input" in result.output


def test_cli_seed_demo_only_when_empty_and_generated(app, db):
    from app.models import Product

    runner = app.test_cli_runner()
    assert runner.invoke(args=["seed"]).exit_code == 0
    demo = db.session.scalar(db.select(db.func.count()).select_from(Product))
    assert demo >= 20
    categories = db.session.scalars(db.select(Product.category).distinct()).all()
    assert len(categories) >= 5
    result = runner.invoke(args=["seed"])
    assert "nothing to seed" in result.output
    assert db.session.scalar(db.select(db.func.count()).select_from(Product)) == demo
    assert runner.invoke(args=["seed", "--products", "500"]).exit_code == 0
    assert db.session.scalar(db.select(db.func.count()).select_from(Product)) == demo + 500
    if IS_POSTGRES:  # the bulk load leaves fresh planner statistics behind
        analyzed = db.session.scalar(
            text("SELECT last_analyze FROM pg_stat_user_tables WHERE relname = 'products'")
        )
        assert analyzed is not None


def test_migrations_match_the_models(app, db):
    """Every model change ships its migration: the migrated schema (which the
    whole suite runs on) and the models have nothing left to autogenerate."""
    import warnings

    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext
    from sqlalchemy.exc import SAWarning

    options = app.extensions["migrate"].configure_args
    with db.engine.connect() as connection:
        context = MigrationContext.configure(
            connection,
            opts={
                "compare_type": True,
                "include_object": options["include_object"],
                "render_as_batch": True,
            },
        )
        with warnings.catch_warnings():
            # SQLite cannot reflect expression indexes (lower(category)); Alembic
            # then leaves them out of the comparison.
            warnings.filterwarnings("ignore", "Skipped unsupported reflection", SAWarning)
            warnings.filterwarnings("ignore", "autogenerate skipping", UserWarning)
            diff = compare_metadata(context, db.metadata)
    assert diff == []


@pytest.mark.skipif(not IS_POSTGRES, reason="trigram indexes exist on PostgreSQL only")
def test_postgresql_keeps_only_the_trigram_index_search_reads(db):
    """The fuzzy retry's expression index is there; the first search's
    trigram indexes on name and description, which nothing reads, are gone
    (every stock update wrote into them)."""
    indexes = set(
        db.session.scalars(text("SELECT indexname FROM pg_indexes WHERE tablename = 'products'"))
    )
    assert "ix_products_fuzzy" in indexes
    assert not {"ix_products_trgm_name", "ix_products_trgm_description"} & indexes


def test_a_web_process_does_not_import_what_only_the_cli_or_stripe_needs(tmp_path):
    """Flask-Migrate (Alembic, Mako, Pygments: 11.6 MB) is bound only under
    the flask CLI and in tests; the Stripe library (5 MB) only for
    PAYMENT_PROVIDER=stripe. A worker built by the factory has neither."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    check = (
        "import sys; from app import create_app; app = create_app('development'); "
        "loaded = [m for m in ('flask_migrate', 'alembic', 'stripe') if m in sys.modules]; "
        "assert not loaded, loaded; assert 'migrate' not in app.extensions"
    )
    env = {k: v for k, v in os.environ.items() if k != "FLASK_RUN_FROM_CLI"}
    env["DATABASE_URL"] = f"sqlite:///{tmp_path}/web.db"
    root = Path(__file__).resolve().parent.parent
    subprocess.run([sys.executable, "-c", check], check=True, cwd=root, env=env)
