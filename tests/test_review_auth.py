"""Adversarial review: accounts and auth (tests that fail on the current code)."""

from __future__ import annotations

import pytest
from sqlalchemy import text

from app.services.mail import ascii_domain
from tests.helpers import DATABASE_URL, IS_POSTGRES, PASSWORD
from tests.live import gunicorn


def _signup(client, username, email):
    return client.post(
        "/api/auth/signup", json={"username": username, "email": email, "password": PASSWORD}
    )


@pytest.mark.parametrize(
    "spelling",
    [
        "bob@exam\u00adple.com",  # soft hyphen
        "bob@exam\u200bple.com",  # zero width space
        "bob@example.c\u200com",  # zero width non-joiner
        "bob@ex\ufeffample.com",  # zero width no-break space (BOM)
        "bob@ex\u034fample.com",  # combining grapheme joiner
        "bob@ex\ufe00ample.com",  # variation selector-1
    ],
)
def test_an_invisible_character_in_the_domain_does_not_make_a_second_account(client, spelling):
    """API.md, Auth: email "unique", a duplicate is a 409 (README: "one
    mailbox, one account"). IDNA maps these characters to nothing, and the
    mailer sends every email to `ascii_domain(address)` = bob@example.com
    (app/services/mail.py), yet the signup stores the address as typed: a
    second account for bob@example.com's mailbox (or a look-alike of it)."""
    # Where its emails went (IDNA 2003): bob@example.com, or nowhere (IDNA 2008).
    assert ascii_domain(spelling) in ("bob@example.com", spelling)
    assert _signup(client, "bob1", "bob@example.com").status_code == 201
    response = _signup(client, "bob2", spelling)
    assert response.status_code in (409, 422), response.get_json()
    if response.status_code == 409:
        assert response.get_json()["details"] == {"field": "email"}


def test_a_quoted_local_part_is_the_same_mailbox_as_the_unquoted_one(client):
    """RFC 5322 3.2.4: the quotes of a quoted-string are not part of it, so
    `"bob"@example.com` is bob@example.com; the signup takes it as a second
    account for that mailbox (API.md: email unique, duplicate 409)."""
    assert _signup(client, "bob1", "bob@example.com").status_code == 201
    response = _signup(client, "bob2", '"bob"@example.com')
    assert response.status_code in (409, 422), response.get_json()


def test_mail_for_an_eszett_domain_is_not_sent_to_the_ss_domain(
    client, smtp_server, deliver_outbox
):
    """`straße.de` and `strasse.de` are two domains (IDNA 2008 / UTS 46
    non-transitional, what registries and browsers use: `xn--strae-oqa.de`).
    app/services/mail.py ascii_domain uses Python's "idna" codec (IDNA 2003),
    which maps ß to "ss": every email of the account bob@straße.de - its
    verification and password reset links - goes to bob@strasse.de, another
    domain's mailbox (whose owner can then reset the account's password)."""
    response = _signup(client, "bob1", "bob@straße.de")
    assert response.status_code == 201, response.get_json()
    deliver_outbox()
    (message,) = smtp_server.wait_for(1)
    assert message["To"] != "bob@strasse.de"
    assert message["To"] in ("bob@xn--strae-oqa.de", "bob@straße.de")


def test_the_ascii_spelling_of_an_eszett_domain_names_the_same_account(client):
    """README: "An email domain's ASCII labels are read as the letters they
    stand for (`bob@xn--exmple-cua.com` is `bob@exämple.com`: one mailbox,
    one account)". `xn--strae-oqa` is the A-label of `straße` (IDNA 2008),
    but normalize_email (app/schemas/user.py `_unicode_label`) decodes with
    IDNA 2003, whose round trip gives `strasse`, so it keeps the label as
    written: bob@straße.de and bob@xn--strae-oqa.de become two accounts."""
    assert _signup(client, "bob1", "bob@straße.de").status_code == 201
    response = _signup(client, "bob2", "bob@xn--strae-oqa.de")
    assert response.status_code == 409, response.get_json()
    assert response.get_json()["details"] == {"field": "email"}


# --- rate limits ---------------------------------------

GUESSES_ALLOWED = 3
EMAILS_ALLOWED = 3


@pytest.fixture(scope="module")
def limited_server(app):
    env = {
        "RATELIMIT_ENABLED": "true",
        "RATELIMIT_STORAGE_URI": "memory://",  # one worker: one set of counters
        "TRUST_PROXY": "1",
        "RATELIMIT_LOGIN": f"{GUESSES_ALLOWED} per minute",
        "RATELIMIT_LOGIN_ACCOUNT": f"{GUESSES_ALLOWED} per minute",
        "RATELIMIT_DEFAULT": "100000 per minute",
        "RATELIMIT_PASSWORD_RESET": f"{EMAILS_ALLOWED} per hour",
    }
    with gunicorn(DATABASE_URL, workers=1, threads=2, extra_env=env) as live:
        yield live


