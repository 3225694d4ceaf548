"""Revoked JWTs: one store shared by every process and host (the database, or
Redis when REDIS_URL is set), chosen once per app."""

from __future__ import annotations

from datetime import UTC, datetime

from flask import Flask, current_app
from flask_jwt_extended import decode_token
from sqlalchemy import delete, exists, select

from app.db import upsert
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


def init_revocations(app: Flask) -> None:
    """Pick the app's store: Redis if REDIS_URL is set, else the database."""
    redis_url = app.config.get("REDIS_URL")
    app.extensions["shop_revocations"] = (
        RedisRevocations(redis_url) if redis_url else DatabaseRevocations()
    )


def revocations() -> DatabaseRevocations | RedisRevocations:
    return current_app.extensions["shop_revocations"]


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
    if not isinstance(payload.get("exp"), (int, float)):  # never valid here
        return False
    revoke_payload(payload)
    return True
