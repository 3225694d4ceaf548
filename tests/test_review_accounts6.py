"""Adversarial review (accounts6): accounts, JWT auth and the cart. Each
test failed on the code before its fix (PostgreSQL for the deadlocks)."""

from __future__ import annotations

import re
import time

import pytest
from sqlalchemy import text

from app.extensions import db
from tests.helpers import IS_POSTGRES, PASSWORD, auth, scalar
from tests.test_integrity_races import in_thread, wait_for_lock_waiters

postgres_only = pytest.mark.skipif(
    not IS_POSTGRES, reason="row locks: SQLite serialises every writer and cannot interleave"
)


def _signup(client, name: str) -> dict:
    response = client.post(
        "/api/auth/signup",
        json={"username": name, "email": f"{name}@example.com", "password": PASSWORD},
    )
    assert response.status_code == 201, response.get_json()
    return response.get_json()


def _reset_token(client, email: str, smtp_server, deliver_outbox) -> str:
    """A reset link's token, read from the email a real SMTP server received."""
    assert client.post("/api/auth/password-reset", json={"email": email}).status_code == 202
    before = len(smtp_server.messages)
    deliver_outbox()
    body = smtp_server.wait_for(before + 1)[-1].get_body(("plain",)).get_content()
    return re.search(r"/reset-password\?token=([A-Za-z0-9_\-]+)", body).group(1)


def _lock_waiters() -> int:
    return scalar(
        "SELECT count(*) FROM pg_stat_activity "
        "WHERE datname = current_database() AND wait_event_type = 'Lock'"
    )


# --- a reset confirmed while a profile change holds the account ---------------------


@postgres_only
def test_a_reset_confirmed_during_an_email_change_does_not_deadlock(
    app, client, smtp_server, deliver_outbox
):
    """API.md: "500 unexpected error" never, and a 503 only when the
    database cannot answer; README: "A password or email change in the
    profile voids the reset links mailed before it". A reset confirmed while
    the same account's email change was under way deadlocked on PostgreSQL:
    the change (`auth.update_profile`) locks the user row, then voids the
    user's reset links (their rows); the reset (`account_tokens.reset_password`)
    took its link's row first (`_consume`), then wrote the user row. After
    PostgreSQL's deadlock_timeout one of the two was aborted: a 503 "The
    database is busy" for a request that had nothing to wait for. Forced
    here: the test holds the account's verification link row, so the email
    change stops between its two locks (user row held, its
    `send_verification` waiting), and the reset then takes its link and
    queues on the user row. (Fixed meanwhile by 70a629d, which has
    `_consume` lock the user row first; this test forces the deadlock's
    interleaving, which answered 503 before that change.)"""
    tokens = _signup(client, "dora")  # signup mails a verification link: a row to hold
    reset = _reset_token(client, "dora@example.com", smtp_server, deliver_outbox)
    user_id = tokens["user"]["id"]

    def change_email():
        return app.test_client().put(
            "/api/auth/profile",
            json={"email": "dora2@example.com", "current_password": PASSWORD},
            headers=auth(tokens["access_token"]),
        )

    def confirm_reset():
        return app.test_client().post(
            "/api/auth/password-reset/confirm", json={"token": reset, "password": "brand-new-7"}
        )

    with db.engine.connect() as conn:
        conn.execute(
            text(
                "SELECT id FROM account_tokens WHERE user_id = :u AND purpose = 'verify_email' "
                "FOR UPDATE"
            ),
            {"u": user_id},
        )
        changed = in_thread(change_email)
        wait_for_lock_waiters(1)  # the change holds the user row, waits on the link
        confirmed = in_thread(confirm_reset)
        wait_for_lock_waiters(2)  # the reset waits for the user row
        conn.rollback()
    changed, confirmed = changed(), confirmed()

    assert changed.status_code == 200, changed.get_json()
    # The change came first and voided the link mailed before it.
    assert confirmed.status_code == 400, confirmed.get_json()
    assert confirmed.get_json()["code"] == "token_invalid"
    assert scalar("SELECT email FROM users WHERE id = :u", u=user_id) == "dora2@example.com"


