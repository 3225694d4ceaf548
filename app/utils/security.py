"""JWT wiring: identity, user lookup, revocation, JSON 401s, admin_required."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from functools import wraps

from flask import Flask, current_app, g
from flask_jwt_extended import current_user, decode_token, get_jwt, verify_jwt_in_request
from flask_jwt_extended.exceptions import JWTDecodeError
from sqlalchemy import delete, exists, select

from app.errors import Forbidden, error_response
from app.extensions import db, jwt
from app.models import RevokedToken, User
from app.utils.db import upsert


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
        row = db.session.execute(
            select(User, exists().where(RevokedToken.jti == jti)).where(User.id == user_id)
        ).first()
        return (row[0], bool(row[1])) if row else (None, False)


class RedisRevocations:
    """Revoked token ids in Redis, each expiring with its token."""

    def __init__(self, url: str):
        import redis

        self.redis = redis.Redis.from_url(url)

    def revoke(self, jti: str, expires_at: datetime) -> None:
        ttl = max(int((expires_at - datetime.now(UTC)).total_seconds()) + 1, 1)
        self.redis.set(f"revoked-jwt:{jti}", "1", ex=ttl)

    def is_revoked(self, jti: str) -> bool:
        return bool(self.redis.exists(f"revoked-jwt:{jti}"))

    def user_and_revoked(self, user_id: int, jti: str) -> tuple[User | None, bool]:
        return db.session.get(User, user_id), self.is_revoked(jti)


def revocations():
    return current_app.extensions["shop_revocations"]


def revoke_payload(payload: dict) -> None:
    revocations().revoke(payload["jti"], datetime.fromtimestamp(payload["exp"], UTC))


def revoke_encoded(token: str, token_type: str) -> bool:
    """Revoke an encoded token if it is valid, of that type and the caller's."""
    try:
        payload = decode_token(token, allow_expired=False)
    except Exception:  # noqa: BLE001 - anything undecodable is simply not revoked
        return False
    if payload.get("type") != token_type or payload.get("sub") != get_jwt().get("sub"):
        return False
    if not isinstance(payload.get("exp"), (int, float)):
        return False
    revoke_payload(payload)
    return True


CANONICAL_ID = re.compile(r"[1-9][0-9]{0,9}", re.ASCII)
MAX_USER_ID = 2_147_483_647  # INTEGER on PostgreSQL


def _user_id(payload: dict) -> int | None:
    """The user id a token names, written as we write it ('2', never ' 2' or
    '02') and within the column's range; else None."""
    sub = payload.get("sub")
    if not isinstance(sub, str) or not CANONICAL_ID.fullmatch(sub):
        return None
    user_id = int(sub)
    return user_id if user_id <= MAX_USER_ID else None


def _check_claims(payload: dict) -> None:
    """Every token we accept expires and names a user canonically: a token
    without `exp` would never stop working."""
    if not isinstance(payload.get("exp"), (int, float)) or _user_id(payload) is None:
        raise JWTDecodeError("token without exp or a canonical sub")


def _unauthorized(code: str, message: str):
    return error_response(401, message, code=code, headers={"WWW-Authenticate": "Bearer"})


def _missing_or_malformed(reason: str):
    """Flask-JWT-Extended's reason names the library's view of the request; the
    client gets the project's words (and `token_missing` only if none was sent)."""
    if reason.startswith("Missing") and reason.endswith("Header"):  # no header at all
        return _unauthorized("token_missing", "Authentication required: send 'Bearer <token>'")
    return _unauthorized("token_invalid", "Malformed Authorization header: use 'Bearer <token>'")


def _invalid(reason: str):
    if "refresh" in reason.lower():  # a token of the wrong type for the route
        wanted = "an access" if "non-refresh" in reason.lower() else "a refresh"
        return _unauthorized("token_invalid", f"This route needs {wanted} token")
    return _unauthorized("token_invalid", "Invalid token")


def init_jwt(app: Flask) -> None:
    jwt.init_app(app)
    redis_url = app.config.get("REDIS_URL")
    app.extensions["shop_revocations"] = (
        RedisRevocations(redis_url) if redis_url else DatabaseRevocations()
    )

    @jwt.user_identity_loader
    def _identity(user: User) -> str:
        return str(user.id)

    # Flask-JWT-Extended asks "revoked?" and then "which user?". Each store
    # answers both at once - with revocations in the database, in one query (the
    # profile of the authenticated reads showed the second round trip); the user
    # found is kept for the lookup that follows in the same request.
    @jwt.token_in_blocklist_loader
    def _is_revoked(_header: dict, payload: dict) -> bool:
        _check_claims(payload)  # the first callback Flask-JWT-Extended makes
        user_id = _user_id(payload)
        g.jwt_user = None
        user, revoked = revocations().user_and_revoked(user_id, payload["jti"])
        g.jwt_user = (user_id, user)
        return revoked

    @jwt.user_lookup_loader
    def _lookup(_header: dict, payload: dict) -> User | None:
        user_id = _user_id(payload)
        if user_id is None:
            return None
        found = g.pop("jwt_user", None)
        if found is not None and found[0] == user_id:
            return found[1]
        return db.session.get(User, user_id)

    jwt.user_lookup_error_loader(
        lambda _h, _p: _unauthorized("token_invalid", "The token's user no longer exists")
    )
    jwt.revoked_token_loader(
        lambda _h, _p: _unauthorized("token_revoked", "Token has been revoked")
    )
    jwt.expired_token_loader(lambda _h, _p: _unauthorized("token_expired", "Token has expired"))
    jwt.invalid_token_loader(_invalid)
    jwt.unauthorized_loader(_missing_or_malformed)
    jwt.needs_fresh_token_loader(
        lambda _h, _p: _unauthorized("token_invalid", "A fresh token is required")
    )
    jwt.token_verification_failed_loader(
        lambda _h, _p: _unauthorized("token_invalid", "Invalid token")
    )


def auth_required(fn):
    """Require a valid, unrevoked access token of an existing user."""

    @wraps(fn)
    def wrapper(*args, **kwargs):
        verify_jwt_in_request()
        return fn(*args, **kwargs)

    return wrapper


def admin_required(fn):
    """Require an access token of a user who is an admin now (per the database)."""

    @wraps(fn)
    def wrapper(*args, **kwargs):
        verify_jwt_in_request()
        if not current_user.is_admin:
            raise Forbidden("Admin privileges required")
        return fn(*args, **kwargs)

    return wrapper
