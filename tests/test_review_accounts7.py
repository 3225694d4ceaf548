"""Review round 7: accounts and auth (app/routes/auth.py, app/services/auth.py,
account_tokens.py, revocation.py, app/web/jwt.py): bugs found, each with the
test that showed it."""

from __future__ import annotations

import contextlib
import itertools
import threading
import uuid

import pytest

from app.services import auth as accounts
from tests.helpers import DATABASE_URL, IS_POSTGRES, PASSWORD, REDIS_URL, auth, race, scalar
from tests.test_review_accounts6 import _reset_token

RESETS_PER_HOUR = 2
# Flask-Limiter keeps the key prefix of the first app made with limits on
# for every later one: each test's clients (and addresses) are its own, so
# no test meets counters another left in Redis.
_numbers = itertools.count(1)


def new_client_address() -> str:
    n = next(_numbers)
    return f"198.18.{n // 250}.{n % 250 + 1}"


@pytest.fixture(params=["memory", "redis"])
def counters(request) -> str:
    """The limiter's storage: in memory, and the suite's Redis when given."""
    if request.param == "redis" and not REDIS_URL:
        pytest.skip("REDIS_URL is not set")
    return "memory://" if request.param == "memory" else REDIS_URL


def reset_limited_client(make_app, counters: str, limit: str):
    """A test client of an app whose rate limits are on, with
    RATELIMIT_PASSWORD_RESET=`limit` (counters under a prefix of its own)."""
    app = make_app(
        overrides={
            "RATELIMIT_ENABLED": True,
            "RATELIMIT_STORAGE_URI": counters,
            "RATELIMIT_KEY_PREFIX": f"rv-acc7-{uuid.uuid4().hex}",
            "RATELIMIT_PASSWORD_RESET": limit,
        }
    )
    return app.test_client()


@pytest.mark.parametrize(
    ("limit", "refused"),
    [
        (f"{RESETS_PER_HOUR} per hour", RESETS_PER_HOUR + 1),
        # Several limits (README: "several joined by `;`"): the per-minute
        # ones, the address's among them, are counted before the client's
        # hourly one is found breached.
        (f"10 per minute;{RESETS_PER_HOUR} per hour", 10),
    ],
)
def test_a_client_past_its_reset_budget_does_not_spend_another_addresses(
    make_app, counters, make_user, limit, refused
):
    """README, RATELIMIT_PASSWORD_RESET: "password reset requests per
    client, and per address asked for, whichever clients ask". A client
    past its own budget is refused (429) and nothing is done for it, yet
    each refused request spent the budget of the address it named:
    Flask-Limiter counts the per-address limit (declared below the
    per-client one, or of a shorter unit) before it finds the client's
    breached, and nothing gave that spend back (the login's budgets are
    given back on a 429; this one was not). One client could so lock the
    password reset of every account in the shop, a few refused requests per
    address, while the owner, who had never asked, got a 429 for the first
    reset of the hour."""
    client = reset_limited_client(make_app, counters, limit)
    victim = make_user()

    def ask(client_address: str, email: str) -> int:
        return client.post(
            "/api/auth/password-reset",
            json={"email": email},
            environ_base={"REMOTE_ADDR": client_address},
        ).status_code

    attacker, owner = new_client_address(), new_client_address()
    someone = f"someone{next(_numbers)}@example.com"
    spent = [ask(attacker, someone) for _ in range(RESETS_PER_HOUR)]
    assert spent == [202] * RESETS_PER_HOUR
    assert [ask(attacker, victim.email) for _ in range(refused)] == [429] * refused

    assert ask(owner, victim.email) == 202
    assert scalar("SELECT count(*) FROM outbox WHERE topic = 'auth.password_reset'") == 3


def test_an_address_past_its_reset_budget_is_refused_whatever_the_client(
    make_app, counters, make_user
):
    """The per-address budget itself still holds (a 202 spends it, and a
    429 of the address's own limit gives nothing back): the give-back above
    returns only what a request refused for its client's budget spent."""
    client = reset_limited_client(make_app, counters, f"{RESETS_PER_HOUR} per hour")
    victim = make_user()
    statuses = [
        client.post(
            "/api/auth/password-reset",
            json={"email": victim.email},
            environ_base={"REMOTE_ADDR": new_client_address()},
        ).status_code
        for _ in range(RESETS_PER_HOUR + 2)
    ]
    assert statuses == [202] * RESETS_PER_HOUR + [429, 429]
    assert scalar("SELECT count(*) FROM outbox WHERE topic = 'auth.password_reset'") == 2


@contextlib.contextmanager
def _another_writer():
    """`(begins, free)`: `begins()` tries to take SQLite's write lock from a
    second connection that never waits, and records in `free` whether it
    was free at that moment."""
    import sqlite3

    other = sqlite3.connect(DATABASE_URL.removeprefix("sqlite:///"), isolation_level=None)
    other.execute("PRAGMA busy_timeout=0")
    free: list[bool] = []

    def begins() -> None:
        try:
            other.execute("BEGIN IMMEDIATE")
            other.execute("ROLLBACK")
            free.append(True)
        except sqlite3.OperationalError:
            free.append(False)

    try:
        yield begins, free
    finally:
        other.close()


