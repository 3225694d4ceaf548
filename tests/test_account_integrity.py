"""Accounts, found by review (each failed before its fix): a deleted account's
token, the field a racing duplicate names, the per-account login budget,
racing password changes."""

from __future__ import annotations

import contextlib
import threading

import pytest
from flask_migrate import downgrade, upgrade
from sqlalchemy import text

from app.models import User
from app.services import auth as accounts
from tests.helpers import DATABASE_URL, IS_POSTGRES, PASSWORD, auth
from tests.live import gunicorn


def signup(client, **overrides):
    body = {"username": "alice", "email": "alice@example.com", "password": "s3cret-pass"}
    return client.post("/api/auth/signup", json={**body, **overrides})


# --- a deleted account's token --------------------------------------------------


@pytest.mark.skipif(IS_POSTGRES, reason="PostgreSQL's sequences never hand out an id again")
def test_a_deleted_users_token_does_not_open_the_next_account_with_its_id(
    client, db, make_user, login
):
    """API.md, Errors: "401 | missing, malformed, expired, tampered or revoked
    token". A token names its user by id; once that user is deleted the token
    names no one and must be a 401. On SQLite the next account reuses the
    highest id after a delete, and `_issued_to` (app/web/jwt.py) accepts a
    token issued up to CLOCK_SLACK (30 s) *before* the new account was made:
    the deleted user's token is then a valid token for a stranger's account
    (here: it reads bob's profile, and would place orders as bob)."""
    alice = make_user("alice")
    token = login(alice)["access_token"]
    db.session.delete(db.session.get(User, alice.id))
    db.session.commit()
    bob = make_user("bob")  # signs up right after (SQLite hands out alice's id again)

    response = client.get("/api/auth/profile", headers=auth(token))

    assert response.status_code == 401, (
        f"alice's token (id {alice.id}) answered {response.status_code} "
        f"as {response.get_json()} (bob has id {bob.id})"
    )


# --- racing sign-ups: the 409 names the wrong field ------------------------------------


