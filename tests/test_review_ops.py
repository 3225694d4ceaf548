"""Operations review: migrations with data in them, production start-up,
malformed settings and the CLI with bad input. Every test here failed on the
code it was written against (see each docstring)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import jwt as pyjwt
import pytest
from flask_migrate import downgrade, upgrade
from sqlalchemy import text

from app.extensions import db as _db
from tests.helpers import DATABASE_URL, PASSWORD, VISA, auth, order_for, pay

ROOT = Path(__file__).resolve().parent.parent
STAMP = "2026-01-01 00:00:00"
# Batch mode's rebuild of `products` on SQLite warns that it cannot reflect
# lower(category); `flask db` prints that warning and goes on, so do these.
quiet_rebuild = pytest.mark.filterwarnings("ignore:Skipped unsupported reflection")


def _run(other_app, sql: str, **params):
    """One statement on `other_app`'s database, committed."""
    with other_app.app_context(), _db.engine.begin() as conn:
        result = conn.execute(text(sql), params)
        return result.all() if result.returns_rows else None


def _count(other_app, table: str) -> int:
    return _run(other_app, f"SELECT count(*) FROM {table}")[0][0]  # noqa: S608 - our names


@pytest.fixture
def sqlite_app(make_app, tmp_path):
    """An app on a SQLite file of its own, with no schema yet (SQLite is the
    documented default database: `make run`, DATABASE_URL's default)."""
    return make_app("testing", {"SQLALCHEMY_DATABASE_URI": f"sqlite:///{tmp_path}/shop.db"})


def _migrate(other_app, step, revision: str = "head") -> None:
    with other_app.app_context():
        step(revision=revision)


def _sqlite_schema(other_app) -> set[tuple[str, str]]:
    kinds = "SELECT type, name FROM sqlite_master WHERE type IN ('index', 'trigger')"
    rows = _run(other_app, kinds)
    return {(kind, name) for kind, name in rows if not name.startswith("sqlite_")}


def _user_and_product(other_app, name: str, category: str) -> None:
    """User 1 and product 1 (9.99, stock 5), written as a migration's data."""
    _run(
        other_app,
        "INSERT INTO users (id, username, email, password_hash, is_admin, created_at, "
        "updated_at) VALUES (1, 'zoe', 'zoe@example.com', 'x', false, :t, :t)",
        t=STAMP,
    )
    _run(
        other_app,
        "INSERT INTO products (id, name, description, price, stock, category, created_at, "
        "updated_at) VALUES (1, :name, 'd', 9.99, 5, :category, :t, :t)",
        t=STAMP,
        name=name,
        category=category,
    )


# -- (1) Migrations ----------------------------------------------------------


@quiet_rebuild
def test_sqlite_upgrade_through_the_payments_migration_keeps_every_order_line(sqlite_app):
    """`flask db upgrade` must not lose data. A shop on SQLite (the default
    DATABASE_URL) created before migration e20a4b7c9d13 (payments) has orders
    with their lines and status history. e20a4b7c9d13 rebuilds `orders` in
    batch mode (create a copy, DROP TABLE orders, rename); the app's engine
    turns `PRAGMA foreign_keys=ON` on every connection (app/db.py), so the
    DROP deletes every order first and ON DELETE CASCADE empties
    `order_items` and `order_status_history`. Expected: the upgrade keeps the
    line and both history rows; instead both tables are empty afterwards
    (PostgreSQL keeps them)."""
    _migrate(sqlite_app, upgrade, "e19a5f0c3b21")
    _user_and_product(sqlite_app, "Café", "Audio")
    _run(
        sqlite_app,
        "INSERT INTO orders (id, user_id, status, total_amount, shipping_address, created_at, "
        "updated_at) VALUES (1, 1, 'delivered', 19.98, 'addr', :t, :t)",
        t=STAMP,
    )
    _run(
        sqlite_app,
        "INSERT INTO order_items (order_id, product_id, product_name, unit_price, quantity, "
        "subtotal) VALUES (1, 1, 'Café', 9.99, 2, 19.98)",
    )
    _run(
        sqlite_app,
        "INSERT INTO order_status_history (order_id, status, at) "
        "VALUES (1, 'pending', :t), (1, 'delivered', :t)",
        t=STAMP,
    )

    _migrate(sqlite_app, upgrade)

    assert _count(sqlite_app, "orders") == 1
    assert (_count(sqlite_app, "order_items"), _count(sqlite_app, "order_status_history")) == (
        1,
        2,
    )


