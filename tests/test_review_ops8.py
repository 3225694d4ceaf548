"""Operations review, round 8: what a new admin meets deploying the shop (the
README's Quick start, Configuration and Production), run for real. Every
test marked "found by review" failed on the code it was written against."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from sqlalchemy import func, select

from app.models import OutboxMessage
from app.models.types import utcnow
from tests.live import free_port

ROOT = Path(__file__).resolve().parent.parent


def _run(code: str, **env: str) -> subprocess.CompletedProcess:
    """`code` in a fresh interpreter (logging as a real process has it, not
    as pytest configures it), from the repository root."""
    environment = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    environment.update(env)
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _json_lines(stderr: str) -> list[dict]:
    lines = []
    for line in stderr.splitlines():
        if line.startswith("{"):
            lines.append(json.loads(line))
    return lines


# -- Logging -------------------------------------------------------------------------------


def test_the_rate_limit_fallback_warning_reaches_the_json_log(tmp_path):
    """README: while the limiter's Redis is unreachable, the in-memory
    fallback applies "(a warning is logged; no request fails)". Flask-Limiter
    logs that warning on its own logger, which carries a NullHandler and was
    not one of the loggers the JSON handler serves: in gunicorn (no root
    handler) the warning went nowhere (found by review)."""
    result = _run(
        """
        from app import create_app
        app = create_app()
        client = app.test_client()
        for _ in range(2):
            print(client.post("/api/auth/signup", json={}).status_code)
        """,
        FLASK_CONFIG="development",
        DATABASE_URL=f"sqlite:///{tmp_path}/shop.db",
        REDIS_URL=f"redis://127.0.0.1:{free_port()}/12",  # nothing listens there
        RATELIMIT_ENABLED="true",
        BACKGROUND_MODE="off",
    )
    assert result.returncode == 0, result.stderr[-800:]
    assert result.stdout.split() == ["422", "422"]  # no request fails
    lines = _json_lines(result.stderr)
    warnings = [
        line
        for line in lines
        if line["logger"] == "flask-limiter" and "falling back" in line["message"]
    ]
    assert len(warnings) == 1 and warnings[0]["level"] == "WARNING", result.stderr[-800:]
    # Every line on stderr is one JSON object.
    assert all(line.startswith("{") for line in result.stderr.splitlines()), result.stderr


def test_a_log_line_is_not_written_twice_when_a_host_configures_the_root_logger(tmp_path):
    """`flask worker` runs Celery, which takes over the root logger after the
    app configured its JSON handler: every line of the shop's (an email's
    failed attempt, a task's warning) was written twice, once as JSON and
    once in Celery's format (found by review). Celery's takeover is what
    `logging.basicConfig` does after create_app here."""
    result = _run(
        """
        import logging, sys
        from app import create_app
        app = create_app()
        logging.basicConfig(stream=sys.stderr, format="ROOT %(name)s %(message)s")
        logging.getLogger("app.services.outbox").warning("outbox email 7 attempt 1 failed")
        logging.getLogger("shop.cache").warning("shop:catalog unavailable")
        logging.getLogger("elsewhere").warning("a library's own line")
        """,
        FLASK_CONFIG="development",
        DATABASE_URL=f"sqlite:///{tmp_path}/shop.db",
        BACKGROUND_MODE="off",
    )
    assert result.returncode == 0, result.stderr[-800:]
    for message in ("outbox email 7 attempt 1 failed", "shop:catalog unavailable"):
        assert result.stderr.count(message) == 1, result.stderr
        assert any(line["message"] == message for line in _json_lines(result.stderr))
    # What is not the shop's still goes to the host's handler.
    assert "ROOT elsewhere a library's own line" in result.stderr


def test_log_lines_carry_no_secret_of_the_settings(tmp_path):
    """README, Production: secrets live in the environment; the logs carry
    no password, token or key. A request, a refused login and an unknown
    path, with every secret set, leave none of them on stderr."""
    secrets = {
        "SECRET_KEY": "secret-key-" + "s" * 40,
        "JWT_SECRET_KEY": "jwt-secret-" + "j" * 40,
        "MAIL_PASSWORD": "Smtp-Passw0rd-XYZ",
        "STRIPE_SECRET_KEY": "sk_test_SECRETSECRET",
        "STRIPE_WEBHOOK_SECRET": "whsec_SECRETSECRET",
    }
    result = _run(
        """
        from app import create_app
        app = create_app()
        client = app.test_client()
        client.get("/api/health?token=query-secret")
        client.post("/api/auth/login", json={"username": "nobody", "password": "Body-Pass-1"})
        client.get("/api/nowhere")
        """,
        FLASK_CONFIG="development",
        DATABASE_URL=f"sqlite:///{tmp_path}/shop.db",
        MAIL_USERNAME="shop",
        BACKGROUND_MODE="off",
        **secrets,
    )
    assert result.returncode == 0, result.stderr[-800:]
    lines = _json_lines(result.stderr)
    assert [line["path"] for line in lines if line["logger"] == "shop.request"] == [
        "/api/health",
        "/api/auth/login",
        "/api/nowhere",
    ]
    for secret in [*secrets.values(), "query-secret", "Body-Pass-1"]:
        assert secret not in result.stderr


# -- CLI: clear errors, not tracebacks ---------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "postgresql+psycopg://shop:Db-Passw0rd@127.0.0.1:{port}/shop",  # nothing listens
        "sqlite:////nonexistent-ops8-dir/shop.db",  # a directory that is not there
    ],
)
@pytest.mark.parametrize(
    "args",
    [
        ["seed"],
        ["create-admin", "--username", "ops", "--email", "ops@example.com", "--password", "p" * 10],
        ["mail", "failed"],
        ["mail", "deliver"],
        ["cancel-expired-orders"],
    ],
)
def test_a_command_on_an_unreachable_database_says_so_in_one_line(make_app, url, args):
    """A new admin's first DATABASE_URL is often wrong (host, port, user,
    password) or the server is not up yet: every command ended in a
    150-line SQLAlchemy traceback, the driver's one useful line at the
    bottom (found by review). Expected: a one-line error naming
    DATABASE_URL and the driver's reason, exit 1, the password unsaid."""
    other = make_app(
        "testing",
        {"SQLALCHEMY_DATABASE_URI": url.format(port=free_port()), "BACKGROUND_MODE": "off"},
    )
    with other.app_context():  # the command's app, not the suite's
        result = other.test_cli_runner().invoke(args=args)
    assert result.exit_code == 1, (result.output, result.exception)
    assert isinstance(result.exception, SystemExit), result.exception
    assert result.output.startswith("Error: the database (DATABASE_URL) did not answer: ")
    assert len(result.output.strip().splitlines()) == 1, result.output
    assert "Traceback" not in result.output and "Db-Passw0rd" not in result.output


