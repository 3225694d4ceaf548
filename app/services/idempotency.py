"""Idempotency-Key for unsafe requests: a retry gets the first answer back."""

from __future__ import annotations

import hashlib
from functools import wraps

from flask import Response, current_app, request
from flask_jwt_extended import current_user
from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError

from app.errors import (
    ApiError,
    IdempotencyInFlight,
    IdempotencyKeyReused,
    ValidationFailed,
    handle_api_error,
)
from app.extensions import db
from app.models import IdempotencyKey
from app.models.types import utcnow

HEADER = "Idempotency-Key"


def _fingerprint() -> str:
    """Method, path and body, with JSON bodies compared by meaning, not bytes."""
    body = request.get_data(cache=True)
    try:
        parsed = current_app.json.loads(body) if body else None
        canonical = current_app.json.dumps(parsed, sort_keys=True)
    except ValueError:
        canonical = body.decode("utf-8", "replace")
    text = f"{request.method} {request.path}\n{canonical}"
    return hashlib.sha256(text.encode()).hexdigest()


def _claim(user_id: int, key: str, fingerprint: str) -> Response | None:
    """Record the key as in flight (committed at once), or answer from the record."""
    now = utcnow()
    db.session.execute(
        delete(IdempotencyKey).where(
            IdempotencyKey.user_id == user_id,
            IdempotencyKey.created_at < now - current_app.config["IDEMPOTENCY_TTL"],
        )
    )
    # A claim whose request died (a killed worker) would otherwise block the key
    # for a day; after this long it is taken as abandoned.
    db.session.execute(
        delete(IdempotencyKey).where(
            IdempotencyKey.user_id == user_id,
            IdempotencyKey.key == key,
            IdempotencyKey.response_status.is_(None),
            IdempotencyKey.created_at < now - current_app.config["IDEMPOTENCY_ABANDONED_AFTER"],
        )
    )
    db.session.add(IdempotencyKey(user_id=user_id, key=key, fingerprint=fingerprint))
    try:
        db.session.commit()
        return None
    except IntegrityError:
        db.session.rollback()
    record = db.session.scalar(
        select(IdempotencyKey).where(IdempotencyKey.user_id == user_id, IdempotencyKey.key == key)
    )
    if record is None:  # released by its first request just now: the retry may run
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


def _release(user_id: int, key: str) -> None:
    db.session.rollback()
    db.session.execute(
        delete(IdempotencyKey).where(IdempotencyKey.user_id == user_id, IdempotencyKey.key == key)
    )
    db.session.commit()


def _store(user_id: int, key: str, response: Response) -> None:
    db.session.execute(
        update(IdempotencyKey)
        .where(IdempotencyKey.user_id == user_id, IdempotencyKey.key == key)
        .values(response_status=response.status_code, response_body=response.get_data(as_text=True))
    )


def idempotent(view):
    """Run a private, unsafe view at most once per (user, Idempotency-Key).
    Goes under `Blueprint.private`, which has checked the token already.

    The decorated view leaves its work uncommitted: this commits the work and
    the stored answer together, so a crash can never keep one without the other.
    Answers to bad input (422) and server errors are not stored, so they can be
    retried with the same key; other answers, errors included, are replayed.
    """

    @wraps(view)
    def wrapper(*args, **kwargs):
        key = request.headers.get(HEADER)
        if key is None:
            response = view(*args, **kwargs)
            db.session.commit()
            return response
        if not 1 <= len(key) <= 255:
            raise ValidationFailed(errors={HEADER: ["Must be 1 to 255 characters."]})
        user_id = current_user.id
        replay = _claim(user_id, key, _fingerprint())
        if replay is not None:
            return replay
        try:
            response = view(*args, **kwargs)
        except ApiError as error:
            if error.status == 422:
                _release(user_id, key)
                raise
            response = handle_api_error(error)  # rolls the work back
        except Exception:
            _release(user_id, key)
            raise
        if response.status_code == 422:
            _release(user_id, key)
            return response
        _store(user_id, key, response)
        db.session.commit()
        return response

    return wrapper
