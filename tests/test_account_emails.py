"""Password reset and email verification (API.md, Auth), with the links read
from the emails a real SMTP server received."""

from __future__ import annotations

import re
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from sqlalchemy import text

from app.models import AccountToken
from app.services.account_tokens import lifetime_text
from tests.helpers import IS_POSTGRES, PASSWORD, auth, scalar

NEW_PASSWORD = "brand-new-pass-7"


def link_token(message, path: str) -> str:
    text = message.get_body(("plain",)).get_content()
    match = re.search(rf"http://localhost:3000/{path}\?token=([A-Za-z0-9_\-]+)", text)
    assert match, text
    assert match.group(0) in message.get_body(("html",)).get_content()
    return match.group(1)


def assert_token_invalid(response):
    assert response.status_code == 400, response.get_json()
    body = response.get_json()
    assert body["message"] == "This link is invalid or has expired"
    assert body["code"] == "token_invalid"


@pytest.fixture
def reset_link(client, make_user, smtp_server, deliver_outbox):
    """Ask for a reset link for a new user; returns (user, token)."""

    def ask(user=None):
        user = user or make_user()
        response = client.post("/api/auth/password-reset", json={"email": user.email.upper()})
        assert response.status_code == 202
        before = len(smtp_server.messages)
        deliver_outbox()
        message = smtp_server.wait_for(before + 1)[-1]
        assert message["To"] == user.email
        assert message["Subject"] == "Shop: reset your password"
        return user, link_token(message, "reset-password")

    return ask


# --- password reset ------------------------------------------------------------------


def test_reset_answers_the_same_for_known_and_unknown_emails(
    client, make_user, count_queries, smtp_server, deliver_outbox
):
    user = make_user()
    answers, statements = [], []
    for email in (user.email, "nobody@example.com"):
        with count_queries() as queries:
            response = client.post("/api/auth/password-reset", json={"email": email})
        answers.append((response.status_code, response.get_json()))
        statements.append(queries.statements)
    assert answers[0] == answers[1]
    assert answers[0][0] == 202 and "reset link" in answers[0][1]["message"]
    assert statements[0] == statements[1]  # the same work whether the account exists or not
    deliver_outbox()
    [message] = smtp_server.wait_for(1)
    assert message["To"] == user.email  # and nothing to the unknown address
    assert scalar("SELECT count(*) FROM outbox WHERE status = 'sent'") == 3  # 2 tasks, 1 email


def test_reset_sets_the_password_and_ends_every_session(client, login, reset_link):
    user, token = reset_link()
    old = login(user)
    assert scalar("SELECT count(*) FROM account_tokens WHERE token_hash = :t", t=token) == 0
    response = client.post(
        "/api/auth/password-reset/confirm", json={"token": token, "password": NEW_PASSWORD}
    )
    assert response.status_code == 200 and "password" in response.get_json()["message"].lower()
    assert client.get("/api/auth/profile", headers=auth(old["access_token"])).status_code == 401
    assert client.post("/api/auth/refresh", headers=auth(old["refresh_token"])).status_code == 401
    bad = client.post("/api/auth/login", json={"email": user.email, "password": PASSWORD})
    assert bad.status_code == 401
    fresh = login(user, NEW_PASSWORD)
    assert client.get("/api/auth/profile", headers=auth(fresh["access_token"])).status_code == 200
    # Single use.
    again = client.post(
        "/api/auth/password-reset/confirm", json={"token": token, "password": "another-pass-8"}
    )
    assert_token_invalid(again)


