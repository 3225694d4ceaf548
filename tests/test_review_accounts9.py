"""Review round 9 (accounts): three leftovers, each shown by a test that
failed before its fix, on SQLite and PostgreSQL -

- a checkout without an Idempotency-Key by an account deleted (in SQL) while
  it ran was a 409 `empty_cart` (its cart went with it), where API.md gives
  the 401 `token_invalid` of a token whose user is gone (a keyed checkout's
  answer since round 8);
- a refresh, a logout and a logout-all by such an account were a 200;
- passwords were not Unicode-normalised: "café" typed with a combining accent
  and typed precomposed were two passwords. They are NFC-normalised at
  signup, login, password change and reset; a hash made from a non-NFC
  password before (the form as typed) still logs in, and is made anew from
  the NFC form in the login's transaction."""

from __future__ import annotations

import unicodedata

import pytest
from sqlalchemy import event
from werkzeug.security import check_password_hash, generate_password_hash

from app.extensions import db
from tests.helpers import IS_POSTGRES, auth, fill_cart, place_order, scalar
from tests.test_review_auth8 import (
    _deleting_after_the_token_check,
    _outside_the_app,
    _reset_token,
    signup,
)

# "café-latte-1" typed with a combining acute accent, and precomposed.
DECOMPOSED = "cafe\u0301-latte-1"
PRECOMPOSED = "caf\u00e9-latte-1"
GONE = {"code": "token_invalid", "message": "The token's user no longer exists"}


def _during_the_request(user, call):
    """`call()`'s answer, with `user` deleted (in SQL, another connection)
    right after the request's token check read the account."""
    listener, done = _deleting_after_the_token_check(user)
    event.listen(db.engine, "after_cursor_execute", listener)
    try:
        response = call()
    finally:
        event.remove(db.engine, "after_cursor_execute", listener)
    assert done, "the account was never deleted"
    return response


def _login(client, username, password):
    return client.post("/api/auth/login", json={"username": username, "password": password})


# --- 1. a checkout without a key, by an account deleted while it runs ------------


def test_unkeyed_checkout_of_an_account_deleted_while_it_runs_is_a_401(
    client, make_user, login, make_product
):
    """The cart's lines went with the account (ON DELETE CASCADE), so the
    DELETE ... RETURNING that takes them found none: 409 `empty_cart`, as if
    the customer could fill the cart and try again."""
    user = make_user()
    token = login(user)["access_token"]
    product = make_product(stock=5)
    fill_cart(client, token, (product, 2))
    r = _during_the_request(user, lambda: place_order(client, token))
    assert r.status_code == 401, r.get_json()
    assert r.get_json() == GONE
    assert scalar("SELECT count(*) FROM orders") == 0
    assert scalar("SELECT stock FROM products WHERE id = :p", p=product.id) == 5


def test_an_empty_cart_is_still_a_409(client, make_user, login):
    user = make_user()
    token = login(user)["access_token"]
    r = place_order(client, token)
    assert r.status_code == 409
    assert r.get_json()["code"] == "empty_cart"


# --- 2. refresh, logout, logout-all by an account deleted while they run ---------


@pytest.mark.skipif(
    not IS_POSTGRES, reason="SQLite: these hold the write lock from their BEGIN; no delete lands"
)
@pytest.mark.parametrize("route", ["refresh", "logout", "logout-all"])
def test_session_routes_of_an_account_deleted_while_they_run_are_a_401(
    client, make_user, login, route
):
    user = make_user()
    tokens = login(user)
    bearer = tokens["refresh_token"] if route == "refresh" else tokens["access_token"]
    body = {"refresh_token": tokens["refresh_token"]} if route == "logout" else None
    r = _during_the_request(
        user, lambda: client.post(f"/api/auth/{route}", json=body, headers=auth(bearer))
    )
    assert r.status_code == 401, r.get_json()
    assert r.get_json() == GONE
    assert scalar("SELECT count(*) FROM users") == 0
    # Nothing was written for the account that is gone.
    assert scalar("SELECT count(*) FROM revoked_tokens") == 0


