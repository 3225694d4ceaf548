"""Adversarial review (auth2) of b954f9e, 2acf721, f7b609f, fa72b9e, baa7f9e:
every test here fails on the current code (the database(s) each names)."""

from __future__ import annotations

import json as _json
import threading
import time
import urllib.error as _urlerror
import urllib.request as _urlrequest

import pytest
from sqlalchemy import text

from tests.helpers import DATABASE_URL, PASSWORD
from tests.live import gunicorn

REDIS_URL = "redis://127.0.0.1:6379/11"  # this review's Redis DB only


def _call(server, method, path, body=None, token=None, address="203.0.113.7"):
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


def _slow_hash(db, user_id: int, password: str, iterations: int) -> None:
    """The account's stored hash: an earlier, costlier PASSWORD_HASH_METHOD
    (what an account made before the method changed holds)."""
    from werkzeug.security import generate_password_hash

    slow = generate_password_hash(password, method=f"pbkdf2:sha256:{iterations}")
    db.session.execute(
        text("UPDATE users SET password_hash = :h WHERE id = :i"), {"h": slow, "i": user_id}
    )
    db.session.commit()


def _iterations_taking(seconds: float) -> int:
    """PBKDF2-SHA256 iterations that take about `seconds` on this machine now
    (a fixed count took 3.5 s on one run and 2.3 s, under the window the
    test needs it to outlast, on another)."""
    import hashlib

    rounds = 200_000
    started = time.perf_counter()
    hashlib.pbkdf2_hmac("sha256", b"password", b"salt", rounds)
    return int(rounds * seconds / (time.perf_counter() - started))


WINDOW = 2  # seconds: RATELIMIT_LOGIN_ACCOUNT of the server below
BUDGET = 3


@pytest.fixture(params=["memory://", REDIS_URL])
def short_window_server(request, app):
    """One gunicorn worker; the per-account guess budget is BUDGET per WINDOW
    seconds (a short window only so the test is quick: the default's 15
    minutes roll over the same way)."""
    env = {
        "RATELIMIT_ENABLED": "true",
        "RATELIMIT_STORAGE_URI": request.param,
        "RATELIMIT_ALLOW_MEMORY_STORAGE": "1",
        "RATELIMIT_KEY_PREFIX": "auth2review",
        "TRUST_PROXY": "1",
        "RATELIMIT_LOGIN": "1000 per minute",
        "RATELIMIT_LOGIN_ATTEMPTS": "1000 per minute",
        "RATELIMIT_LOGIN_ACCOUNT": f"{BUDGET} per {WINDOW} seconds",
        "RATELIMIT_DEFAULT": "100000 per minute",
    }
    if request.param.startswith("redis"):
        import redis

        redis.Redis.from_url(REDIS_URL).flushdb()
    with gunicorn(DATABASE_URL, workers=1, threads=4, extra_env=env) as live:
        yield live
    if request.param.startswith("redis"):
        redis.Redis.from_url(REDIS_URL).flushdb()


@pytest.mark.server
def test_a_give_back_after_the_window_rolled_over_is_not_extra_budget(
    short_window_server, make_user, db
):
    """README (RATELIMIT_LOGIN_ACCOUNT): at most that many failed logins per
    account per window, "spent when a login arrives and given back by any
    answer but a wrong password". `give_back` (app/web/limits.py) gives back
    with `hit(cost=-1)`, an INCRBY -1 on the fixed window's key: when the
    window the request was counted in has ended meanwhile, the key is gone
    and the give-back makes a new one at -1 with a whole window's expiry,
    so the next window allows BUDGET + 1 wrong guesses (one more for each
    request in flight at the roll-over: a 422, a 429 of another limit, a
    correct login all give back, and a 429's Retry-After tells a client when
    the window ends). Here a correct login (a slow hash of an earlier
    method) straddles the roll-over; then 4 of 5 wrong guesses are checked
    (401), where BUDGET=3 allows 3. Expected: a give-back never takes a
    window below zero (or below what this request spent in it)."""
    owner = make_user()
    body = {"email": owner.email, "password": PASSWORD}
    seconds = WINDOW + 1.2
    for _attempt in range(4):  # the hash's calibration ran on a busier (or idler) CPU
        _slow_hash(db, owner.id, PASSWORD, _iterations_taking(seconds))
        started = time.monotonic()
        status, _, answer = _call(short_window_server, "POST", "/api/auth/login", body)
        assert status == 200, answer
        if time.monotonic() - started > WINDOW + 0.3:
            break
        seconds *= 1.5
    else:
        pytest.fail("the login never outlasted the window")
    ended = time.monotonic()
    statuses = []
    for n in range(BUDGET + 2):
        guess = {"email": owner.email, "password": f"wrong-guess-{n}"}
        statuses.append(
            _call(short_window_server, "POST", "/api/auth/login", guess, address=f"198.18.1.{n}")[0]
        )
    # All within the window the give-back opened as the login ended, timed
    # from the login's end: the calibrated login itself takes longer on a busy
    # machine (8.4 s in all on one CI run, past a bound from its start).
    assert time.monotonic() - ended < WINDOW
    assert statuses.count(401) <= BUDGET, statuses