@pytest.mark.skipif(
    not IS_POSTGRES, reason="SQLite's message names the index, not the duplicate value"
)
def test_racing_signups_of_one_username_name_the_username_field(app, db, monkeypatch):
    """API.md: "409 `duplicate` (details: `field`)" - a client branches on the
    field. Two sign-ups of one username at once both pass `_ensure_unique`;
    the unique index refuses the second, and `_flush_unique`
    (app/services/auth.py) guesses the field by looking for "email" anywhere
    in the driver's message. PostgreSQL's message quotes the duplicate value
    (`Key (lower(username::text))=(email.fan) already exists`), so a username
    that contains "email" is reported as a duplicate *email*."""
    check = accounts._ensure_unique
    both_checked = threading.Barrier(2, timeout=5)

    def check_then_wait(*args, **kwargs):
        check(*args, **kwargs)
        # Both requests have passed the check: a race (a broken barrier: the
        # database serialised the two).
        with contextlib.suppress(threading.BrokenBarrierError):
            both_checked.wait()

    monkeypatch.setattr(accounts, "_ensure_unique", check_then_wait)
    results: list = []

    def attempt(n: int) -> None:
        response = signup(app.test_client(), username="email.fan", email=f"fan{n}@example.com")
        results.append((response.status_code, response.get_json()))

    threads = [threading.Thread(target=attempt, args=(n,)) for n in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sorted(status for status, _ in results) == [201, 409], results
    conflict = next(body for status, body in results if status == 409)
    assert conflict["details"] == {"field": "username"}, conflict


# --- per-account login limit ----------------------------------------------------------

ACCOUNT_FAILURES = 3


@pytest.fixture(scope="module")
def limited_server(app):
    env = {
        "RATELIMIT_ENABLED": "true",
        "RATELIMIT_STORAGE_URI": "memory://",
        "TRUST_PROXY": "1",
        "RATELIMIT_LOGIN": "1000 per minute",
        "RATELIMIT_LOGIN_ATTEMPTS": "1000 per minute",
        "RATELIMIT_LOGIN_ACCOUNT": f"{ACCOUNT_FAILURES} per minute",
        "RATELIMIT_DEFAULT": "100000 per minute",
    }
    with gunicorn(DATABASE_URL, workers=1, threads=2, extra_env=env) as live:
        yield live


@pytest.mark.server
def test_failed_logins_per_account_count_by_email_and_username_together(limited_server, make_user):
    """The per-account login limit (RATELIMIT_LOGIN_ACCOUNT, "failed logins
    per account from any address", tests/test_login_limits.py: "The same
    account named differently (case, fullwidth) is the same account") is keyed
    on the identifier typed, not the account (`login_account_key`,
    app/web/limits.py: "email:..." vs "username:..."). Naming the victim by
    username after the email budget is spent gets a fresh budget: twice the
    guesses the limit allows."""
    victim = make_user("victim")

    def attempt(address: str, body: dict) -> int:
        return limited_server.request(
            "POST",
            "/api/auth/login",
            {**body, "password": "not-the-password"},
            headers={"X-Forwarded-For": address},
        )[0]

    by_email = [attempt(f"203.0.113.{n}", {"email": victim.email}) for n in range(1, 5)]
    assert by_email == [401] * ACCOUNT_FAILURES + [429]

    assert attempt("198.51.100.9", {"username": victim.username}) == 429


# --- racing password changes ------------------------------------------------------------


@pytest.mark.skipif(not IS_POSTGRES, reason="SQLite's BEGIN IMMEDIATE serialises the two")
def test_two_racing_password_changes_with_one_token_do_not_both_succeed(
    app, make_user, login, monkeypatch
):
    """API.md, Auth: "`current_password` required to change `email` or
    `password`" and "Changing the password ... revokes every access and
    refresh token of that user issued before the change, the caller's own
    included ... (401 `token_revoked`)". Two password changes sent at once
    with one token and the same current password both answer 200: the second
    checked the token and the current password against the row as it was
    before the first committed, then overwrote the first's new password with
    a token the first had already revoked and a password that was no longer
    current. No order of the two requests allows that (a lost update: the
    first client is told its password is set, and it is not).
    `accounts.update_profile` (app/services/auth.py) reads the user unlocked
    (the token check's SELECT) under PostgreSQL's READ COMMITTED; SQLite's
    BEGIN IMMEDIATE serialises the requests."""
    user = make_user()
    token = login(user)["access_token"]
    update = accounts.update_profile
    both_authenticated = threading.Barrier(2, timeout=5)

    def update_when_both_are_in(*args, **kwargs):
        with contextlib.suppress(threading.BrokenBarrierError):
            both_authenticated.wait()
        return update(*args, **kwargs)

    monkeypatch.setattr(accounts, "update_profile", update_when_both_are_in)
    results: list = []

    def change(n: int) -> None:
        response = app.test_client().put(
            "/api/auth/profile",
            json={"password": f"new-password-{n}", "current_password": PASSWORD},
            headers=auth(token),
        )
        results.append((response.status_code, response.get_json()))

    threads = [threading.Thread(target=change, args=(n,)) for n in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sorted(status for status, _ in results) != [200, 200], results


# --- one mailbox, two spellings ------------------------------------------------------


def test_an_internationalised_domain_in_its_two_spellings_is_one_email(client):
    """API.md, Auth: "email: a valid address, stored lower-case, unique" and
    409 "duplicate username or email". `bob@exämple.com` and
    `bob@xn--exmple-cua.com` are one mailbox (the ASCII form is what DNS and
    SMTP carry): both signed up, two accounts owned one address. Either
    spelling now names the account, at signup, login and reset."""
    created = signup(client, username="bob1", email="bob@exämple.com")
    assert created.status_code == 201
    assert created.get_json()["user"]["email"] == "bob@exämple.com"

    response = signup(client, username="bob2", email="bob@XN--EXMPLE-CUA.com")
    assert response.status_code == 409, response.get_json()
    assert response.get_json()["details"] == {"field": "email"}
    login = {"email": "bob@xn--exmple-cua.com", "password": "s3cret-pass"}
    assert client.post("/api/auth/login", json=login).status_code == 200
    # Not Punycode at all: kept as written.
    kept = signup(client, username="carol", email="carol@xn--zz.example")
    assert kept.status_code == 201
    assert kept.get_json()["user"]["email"] == "carol@xn--zz.example"


def test_the_migration_rewrites_stored_ascii_domains(app, db, make_user):
    """Accounts stored before: an xn-- domain is rewritten in its letters,
    unless another account already holds that spelling (left as it was)."""
    stored = make_user("stored")
    kept, holder = make_user("kept"), make_user("holder")
    for user, email in (
        (stored, "stored@xn--exmple-cua.com"),
        (kept, "dup@xn--exmple-cua.com"),
        (holder, "dup@exämple.com"),
    ):
        db.session.execute(
            text("UPDATE users SET email = :e WHERE id = :i"), {"e": email, "i": user.id}
        )
    db.session.commit()
    db.session.remove()
    downgrade(revision="f29a1c3e5b70")
    upgrade()
    emails = dict(db.session.execute(text("SELECT username, email FROM users")).all())
    assert emails["stored"] == "stored@exämple.com"
    assert emails["kept"] == "dup@xn--exmple-cua.com"
    assert emails["holder"] == "dup@exämple.com"
