"""Review (docs): README's setup steps against what really happens.

README "Configuration": "a `.env` file next to `config.py` is loaded too (copy
`.env.example`)", `RATELIMIT_ENABLED` "`true` (`false` in testing)", and in
development "the usual dev servers are allowed, `http://localhost:3000` and
`http://localhost:5173` (and their `127.0.0.1` twins)". `config.py` loads
`.env` with python-dotenv, which sets every variable the environment lacks;
these tests give a fresh interpreter exactly the variables `.env.example`
sets (what copying it to `.env` does) and read the resulting configuration.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import DATABASE_URL, PASSWORD, VISA, order_for, pay

ROOT = Path(__file__).resolve().parent.parent


def _env_example() -> dict[str, str]:
    """The variables `.env.example` sets (comments and blank lines skipped)."""
    values = {}
    for line in (ROOT / ".env.example").read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        name, _, value = line.partition("=")
        values[name.strip()] = value.strip()
    return values


def _config_with_env_example(script: str) -> dict:
    """Run `script` (which prints one JSON object) in a fresh interpreter whose
    environment holds what a `.env` copied from `.env.example` adds."""
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in {"RATELIMIT_ENABLED", "CORS_ORIGINS", "FLASK_CONFIG", "REDIS_URL"}
    }
    env.update(_env_example())
    out = subprocess.run(
        [sys.executable, "-c", script],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_env_example_copied_to_env_keeps_rate_limits_off_in_the_test_suite():
    """README: copy `.env.example` to `.env`; `RATELIMIT_ENABLED` is `false` in
    testing. With `.env.example`'s `RATELIMIT_ENABLED=true` loaded, the test
    suite's app (tests/helpers.py, then create_app("testing")) has rate limits
    ON: `make test` then fails (tests/test_cart.py errors at its 31st test with
    429 "limit of 30 per 1 minute" on the fixtures' logins)."""
    script = (
        "import json, tests.helpers\n"
        "from app import create_app\n"
        "app = create_app('testing')\n"
        "print(json.dumps({'RATELIMIT_ENABLED': app.config['RATELIMIT_ENABLED']}))\n"
    )
    config = _config_with_env_example(script)
    assert config["RATELIMIT_ENABLED"] is False


def test_env_example_copied_to_env_keeps_the_documented_dev_origins():
    """README "Quick start": in development `http://localhost:5173` (Vite) and
    `http://127.0.0.1:5173` are allowed. `.env.example` sets
    `CORS_ORIGINS=http://localhost:3000,http://127.0.0.1:3000`, which replaces
    the development default: after the README's "copy `.env.example`" a Vite
    storefront is refused."""
    script = (
        "import json\n"
        "from app import create_app\n"
        "app = create_app('development')\n"
        "print(json.dumps({'CORS_ORIGINS': list(app.config['CORS_ORIGINS'])}))\n"
    )
    origins = _config_with_env_example(script)["CORS_ORIGINS"]
    for origin in (
        "http://localhost:3000",
        "http://127.0.0.1:3000",
        "http://localhost:5173",
        "http://127.0.0.1:5173",
    ):
        assert origin in origins


def test_production_refuses_an_unknown_payment_provider(
    make_app, monkeypatch, make_user, make_product
):
    """README "Configuration": `PAYMENT_PROVIDER` is "`test` (no network) or
    `stripe`", and production "refuses to start, with a one-line reason" on a
    provider that is unset, or `stripe` without its keys. A misspelt one
    (`PAYMENT_PROVIDER=strpe`) starts: ProductionConfig.check only compares
    with "test" and "stripe", and make_provider raises RuntimeError("unknown
    PAYMENT_PROVIDER") inside every pay, so each `POST /orders/<id>/pay` is a
    500 internal_error. Expected: start-up refused naming PAYMENT_PROVIDER
    (as an unset one is); failing that, no pay answers 500."""
    monkeypatch.setenv("DATABASE_URL", DATABASE_URL)
    monkeypatch.setenv("MAIL_BACKEND", "console")
    monkeypatch.setenv("PAYMENT_PROVIDER", "strpe")
    overrides = {
        "SQLALCHEMY_DATABASE_URI": DATABASE_URL,
        "SQLALCHEMY_ENGINE_OPTIONS": {"hide_parameters": True},
        "RATELIMIT_ENABLED": False,  # one limiter per process: keep later tests unlimited
        "BACKGROUND_MODE": "off",
        "REDIS_URL": None,
        "SECRET_KEY": "s" * 48,
        "JWT_SECRET_KEY": "j" * 48,
        "PAYMENT_PROVIDER": "strpe",
    }
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
    assert paid.status_code != 500, paid.get_json()


def test_production_knows_the_same_providers_and_backends_as_the_code(app):
    """config.PAYMENT_PROVIDERS and MAIL_BACKENDS (what production accepts)
    are what the code can make: each named one builds, and a misspelt mail
    backend or switch is refused at start-up too."""
    import os
    import subprocess
    import sys

    import config
    from app.services import mail
    from app.services.payment_providers import make_provider

    assert set(config.MAIL_BACKENDS) == set(mail.BACKENDS)
    for name in config.PAYMENT_PROVIDERS:
        keys = {"STRIPE_SECRET_KEY": "sk_test_x", "STRIPE_WEBHOOK_SECRET": "whsec_x"}
        make_provider({"PAYMENT_PROVIDER": name, **keys})
    env = {**os.environ, "RATELIMIT_ENABLED": "enabled"}
    result = subprocess.run(
        [sys.executable, "-c", "import config"], env=env, capture_output=True, text=True
    )
    assert result.returncode != 0
    assert "RATELIMIT_ENABLED must be true or false" in result.stderr


@pytest.mark.parametrize(
    "limit, expected",
    [
        ("2 per 15 minutes", "Too many requests: at most 2 per 15 minutes"),
        ("2 per minute", "Too many requests: at most 2 per minute"),
        ("2/hour", "Too many requests: at most 2 per hour"),
    ],
)
def test_a_rate_limited_answer_is_in_the_projects_words(make_app, limit, expected):
    """API.md: "Messages are the project's own words: no library wording".
    A 429 said "Too many requests: limit of 2 per 15 minute", the limits
    library's own rendering (found by review)."""
    app = make_app(
        overrides={
            "RATELIMIT_ENABLED": True,
            "RATELIMIT_STORAGE_URI": "memory://",
            "RATELIMIT_LOGIN": limit,
        }
    )
    client = app.test_client()
    body = {"username": "nobody-here", "password": "wrong-password-1"}
    answers = [client.post("/api/auth/login", json=body) for _ in range(3)]
    assert [a.status_code for a in answers] == [401, 401, 429]
    assert answers[-1].get_json()["message"] == expected