@quiet_rebuild
def test_sqlite_downgrade_to_base_does_not_crash(sqlite_app):
    """Every migration has a downgrade; `flask db downgrade base` must run to
    the end. On SQLite, d17a5e0c9b21's downgrade rebuilds `products` in batch
    mode, which cannot reflect the expression index lower(category) and drops
    it; the initial migration's downgrade then runs `DROP INDEX
    ix_products_category_lower` and stops with `OperationalError: no such
    index: ix_products_category_lower` (PostgreSQL goes down to base)."""
    _migrate(sqlite_app, upgrade)
    failure = None
    try:
        _migrate(sqlite_app, downgrade, "base")
    except Exception as error:  # noqa: BLE001 - the failure is the finding
        failure = error
    assert failure is None, f"flask db downgrade base failed: {failure!r}"


@quiet_rebuild
def test_sqlite_downgrade_below_reviews_and_back_keeps_the_search_triggers(sqlite_app):
    """A downgrade then an upgrade must give back the schema the upgrade
    made. On SQLite, d17a5e0c9b21's downgrade rebuilds `products` in batch
    mode: the DROP TABLE takes with it the full-text triggers of e19a5f0c3b21
    (products_search_insert/update/delete) and the lower(category) index.
    Upgrading to head again does not recreate them (e19a5f0c3b21 is below),
    so from then on no new or renamed product is ever found by search.
    Expected: the same triggers and indexes as before the round trip."""
    _migrate(sqlite_app, upgrade)
    before = _sqlite_schema(sqlite_app)
    _migrate(sqlite_app, downgrade, "f19c6d2a8e40")
    _migrate(sqlite_app, upgrade)
    missing = before - _sqlite_schema(sqlite_app)
    assert missing == set(), f"lost by the round trip: {sorted(missing)}"


@quiet_rebuild
def test_sqlite_downgrade_of_the_reviews_migration_keeps_cart_lines(sqlite_app):
    """A downgrade may drop what its migration added, never other data. On
    SQLite, d17a5e0c9b21's downgrade rebuilds `products` (batch mode) with
    foreign keys on, so its DROP TABLE products deletes every product first
    and ON DELETE CASCADE empties `cart_items` (and nulls order lines'
    product_id). Expected: the buyer's cart line is still there at
    f19c6d2a8e40; instead the cart is empty (PostgreSQL keeps it)."""
    _migrate(sqlite_app, upgrade)
    _user_and_product(sqlite_app, "Lamp", "Home")
    _run(
        sqlite_app,
        "INSERT INTO carts (id, user_id, created_at, updated_at) VALUES (1, 1, :t, :t)",
        t=STAMP,
    )
    _run(
        sqlite_app,
        "INSERT INTO cart_items (cart_id, product_id, quantity, created_at) VALUES (1, 1, 2, :t)",
        t=STAMP,
    )
    _migrate(sqlite_app, downgrade, "f19c6d2a8e40")
    assert _count(sqlite_app, "products") == 1
    assert _count(sqlite_app, "cart_items") == 1