def test_bad_reset_tokens_are_refused(app, client, reset_link):
    _user, token = reset_link()
    tampered = token[:-1] + ("A" if token[-1] != "A" else "B")
    for candidate in (tampered, "unknown-token", token + "x"):
        response = client.post(
            "/api/auth/password-reset/confirm", json={"token": candidate, "password": NEW_PASSWORD}
        )
        assert_token_invalid(response)
    # A weak password is a 422 and does not use the token up.
    weak = client.post(
        "/api/auth/password-reset/confirm", json={"token": token, "password": "short"}
    )
    assert weak.status_code == 422 and "password" in weak.get_json()["errors"]
    for body in (
        {"token": "", "password": NEW_PASSWORD},
        {"password": NEW_PASSWORD},
        {"token": "x" * 201, "password": NEW_PASSWORD},
        {"token": token, "password": NEW_PASSWORD, "extra": 1},
    ):
        assert client.post("/api/auth/password-reset/confirm", json=body).status_code == 422
    ok = client.post(
        "/api/auth/password-reset/confirm", json={"token": token, "password": NEW_PASSWORD}
    )
    assert ok.status_code == 200


def test_an_expired_reset_token_is_refused(app, client, reset_link):
    app.config["PASSWORD_RESET_EXPIRES"] = -1
    try:
        _user, token = reset_link()
    finally:
        app.config["PASSWORD_RESET_EXPIRES"] = 3600
    response = client.post(
        "/api/auth/password-reset/confirm", json={"token": token, "password": NEW_PASSWORD}
    )
    assert_token_invalid(response)


def test_a_newer_reset_link_voids_the_older_one(client, reset_link):
    user, first = reset_link()
    _user, second = reset_link(user)
    body = {"token": first, "password": NEW_PASSWORD}
    assert_token_invalid(client.post("/api/auth/password-reset/confirm", json=body))
    body["token"] = second
    assert client.post("/api/auth/password-reset/confirm", json=body).status_code == 200


@pytest.mark.parametrize(
    "body", [{}, {"email": "not-an-email"}, {"email": "a@example.com", "username": "x"}]
)
def test_reset_request_validation(client, body):
    response = client.post("/api/auth/password-reset", json=body)
    assert response.status_code == 422


# --- email verification -------------------------------------------------------------


def signup(client, name="verifier"):
    response = client.post(
        "/api/auth/signup",
        json={"username": name, "email": f"{name}@example.com", "password": PASSWORD},
    )
    assert response.status_code == 201
    return response.get_json()


def test_signup_mails_a_verification_link_that_verifies_once(client, smtp_server, deliver_outbox):
    tokens = signup(client)
    assert tokens["user"]["email_verified"] is False
    deliver_outbox()
    [message] = smtp_server.wait_for(1)
    assert message["To"] == "verifier@example.com"
    assert message["Subject"] == "Shop: confirm your email address"
    token = link_token(message, "verify-email")
    response = client.post("/api/auth/verify-email", json={"token": token})
    assert response.status_code == 200
    assert response.get_json()["email_verified"] is True
    assert response.get_json()["email"] == "verifier@example.com"
    profile = client.get("/api/auth/profile", headers=auth(tokens["access_token"])).get_json()
    assert profile["email_verified"] is True
    assert_token_invalid(client.post("/api/auth/verify-email", json={"token": token}))
    # Verified already: resend sends nothing.
    resend = client.post("/api/auth/verify-email/resend", headers=auth(tokens["access_token"]))
    assert resend.status_code == 202
    assert deliver_outbox() == 0


def test_an_email_change_unverifies_and_voids_the_old_link(client, smtp_server, deliver_outbox):
    tokens = signup(client, "mover")
    deliver_outbox()
    old_token = link_token(smtp_server.wait_for(1)[0], "verify-email")
    response = client.put(
        "/api/auth/profile",
        json={"email": "moved@example.com", "current_password": PASSWORD},
        headers=auth(tokens["access_token"]),
    )
    assert response.status_code == 200 and response.get_json()["email_verified"] is False
    deliver_outbox()
    message = smtp_server.wait_for(2)[-1]
    assert message["To"] == "moved@example.com"
    assert_token_invalid(client.post("/api/auth/verify-email", json={"token": old_token}))
    new_token = link_token(message, "verify-email")
    verified = client.post("/api/auth/verify-email", json={"token": new_token})
    assert verified.status_code == 200 and verified.get_json()["email"] == "moved@example.com"