@postgres_only
def test_an_email_change_and_a_reset_email_being_issued_do_not_deadlock(
    app, client, smtp_server, deliver_outbox
):
    """API.md: a 503 only when the database cannot answer. An email change
    (`auth.update_profile`) locks the user row, writes it (a new email: the
    row's key lock), then voids the user's reset links. The worker mailing a
    reset link (`account_tokens.send_password_reset`) voided the older link
    (its row) first, then inserted the new one, whose foreign key waits for
    the user row: each waited for the other, and PostgreSQL aborted one;
    here the change, a 503 after a second, its new address not saved. The
    worker now locks the user row first, as every other writer of a user's
    links does. Forced: the test holds the account's verification link, so
    the change stops between its two locks (as it does waiting for a
    password hashing slot under load); the worker waits past PostgreSQL's
    deadlock check, then the change goes on."""
    from app.tasks.runner import drain

    tokens = _signup(client, "erin")
    _reset_token(client, "erin@example.com", smtp_server, deliver_outbox)  # an unused link
    assert (
        client.post("/api/auth/password-reset", json={"email": "erin@example.com"}).status_code
        == 202
    )
    user_id = tokens["user"]["id"]

    def change_email():
        return app.test_client().put(
            "/api/auth/profile",
            json={"email": "erin2@example.com", "current_password": PASSWORD},
            headers=auth(tokens["access_token"]),
        )

    def run_worker():
        with app.app_context():
            try:
                return drain()
            finally:
                db.session.remove()

    sent = len(smtp_server.messages)
    with db.engine.connect() as conn:
        conn.execute(
            text(
                "SELECT id FROM account_tokens WHERE user_id = :u AND purpose = 'verify_email' "
                "FOR UPDATE"
            ),
            {"u": user_id},
        )
        changed = in_thread(change_email)
        wait_for_lock_waiters(1)  # the change holds the user row, waits on the link
        worked = in_thread(run_worker)
        deadline = time.monotonic() + 1.5
        while time.monotonic() < deadline and _lock_waiters() < 2:
            time.sleep(0.02)  # the worker queues on the user row
        time.sleep(max(0.0, deadline - time.monotonic()))  # past its deadlock check
        conn.rollback()
    changed, _ = changed(), worked()

    assert changed.status_code == 200, changed.get_json()
    assert scalar("SELECT email FROM users WHERE id = :u", u=user_id) == "erin2@example.com"
    deliver_outbox()
    assert len(smtp_server.wait_for(sent + 1)) > sent  # the reset email went out too


@postgres_only
def test_an_email_change_and_a_resend_under_hashing_load_do_not_deadlock(app, client):
    """The same deadlock with POST /verify-email/resend: it voided the
    account's verification link (its row), then inserted the new one, whose
    foreign key waits for the user row; an email change holding that row
    while it waited for a password hashing slot (every slot taken: a burst
    of logins) then voided the links and waited for the resend's. PostgreSQL
    aborted the change: a 503, the new address not saved. The resend now
    locks the user row first (and so reads `email_verified` as it is)."""
    tokens = _signup(client, "fern")  # signup mails a verification link: an unused row
    headers = auth(tokens["access_token"])
    slots = app.extensions["shop_hash_slots"]
    taken = 0
    while slots.acquire(blocking=False):  # a burst of logins holds every hashing slot
        taken += 1

    def change_email():
        return app.test_client().put(
            "/api/auth/profile",
            json={"email": "fern2@example.com", "current_password": PASSWORD},
            headers=headers,
        )

    def resend():
        return app.test_client().post("/api/auth/verify-email/resend", headers=headers)

    try:
        changed = in_thread(change_email)
        time.sleep(0.3)  # the change holds the user row, waits for a slot
        resent = in_thread(resend)
        deadline = time.monotonic() + 1.5
        while time.monotonic() < deadline and _lock_waiters() < 1:
            time.sleep(0.02)  # the resend queues on the user row
        time.sleep(max(0.0, deadline - time.monotonic()))  # past its deadlock check
    finally:
        for _ in range(taken):
            slots.release()
    changed, resent = changed(), resent()

    assert changed.status_code == 200, changed.get_json()
    assert resent.status_code == 202, resent.get_json()
    assert scalar("SELECT email FROM users WHERE id = :u", u=tokens["user"]["id"]) == (
        "fern2@example.com"
    )