def test_token_version_migration_keeps_revoke_all_cutoffs(app, client, db):
    """A password reset, a password change and logout-all end every session
    (API.md). Before d5a7e9c1b3f2 that was users.tokens_valid_after: a token
    issued before the cutoff was refused. d5a7e9c1b3f2 drops the column and
    starts every user at token_version 0, and a token without a `ver` claim
    counts as version 0 (issued_before_revoke_all), so every token revoked by
    a cutoff - refresh tokens live 30 days - works again after `flask db
    upgrade`. Expected: 401 for the token issued before the cutoff; instead
    the profile is served (200)."""
    now = datetime.now(UTC).replace(microsecond=0)
    issued = now - timedelta(minutes=10)
    db.session.remove()
    downgrade(revision="d18a7c3e5b90")
    try:
        db.session.execute(
            text(
                "INSERT INTO users (username, email, password_hash, is_admin, created_at, "
                "updated_at, tokens_valid_after) VALUES ('reset', 'reset@example.com', 'x', "
                "false, :created, :created, :cutoff)"
            ),
            {"created": now - timedelta(days=1), "cutoff": now - timedelta(minutes=5)},
        )
        user_id = db.session.scalar(text("SELECT id FROM users WHERE username = 'reset'"))
        db.session.commit()
    finally:
        db.session.remove()
        upgrade()
    # A token of that time: issued before the cutoff, no `ver` (it did not exist).
    claims = {
        "fresh": False,
        "iat": int(issued.timestamp()),
        "iat_us": int(issued.timestamp()) * 1_000_000,
        "nbf": int(issued.timestamp()),
        "jti": str(uuid.uuid4()),
        "type": "access",
        "sub": str(user_id),
        "exp": int(time.time()) + 3600,
    }
    token = pyjwt.encode(claims, app.config["JWT_SECRET_KEY"], algorithm="HS256")
    response = client.get("/api/auth/profile", headers=auth(token))
    assert response.status_code == 401, response.get_json()


# -- (2) Configuration and production start-up -------------------------------


@pytest.fixture
def production_env(monkeypatch):
    """What ProductionConfig.check reads from the environment, set as the
    README's Production section does."""
    monkeypatch.setenv("DATABASE_URL", DATABASE_URL)
    monkeypatch.setenv("MAIL_BACKEND", "console")
    return {
        "SQLALCHEMY_DATABASE_URI": DATABASE_URL,
        "SQLALCHEMY_ENGINE_OPTIONS": {"hide_parameters": True},
        # Off: the process has one limiter, and an app built with limits on
        # would switch them on for every later test.
        "RATELIMIT_ENABLED": False,
        "BACKGROUND_MODE": "off",
        "REDIS_URL": None,
    }


def test_production_refuses_the_placeholder_secrets_of_env_example(make_app, production_env):
    """README: `FLASK_CONFIG=production` refuses to start when SECRET_KEY or
    JWT_SECRET_KEY is "missing or still a development default"; CONVENTIONS:
    "Production has no default secrets". `.env.example` (which the README
    says to copy to `.env`) ships SECRET_KEY=change-me and
    JWT_SECRET_KEY=change-me-to-32-or-more-random-bytes; ProductionConfig.check
    knows only config.DEV_SECRET / DEV_JWT_SECRET, so production starts with
    those published secrets and anyone can forge an admin's token."""
    overrides = {
        **production_env,
        "SECRET_KEY": "change-me",
        "JWT_SECRET_KEY": "change-me-to-32-or-more-random-bytes",
    }
    with pytest.raises(RuntimeError, match="JWT_SECRET_KEY"):
        make_app("production", overrides)


def test_production_refuses_a_jwt_secret_shorter_than_32_bytes(make_app, production_env):
    """README: JWT_SECRET_KEY "signs the JWTs (HS256); required in production,
    use 32+ random bytes" (RFC 7518 3.2: an HS256 key of at least 256 bits).
    Production starts with JWT_SECRET_KEY=x (and SECRET_KEY=x): a one-byte
    HMAC key is brute-forced offline from any token a user holds. Expected:
    refused at start-up like a missing one."""
    overrides = {**production_env, "SECRET_KEY": "x", "JWT_SECRET_KEY": "x"}
    with pytest.raises(RuntimeError, match="JWT_SECRET_KEY"):
        make_app("production", overrides)


def test_production_does_not_run_in_debug_mode(make_app, production_env, monkeypatch):
    """Production must refuse unsafe settings (CONVENTIONS: production fails
    at start-up with a clear message rather than run unsafely).
    DevelopmentConfig pins DEBUG = False ("the debugger stays off unless
    FLASK_DEBUG=1 asks for it"), ProductionConfig neither pins it nor checks
    it: with FLASK_DEBUG=1 left in the environment, create_app('production')
    builds an app with app.debug True (under `flask run` that is Werkzeug's
    interactive debugger: code execution for whoever reaches a 500).
    Expected: refused (or debug off)."""
    monkeypatch.setenv("FLASK_DEBUG", "1")
    overrides = {**production_env, "SECRET_KEY": "s" * 48, "JWT_SECRET_KEY": "j" * 48}
    try:
        built = make_app("production", overrides)
    except RuntimeError:
        return
    assert built.debug is False


