"""Revoked JWTs: recorded in the database, which every process and host shares
and which keeps them across restarts of anything else (Redis included)."""

from __future__ import annotations

from datetime import UTC, datetime
from functools import cache

from flask import Flask, current_app
from flask_jwt_extended import decode_token
from sqlalchemy import Select, bindparam, delete, exists, select, update
from sqlalchemy.orm.attributes import set_committed_value

from app.db import upsert
from app.errors import UserGone
from app.extensions import db
from app.models import RevokedToken, User


class DatabaseRevocations:
    """Revoked token ids in a table every process and host shares."""

    def revoke(self, jti: str, expires_at: datetime) -> None:
        db.session.execute(delete(RevokedToken).where(RevokedToken.expires_at < datetime.now(UTC)))
        # Concurrent logouts with one token both insert: the second is a no-op.
        db.session.execute(
            upsert(RevokedToken)
            .values(jti=jti, expires_at=expires_at)
            .on_conflict_do_nothing(index_elements=["jti"])
        )

    def is_revoked(self, jti: str) -> bool:
        return bool(db.session.scalar(select(exists().where(RevokedToken.jti == jti))))

    def user_and_revoked(self, user_id: int, jti: str) -> tuple[User | None, bool]:
        """The token's user and whether the token is revoked, in one round trip."""
        row = db.session.execute(_user_and_revoked(), {"user_id": user_id, "jti": jti}).first()
        return (row[0], bool(row[1])) if row else (None, False)


@cache
def _user_and_revoked() -> Select:
    """Built once: it runs on every authenticated request."""
    revoked = exists().where(RevokedToken.jti == bindparam("jti"))
    return select(User, revoked).where(User.id == bindparam("user_id"))


def init_revocations(app: Flask) -> None:
    """The app's store: the database, also when REDIS_URL is set. A revocation
    must outlive a Redis restart without persistence and keep working while
    Redis is down; and the query that loads a token's user answers "revoked?"
    in the same round trip, so a Redis copy could not save a read."""
    app.extensions["shop_revocations"] = DatabaseRevocations()


def revocations() -> DatabaseRevocations:
    return current_app.extensions["shop_revocations"]


# The last instant a datetime holds: an `exp` past it has no date to keep.
LATEST_EXP = 253402300800  # 10000-01-01T00:00:00Z
JTI_LENGTH = RevokedToken.jti.type.length


def revocable(payload: dict) -> bool:
    """Whether the claims name a token as the app issues them, so that it can
    be revoked: a `jti` the table holds and an `exp` a date holds. (A token
    signed with the key but without them was accepted, and its logout a 500:
    found by review.)"""
    jti, exp = payload.get("jti"), payload.get("exp")
    return (
        isinstance(jti, str)
        and 0 < len(jti) <= JTI_LENGTH
        and isinstance(exp, (int, float))
        and not isinstance(exp, bool)
        and 0 < exp < LATEST_EXP
    )


def revoke_payload(payload: dict) -> None:
    revocations().revoke(payload["jti"], datetime.fromtimestamp(payload["exp"], UTC))


def revoke_encoded(token: str, token_type: str, subject: str) -> bool:
    """Revoke an encoded token if it is valid, of that type and `subject`'s."""
    try:
        payload = decode_token(token, allow_expired=False)
    except Exception:  # noqa: BLE001 - anything undecodable is simply not revoked
        return False
    if payload.get("type") != token_type or payload.get("sub") != subject:
        return False
    if not revocable(payload):  # never valid here
        return False
    revoke_payload(payload)
    return True


# Every token of a user at once (password change or reset, logout-all): each
# token carries the user's token version (claim `ver`); raising the version on
# the user row, which the JWT check loads anyway, refuses every older token on
# every instance, whichever store keeps single revocations. A counter, not a
# time: hosts whose clocks disagree still agree on it.
VERSION_CLAIM = "ver"


def revoke_user_tokens(user: User) -> None:
    """Every access and refresh token of the user issued until now is refused
    (the caller's own included); tokens issued afterwards work. An atomic
    increment: two concurrent calls both count. Never commits. A 401
    `UserGone` if the account is gone (deleted in SQL since the token
    check: a logout-all answered 200; found by review)."""
    version = db.session.scalar(
        update(User)
        .where(User.id == user.id)
        .values(token_version=User.token_version + 1)
        .returning(User.token_version)
        .execution_options(synchronize_session=False)
    )
    if version is None:
        raise UserGone()
    set_committed_value(user, "token_version", version)


def issued_before_revoke_all(user: User | None, payload: dict) -> bool:
    """Whether the token predates the user's last `revoke_user_tokens`."""
    return user is not None and payload.get(VERSION_CLAIM, 0) != user.token_version
