"""Rate limits, served by a real gunicorn (limits are per process with the
memory storage, so one worker here; shared storage is in test_scale_out).
One server for the module; each test is a client of its own (its own
X-Forwarded-For address behind a trusted proxy), so no test inherits the
limits another one spent."""

from __future__ import annotations

import itertools

import pytest

from tests.helpers import DATABASE_URL, PASSWORD
from tests.live import gunicorn

pytestmark = pytest.mark.server

LIMITED = {
    "RATELIMIT_ENABLED": "true",
    "RATELIMIT_STORAGE_URI": "memory://",
    "RATELIMIT_LOGIN": "3 per minute",
    "RATELIMIT_SIGNUP": "2 per hour",
    "RATELIMIT_DEFAULT": "8 per minute",
}


_client_numbers = itertools.count(1)


class Client:
    """The module's server, as seen from one client address."""

    def __init__(self, server, address: str):
        self.url = server.url
        self.headers = {"X-Forwarded-For": address}
        self._server = server

    def request(self, method: str, path: str, body=None):
        return self._server.request(method, path, body, headers=self.headers)


@pytest.fixture(scope="module")
def server(app):
    env = {**LIMITED, "TRUST_PROXY": "1"}
    with gunicorn(DATABASE_URL, workers=1, threads=2, extra_env=env) as live:
        yield live


@pytest.fixture
def limited_server(server):
    return Client(server, f"203.0.113.{next(_client_numbers)}")


def test_failed_logins_are_limited_per_client_with_retry_after(limited_server, make_user):
    user = make_user()
    wrong = {"email": user.email, "password": "wrong-password"}
    right = {"email": user.email, "password": PASSWORD}
    # Successful logins do not count towards the failed-login limit.
    for _ in range(4):
        assert limited_server.request("POST", "/api/auth/login", right)[0] == 200
    for _ in range(3):
        assert limited_server.request("POST", "/api/auth/login", wrong)[0] == 401
    status, body = limited_server.request("POST", "/api/auth/login", wrong)
    assert status == 429 and body["code"] == "rate_limited"
    assert body["message"].startswith("Too many requests")
    # Once breached, even the right password waits.
    assert limited_server.request("POST", "/api/auth/login", right)[0] == 429


def test_429_carries_retry_after(limited_server):
    import urllib.error
    import urllib.request

    body = b'{"email": "nobody@example.com", "password": "x"}'
    for _ in range(3):
        limited_server.request(
            "POST", "/api/auth/login", {"email": "nobody@example.com", "password": "x"}
        )
    req = urllib.request.Request(
        limited_server.url + "/api/auth/login",
        data=body,
        method="POST",
        headers={"Content-Type": "application/json", **limited_server.headers},
    )
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(req, timeout=10)
    caught.value.close()
    assert caught.value.code == 429
    retry_after = int(caught.value.headers["Retry-After"])
    assert 1 <= retry_after <= 61  # the window is one minute, rounded up
    assert caught.value.headers["Content-Type"] == "application/json"


def test_signups_are_limited(limited_server):
    for n in range(2):
        status, _ = limited_server.request(
            "POST",
            "/api/auth/signup",
            {
                "username": f"limited{n}",
                "email": f"limited{n}@example.com",
                "password": "long-enough-1",
            },
        )
        assert status == 201
    status, body = limited_server.request(
        "POST",
        "/api/auth/signup",
        {"username": "limited9", "email": "limited9@example.com", "password": "long-enough-1"},
    )
    assert status == 429 and body["code"] == "rate_limited"


def test_default_limit_on_other_routes_but_not_health_or_the_webhook(limited_server):
    statuses = [limited_server.request("GET", "/api/products")[0] for _ in range(10)]
    assert statuses[:8] == [200] * 8 and statuses[8:] == [429, 429]
    assert all(limited_server.request("GET", "/api/health")[0] == 200 for _ in range(12))
    # No provider that sends webhooks is configured here: 404, never 429.
    webhook = [limited_server.request("POST", "/api/payments/webhook", {})[0] for _ in range(12)]
    assert set(webhook) == {404}, webhook


def test_limits_off_when_disabled(app):
    env = {**LIMITED, "RATELIMIT_ENABLED": "false"}
    with gunicorn(DATABASE_URL, workers=1, threads=2, extra_env=env) as live:
        statuses = {
            live.request("POST", "/api/auth/login", {"email": "x@example.com", "password": "bad"})[
                0
            ]
            for _ in range(6)
        }
    assert statuses == {401}