def test_production_does_not_take_simulated_payments_by_default(
    make_app, production_env, make_user, make_product
):
    """The README's Production section exports SECRET_KEY, JWT_SECRET_KEY,
    DATABASE_URL, REDIS_URL, CORS_ORIGINS and the SMTP settings - no
    PAYMENT_PROVIDER, whose default is `test` ("no network": Stripe's test
    payment method names, no money moves). ProductionConfig.check refuses
    MAIL_BACKEND's development default unless it is named, but not this one:
    a shop started as documented marks any order paid for `pm_card_visa`
    and ships it (and PAYMENT_PROVIDER=stripe without its keys starts too,
    then every pay is a 500). Expected: production refuses to start with the
    test provider unless asked for by name; instead the order is paid (200)."""
    overrides = {**production_env, "SECRET_KEY": "s" * 48, "JWT_SECRET_KEY": "j" * 48}
    try:
        shop = make_app("production", overrides)
    except RuntimeError as refused:
        assert "PAYMENT_PROVIDER" in str(refused)
        return
    user = make_user()
    product = make_product(stock=3)
    client = shop.test_client()
    login = client.post("/api/auth/login", json={"email": user.email, "password": PASSWORD})
    token = login.get_json()["access_token"]
    order = order_for(client, token, (product, 1))
    paid = pay(client, token, order["id"], VISA)
    assert paid.status_code != 200, paid.get_json()