@pytest.fixture
def plain_server(app):
    """Two worker threads, no rate limits."""
    with gunicorn(DATABASE_URL, workers=1, threads=4) as live:
        yield live


@pytest.mark.server
def test_a_login_rehashing_an_old_hash_does_not_undo_a_password_change(plain_server, make_user, db):
    """f7b609f: a successful login of an account whose hash is of an earlier
    PASSWORD_HASH_METHOD writes `user.set_password(password)` (the password
    it was just given) after the check (app/services/auth.py
    `authenticate`), an unconditional UPDATE of the row it read before the
    hashing (`defer_write_lock`'s own docstring: what such a view read
    "comes from an earlier snapshot, so its writes must decide by their own
    guards"). A password change (PUT /profile, or a reset: "every older
    session ends") committed while that login was hashing is overwritten
    with the OLD password: whoever knew it (the reason to change it) keeps
    the account. Expected (API.md/README: the new password replaces the
    old): after both, the new password signs in and the old one is a 401
    (the rehash writes only if the hash it checked is still the stored one)."""
    owner = make_user()
    status, _, tokens = _call(
        plain_server, "POST", "/api/auth/login", {"email": owner.email, "password": PASSWORD}
    )
    assert status == 200, tokens
    _slow_hash(db, owner.id, PASSWORD, 2_500_000)  # ~1.5 s per check here
    new_password = "a-brand-new-password-2"
    results = {}

    def change():
        body = {"password": new_password, "current_password": PASSWORD}
        results["change"] = _call(
            plain_server, "PUT", "/api/auth/profile", body, tokens["access_token"]
        )[0]

    def old_login():
        body = {"email": owner.email, "password": PASSWORD}
        results["login"] = _call(plain_server, "POST", "/api/auth/login", body)[0]

    changer = threading.Thread(target=change)
    changer.start()
    time.sleep(0.4)  # the change is hashing; the login reads the old hash now
    login_thread = threading.Thread(target=old_login)
    login_thread.start()
    changer.join()
    login_thread.join()
    assert results == {"change": 200, "login": 200}, results  # both checked the old password
    new = _call(
        plain_server, "POST", "/api/auth/login", {"email": owner.email, "password": new_password}
    )
    old = _call(
        plain_server, "POST", "/api/auth/login", {"email": owner.email, "password": PASSWORD}
    )
    assert (new[0], old[0]) == (200, 401), (new[0], old[0])


@pytest.mark.server
def test_a_login_rehashing_an_old_hash_does_not_undo_a_password_reset(
    plain_server, client, make_user, db, smtp_server, deliver_outbox
):
    """As above, with a password reset (API.md: "Set a new password with a
    reset token; every older session ends"), the remedy for a password
    someone else knows: a login with the old password that was hashing when
    the reset committed writes the old password back (app/services/auth.py
    `authenticate`'s rehash, an unguarded UPDATE). Expected: the reset's
    password stands; the old one is a 401."""
    from tests.test_account_emails import link_token

    owner = make_user()
    assert client.post("/api/auth/password-reset", json={"email": owner.email}).status_code == 202
    deliver_outbox()
    token = link_token(smtp_server.wait_for(1)[-1], "reset-password")
    _slow_hash(db, owner.id, PASSWORD, 2_500_000)  # ~1.5 s per check here
    new_password = "a-brand-new-password-3"
    results = {}

    def old_login():
        body = {"email": owner.email, "password": PASSWORD}
        results["login"] = _call(plain_server, "POST", "/api/auth/login", body)[0]

    login_thread = threading.Thread(target=old_login)
    login_thread.start()
    time.sleep(0.5)  # the login has read the old hash and is checking it
    reset = client.post(
        "/api/auth/password-reset/confirm", json={"token": token, "password": new_password}
    )
    assert reset.status_code == 200, reset.get_json()
    login_thread.join()
    assert results == {"login": 200}, results  # it checked the password it was given
    new = _call(
        plain_server, "POST", "/api/auth/login", {"email": owner.email, "password": new_password}
    )
    old = _call(
        plain_server, "POST", "/api/auth/login", {"email": owner.email, "password": PASSWORD}
    )
    assert (new[0], old[0]) == (200, 401), (new[0], old[0])
