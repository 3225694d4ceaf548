"""Idempotency-Key for unsafe requests: a retry gets the first answer back.

HTTP glue around a view: it reads the request's header and body and stores or
replays whole responses. The claim is a unit of work of its own (committed
before the view runs, so a concurrent retry sees it); the view's work and the
stored answer share the request's unit of work."""

from __future__ import annotations

import hashlib
import logging
import re
import secrets
import threading
import time
from functools import wraps

from flask import Response, after_this_request, current_app, request
from flask_jwt_extended import current_user
from sqlalchemy import delete, exists, select, update
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from app.db import unit_of_work
from app.errors import (
    ApiError,
    IdempotencyInFlight,
    IdempotencyKeyReused,
    UserGone,
    ValidationFailed,
    handle_api_error,
)
from app.extensions import db
from app.models import IdempotencyKey, User
from app.models.types import utcnow

log = logging.getLogger(__name__)
HEADER = "Idempotency-Key"
KEY_RULE = "Must be 1 to 255 printable ASCII characters, not starting or ending with a space."
# Printable ASCII, not starting or ending with a space: an HTTP server trims a
# header value's edges (gunicorn does), so " a" arrives as "a" and " " as "".
KEY_PATTERN = re.compile(r"[\x21-\x7e](?:[\x20-\x7e]{0,253}[\x21-\x7e])?")


# The checkout never started: the body was no JSON (400) or not valid (422).
BAD_INPUT = frozenset({400, 422})
# Other users' expired records a claim drops at most (`_expire`).
SWEEP_BATCH = 100


def _fingerprint() -> str:
    """Method, path and body, with JSON bodies compared by meaning, not bytes."""
    body = request.get_data(cache=True)
    try:
        parsed = current_app.json.loads(body) if body else None
        canonical = current_app.json.dumps(parsed, sort_keys=True)
    except (ValueError, RecursionError):  # not JSON, or too deep to re-encode
        canonical = body.decode("utf-8", "replace")
    text = f"{request.method} {request.path}\n{canonical}"
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def _expire(user_id: int, key: str) -> None:
    """Drop the user's records past their time to live, a batch of everyone
    else's, and this key's claim if its request died (a killed worker) long
    ago: it would block the key for a day."""
    now = utcnow()
    expired = now - current_app.config["IDEMPOTENCY_TTL"]
    db.session.execute(
        delete(IdempotencyKey).where(
            IdempotencyKey.user_id == user_id, IdempotencyKey.created_at < expired
        )
    )
    # Every user's records are "kept 24 hours" (README): dropped only at their
    # own user's next keyed checkout, a customer who never came back kept the
    # whole first answer (address, lines, total) for good (found by review).
    # A bounded batch per claim; SKIP LOCKED, so a concurrent claim sweeping
    # the same rows never waits for this one.
    stale = (
        select(IdempotencyKey.id)
        .where(IdempotencyKey.created_at < expired)
        .order_by(IdempotencyKey.created_at)
        .limit(SWEEP_BATCH)
        .with_for_update(skip_locked=True)
    )
    db.session.execute(delete(IdempotencyKey).where(IdempotencyKey.id.in_(stale)))
    db.session.execute(
        delete(IdempotencyKey).where(
            IdempotencyKey.user_id == user_id,
            IdempotencyKey.key == key,
            IdempotencyKey.response_status.is_(None),
            IdempotencyKey.created_at < now - current_app.config["IDEMPOTENCY_ABANDONED_AFTER"],
        )
    )


def _claim(user_id: int, key: str, fingerprint: str, token: str) -> Response | None:
    """Record the key as in flight under `token` (committed at once), or answer
    from the record."""
    _settle_pending(user_id, key)
    try:
        with unit_of_work():
            _expire(user_id, key)
            db.session.add(
                IdempotencyKey(user_id=user_id, key=key, fingerprint=fingerprint, claim_token=token)
            )
        return None
    except IntegrityError:
        pass  # the key is taken: answer from its record
    record = db.session.scalar(
        select(IdempotencyKey).where(IdempotencyKey.user_id == user_id, IdempotencyKey.key == key)
    )
    if record is None:
        # The claim's foreign key refused it: the account was deleted (in
        # SQL) since the token check, a 401 as the check's own would be; it
        # answered 409 "just retried" (found by review).
        if not db.session.scalar(select(exists().where(User.id == user_id))):
            raise UserGone()
        # Released by its first request just now: the retry may run.
        raise IdempotencyInFlight("A request with this Idempotency-Key was just retried; try again")
    if record.fingerprint != fingerprint:
        raise IdempotencyKeyReused(
            "This Idempotency-Key was used with a different request",
            errors={HEADER: ["Already used with a different request body."]},
        )
    if record.response_status is None:
        raise IdempotencyInFlight("A request with this Idempotency-Key is still in progress")
    response = current_app.response_class(
        record.response_body, status=record.response_status, mimetype="application/json"
    )
    response.headers["Idempotent-Replayed"] = "true"
    return response


