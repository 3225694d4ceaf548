"""Adversarial review: accounts and auth (tests that fail on the current code)."""

# ruff: noqa: RUF001, RUF002 - Greek letters are the point of some tests

from __future__ import annotations

import json as _json
import urllib.error as _urlerror
import urllib.request as _urlrequest
from concurrent.futures import ThreadPoolExecutor as _Pool

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


# =====================================================================================
# Review of a660cd4, d091d0f, beb3b70, e2dc61b, 7e47cf7, 8dc1a7f (accounts and auth).
# Every test below fails on the current code (the database(s) named in each).
# =====================================================================================

ACCOUNT_BUDGET = 3  # RATELIMIT_LOGIN_ACCOUNT of the server below
MAILS_ALLOWED = 3  # RATELIMIT_VERIFY_RESEND of the server below


@pytest.fixture(scope="module")
def account_limited_server(app):
    """One gunicorn worker with 8 threads; the per-account budget is the only
    login limit that can be reached (the per-client ones are generous)."""
    env = {
        "RATELIMIT_ENABLED": "true",
        "RATELIMIT_STORAGE_URI": "memory://",  # one worker: one set of counters
        "TRUST_PROXY": "1",
        "RATELIMIT_LOGIN": "1000 per minute",
        "RATELIMIT_LOGIN_ATTEMPTS": "1000 per minute",
        "RATELIMIT_LOGIN_ACCOUNT": f"{ACCOUNT_BUDGET} per 15 minutes",
        "RATELIMIT_DEFAULT": "100000 per minute",
        "RATELIMIT_VERIFY_RESEND": f"{MAILS_ALLOWED} per hour",
        "RATELIMIT_PASSWORD_RESET": f"{MAILS_ALLOWED} per hour",
    }
    with gunicorn(DATABASE_URL, workers=1, threads=8, extra_env=env) as live:
        yield live


def _call(server, method, path, body=None, token=None, address="203.0.113.1"):
    """(status, headers, JSON body) of one request from `address`."""
    data = _json.dumps(body).encode() if body is not None else None
    req = _urlrequest.Request(server.url + path, data=data, method=method)
    if data is not None:
        req.add_header("Content-Type", "application/json")
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    req.add_header("X-Forwarded-For", address)
    try:
        with _urlrequest.urlopen(req, timeout=60) as resp:
            return resp.status, dict(resp.headers), _json.loads(resp.read() or b"{}")
    except _urlerror.HTTPError as err:
        with err:
            return err.code, dict(err.headers), _json.loads(err.read() or b"{}")


@pytest.mark.server
def test_concurrent_failed_logins_do_not_exceed_the_accounts_budget(
    account_limited_server, make_user, db
):
    """README (RATELIMIT_LOGIN_ACCOUNT): "failed logins per account, from any
    client" - at most that many password guesses per window. The login
    (app/routes/auth.py `login`, `limiter.shared_limit(..., deduct_when=
    _failed)`) only *tests* the budget before the password is checked and
    spends it after the 401: every guess sent while others are still being
    hashed passes the test. Eight guesses sent at once from eight addresses
    against a budget of 3 are all checked (8 x 401, no 429): an attacker
    gets as many guesses per window as it keeps requests in flight.
    Expected: at most ACCOUNT_BUDGET of them are checked (401), the rest 429.
    (A costlier hash, as scrypt in production, only widens the window; here
    the stored hash is made slow so the window is ~0.2 s, not microseconds.)"""
    from werkzeug.security import generate_password_hash

    victim = make_user()
    slow = generate_password_hash(PASSWORD, method="pbkdf2:sha256:400000")
    db.session.execute(
        text("UPDATE users SET password_hash = :h WHERE id = :i"), {"h": slow, "i": victim.id}
    )
    db.session.commit()

    def guess(n: int) -> int:
        body = {"email": victim.email, "password": f"guess-number-{n}"}
        return _call(
            account_limited_server, "POST", "/api/auth/login", body, None, f"198.18.0.{n}"
        )[0]

    with _Pool(8) as pool:
        statuses = list(pool.map(guess, range(1, 9)))
    assert statuses.count(401) <= ACCOUNT_BUDGET, statuses


@pytest.mark.server
def test_a_username_change_is_not_refused_for_other_clients_failed_logins(
    account_limited_server, make_user
):
    """README: RATELIMIT_LOGIN_ACCOUNT counts failed logins per account and "a
    wrong `current_password` in PUT /api/auth/profile spends the same
    budget". A username-only change checks no password (API.md: current_password
    is needed only for email or password), yet once anyone, unauthenticated,
    from anywhere, has spent the account's budget with wrong logins (just
    knowing the username), the signed-in owner's `PUT /profile {"username"}`
    is a 429 for the whole window (15 minutes by default), again and again.
    The shared limit on update_profile (app/routes/auth.py) is checked for
    every PUT, whatever it changes. Expected: 200 (a change that needs no
    password is not a guess and is not held back by guesses)."""
    owner = make_user()
    status, _h, tokens = _call(
        account_limited_server,
        "POST",
        "/api/auth/login",
        {"email": owner.email, "password": PASSWORD},
        address="192.0.2.10",
    )
    assert status == 200
    for n in range(ACCOUNT_BUDGET + 1):  # a stranger, elsewhere, guessing
        _call(
            account_limited_server,
            "POST",
            "/api/auth/login",
            {"username": owner.username, "password": "not-the-password"},
            address=f"198.51.100.{n + 1}",
        )
    status, _h, body = _call(
        account_limited_server,
        "PUT",
        "/api/auth/profile",
        {"username": f"{owner.username}_renamed"},
        token=tokens["access_token"],
        address="192.0.2.10",
    )
    assert status == 200, (status, body)
    assert body["username"] == f"{owner.username}_renamed"


