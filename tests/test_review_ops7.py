"""Operations review, round 7: settings that started the shop silently wrong,
and start-up refusals that were tracebacks. Every test here failed on the
code it was written against (see each docstring)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _start(code: str = "import config", **env: str) -> subprocess.CompletedProcess:
    """`code` run in a fresh interpreter with `env` added to the environment
    (config is read once, at import)."""
    environment = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    environment.update(env)
    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _refused(result: subprocess.CompletedProcess, name: str) -> None:
    """Start-up stopped with one line naming `name`, no traceback."""
    tail = result.stderr[-400:]
    assert result.returncode != 0, tail
    assert "Traceback" not in result.stderr, tail
    assert name in result.stderr, tail


# -- Rate limits ---------------------------------------------------------------

LIMIT_SETTINGS = [
    "RATELIMIT_DEFAULT",
    "RATELIMIT_LOGIN",
    "RATELIMIT_LOGIN_ATTEMPTS",
    "RATELIMIT_LOGIN_ACCOUNT",
    "RATELIMIT_SIGNUP",
    "RATELIMIT_IN_MEMORY_FALLBACK",
    "RATELIMIT_PASSWORD_RESET",
    "RATELIMIT_VERIFY_RESEND",
]


@pytest.mark.parametrize("name", LIMIT_SETTINGS)
def test_a_malformed_rate_limit_stops_start_up_naming_it(name):
    """README: RATELIMIT_LOGIN is "failed logins per client", and a
    malformed setting stops start-up naming the variable. A limit
    Flask-Limiter cannot parse (`10 per minit`, a typo) was taken as it
    was: the shop started, production included, and Flask-Limiter skipped
    the limit on every request, logging nothing a handler printed, so
    password guessing had no limit at all. Expected: refused at start-up."""
    _refused(_start(**{name: "10 per minit"}), name)


def test_well_formed_rate_limits_start(make_app):
    """Limits in any form Flask-Limiter reads (several at once, `/`) start."""
    result = _start(
        RATELIMIT_LOGIN="10/minute;100/hour",
        RATELIMIT_DEFAULT="300 per minute, 10 per second",
        RATELIMIT_LOGIN_ACCOUNT="10 per 15 minutes",
    )
    assert result.returncode == 0, result.stderr[-400:]


# -- Timeouts in milliseconds ---------------------------------------------------


@pytest.mark.parametrize("name", ["DB_STATEMENT_TIMEOUT_MS", "SQLITE_BUSY_TIMEOUT_MS"])
def test_a_timeout_in_ms_past_what_the_database_takes_stops_start_up(name):
    """Both are handed to the database as a 32-bit count of milliseconds.
    DB_STATEMENT_TIMEOUT_MS=3000000000 (about 35 days) started; PostgreSQL
    refused every connection ("invalid value for parameter
    statement_timeout: Value exceeds integer range"), so every request was
    a 503 "The database is busy" and every CLI command a traceback. SQLite
    reads a PRAGMA busy_timeout it cannot hold as 0: writers stopped waiting
    for the lock at all, and a writer waiting for its process's turn raised
    OverflowError. Expected: refused at start-up naming the variable; the
    largest value both take (2147483647) starts."""
    _refused(_start(**{name: "3000000000"}), name)
    assert _start(**{name: "2147483647"}).returncode == 0


# -- URLs and names ----------------------------------------------------------------

CREATE_APP = "from app import create_app; create_app()"


@pytest.mark.parametrize(
    ("name", "value"),
    [
        # Heroku's and many tools' spelling: SQLAlchemy has no `postgres` dialect.
        ("DATABASE_URL", "postgres://shop:s3cret-pw@127.0.0.1:5432/shop"),
        ("DATABASE_URL", "shop.db"),
        ("REDIS_URL", "127.0.0.1:6379"),
        ("RATELIMIT_STORAGE_URI", "redis//127.0.0.1:6379"),
        ("BACKGROUND_MODE", "celerey"),
        ("FLASK_CONFIG", "prod"),
        ("MAIL_BACKEND", "smpt"),
        ("PAYMENT_PROVIDER", "strpe"),
    ],
)
def test_a_malformed_url_or_name_stops_start_up_in_one_line(name, value, tmp_path):
    """A bad value must stop start-up with a line naming the variable
    (README, Configuration). DATABASE_URL=postgres://... (no such SQLAlchemy
    dialect), a URL with no scheme, a REDIS_URL without `redis://`, a
    storage URI of no known scheme, a misspelt BACKGROUND_MODE or
    FLASK_CONFIG each ended start-up in a traceback (NoSuchModuleError,
    ArgumentError, ValueError, ConfigurationError, RuntimeError), most not
    naming the variable. A misspelt MAIL_BACKEND or PAYMENT_PROVIDER started
    development (production refuses them): every email then failed its
    attempts and every payment was a 500. Expected: refused in one line."""
    env = {
        "FLASK_CONFIG": "development",
        "DATABASE_URL": f"sqlite:///{tmp_path}/shop.db",
        "BACKGROUND_MODE": "off",
        name: value,
    }
    result = _start(CREATE_APP, **env)
    _refused(result, name)
    assert "s3cret-pw" not in result.stderr  # a URL's password is never printed


def test_the_documented_urls_and_names_start(tmp_path):
    """The README's own spellings start (in any case where it makes no
    difference to what they name)."""
    result = _start(
        CREATE_APP,
        FLASK_CONFIG="development",
        DATABASE_URL=f"sqlite:///{tmp_path}/shop.db",
        REDIS_URL="redis://127.0.0.1:6379/14",
        RATELIMIT_STORAGE_URI="memory://",
        BACKGROUND_MODE="off",
        MAIL_BACKEND="smtp",
        PAYMENT_PROVIDER="test",
    )
    assert result.returncode == 0, result.stderr[-400:]


# -- gunicorn ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("RATELIMIT_LOGIN", "10 per minit"),
        ("JWT_ACCESS_TOKEN_EXPIRES", "1h"),
        ("FLASK_CONFIG", "prod"),
        # gunicorn.conf.py's own: 0 workers served nothing, the port open,
        # forever; 0 threads failed each worker's boot with a traceback.
        ("WEB_CONCURRENCY", "0"),
        ("GUNICORN_THREADS", "0"),
        # Read as `info`, saying nothing (found by review, session 17).
        ("GUNICORN_LOGLEVEL", "verbose"),
    ],
)
def test_gunicorn_stops_on_a_refused_setting(name, value, tmp_path):
    """The README runs production as `gunicorn -c gunicorn.conf.py
    'app:create_app()'` and promises a malformed setting stops start-up with
    a line naming it. config.py refuses with SystemExit, read in each
    worker; gunicorn takes a worker's exit code 1 for a crash and boots
    another: the master kept the port open and respawned workers forever
    (two a second, the line repeated each time), serving nothing, and never
    exited for systemd to report. Expected: gunicorn exits (non-zero) with
    that line, no traceback."""
    from tests.live import GUNICORN, free_port

    environment = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    environment.update(
        {
            "FLASK_CONFIG": "testing",
            "DATABASE_URL": f"sqlite:///{tmp_path}/shop.db",
            "TEST_DATABASE_URL": f"sqlite:///{tmp_path}/shop.db",
            "BACKGROUND_MODE": "off",
            "GUNICORN_BIND": f"127.0.0.1:{free_port()}",
            "WEB_CONCURRENCY": "1",
            "GUNICORN_ACCESSLOG": "",
            name: value,
        }
    )
    process = subprocess.Popen(
        [str(GUNICORN), "-c", "gunicorn.conf.py", "app:create_app()"],
        cwd=ROOT,
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        output, _ = process.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        process.kill()
        output, _ = process.communicate()
        pytest.fail(f"gunicorn still running after 60 s: {output[-600:]}")
    assert process.returncode != 0, output[-600:]
    assert name in output and "Traceback" not in output, output[-600:]
    assert output.count(name) == 1, output[-600:]  # said once, not once per respawned worker


# -- CORS --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [
        "https://shop.example.com/",  # a trailing slash: no browser sends one
        "shop.example.com",  # no scheme
        "https://shop.example.com,https://admin.example.com/app",
        "*",
        "https://*.example.com",
    ],
)
def test_a_cors_origin_no_browser_sends_stops_start_up(value):
    """README: CORS_ORIGINS is "comma-separated origins allowed to call the
    API from a browser", "never `*`". An origin is scheme://host[:port]: a
    browser's Origin header is never `https://shop.example.com/`, so that
    value (and one without its scheme) started and allowed nothing, every
    storefront call failing in the browser with nothing on the server
    saying why; `*` (flask-cors reads it as a pattern) allowed every origin.
    Expected: refused at start-up naming CORS_ORIGINS."""
    _refused(_start(CORS_ORIGINS=value), "CORS_ORIGINS")


def test_origins_as_browsers_send_them_start(make_app):
    result = _start(
        "import config; print(config.Config.CORS_ORIGINS)",
        CORS_ORIGINS="https://shop.example.com, http://localhost:4200,http://[::1]:5173",
    )
    assert result.returncode == 0, result.stderr[-400:]
    assert result.stdout.strip() == (
        "['https://shop.example.com', 'http://localhost:4200', 'http://[::1]:5173']"
    )


# -- Email --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("FRONTEND_URL", "shop.example.com"),  # no scheme: no mail reader opens it
        ("FRONTEND_URL", "https://"),
        ("MAIL_DEFAULT_SENDER", "Shop"),  # no address
        ("FRONTEND_URL", "https://shop.example.com/?from=mail"),  # links: ...?from=mail/reset...
        ("FRONTEND_URL", "https://shop.example.com/#/"),
        ("MAIL_USERNAME", "bjørn"),  # smtplib sends AUTH as ASCII: every send failed
        ("MAIL_PASSWORD", "pässword"),
    ],
)
def test_an_email_setting_no_message_could_use_stops_start_up(name, value):
    """FRONTEND_URL is the "base of the links in emails" and
    MAIL_DEFAULT_SENDER "the From of every email". FRONTEND_URL without its
    scheme started, and every reset and verification link mailed was a
    relative `shop.example.com/reset-password?token=...` no mail reader
    opens; a sender with no address started, and every email went out with
    an envelope sender the relay refuses, retried until failed. Expected:
    refused at start-up naming the variable."""
    _refused(_start(**{name: value}), name)


def test_the_documented_email_settings_start():
    result = _start(
        FRONTEND_URL="https://shop.example.com/",
        MAIL_DEFAULT_SENDER="Shop <shop@example.com>",
    )
    assert result.returncode == 0, result.stderr[-400:]
    bare = _start(MAIL_DEFAULT_SENDER="shop@bücher.de")
    assert bare.returncode == 0, bare.stderr[-400:]


def test_starttls_and_ssl_at_once_stop_start_up():
    """README: MAIL_USE_TLS is STARTTLS on a plain port (587), MAIL_USE_SSL
    TLS from the start (465): one or the other. Both on started, and every
    email asked for STARTTLS inside a TLS connection, which no relay offers:
    each failed its attempts with nothing at start-up saying why. Expected:
    refused naming both."""
    result = _start(MAIL_USE_TLS="true", MAIL_USE_SSL="true")
    _refused(result, "MAIL_USE_SSL")
    assert "MAIL_USE_TLS" in result.stderr