@pytest.mark.skipif(not IS_POSTGRES, reason="row locks: SQLite runs one writer at a time")
@pytest.mark.parametrize("link", ["verify-email", "password-reset/confirm"])
def test_a_link_used_while_the_email_changes_opens_nothing(
    link, client, db, smtp_server, deliver_outbox, reset_link
):
    """A link read the user's address without locking the row: an email
    change committed between that read and the link's write had its new
    address verified, or the password reset, by the old address's link
    (the write waited for the change's row lock, then went ahead). Here the
    change holds the row while the link is used, then commits."""
    if link == "verify-email":
        user_id = signup(client, "racer")["user"]["id"]
        deliver_outbox()
        token = link_token(smtp_server.wait_for(1)[0], "verify-email")
        use = {"token": token}
    else:
        user, token = reset_link()
        user_id = user.id
        use = {"token": token, "password": NEW_PASSWORD}
    password_hash = scalar("SELECT password_hash FROM users WHERE id = :u", u=user_id)
    with db.engine.connect() as change:
        change.execute(
            text(
                "UPDATE users SET email = 'raced@example.com', email_verified = false WHERE id = :u"
            ),
            {"u": user_id},
        )
        with ThreadPoolExecutor(1) as pool:
            using = pool.submit(lambda: client.post(f"/api/auth/{link}", json=use))
            deadline = time.monotonic() + 10
            while not scalar(
                "SELECT count(*) FROM pg_stat_activity"
                " WHERE datname = current_database() AND wait_event_type = 'Lock'"
            ):
                assert time.monotonic() < deadline and not using.done()
                time.sleep(0.01)
            change.commit()
            response = using.result(timeout=10)
    assert_token_invalid(response)
    assert scalar("SELECT email_verified FROM users WHERE id = :u", u=user_id) is False
    assert scalar("SELECT password_hash FROM users WHERE id = :u", u=user_id) == password_hash


def test_resend_mails_a_fresh_link_and_needs_a_token(client, smtp_server, deliver_outbox):
    assert client.post("/api/auth/verify-email/resend").status_code == 401
    tokens = signup(client, "resender")
    response = client.post("/api/auth/verify-email/resend", headers=auth(tokens["access_token"]))
    assert response.status_code == 202 and response.get_json()["message"]
    deliver_outbox()
    first, second = smtp_server.wait_for(2)
    assert_token_invalid(
        client.post("/api/auth/verify-email", json={"token": link_token(first, "verify-email")})
    )
    ok = client.post("/api/auth/verify-email", json={"token": link_token(second, "verify-email")})
    assert ok.status_code == 200


@pytest.mark.parametrize("body", [{}, {"token": ""}, {"token": 5}, {"token": "x", "more": 1}])
def test_verify_validation(client, body):
    assert client.post("/api/auth/verify-email", json=body).status_code == 422


def test_tokens_are_stored_only_as_hashes(client, db, smtp_server, deliver_outbox):
    signup(client, "hashed")
    deliver_outbox()
    token = link_token(smtp_server.wait_for(1)[0], "verify-email")
    rows = db.session.query(AccountToken).all()
    db.session.expunge_all()  # keep them readable after the rollback below
    db.session.rollback()
    assert len(rows) == 1 and rows[0].token_hash != token and len(rows[0].token_hash) == 64
    assert token not in str(scalar("SELECT payload FROM outbox WHERE kind = 'task'") or "")


def test_no_table_holds_a_token_that_opens_an_account(client, db, reset_link):
    """The emails' outbox rows kept the whole link: a token read from the
    table reset the password. They keep a seed now, the token is derived
    from it under SECRET_KEY when the worker renders the email."""
    _user, token = reset_link()
    payloads = db.session.execute(db.text("SELECT payload FROM outbox")).scalars().all()
    db.session.rollback()
    assert len(payloads) >= 2 and not any(token in str(payload) for payload in payloads)
    seeds = [str(p) for p in payloads if "link_seed" in str(p)]
    assert len(seeds) == 1 and "token=" not in seeds[0]
    ok = client.post(
        "/api/auth/password-reset/confirm", json={"token": token, "password": NEW_PASSWORD}
    )
    assert ok.status_code == 200, ok.get_json()