def _import_config(**env) -> subprocess.CompletedProcess:
    environment = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    environment.update(env)
    return subprocess.run(
        [sys.executable, "-c", "import config"],
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_a_malformed_number_setting_names_the_variable_without_a_traceback():
    """Configuration comes from the environment; a malformed value must stop
    start-up with a clear message (CONVENTIONS: "fails at start-up with a
    clear message"). JWT_ACCESS_TOKEN_EXPIRES=1h (a plausible typo) ends in a
    Python traceback whose last line is `ValueError: invalid literal for
    int() with base 10: '1h'`: it does not say which of the ~30 numeric
    variables is wrong (config.env_int)."""
    result = _import_config(JWT_ACCESS_TOKEN_EXPIRES="1h")
    assert result.returncode != 0
    assert "JWT_ACCESS_TOKEN_EXPIRES" in result.stderr, result.stderr[-300:]
    assert "Traceback" not in result.stderr, result.stderr[-300:]


def test_an_empty_float_setting_takes_its_default_like_the_integer_ones():
    """An empty variable (`OUTBOX_LEASE=` in an EnvironmentFile or .env) means
    the default for every integer setting (config.env_int: `if value`), but
    the float ones - PASSWORD_HASH_WAIT, MAIL_RETRY_BACKOFF(_MAX),
    OUTBOX_LEASE, OUTBOX_SWEEP_INTERVAL, OUTBOX_SWEEP_GRACE - call float('')
    and the app does not start: `ValueError: could not convert string to
    float: ''`. Expected: the documented default (120)."""
    result = _import_config(OUTBOX_LEASE="")
    assert result.returncode == 0, result.stderr[-300:]


@pytest.mark.parametrize(
    ("env", "refusal"),
    [
        ({"MAIL_TIMEOUT": "0"}, "MAIL_TIMEOUT must be at least 1, not 0"),
        (
            {"MAIL_TIMEOUT": "10", "OUTBOX_LEASE": "0"},
            "OUTBOX_LEASE must be more than MAIL_TIMEOUT (10), not 0",
        ),
        ({"MAIL_TIMEOUT": "30", "OUTBOX_LEASE": "30"}, "OUTBOX_LEASE must be more than"),
        ({"OUTBOX_SWEEP_INTERVAL": "0"}, "OUTBOX_SWEEP_INTERVAL must be more than 0, not 0"),
        ({"OUTBOX_SWEEP_GRACE": "-1"}, "OUTBOX_SWEEP_GRACE must be at least 0, not -1"),
        ({"ACCOUNT_CACHE_MAX_ENTRIES": "-1"}, "ACCOUNT_CACHE_MAX_ENTRIES must be at least 0"),
        ({"SUGGEST_INDEX_MAX_NAMES": "-2"}, "SUGGEST_INDEX_MAX_NAMES must be at least 0"),
        ({"MAIL_TIMEOUT": "2", "OUTBOX_LEASE": "2.5", "OUTBOX_SWEEP_GRACE": "0"}, None),
        ({"CATALOG_CACHE_MAX_ENTRIES": "0", "SUGGEST_INDEX_MAX_NAMES": "0"}, None),
    ],
)
def test_a_setting_out_of_its_range_stops_start_up_naming_it(env, refusal):
    """0 or -1 ("no timeout", "no limit" in many tools) made no email leave
    (MAIL_TIMEOUT, OUTBOX_LEASE), a busy loop (OUTBOX_SWEEP_INTERVAL), or a
    500 for reads (a negative cache size; found by review)."""
    result = _import_config(**env)
    if refusal is None:
        assert result.returncode == 0, result.stderr[-300:]
    else:
        assert result.returncode != 0 and refusal in result.stderr, result.stderr[-300:]


# -- (3) The CLI -------------------------------------------------------------


def test_create_admin_promotes_the_account_its_email_names_in_either_spelling(app, db):
    """`flask create-admin --username U --email E --password P` "makes an
    admin (or promotes an existing user)" (API.md), and an email's xn--
    spelling names the same account as its Unicode one (migration
    f30d5e7a9b14: "lookups by either spelling find the account"). The
    command looks the email up before normalising it
    (accounts.find_by_email only lowercases), misses the account, tries to
    create one and fails: `Error: Email already registered`. Expected: the
    account is promoted."""
    from app.services.auth import create_user

    user_id = create_user("bob", "bob@exämple.com", "correct-horse-9").id
    db.session.commit()
    result = app.test_cli_runner().invoke(
        args=[
            "create-admin",
            "--username",
            "bob-admin",
            "--email",
            "bob@xn--exmple-cua.com",
            "--password",
            "correct-horse-9",  # the account's own (a promotion needs it)
        ]
    )
    assert result.exit_code == 0, result.output
    db.session.expire_all()
    assert db.session.scalar(text("SELECT is_admin FROM users WHERE id = :i"), {"i": user_id})


def test_create_admin_with_an_undecodable_password_byte_is_a_clean_error(app):
    """A CLI command given bad input answers with a message, not a traceback.
    On Linux, an argument byte that is not UTF-8 (a password typed in a
    Latin-1 terminal: `p\\xe4ssword12`) reaches click as a lone surrogate
    ('\\udce4'); SignupSchema accepts it and generate_password_hash raises
    `UnicodeEncodeError: 'utf-8' codec can't encode character '\\udce4'`
    out of the command (exit 1 with a traceback). Expected: click's error
    (exit 1 with `Error: ...`, no exception)."""
    result = app.test_cli_runner().invoke(
        args=[
            "create-admin",
            "--username",
            "latin",
            "--email",
            "latin@example.com",
            "--password",
            "p\udce4ssword12",
        ]
    )
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(
        result.exception
    )
    assert "Error" in result.output


def test_seed_with_an_out_of_range_product_count_is_a_usage_error(app):
    """`seed --products N` adds N generated products; N is validated by click
    (IntRange(min=1)) but has no maximum. `--products 99999999999` raises
    `OverflowError: date value out of range` from _generated_rows (each row's
    created_at is now - N seconds) instead of click's usage error (exit 2);
    a smaller but huge N builds every row in memory first. Expected: a usage
    error naming the limit."""
    result = app.test_cli_runner().invoke(args=["seed", "--products", "99999999999"])
    assert result.exit_code == 2, (result.exit_code, repr(result.exception))