@pytest.mark.skipif(IS_POSTGRES, reason="SQLite's one write lock")
@pytest.mark.parametrize(
    "change",
    [
        {"password": "brand-new-pass-7"},
        {"email": "renamed@example.com"},
        {"email": "renamed@example.com", "password": "brand-new-pass-7"},
    ],
)
def test_a_profile_change_hashing_a_password_holds_no_write_lock(
    client, make_user, login, monkeypatch, change
):
    """The login and the signup were mended for this (tests/test_review_auth.py,
    test_a_signup_hashing_its_password_holds_no_write_lock, which noted
    "PUT /profile with a password does the same, twice: check and set").
    A profile change that checks `current_password` (an email or password
    change) held SQLite's one write lock from its token check (BEGIN
    IMMEDIATE) through the check of the current password and the hash of
    the new one - two scrypt hashes, and the wait for a hashing slot
    (PASSWORD_HASH_WAIT, 5 s) when logins hold them - while every checkout,
    cart change and signup of every process waited. Each hash now runs
    before the change takes the lock, and the change still applies."""
    from app.models import user as user_module

    user = make_user()
    token = login(user)["access_token"]
    check, generate = user_module.check_password_hash, user_module.generate_password_hash
    with _another_writer() as (another_writer_begins, free_while_hashing):

        def checking(*args, **kwargs):
            another_writer_begins()
            return check(*args, **kwargs)

        def generating(*args, **kwargs):
            another_writer_begins()
            return generate(*args, **kwargs)

        monkeypatch.setattr(user_module, "check_password_hash", checking)
        monkeypatch.setattr(user_module, "generate_password_hash", generating)
        response = client.put(
            "/api/auth/profile", json={**change, "current_password": PASSWORD}, headers=auth(token)
        )
    monkeypatch.undo()

    assert response.status_code == 200, response.get_json()
    assert free_while_hashing == [True] * (1 + ("password" in change)), free_while_hashing
    expected_email = change.get("email", user.email)
    assert scalar("SELECT email FROM users WHERE id = :i", i=user.id) == expected_email
    new_password = change.get("password", PASSWORD)
    email = expected_email
    relogin = client.post("/api/auth/login", json={"email": email, "password": new_password})
    assert relogin.status_code == 200, relogin.get_json()


@pytest.mark.skipif(IS_POSTGRES, reason="PostgreSQL: test_account_integrity's racing changes")
@pytest.mark.parametrize("second", ["password", "logout-all"])
def test_a_change_checked_before_the_write_lock_sees_what_committed_meanwhile(
    app, make_user, login, monkeypatch, second
):
    """With the hashes before SQLite's write lock, two requests of one token
    check it and the current password at once, unlocked: the change that
    takes the lock second must see what the first committed (its password
    and token version: API.md's "revokes every access and refresh token ...
    the caller's own included") and be refused, as on PostgreSQL, never
    apply over it."""
    user = make_user()
    token = login(user)["access_token"]
    lock_for_change = accounts._lock_for_change
    both_checked = threading.Barrier(2, timeout=5)

    def lock_when_both_checked(*args, **kwargs):
        with contextlib.suppress(threading.BrokenBarrierError):
            both_checked.wait()
        return lock_for_change(*args, **kwargs)

    monkeypatch.setattr(accounts, "_lock_for_change", lock_when_both_checked)

    def change(n: int):
        response = app.test_client().put(
            "/api/auth/profile",
            json={"password": f"new-password-{n}", "current_password": PASSWORD},
            headers=auth(token),
        )
        return response.status_code, response.get_json()

    def logout_all():
        with contextlib.suppress(threading.BrokenBarrierError):
            both_checked.wait()
        response = app.test_client().post("/api/auth/logout-all", headers=auth(token))
        return response.status_code, response.get_json()

    calls = [lambda: change(1), lambda: change(2) if second == "password" else logout_all()]
    results = race(calls)
    statuses = sorted(status for status, _ in results)
    assert statuses == [200, 401], results
    refused = next(body for status, body in results if status == 401)
    assert refused["code"] == "token_revoked", refused


@pytest.mark.skipif(IS_POSTGRES, reason="SQLite's one write lock")
def test_a_password_reset_hashing_its_password_holds_no_write_lock(
    client, make_user, login, smtp_server, deliver_outbox, monkeypatch
):
    """As the profile change above: POST /password-reset/confirm - public,
    answered for any token - hashed the new password inside the transaction
    `_consume` had opened with SQLite's write lock, every other writer
    waiting out the hash (and the wait for a hashing slot). The hash now
    runs before the lock, for a token that is one; the reset still applies
    once, and ends every session."""
    from app.models import user as user_module

    user = make_user()
    old = login(user)["access_token"]
    token = _reset_token(client, user.email, smtp_server, deliver_outbox)
    generate = user_module.generate_password_hash
    body = {"token": token, "password": "brand-new-pass-7"}
    with _another_writer() as (another_writer_begins, free_while_hashing):

        def generating(*args, **kwargs):
            another_writer_begins()
            return generate(*args, **kwargs)

        monkeypatch.setattr(user_module, "generate_password_hash", generating)
        response = client.post("/api/auth/password-reset/confirm", json=body)
        again = client.post("/api/auth/password-reset/confirm", json=body)
        unknown = client.post("/api/auth/password-reset/confirm", json={**body, "token": "x" * 43})
    monkeypatch.undo()

    assert response.status_code == 200, response.get_json()
    assert free_while_hashing == [True], free_while_hashing  # the used and unknown: no hash
    assert again.status_code == unknown.status_code == 400
    assert client.get("/api/auth/profile", headers=auth(old)).status_code == 401
    relogin = client.post(
        "/api/auth/login", json={"email": user.email, "password": "brand-new-pass-7"}
    )
    assert relogin.status_code == 200, relogin.get_json()