def test_mail_retry_with_ids_and_all_is_a_usage_error(app, db):
    """`flask mail retry 12 13  # or --all`: given both, the ids were retried,
    `--all` ignored and the exit 0 said nothing of the failed messages left
    as they were (found by review). Expected: a usage error, nothing
    queued."""
    rows = [
        OutboxMessage(
            kind="email",
            topic="welcome",
            recipient=f"r{n}@example.com",
            payload={},
            status="failed",
            attempts=5,
            available_at=utcnow(),
        )
        for n in range(2)
    ]
    db.session.add_all(rows)
    db.session.commit()
    result = app.test_cli_runner().invoke(args=["mail", "retry", str(rows[0].id), "--all"])
    assert result.exit_code == 2, result.output
    assert "give message ids or --all, not both" in result.output
    db.session.expire_all()
    assert [row.status for row in rows] == ["failed", "failed"]
    result = app.test_cli_runner().invoke(args=["mail", "retry", str(rows[0].id)])
    assert result.exit_code == 0 and f"Queued 1 message(s) again: {rows[0].id}." in result.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--username", "x", "--email", "ops@example.com", "--password", "p" * 10],
            "invalid input: --username: 3-80 characters",
        ),
        (
            ["--username", "ops", "--email", "not-an-email", "--password", "p" * 10],
            "invalid input: --email: Not a valid email address.",
        ),
        (
            ["--username", "ops", "--email", "ops@example.com", "--password", "short"],
            "invalid input: --password: Length must be between 8 and 128.",
        ),
    ],
)
def test_create_admin_names_the_option_at_fault(app, db, args, message):
    """`flask create-admin` with a bad value said `invalid input: ['3-80
    characters: ...']` or `{'password': [...]}`, a Python repr that named
    no option, or a field name for one (found by review). Expected: the
    option, then its message; exit 1, no account."""
    from app.models import User

    result = app.test_cli_runner().invoke(args=["create-admin", *args])
    assert result.exit_code == 1, result.output
    assert f"Error: {message}" in result.output, result.output
    assert db.session.scalar(select(func.count()).select_from(User)) == 0


ADMIN_ARGS = [
    *("create-admin", "--username", "admin", "--email", "admin@example.com"),
    *("--password", "change-me-please"),
]


def test_the_documented_commands_run_on_a_fresh_database(app, db):
    """README, Quick start and Operations, top to bottom on the suite's
    database: seed (then nothing to seed), seed --products N, create-admin
    (created, then promoted with its own password), cancel-expired-orders,
    mail failed / deliver."""
    from app.models import Product, User

    runner = app.test_cli_runner()
    steps = [
        (["seed"], "Added 24 products and 9 reviews."),
        (["seed"], "Catalog already has"),
        (["seed", "--products", "5"], "Added 5 products."),
        (
            ADMIN_ARGS,
            "Created admin admin",
        ),
        (
            ADMIN_ARGS,
            "Promoted admin",
        ),
        (["cancel-expired-orders"], "Cancelled 0 unpaid order(s)."),
        (["mail", "failed"], "No failed messages."),
        (["mail", "deliver"], "Processed 0 message(s)."),
    ]
    for args, output in steps:
        result = runner.invoke(args=args)
        assert result.exit_code == 0 and output in result.output, (args, result.output)
    db.session.expire_all()
    assert db.session.scalar(select(func.count()).select_from(Product)) == 29
    assert db.session.scalars(select(User).filter_by(username="admin")).one().is_admin
