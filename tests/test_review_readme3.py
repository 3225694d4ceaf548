"""Review (readme3): is the README true for a newcomer? The Configuration
table and the paragraph under it (README.md lines 60-152) against config.py,
app/__init__.py and gunicorn.conf.py.

Each start-up test runs the real start-up in a subprocess with the variable
set, as the README's reader would; the behaviour tests then show what the
accepted value does to the API (same pattern as tests/test_review_r3mail.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest

from config import A_DECADE
from tests.helpers import PASSWORD, auth, start_up_error

ROOT = Path(__file__).resolve().parent.parent


def _starts(tmp_path, config_name: str = "development", **env: str) -> bool:
    """True when `create_app(config_name)` starts with these variables set."""
    return start_up_error(tmp_path, config_name, **env) == ""


@pytest.mark.parametrize("name", ["DB_CONNECT_TIMEOUT", "DB_POOL_TIMEOUT"])
def test_a_setting_in_seconds_past_ten_years_is_refused_at_start_up(tmp_path, name):
    """README line 67: "every setting in seconds is at most ten years:
    start-up refuses more". config.py gives DB_PING_IDLE_SECONDS,
    PASSWORD_HASH_WAIT, the token lifetimes, ... `maximum=A_DECADE`, but
    DB_CONNECT_TIMEOUT and DB_POOL_TIMEOUT (both "seconds" in the table,
    lines 89 and 91) are read with a bare `env_int` and start with any value
    (DB_POOL_TIMEOUT=1e10-ish overflows threading's lock timeout the first
    time the pool is exhausted)."""
    assert not _starts(tmp_path, **{name: str(A_DECADE + 1)}), (
        f"{name}={A_DECADE + 1} (past ten years) started"
    )


def test_an_access_token_lifetime_of_zero_is_refused_or_gives_working_tokens(
    tmp_path, make_app, make_user
):
    """JWT_ACCESS_TOKEN_EXPIRES=0 ("0 = never expires" in many tools) starts,
    but timedelta(0) is falsy, so flask-jwt-extended writes no `exp` claim,
    and the app refuses every token without `exp` (README line 343): every
    login answers 200 with an access token that is a 401 `token_invalid` on
    its first use. Nobody can use the shop, and start-up said nothing.
    Expected: start-up refuses 0 (at least 1, naming the variable), or the
    token works."""
    if not _starts(tmp_path, JWT_ACCESS_TOKEN_EXPIRES="0"):
        return  # refused at start-up: fixed
    other = make_app("testing", {"JWT_ACCESS_TOKEN_EXPIRES": timedelta(seconds=0)})
    user = make_user()
    client = other.test_client()
    answer = client.post("/api/auth/login", json={"username": user.username, "password": PASSWORD})
    assert answer.status_code == 200
    profile = client.get("/api/auth/profile", headers=auth(answer.get_json()["access_token"]))
    assert profile.status_code == 200, profile.get_json()


def test_a_negative_low_stock_threshold_is_refused_or_products_can_still_be_created(
    tmp_path, make_app, admin_token
):
    """LOW_STOCK_THRESHOLD (README line 94: a new product's threshold when its
    body gives none) is read with a bare `env_int`: -1 starts, and then every
    POST /api/products without `low_stock_threshold` is a 500 (the column's
    CHECK low_stock_threshold >= 0 refuses the insert). Expected: start-up
    refuses a negative value naming it, or the product is created."""
    if not _starts(tmp_path, LOW_STOCK_THRESHOLD="-1"):
        return  # refused at start-up: fixed
    other = make_app("testing", {"LOW_STOCK_THRESHOLD": -1})
    answer = other.test_client().post(
        "/api/products",
        json={"name": "Threshold Lamp", "price": "10.00", "stock": 3},
        headers=auth(admin_token),
    )
    assert answer.status_code == 201, (answer.status_code, answer.get_json())


def test_an_unknown_password_hash_method_is_refused_or_signup_still_works(tmp_path, make_app):
    """PASSWORD_HASH_METHOD (README line 69: "Werkzeug hash method") is taken
    as any string: a typo (`scrpyt`) starts, then every signup, login
    rehash and password change is a 500 (werkzeug's ValueError "Invalid hash
    method"). Expected: start-up refuses it naming the variable (as it does
    BACKGROUND_MODE=bogus), or signups still work."""
    if not _starts(tmp_path, PASSWORD_HASH_METHOD="scrpyt"):
        return  # refused at start-up: fixed
    other = make_app("testing", {"PASSWORD_HASH_METHOD": "scrpyt"})
    answer = other.test_client().post(
        "/api/auth/signup",
        json={"username": "hashbob", "email": "hashbob@example.com", "password": "s3cret-pass"},
    )
    assert answer.status_code == 201, (answer.status_code, answer.get_json())


@pytest.mark.parametrize("name", ["WEB_CONCURRENCY", "GUNICORN_THREADS", "GUNICORN_TIMEOUT"])
def test_an_empty_gunicorn_setting_takes_its_default(name):
    """README line 152: "an empty one takes its default", and line 1015 says
    every gunicorn value comes from the environment. gunicorn.conf.py reads
    them with `int(os.environ.get(NAME, default))`, so `WEB_CONCURRENCY=`
    (an empty line in the systemd EnvironmentFile of line 1077) is
    `int('')`: gunicorn does not start, with a ValueError that names no
    variable."""
    result = subprocess.run(
        [sys.executable, "-c", "exec(open('gunicorn.conf.py').read())"],
        env={**os.environ, name: ""},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr.strip().splitlines()[-1]


def _config_of(name: str, **env: str):
    """`app.config[name]` of a development app started with `env` (None when
    start-up refuses it)."""
    base = {k: v for k, v in os.environ.items() if k not in env}
    if name != "BACKGROUND_MODE":
        base.setdefault("BACKGROUND_MODE", "off")  # no worker thread in the probe
    script = (
        "import json; from app import create_app; "
        f"print(json.dumps(create_app('development').config[{name!r}], default=str))"
    )
    result = subprocess.run(
        [sys.executable, "-c", script],
        env={**base, **env},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    if result.returncode != 0:
        return None
    return json.loads(result.stdout.strip().splitlines()[-1])


EMPTY_TAKES_DEFAULT = [
    ("SECRET_KEY", "SECRET_KEY"),
    ("JWT_SECRET_KEY", "JWT_SECRET_KEY"),
    ("DATABASE_URL", "SQLALCHEMY_DATABASE_URI"),
    ("PASSWORD_HASH_METHOD", "PASSWORD_HASH_METHOD"),
    ("LOG_LEVEL", "LOG_LEVEL"),
    ("BACKGROUND_MODE", "BACKGROUND_MODE"),
    ("PAYMENT_PROVIDER", "PAYMENT_PROVIDER"),
    ("SHOP_CURRENCY", "SHOP_CURRENCY"),
    ("CORS_ORIGINS", "CORS_ORIGINS"),
    ("RATELIMIT_LOGIN", "RATELIMIT_LOGIN"),
    ("RATELIMIT_LOGIN_ACCOUNT", "RATELIMIT_LOGIN_ACCOUNT"),
    ("RATELIMIT_LOGIN_ATTEMPTS", "RATELIMIT_LOGIN_ATTEMPTS"),
]


@pytest.mark.parametrize(("variable", "key"), EMPTY_TAKES_DEFAULT)
def test_an_empty_setting_takes_its_default(variable, key):
    """README line 152: "A malformed number or switch ... stops start-up
    ...; an empty one takes its default" (and .env.example, systemd's
    EnvironmentFile and docker-compose all produce `NAME=` lines). config.py
    honours that for numbers and switches (`_env_number`, `env_bool`), but
    every string setting is `os.environ.get(NAME, default)`, which returns
    the empty string: SECRET_KEY/JWT_SECRET_KEY become "" (every login and
    signup a 500 in development), LOG_LEVEL= and DATABASE_URL= crash start-up
    with a ValueError / ArgumentError naming no variable, BACKGROUND_MODE=
    is refused as unknown, PAYMENT_PROVIDER= makes every pay a 500,
    SHOP_CURRENCY= places orders in currency "", CORS_ORIGINS= allows no
    origin instead of the dev servers, and the RATELIMIT_LOGIN* budgets
    vanish (next test)."""
    default = _config_of(key)
    assert default is not None
    assert _config_of(key, **{variable: ""}) == default, f"{variable}= did not take its default"


def _empty_value_as_configured(variable: str, key: str):
    value = _config_of(key, **{variable: ""})
    return "" if value is None else value


def test_empty_failed_login_budgets_still_limit_failed_logins(make_app):
    """Same defect, its security cost: with RATELIMIT_LOGIN=,
    RATELIMIT_LOGIN_ACCOUNT= and RATELIMIT_LOGIN_ATTEMPTS= (empty lines in an
    env file; production's start-up check does not look at them) the app
    starts and no failed-login limit applies at all: 40 wrong passwords in a
    row from one client, and 14 for one account from 14 clients, are all 401,
    never 429. README lines 78-80 and 1097: failed logins are limited per
    client (10 per minute) and per account (10 per 15 minutes)."""
    overrides = {
        key: _empty_value_as_configured(key, key)
        for key in ("RATELIMIT_LOGIN", "RATELIMIT_LOGIN_ACCOUNT", "RATELIMIT_LOGIN_ATTEMPTS")
    }
    other = make_app("testing", {"RATELIMIT_ENABLED": True, **overrides})
    client = other.test_client()
    per_client = [
        client.post(
            "/api/auth/login", json={"username": f"ghost{i}", "password": "wrong-pass"}
        ).status_code
        for i in range(40)
    ]
    assert 429 in per_client, per_client
    per_account = [
        client.post(
            "/api/auth/login",
            json={"username": "ghost-account", "password": "wrong-pass"},
            environ_base={"REMOTE_ADDR": f"10.0.0.{i}"},
        ).status_code
        for i in range(1, 15)
    ]
    assert 429 in per_account, per_account


def test_an_empty_password_hash_method_still_lets_people_sign_up(make_app):
    """PASSWORD_HASH_METHOD= (empty) is kept as "" (config.py reads it with
    `os.environ.get(..., "scrypt")`), production's start-up check does not
    look at it, and every signup, login and password change is then a 500
    (werkzeug: "Invalid hash method ''"). README lines 69 and 152: default
    `scrypt`, an empty setting takes its default."""
    method = _empty_value_as_configured("PASSWORD_HASH_METHOD", "PASSWORD_HASH_METHOD")
    other = make_app("testing", {"PASSWORD_HASH_METHOD": method})
    answer = other.test_client().post(
        "/api/auth/signup",
        json={"username": "emptyhash", "email": "emptyhash@example.com", "password": "s3cret-pass"},
    )
    assert answer.status_code == 201, (answer.status_code, answer.get_json())


def test_a_password_hash_concurrency_of_zero_is_refused_or_logins_still_work(
    tmp_path, make_app, make_user
):
    """PASSWORD_HASH_CONCURRENCY (README line 82: "password hashes computed at
    once per process") is read with a bare `env_int`: 0 starts, the
    semaphore has no slot, and every login, signup and password change waits
    PASSWORD_HASH_WAIT then answers 503 `unavailable`; nobody can sign in
    (-1 stops start-up with "ValueError: semaphore initial value must be >=
    0", naming no variable). Expected: start-up refuses values below 1
    naming the variable, or logins work."""
    if not _starts(tmp_path, PASSWORD_HASH_CONCURRENCY="0"):
        return  # refused at start-up: fixed
    other = make_app("testing", {"PASSWORD_HASH_CONCURRENCY": 0, "PASSWORD_HASH_WAIT": 0.2})
    user = make_user()
    answer = other.test_client().post(
        "/api/auth/login", json={"username": user.username, "password": PASSWORD}
    )
    assert answer.status_code == 200, (answer.status_code, answer.get_json())


# --- mended alongside (the review's "start-up accepts without complaint" list) --


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("MAX_CONTENT_LENGTH", "-1"),
        ("TRUST_PROXY", "-1"),
        ("MAIL_PORT", "70000"),
        ("IDEMPOTENCY_ABANDONED_AFTER", "-1"),
        ("STRIPE_WEBHOOK_TOLERANCE", "-1"),
        ("PASSWORD_RESET_EXPIRES", "-1"),
        ("MAIL_RETRY_BACKOFF", "-5"),
        ("LOG_LEVEL", "bogus"),
        ("SHOP_CURRENCY", "BOGUS"),
        ("PASSWORD_HASH_CONCURRENCY", "-1"),
    ],
)
def test_a_nonsensical_setting_stops_start_up_naming_it(tmp_path, name, value):
    """Each of these started and broke the API later (every body a 413, orders
    in currency "BOGUS", a semaphore's ValueError naming nothing...): start-up
    refuses it, and its message names the variable (README, Configuration)."""
    error = start_up_error(tmp_path, **{name: value})
    assert error, f"{name}={value} started"
    assert name in error, error[-500:]


def test_an_empty_setting_still_starts_with_its_defaults(tmp_path):
    """`NAME=` lines for every text setting at once: the app starts on its defaults."""
    empty = {variable: "" for variable, _key in EMPTY_TAKES_DEFAULT}
    empty.pop("DATABASE_URL", None)
    assert start_up_error(tmp_path, **empty) == ""
