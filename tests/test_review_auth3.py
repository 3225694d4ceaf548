"""Adversarial review (auth3): authentication and its rate-limit budgets.
Each test fails on the current code."""

from __future__ import annotations

import uuid

import pytest

from tests.helpers import PASSWORD, REDIS_URL, auth

STORAGES = ["memory://"] + ([REDIS_URL] if REDIS_URL else [])


@pytest.fixture(params=STORAGES)
def limited(request, make_app):
    """A test client of an app with rate limits on (counters in memory, or
    in Redis when REDIS_URL is set: keys under a prefix of this test's own)."""

    def make(**limits):
        overrides = {
            "RATELIMIT_ENABLED": True,
            "RATELIMIT_STORAGE_URI": request.param,
            "RATELIMIT_KEY_PREFIX": f"auth3review-{uuid.uuid4().hex}",
            "RATELIMIT_DEFAULT": "100000 per minute",
            "RATELIMIT_LOGIN_ATTEMPTS": "1000 per minute",
            "RATELIMIT_LOGIN": "1000 per minute",
            "RATELIMIT_LOGIN_ACCOUNT": "1000 per 15 minutes",
        }
        overrides.update(limits)
        return make_app(overrides=overrides).test_client()

    return make


def _call(client, address, path, body, method="post", token=None):
    """A request from the client address `address`."""
    return getattr(client, method)(
        path,
        json=body,
        headers=auth(token) if token else None,
        environ_base={"REMOTE_ADDR": address},
    )


def _login(client, address, email, password=PASSWORD):
    return _call(client, address, "/api/auth/login", {"email": email, "password": password})


# --- a 429 from another limit spends the account's failed-login budget --------


def test_a_client_past_its_own_guess_budget_cannot_lock_other_accounts(limited, make_user):
    """README: RATELIMIT_LOGIN_ACCOUNT counts "failed logins per account";
    RATELIMIT_LOGIN (per client) bounds a client's guesses. A client past its
    own RATELIMIT_LOGIN gets a 429 before any password is checked, yet each
    of those 429s still spends the per-account budget of the account it
    names (the account's limit is counted first and a 429 keeps what it
    spent): one address, already refused, locks any number of accounts at
    full speed, and the owners' right passwords get 429s from everywhere."""
    client = limited(RATELIMIT_LOGIN="2 per minute", RATELIMIT_LOGIN_ACCOUNT="3 per 15 minutes")
    victims = [make_user() for _ in range(3)]
    attacker = "203.0.113.66"
    assert _login(client, attacker, "nobody@example.com", "wrong-password").status_code == 401
    assert _login(client, attacker, "nobody@example.com", "wrong-password").status_code == 401
    for victim in victims:  # refused at once: no password of theirs is ever checked
        refused = [_login(client, attacker, victim.email, "wrong-password") for _ in range(4)]
        assert [r.status_code for r in refused] == [429] * 4
    owners = [_login(client, f"198.51.100.{n}", v.email) for n, v in enumerate(victims, 1)]
    assert [r.status_code for r in owners] == [200] * len(victims), [r.get_json() for r in owners]


def test_right_passwords_past_the_attempts_limit_do_not_lock_the_account(limited, make_user):
    """README: RATELIMIT_LOGIN_ATTEMPTS limits every login attempt per
    client; RATELIMIT_LOGIN_ACCOUNT counts failed logins per account ("only
    wrong passwords count"). A client sending the right password too often
    gets 429s from its attempts limit, and each of them spends the account's
    failed-login budget: the owner is then locked out on every other device
    for the account's window (15 minutes by default) without a single wrong
    password."""
    client = limited(
        RATELIMIT_LOGIN_ATTEMPTS="2 per minute", RATELIMIT_LOGIN_ACCOUNT="3 per 15 minutes"
    )
    user = make_user()
    busy = [_login(client, "192.0.2.10", user.email).status_code for _ in range(6)]
    assert busy == [200, 200, 429, 429, 429, 429]
    phone = _login(client, "192.0.2.20", user.email)
    assert phone.status_code == 200, phone.get_json()


def test_email_changes_refused_for_the_mail_budget_do_not_lock_the_login(limited, make_user):
    """README: a wrong `current_password` in PUT /profile spends the
    account's failed-login budget; RATELIMIT_VERIFY_RESEND bounds the
    verification emails an email change sends. An email change with the
    RIGHT current_password refused by the mail budget (429, no password
    checked) still spends RATELIMIT_LOGIN_ACCOUNT: a user retrying an email
    change locks their own account out of every login."""
    client = limited(
        RATELIMIT_VERIFY_RESEND="1 per hour", RATELIMIT_LOGIN_ACCOUNT="3 per 15 minutes"
    )
    user = make_user()
    token = _login(client, "192.0.2.30", user.email).get_json()["access_token"]
    changes = [
        _call(
            client,
            "192.0.2.30",
            "/api/auth/profile",
            {"email": f"moved{n}-{user.username}@example.com", "current_password": PASSWORD},
            method="put",
            token=token,
        ).status_code
        for n in range(5)
    ]
    assert changes == [200, 429, 429, 429, 429]
    again = _login(client, "192.0.2.31", f"moved0-{user.username}@example.com")
    assert again.status_code == 200, again.get_json()


# --- the profile change -------------------------------------------------------


def test_a_profile_change_naming_only_current_password_is_refused(client, buyer):
    """ChangeSchema: "A change (PUT body): at least one field. An empty body
    or `{}` would change nothing and answer 200, hiding a client's mistake: a
    422 instead." API.md: PUT /profile takes "any of username, email,
    password". `{"current_password": ...}` names none of them (a client that
    left out the new `password` it meant to send), changes nothing and
    answers 200: the client is told its change went through."""
    _user, token = buyer
    response = client.put(
        "/api/auth/profile", json={"current_password": PASSWORD}, headers=auth(token)
    )
    assert response.status_code == 422, response.get_json()
    assert response.get_json()["code"] == "validation_failed"