def _ours(user_id: int, key: str, token: str):
    return (
        IdempotencyKey.user_id == user_id,
        IdempotencyKey.key == key,
        IdempotencyKey.claim_token == token,
        IdempotencyKey.response_status.is_(None),
    )


def _release(user_id: int, key: str, token: str) -> None:
    """Drop the view's work and, in a unit of work of its own, this request's
    claim. A release the database refuses (SQLite's write lock held past the
    busy timeout: the very 503 being answered) is left pending: made by the
    next claim of the key in this process, and by a background thread until
    it lands. Lost, the claim answered every retry 409 "in progress" for
    IDEMPOTENCY_ABANDONED_AFTER though nothing ran (found by review)."""
    db.session.rollback()
    try:
        _delete_claim(user_id, key, token)
    except SQLAlchemyError:
        db.session.rollback()
        log.warning("idempotency claim %r of user %s left pending its release", key, user_id)
        with _pending_lock:
            _pending[(user_id, key)] = token
        app = current_app._get_current_object()
        threading.Thread(
            target=_release_later, args=(app, user_id, key, token), daemon=True
        ).start()


def _delete_claim(user_id: int, key: str, token: str) -> None:
    with unit_of_work():
        db.session.execute(delete(IdempotencyKey).where(*_ours(user_id, key, token)))


# Claims whose release failed, by (user id, key): their token.
_pending: dict[tuple[int, str], str] = {}
_pending_lock = threading.Lock()


def _settle_pending(user_id: int, key: str) -> None:
    """Make this key's pending release, if this process owes one."""
    with _pending_lock:
        token = _pending.get((user_id, key))
    if token is None:
        return
    _delete_claim(user_id, key, token)
    with _pending_lock:
        if _pending.get((user_id, key)) == token:
            del _pending[(user_id, key)]


def _release_later(app, user_id: int, key: str, token: str, tries: int = 600) -> None:
    pause = 0.02
    for _ in range(tries):
        time.sleep(pause)
        pause = min(pause * 2, 1.0)
        with app.app_context():
            try:
                _settle_pending(user_id, key)
                return
            except SQLAlchemyError:
                db.session.rollback()
            finally:
                db.session.remove()


def _store(user_id: int, key: str, token: str, response: Response) -> None:
    """Record the answer in the transaction that holds the work, if the claim is
    still this request's; a retry that took it over wins, and this request's
    work is rolled back, so one key never commits twice."""
    stored = db.session.execute(
        update(IdempotencyKey)
        .where(*_ours(user_id, key, token))
        .values(response_status=response.status_code, response_body=response.get_data(as_text=True))
    ).rowcount
    if stored != 1:
        db.session.rollback()
        raise IdempotencyInFlight(
            "A retry with this Idempotency-Key took the request over; its answer counts"
        )


def idempotent(view):
    """Run a private, unsafe view at most once per (user, Idempotency-Key).
    Goes under `Blueprint.private`, which has checked the token already.

    The stored answer joins the view's work in the request's unit of work, which
    commits them together: a crash can never keep one without the other.
    Answers to bad input (a body that is no JSON, 400, or not valid, 422) and
    server errors are not stored, so they can be retried with the same key;
    other answers, errors included, are replayed.
    """

    @wraps(view)
    def wrapper(*args, **kwargs):
        key = request.headers.get(HEADER)
        if key is None:
            return view(*args, **kwargs)
        if not KEY_PATTERN.fullmatch(key):
            raise ValidationFailed(errors={HEADER: [KEY_RULE]})
        user_id = current_user.id
        token = secrets.token_hex(16)
        replay = _claim(user_id, key, _fingerprint(), token)
        if replay is not None:
            return replay
        try:
            response = view(*args, **kwargs)
        except ApiError as error:
            if error.status in BAD_INPUT or error.status >= 500:
                _release(user_id, key, token)
                raise
            db.session.rollback()  # the work goes; the answer is stored
            response = handle_api_error(error)
        except Exception:
            _release(user_id, key, token)
            raise
        if response.status_code in BAD_INPUT or response.status_code >= 500:
            _release(user_id, key, token)
            return response
        try:
            _store(user_id, key, token, response)
        except SQLAlchemyError:
            # The answer's UPDATE failed (a connection lost, a statement
            # timeout): nothing is stored, the work rolls back (a 503), and
            # the claim blocked every retry of the key with a 409 "still in
            # progress" for IDEMPOTENCY_ABANDONED_AFTER (found by review).
            _release(user_id, key, token)
            raise

        @after_this_request
        def release_if_not_committed(final: Response) -> Response:
            # The answer is stored in the request's transaction; a commit
            # that fails (a connection lost at COMMIT: a 503) stored nothing,
            # and the claim blocked the key for IDEMPOTENCY_ABANDONED_AFTER
            # (found by review). `_ours` matches only a claim with no answer,
            # so a commit that did land keeps its record.
            if final.status_code >= 500:
                _release(user_id, key, token)
            return final

        return response

    return wrapper