@pytest.mark.skipif(
    not IS_POSTGRES, reason="SQLite: a refresh holds the write lock from its BEGIN; nothing lands"
)
def test_a_refresh_racing_a_logout_all_mints_no_token_of_the_new_version(client, make_user, login):
    """The refresh reads its user again (to see it deleted): a logout-all
    committed after its token check must not lend the new access token the
    raised token version, which would outlive the logout-all."""
    user = make_user()
    tokens = login(user)
    done = []

    def logout_all_elsewhere(conn, cursor, statement, params, context, executemany):
        if not done and "revoked_tokens" in statement and "FROM users" in statement:
            done.append(1)
            _outside_the_app(
                "UPDATE users SET token_version = token_version + 1 WHERE id = :u", u=user.id
            )

    event.listen(db.engine, "after_cursor_execute", logout_all_elsewhere)
    try:
        r = client.post("/api/auth/refresh", headers=auth(tokens["refresh_token"]))
    finally:
        event.remove(db.engine, "after_cursor_execute", logout_all_elsewhere)
    assert done
    assert r.status_code == 401, r.get_json()
    assert r.get_json()["code"] == "token_revoked"


@pytest.mark.parametrize("route", ["refresh", "logout", "logout-all"])
def test_session_routes_of_a_live_account_still_answer_200(client, make_user, login, route):
    user = make_user()
    tokens = login(user)
    bearer = tokens["refresh_token"] if route == "refresh" else tokens["access_token"]
    r = client.post(f"/api/auth/{route}", headers=auth(bearer))
    assert r.status_code == 200, r.get_json()
    if route == "refresh":
        assert client.get(
            "/api/auth/profile", headers=auth(r.get_json()["access_token"])
        ).status_code == (200)
    else:
        r = client.get("/api/auth/profile", headers=auth(tokens["access_token"]))
        assert r.get_json()["code"] == "token_revoked"


# --- 3. passwords are NFC-normalised ---------------------------------------------


def test_the_two_forms_are_different_strings():
    assert DECOMPOSED != PRECOMPOSED
    assert unicodedata.normalize("NFC", DECOMPOSED) == PRECOMPOSED


@pytest.mark.parametrize("typed,other", [(DECOMPOSED, PRECOMPOSED), (PRECOMPOSED, DECOMPOSED)])
def test_signup_in_one_form_logs_in_with_either(client, typed, other):
    assert signup(client, "cafe_user", "cafe@example.com", typed).status_code == 201
    assert _login(client, "cafe_user", other).status_code == 200
    assert _login(client, "cafe_user", typed).status_code == 200
    stored = scalar("SELECT password_hash FROM users")
    assert check_password_hash(stored, PRECOMPOSED)  # hashed from the NFC form
    assert _login(client, "cafe_user", "cafe-latte-1").status_code == 401  # no accent: another


def test_a_password_change_in_one_form_logs_in_with_either(client, make_user, login):
    user = make_user("changer", password=PRECOMPOSED)
    token = login(user, password=DECOMPOSED)["access_token"]  # current password: either form
    r = client.put(
        "/api/auth/profile",
        json={"password": "ne\u0301ve\u0301-pass", "current_password": DECOMPOSED},
        headers=auth(token),
    )
    assert r.status_code == 200, r.get_json()
    assert _login(client, "changer", "n\u00e9v\u00e9-pass").status_code == 200
    assert _login(client, "changer", "ne\u0301ve\u0301-pass").status_code == 200


def test_a_reset_in_one_form_logs_in_with_either(client, make_user, smtp_server, deliver_outbox):
    user = make_user("resetter9")
    token = _reset_token(client, user.email, smtp_server, deliver_outbox)
    r = client.post(
        "/api/auth/password-reset/confirm", json={"token": token, "password": DECOMPOSED}
    )
    assert r.status_code == 200, r.get_json()
    assert _login(client, "resetter9", PRECOMPOSED).status_code == 200
    assert _login(client, "resetter9", DECOMPOSED).status_code == 200