@pytest.mark.server
def test_current_password_guesses_in_a_profile_change_are_rate_limited(limited_server, make_user):
    """README: RATELIMIT_LOGIN ("failed logins per client") and
    RATELIMIT_LOGIN_ACCOUNT ("failed logins per account, from any client")
    bound password guessing. PUT /api/auth/profile checks `current_password`
    (app/services/auth.py update_profile) under neither: with an access token
    (1 hour) a client gets a 422 "Incorrect password." per guess at the
    default limit (300 per minute), and the right guess changes the password
    and email: the account is theirs for good."""
    victim = make_user()
    headers = {"X-Forwarded-For": "203.0.113.77"}
    status, tokens = limited_server.request(
        "POST", "/api/auth/login", {"email": victim.email, "password": PASSWORD}, headers=headers
    )
    assert status == 200
    guess = {"email": "thief@example.com", "current_password": "not-the-password"}
    statuses = [
        limited_server.request(
            "PUT", "/api/auth/profile", guess, token=tokens["access_token"], headers=headers
        )[0]
        for _ in range(GUESSES_ALLOWED * 3)
    ]
    assert statuses[:GUESSES_ALLOWED] == [422] * GUESSES_ALLOWED
    assert 429 in statuses, statuses


@pytest.mark.server
def test_verification_emails_to_any_address_are_rate_limited(limited_server, make_user, db):
    """POST /password-reset, the public route that mails a link, is limited
    to RATELIMIT_PASSWORD_RESET per client ("10 per hour"). POST
    /verify-email/resend mails a link too, to whatever address the caller
    put in its profile (no proof needed to change it), and has only the
    default limit (300 per minute per client): an account pointed at a
    stranger's address mails them a verification email per request."""
    user = make_user()
    headers = {"X-Forwarded-For": "203.0.113.78"}
    status, tokens = limited_server.request(
        "POST", "/api/auth/login", {"email": user.email, "password": PASSWORD}, headers=headers
    )
    assert status == 200
    token = tokens["access_token"]
    change = {"email": "stranger@example.org", "current_password": PASSWORD}
    assert limited_server.request("PUT", "/api/auth/profile", change, token, headers)[0] == 200
    statuses = [
        limited_server.request("POST", "/api/auth/verify-email/resend", None, token, headers)[0]
        for _ in range(EMAILS_ALLOWED * 3)
    ]
    queued = db.session.execute(
        text("SELECT count(*) FROM outbox WHERE recipient = 'stranger@example.org'")
    ).scalar()
    assert 429 in statuses, (statuses, queued)


# --- SQLite's write lock held through password hashing -------------------------------


@pytest.mark.skipif(IS_POSTGRES, reason="SQLite's one write lock")
def test_a_signup_hashing_its_password_holds_no_write_lock(client, monkeypatch):
    """The login was mended for this (tests/test_review_edges.py: "held
    SQLite's write lock while the password was hashed (tens of ms with
    scrypt), so logins ran one at a time and every other writer waited").
    A signup - public, from any address - still hashes inside its BEGIN
    IMMEDIATE transaction (services.auth.create_user: `user.set_password`
    after the uniqueness reads), so every checkout, cart change and other
    signup waits out each signup's hash. (PUT /profile with a password does
    the same, twice: check and set.)"""
    import sqlite3

    from app.models import user as user_module

    other_writer = sqlite3.connect(DATABASE_URL.removeprefix("sqlite:///"), isolation_level=None)
    other_writer.execute("PRAGMA busy_timeout=0")
    took_the_lock = []
    generate = user_module.generate_password_hash

    def hashing_while_another_writer_begins(*args, **kwargs):
        try:
            other_writer.execute("BEGIN IMMEDIATE")
            other_writer.execute("ROLLBACK")
            took_the_lock.append(True)
        except sqlite3.OperationalError:
            took_the_lock.append(False)
        return generate(*args, **kwargs)

    monkeypatch.setattr(user_module, "generate_password_hash", hashing_while_another_writer_begins)
    try:
        response = _signup(client, "zed", "zed@example.com")
    finally:
        other_writer.close()
    assert response.status_code == 201, response.get_json()
    assert took_the_lock == [True]


@pytest.mark.parametrize("scheme", ["bearer", "BEARER", "bEaReR"])
def test_the_bearer_scheme_is_case_insensitive(client, make_user, login, scheme):
    """RFC 9110 (11.1): an authentication scheme's name is case-insensitive;
    `Authorization: bearer <token>` was a 401 "Malformed Authorization
    header" (found by review)."""
    token = login(make_user())["access_token"]
    response = client.get("/api/auth/profile", headers={"Authorization": f"{scheme} {token}"})
    assert response.status_code == 200, response.get_json()


def test_a_huge_email_is_refused_without_normalising_it(client, monkeypatch):
    """A login or signup whose email is a megabyte of characters NFKC expands
    (U+FDFA: 18 characters each) was normalised whole, twice per login
    (0.6 s each; found by review): it is refused by its length, and nothing
    normalises it."""
    from app.schemas import user as user_schemas

    normalised = []
    real_nfkc = user_schemas.nfkc
    monkeypatch.setattr(user_schemas, "nfkc", lambda v: normalised.append(len(v)) or real_nfkc(v))
    email = "\ufdfa" * 60_000 + "@example.com"
    for path, body in (
        ("/api/auth/login", {"email": email, "password": "whatever1"}),
        ("/api/auth/signup", {"username": "huge", "email": email, "password": "whatever1"}),
        ("/api/auth/login", {"username": email, "password": "whatever1"}),
        ("/api/auth/signup", {"username": email, "email": "a@b.co", "password": "whatever1"}),
    ):
        response = client.post(path, json=body)
        assert response.status_code == 422, response.get_json()
    assert all(length < 10_000 for length in normalised), max(normalised)