# --- an account changed with SQL outside the app -------------------------------------

TTL = 0.3  # seconds: the accounts cache's ACCOUNT_CACHE_TTL in these tests


@pytest.fixture
def ttl_client(make_app):
    """A client of an app whose accounts cache keeps a token's user TTL seconds."""
    return make_app(overrides={"ACCOUNT_CACHE_TTL": TTL}).test_client()


def _outside_the_app(sql: str, **params) -> None:
    """A write as an operator's psql session makes it: no session of the app's,
    so no commit hook of the app's sees it."""
    with db.engine.begin() as conn:
        conn.execute(text(sql), params)


def test_an_admin_demoted_with_sql_loses_admin_reads(ttl_client, make_user):
    """API.md: 403 "the route needs an admin"; docs say admins are made with
    `flask create-admin` and no API or command demotes or deletes one, so
    an operator does it in SQL. The accounts cache (`account_cache`) kept a
    read request's token user until the next commit *of the app* that wrote
    `users` or `revoked_tokens`: a demotion made in psql was never noticed,
    and the demoted admin kept reading every customer's orders, the stock
    ledger and the low-stock list, for as long as no account anywhere
    changed (on a quiet shop, indefinitely). Now a kept user is read again
    after ACCOUNT_CACHE_TTL seconds."""
    admin = make_user(admin=True)
    login = ttl_client.post("/api/auth/login", json={"email": admin.email, "password": PASSWORD})
    headers = auth(login.get_json()["access_token"])
    for path in ("/api/inventory/low-stock", "/api/orders?all=true"):
        assert ttl_client.get(path, headers=headers).status_code == 200
    _outside_the_app("UPDATE users SET is_admin = false WHERE id = :u", u=admin.id)
    time.sleep(TTL + 0.1)
    for path in ("/api/inventory/low-stock", "/api/orders?all=true"):
        response = ttl_client.get(path, headers=headers)
        assert response.status_code == 403, (path, response.get_json())
    assert ttl_client.get("/api/auth/profile", headers=headers).get_json()["is_admin"] is False


def test_an_account_deleted_with_sql_is_a_401_not_a_500(ttl_client, make_user):
    """API.md: 401 for a token whose user is gone; never a 500. An account
    deleted in psql (README: "an account removed by an operator takes its
    reviews with it") kept answering read requests from the accounts cache:
    its profile was still served, and GET /cart, finding no cart (deleted
    with the account), tried to make one for the missing user: a foreign key
    error, a 500 on every cart read."""
    user = make_user()
    login = ttl_client.post("/api/auth/login", json={"email": user.email, "password": PASSWORD})
    headers = auth(login.get_json()["access_token"])
    assert ttl_client.get("/api/cart", headers=headers).status_code == 200
    assert ttl_client.get("/api/auth/profile", headers=headers).status_code == 200
    _outside_the_app("DELETE FROM users WHERE id = :u", u=user.id)
    time.sleep(TTL + 0.1)
    for path in ("/api/cart", "/api/auth/profile"):
        response = ttl_client.get(path, headers=headers)
        assert response.status_code == 401, (path, response.get_json())
        assert response.get_json()["code"] == "token_invalid"


def test_a_cart_read_of_an_account_deleted_meanwhile_is_a_401_not_a_500(make_app, make_user):
    """Within ACCOUNT_CACHE_TTL of an account deleted in SQL (or deleted
    while its request runs), GET /cart found no cart and made one for the
    missing user: a foreign key error, a 500. The cart is made only for a
    user that exists; none, and the answer is the 401 of a token whose user
    is gone."""
    client = make_app(overrides={"ACCOUNT_CACHE_TTL": 3600}).test_client()
    user = make_user()
    login = client.post("/api/auth/login", json={"email": user.email, "password": PASSWORD})
    headers = auth(login.get_json()["access_token"])
    assert client.get("/api/auth/profile", headers=headers).status_code == 200  # kept
    _outside_the_app("DELETE FROM users WHERE id = :u", u=user.id)
    response = client.get("/api/cart", headers=headers)
    assert response.status_code == 401, response.get_json()
    assert response.get_json()["code"] == "token_invalid"
    assert scalar("SELECT count(*) FROM carts") == 0