def _legacy_hash(user, password: str) -> str:
    """The hash an account got before passwords were normalised: of the
    password as typed (written in SQL, as the old code stored it)."""
    legacy = generate_password_hash(password, method="pbkdf2:sha256:1000")
    _outside_the_app("UPDATE users SET password_hash = :h WHERE id = :u", h=legacy, u=user.id)
    return legacy


def test_an_account_hashed_from_a_non_nfc_password_still_logs_in_and_is_rehashed(client, make_user):
    user = make_user("legacy")
    legacy = _legacy_hash(user, DECOMPOSED)
    r = _login(client, "legacy", DECOMPOSED)  # as typed when it signed up
    assert r.status_code == 200, r.get_json()
    anew = scalar("SELECT password_hash FROM users WHERE id = :u", u=user.id)
    assert anew != legacy
    assert check_password_hash(anew, PRECOMPOSED)  # made anew from the NFC form
    assert _login(client, "legacy", PRECOMPOSED).status_code == 200
    assert _login(client, "legacy", DECOMPOSED).status_code == 200
    assert scalar("SELECT password_hash FROM users WHERE id = :u", u=user.id) == anew


def test_a_non_nfc_legacy_hash_is_not_rehashed_by_a_wrong_password(client, make_user):
    user = make_user("legacy2")
    legacy = _legacy_hash(user, DECOMPOSED)
    assert _login(client, "legacy2", "cafe\u0301-latte-2").status_code == 401
    assert scalar("SELECT password_hash FROM users WHERE id = :u", u=user.id) == legacy


def test_a_non_nfc_legacy_hash_checks_a_profile_changes_current_password(client, make_user, login):
    user = make_user("legacy3")
    token = login(user)["access_token"]
    _legacy_hash(user, DECOMPOSED)
    r = client.put(
        "/api/auth/profile",
        json={"email": "moved9@example.com", "current_password": DECOMPOSED},
        headers=auth(token),
    )
    assert r.status_code == 200, r.get_json()


@pytest.mark.parametrize(
    "password,status",
    [
        ("e\u0301" * 8, 201),  # 16 code points typed, 8 characters once composed
        ("e\u0301" * 7 + "e", 201),  # 15 typed, 8 composed
        ("e\u0301" * 7, 422),  # 14 typed, 7 composed: too short
        ("e\u0301" * 128, 201),  # 256 typed, 128 composed
        ("e\u0301" * 129, 422),  # 129 composed: too long
        ("e\u0301" * 2000, 422),  # far too long, refused without normalising it
    ],
)
def test_the_length_rules_count_the_nfc_form(client, password, status):
    r = signup(client, "len_user", "len@example.com", password)
    assert r.status_code == status, r.get_json()
    if status == 201:
        # Logs in with the form typed, however many code points that is, and
        # with the composed one.
        assert _login(client, "len_user", password).status_code == 200
        assert _login(client, "len_user", unicodedata.normalize("NFC", password)).status_code == 200
    else:
        assert r.get_json()["errors"]["password"]


@pytest.mark.parametrize(
    "password,status",
    [
        ("x" * 128, 401),  # a wrong password of the longest length: checked
        ("x" * 129, 422),  # no account has one this long
        ("e\u0301" * 129, 422),  # 258 typed, 129 composed: none either
        ("e\u0301" * 5000, 422),
    ],
)
def test_a_login_password_too_long_for_any_account_is_a_422(client, make_user, password, status):
    make_user("longer")
    r = _login(client, "longer", password)
    assert r.status_code == status, r.get_json()


def test_a_legacy_password_of_128_code_points_that_nfc_lengthens_still_logs_in(client, make_user):
    """U+0958 (a composition exclusion) is two code points under NFC: a
    legacy hash of 128 of them, as typed, is a password of 256 NFC ones."""
    typed = "\u0958" * 128
    assert len(unicodedata.normalize("NFC", typed)) == 256
    user = make_user("legacy4")
    _legacy_hash(user, typed)
    r = _login(client, "legacy4", typed)
    assert r.status_code == 200, r.get_json()