# --- migration f37a2c4e6b89 on rows stored before it ----------------------------------


def _migrate_f37_again(db):
    """Run f37a2c4e6b89 once more over the rows now stored; the schema is back
    at head afterwards whatever happens. Returns the upgrade's exception."""
    from flask_migrate import downgrade, upgrade

    db.session.commit()
    db.session.remove()
    downgrade(revision="f36d1b3c5e78")
    try:
        upgrade()
    except Exception as error:  # noqa: BLE001
        failure = error
    else:
        failure = None
    db.session.remove()
    if failure is not None:
        # The failed upgrade rolled back: empty the tables (as the suite's
        # teardown does) so that it runs to head for the next tests.
        tables = [t.name for t in reversed(db.metadata.sorted_tables)]
        with db.engine.begin() as conn:
            if IS_POSTGRES:
                conn.exec_driver_sql(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY CASCADE")
            else:
                for table in tables:
                    conn.exec_driver_sql(f"DELETE FROM {table}")  # noqa: S608 - our own names
        upgrade()
    return failure


def test_the_email_migration_never_writes_an_address_longer_than_its_column(db, make_user):
    """Before a660cd4 a non-ASCII domain was stored as NFKC lower-cased only:
    `...@ᾳᾳᾳᾳᾳ.ᾳᾳᾳᾳᾳ...gr` (U+1FB3, valid letters then), 251 characters,
    fit `users.email` (String(254)) and the 254 the schemas allow. UTS 46
    maps each U+1FB3 to two letters (`αι`), so f37a2c4e6b89 rewrites that row
    to 291 characters without checking the length:
    - PostgreSQL: `value too long for type character varying(254)`:
      `flask db upgrade` fails and the release cannot be deployed;
    - SQLite: the 291-character address is stored, and no login or reset can
      name it again (every email lookup is refused past 254: a 422).
    Expected: the upgrade completes and every stored email fits the column
    (a rewrite past 254 is left as stored, like a collision)."""
    user = make_user("greek")
    email = "a" * 200 + "@" + "\u1fb3" * 5 + ("." + "\u1fb3" * 5) * 7 + ".gr"
    assert len(email) <= 254
    db.session.execute(
        text("UPDATE users SET email = :e WHERE id = :i"), {"e": email, "i": user.id}
    )
    failure = _migrate_f37_again(db)
    assert failure is None, f"flask db upgrade failed: {failure!r}"
    longest = db.session.execute(text("SELECT max(length(email)) FROM users")).scalar()
    db.session.remove()
    assert longest <= 254, longest


def test_a_verification_link_mailed_before_the_email_migration_still_verifies(
    db, make_user, client
):
    """f37a2c4e6b89 rewrites `users.email` (`"bob"@example.com` becomes
    bob@example.com, "the same mailbox") but not `account_tokens.email`,
    the address each unused link was mailed to. verify_email
    (app/services/account_tokens.py) refuses a link whose address is not the
    account's current one, so a verification link mailed before the upgrade
    (valid 48 hours, API.md) to that very mailbox is a 400 `token_invalid`
    afterwards (a reset link likewise). Expected: the link still verifies
    the address (200, email_verified true): the mailbox did not change."""
    from datetime import timedelta

    from app.models import AccountToken
    from app.models.types import utcnow
    from app.services.account_tokens import VERIFY, _hash

    user = make_user("quoted")
    quoted = '"quoted"@example.com'
    db.session.execute(
        text("UPDATE users SET email = :e WHERE id = :i"), {"e": quoted, "i": user.id}
    )
    db.session.add(
        AccountToken(
            user_id=user.id,
            purpose=VERIFY,
            token_hash=_hash("link-mailed-before-the-upgrade"),
            email=quoted,
            expires_at=utcnow() + timedelta(hours=47),
        )
    )
    failure = _migrate_f37_again(db)
    assert failure is None, repr(failure)
    stored = db.session.execute(text("SELECT email FROM users WHERE id = :i"), {"i": user.id})
    assert stored.scalar_one() == "quoted@example.com"  # the row was rewritten
    db.session.remove()
    response = client.post(
        "/api/auth/verify-email", json={"token": "link-mailed-before-the-upgrade"}
    )
    assert response.status_code == 200, response.get_json()
    assert response.get_json()["email_verified"] is True


@pytest.mark.server
def test_email_changes_do_not_mail_a_stranger_past_the_verification_limit(
    account_limited_server, make_user, db
):
    """a660cd4 limited POST /verify-email/resend (RATELIMIT_VERIFY_RESEND, per
    client and per account; README) because "it mails whatever address the
    profile holds": an account pointed at a stranger's address mailed them a
    verification email per request. PUT /api/auth/profile mails that same
    verification email to the new address on every email change
    (services/auth.py update_profile -> send_verification), with no limit but
    the default (300 per minute): an account switching its email between a
    stranger's address and another one (its own password is all it needs)
    mails the stranger a verification email every other request.
    Expected: no more verification emails to one address from one account
    and client than RATELIMIT_VERIFY_RESEND allows (a 429 past it)."""
    user = make_user()
    address = "192.0.2.44"
    status, _h, tokens = _call(
        account_limited_server,
        "POST",
        "/api/auth/login",
        {"email": user.email, "password": PASSWORD},
        address=address,
    )
    assert status == 200
    statuses = []
    for n in range(MAILS_ALLOWED * 4):
        target = "stranger@example.org" if n % 2 == 0 else f"elsewhere{n}@example.net"
        statuses.append(
            _call(
                account_limited_server,
                "PUT",
                "/api/auth/profile",
                {"email": target, "current_password": PASSWORD},
                token=tokens["access_token"],
                address=address,
            )[0]
        )
    db.session.remove()
    mailed = db.session.execute(
        text(
            "SELECT count(*) FROM outbox WHERE recipient = 'stranger@example.org'"
            " AND topic = 'verify_email'"
        )
    ).scalar()
    db.session.remove()
    assert mailed <= MAILS_ALLOWED, (mailed, statuses)


@pytest.mark.server
def test_password_reset_emails_to_one_account_are_limited_whatever_the_client(
    account_limited_server, make_user, db
):
    """app/routes/auth.py says the verification resend is "limited as the
    reset request is, per client and per account", but POST
    /api/auth/password-reset has only the per-client limit
    (RATELIMIT_PASSWORD_RESET, keyed by address): requests naming one
    account from many addresses each mail that account a reset link (the
    worker's task, then the email), with no bound: anyone can flood a user's
    mailbox with the shop's reset emails (and spend the relay's reputation).
    Expected: at most RATELIMIT_PASSWORD_RESET reset emails per account per
    window, whichever clients ask (the answer stays a 202, as API.md asks)."""
    victim = make_user()
    statuses = [
        _call(
            account_limited_server,
            "POST",
            "/api/auth/password-reset",
            {"email": victim.email},
            address=f"198.18.1.{n}",
        )[0]
        for n in range(1, MAILS_ALLOWED * 3 + 1)
    ]
    assert set(statuses) <= {202, 429}, statuses
    db.session.remove()
    requested = db.session.execute(
        text("SELECT count(*) FROM outbox WHERE topic = 'auth.password_reset'")
    ).scalar()
    db.session.remove()
    assert requested <= MAILS_ALLOWED, (requested, statuses)


@pytest.mark.parametrize(
    ("domain", "letters"),
    [
        ("ΑΣ1.gr", "ασ1.gr"),  # capital sigma before a digit
        ("ΑΣ-ΒΑ.gr", "ασ-βα.gr"),  # capital sigma before a hyphen
        ("α\u03f2.gr", "ασ.gr"),  # GREEK LUNATE SIGMA SYMBOL
    ],
)
def test_a_greek_domain_is_read_as_uts46_reads_it(client, domain, letters):
    """README: "An email domain is read as IDNA 2008 with UTS 46 reads it".
    UTS 46 maps capital sigma, and the lunate sigma symbol, to σ wherever
    they stand (`ΑΣ1.gr` is `ασ1.gr`, xn--1-ylb8c.gr, as DNS and browsers
    read it). normalize_email (app/schemas/user.py) first lower-cases the
    whole address with Python's str.lower, which applies the Final_Sigma
    rule (Σ after a letter and before a digit, a hyphen or the end of the
    domain becomes ς), and NFKC, which makes ϲ a ς; IDNA 2008 keeps ς (a
    letter of its own), so `bob@ΑΣ1.gr` is stored as bob@ας1.gr, another
    domain (xn--1-ylb5c.gr). The mailbox bob@ασ1.gr then gets a second
    account, and the first account's mail (verification, password reset
    links) goes to whoever holds the other domain: the straße/strasse defect
    a660cd4 mended, by another letter (migration f37a2c4e6b89 reads it the
    same way). Expected: the domain stored as UTS 46 reads it, and one
    mailbox, one account (409 duplicate email)."""
    import idna

    assert idna.encode(domain, uts46=True) == idna.encode(letters)  # one domain
    first = _signup(client, "sigma1", f"bob@{domain}")
    assert first.status_code == 201, first.get_json()
    assert first.get_json()["user"]["email"] == f"bob@{letters}"
    second = _signup(client, "sigma2", f"bob@{letters}")
    assert second.status_code == 409, second.get_json()
