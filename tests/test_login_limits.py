"""Login limits through a real gunicorn behind a (pretend) proxy: failed logins
per account from any address, and every attempt per address."""

from __future__ import annotations

import pytest

from tests.helpers import DATABASE_URL, PASSWORD
from tests.live import gunicorn

pytestmark = pytest.mark.server

ACCOUNT_FAILURES = 5
ATTEMPTS = 4


@pytest.fixture(scope="module")
def server(app):
    env = {
        "RATELIMIT_ENABLED": "true",
        "RATELIMIT_STORAGE_URI": "memory://",  # one worker: one set of counters
        "TRUST_PROXY": "1",
        "RATELIMIT_LOGIN": "100 per minute",
        "RATELIMIT_LOGIN_ATTEMPTS": f"{ATTEMPTS} per minute",
        "RATELIMIT_LOGIN_ACCOUNT": f"{ACCOUNT_FAILURES} per minute",
        "RATELIMIT_DEFAULT": "100000 per minute",
    }
    with gunicorn(DATABASE_URL, workers=1, threads=2, extra_env=env) as live:
        yield live


def login_from(server, address: str, body: dict) -> int:
    return server.request("POST", "/api/auth/login", body, headers={"X-Forwarded-For": address})[0]


def test_failed_logins_per_account_are_limited_across_addresses(server, make_user):
    victim, bystander = make_user(), make_user()
    wrong = {"email": victim.email, "password": "not-the-password"}
    statuses = [login_from(server, f"203.0.113.{n}", wrong) for n in range(1, 61)]
    assert statuses == [401] * ACCOUNT_FAILURES + [429] * (60 - ACCOUNT_FAILURES)
    # The same account named differently (case, fullwidth) is the same account.
    shouted = {"email": victim.email.upper(), "password": "not-the-password"}
    assert login_from(server, "198.51.100.7", shouted) == 429
    # Other accounts are not affected.
    other = {"email": bystander.email, "password": PASSWORD}
    assert login_from(server, "198.51.100.8", other) == 200


def test_every_login_attempt_counts_per_address(server, make_user):
    user = make_user()
    right = {"email": user.email, "password": PASSWORD}
    statuses = [login_from(server, "192.0.2.50", right) for _ in range(ATTEMPTS + 2)]
    assert statuses == [200] * ATTEMPTS + [429, 429]
    invalid = {"email": user.email, "password": "\ud800"}  # 422s count too
    assert login_from(server, "192.0.2.51", invalid) == 422
    assert [login_from(server, "192.0.2.51", invalid) for _ in range(ATTEMPTS)][-1] == 429
    assert login_from(server, "192.0.2.52", right) == 200