@pytest.mark.parametrize("change", ["email", "password"])
def test_a_profile_change_voids_the_reset_links_mailed_before(client, login, reset_link, change):
    """A reset link survived a password change made in the profile, and
    one mailed to the old address still reset the password after an
    email change (then anyone reading that mailbox could take the account)."""
    user, token = reset_link()
    access = login(user)["access_token"]
    body = {"current_password": PASSWORD}
    body.update(
        {"email": "moved@example.com"} if change == "email" else {"password": "another-pass-9"}
    )
    assert client.put("/api/auth/profile", json=body, headers=auth(access)).status_code == 200
    attempt = client.post(
        "/api/auth/password-reset/confirm", json={"token": token, "password": NEW_PASSWORD}
    )
    assert_token_invalid(attempt)


def test_a_reset_link_for_an_address_the_account_left_is_void(app, client, db, reset_link):
    """The check itself, whatever voided or not: the token's recorded address
    must still be the account's."""
    user, token = reset_link()
    db.session.execute(
        db.text("UPDATE users SET email = 'elsewhere@example.com' WHERE id = :i"), {"i": user.id}
    )
    db.session.commit()
    attempt = client.post(
        "/api/auth/password-reset/confirm", json={"token": token, "password": NEW_PASSWORD}
    )
    assert_token_invalid(attempt)


def test_a_profile_change_that_keeps_the_email_keeps_the_reset_link(client, login, reset_link):
    user, token = reset_link()
    access = login(user)["access_token"]
    body = {"current_password": PASSWORD, "email": user.email.upper(), "username": "renamed"}
    assert client.put("/api/auth/profile", json=body, headers=auth(access)).status_code == 200
    ok = client.post(
        "/api/auth/password-reset/confirm", json={"token": token, "password": NEW_PASSWORD}
    )
    assert ok.status_code == 200, ok.get_json()


@pytest.mark.parametrize(
    ("seconds", "largest", "said"),
    [
        (48 * 3600, 3600, "48 hours"),  # the defaults' wording stays
        (3600, 60, "60 minutes"),
        (3600, 3600, "1 hour"),
        (5400, 3600, "90 minutes"),
        (1800, 3600, "30 minutes"),
        (3700, 60, "61 minutes"),  # whole minutes: never more than it is
        (60, 60, "1 minute"),
        (45, 3600, "45 seconds"),
        (1, 60, "1 second"),
    ],
)
def test_a_links_lifetime_is_said_exactly_or_under(seconds, largest, said):
    assert lifetime_text(seconds, largest) == said


def test_the_emails_say_how_long_a_short_lived_link_works(
    app, client, make_user, monkeypatch, smtp_server, deliver_outbox
):
    """Rounded to whole hours (at least one), EMAIL_VERIFICATION_EXPIRES=1800
    had the email promise the link "for 1 hours", dead after 30 minutes; a
    reset link under a minute was "1 minutes" (found by review)."""
    monkeypatch.setitem(app.config, "EMAIL_VERIFICATION_EXPIRES", 1800)
    monkeypatch.setitem(app.config, "PASSWORD_RESET_EXPIRES", 45)
    signup(client)
    user = make_user()
    assert client.post("/api/auth/password-reset", json={"email": user.email}).status_code == 202
    deliver_outbox()
    verify, reset = sorted(smtp_server.wait_for(2), key=lambda m: "reset" in m["Subject"])
    for message, said in ((verify, "for 30 minutes)"), (reset, "for 45 seconds)")):
        for part in ("plain", "html"):
            assert said in message.get_body((part,)).get_content(), part
