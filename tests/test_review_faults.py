"""Review (faults): behaviour under faults and load that contradicts API.md.

Redis is the test's own redis-server (`own_redis`, a free port, no
persistence), paused with SIGSTOP (it accepts connections and answers
nothing, as behind a network partition) and resumed with SIGCONT (back with
its data). gunicorn is started by `tests.live.gunicorn`."""

from __future__ import annotations

import os
import signal
import threading
import time

import pytest

from tests.helpers import DATABASE_URL, PASSWORD, SHIPPING, auth, fill_cart, scalar
from tests.live import gunicorn
from tests.test_faults import raw_request


def _login(client, user) -> str:
    response = client.post("/api/auth/login", json={"email": user.email, "password": PASSWORD})
    assert response.status_code == 200, response.get_json()
    return response.get_json()["access_token"]


@pytest.fixture
def paused_redis(own_redis):
    """The test's own redis-server with `pause()` (SIGSTOP) and `resume()` (SIGCONT)."""
    url, process = own_redis

    class Control:
        def __init__(self) -> None:
            self.url = url

        def pause(self) -> None:
            os.kill(process.pid, signal.SIGSTOP)

        def resume(self) -> None:
            os.kill(process.pid, signal.SIGCONT)

    yield Control()
    os.kill(process.pid, signal.SIGCONT)


def test_a_token_revoked_while_redis_was_unreachable_stays_refused_after_it_returns(
    paused_redis, make_app, make_user
):
    """API.md: POST /logout revokes the token "at once, on every server
    instance"; README: nothing kept under an old version ("a token user") is
    taken as current again. Instance A logs the token out while Redis does not
    answer: the commit is made, the accounts version bump is only owed by A.
    Redis comes back with its data, so the accounts version is still the one
    instance B kept the token's user under before the outage: B answers 200
    to the revoked token on reads (and keeps doing so until A happens to send
    Redis another command, which an idle worker may never do)."""
    a_app = make_app(overrides={"REDIS_URL": paused_redis.url})
    b_app = make_app(overrides={"REDIS_URL": paused_redis.url})
    a, b = a_app.test_client(), b_app.test_client()
    token = _login(a, make_user())
    assert b.get("/api/auth/profile", headers=auth(token)).status_code == 200  # B keeps the user

    paused_redis.pause()
    try:
        assert a.post("/api/auth/logout", headers=auth(token)).status_code == 200
        assert b.get("/api/auth/profile", headers=auth(token)).status_code == 401
    finally:
        paused_redis.resume()
    time.sleep(1.2)  # past the stores' retry_after (1 s): B asks Redis again
    response = b.get("/api/auth/profile", headers=auth(token))
    assert response.status_code == 401, (response.status_code, response.get_json())
    assert response.get_json()["code"] == "token_revoked"


def test_a_checkout_does_not_hang_while_the_celery_broker_does_not_answer(
    paused_redis, make_app, make_product, make_user
):
    """app/tasks/celery.py: "A web request never waits for a broker that is
    down: the row is committed, and the sweep enqueues it later" (with
    REDIS_URL, BACKGROUND_MODE auto is celery). With Redis reachable but not
    answering (stopped, or a partition), the checkout's order confirmation is
    enqueued after the commit by kombu, whose Redis connection has no socket
    timeout: the request blocks in a PING until Redis answers again - the
    order is placed but the client (and the gunicorn thread) waits forever."""
    app = make_app(overrides={"REDIS_URL": paused_redis.url, "BACKGROUND_MODE": "celery"})
    client = app.test_client()
    token = _login(client, make_user())
    fill_cart(client, token, (make_product(stock=5), 1))
    answers = []

    def checkout() -> None:
        answers.append(client.post("/api/orders", json=SHIPPING, headers=auth(token)).status_code)

    thread = threading.Thread(target=checkout, daemon=True)
    paused_redis.pause()
    try:
        thread.start()
        thread.join(8)  # the outbox row is committed; at most the 2 s connect timeout
        answered_in_time = not thread.is_alive()
    finally:
        paused_redis.resume()
    thread.join(30)
    assert answers == [201]
    assert scalar("SELECT count(*) FROM orders") == 1
    assert answered_in_time, "POST /api/orders still had no answer after 8 s"


# --- gunicorn ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def server(app):
    with gunicorn(DATABASE_URL, workers=1, threads=2) as live:
        yield live


CHUNKED = (
    b"POST %s HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
    b"Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n%s"
)


@pytest.mark.server
@pytest.mark.parametrize(
    ("path", "chunks"),
    [
        (b"/api/auth/login", b"zz\r\n{}\r\n0\r\n\r\n"),  # a chunk size that is no number
        (b"/api/auth/signup", b"-2\r\n{}\r\n0\r\n\r\n"),  # a negative chunk size
        (b"/api/auth/login", b"2\r\n{}XX0\r\n\r\n"),  # no CRLF after the chunk's data
        (b"/api/payments/webhook", b"zz\r\n"),
    ],
)
def test_a_malformed_chunked_body_is_a_400_not_a_500(server, path, chunks):
    """API.md: 500 is for unexpected errors only ("no traceback, ever"); a
    request the client got wrong is a 4xx. A chunked body whose framing is
    broken makes gunicorn's body reader raise InvalidChunkSize /
    ChunkMissingTerminator inside `request.get_data()` (app/web/blueprint.py
    `JSONBodyParser.load_json`, the webhook view): the app answers 500
    `internal_error` and logs it as an unhandled error with a traceback."""
    status, _, body = raw_request(server, CHUNKED % (path, chunks))
    assert status == 400, (status, body)
    assert body["code"] == "invalid_request"
