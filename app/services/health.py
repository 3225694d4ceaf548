"""Whether the service's dependencies answer."""

from __future__ import annotations

from flask import current_app
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from app.extensions import db


def database_ok() -> bool:
    """True if the database answers a trivial query (asked twice if the first
    try only found a pooled connection the database had dropped: a restart)."""
    for attempt in (1, 2):
        try:
            db.session.execute(text("SELECT 1"))
        except SQLAlchemyError as error:
            db.session.rollback()
            if attempt == 2 or not getattr(error, "connection_invalidated", False):
                return False
        else:
            return True
    return False


def redis_status() -> str:
    """`ok` if Redis (REDIS_URL) answers a PING within a second, `unavailable`
    if not, `disabled` without REDIS_URL. Without Redis the app still serves
    correctly - rate limits fall back to per-process counters and revocations
    are recorded in the database - so it is degraded, not down."""
    url = current_app.config.get("REDIS_URL")
    if not url:
        return "disabled"
    client = current_app.extensions.get("shop_health_redis")
    if client is None:
        import redis

        client = redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=1)
        current_app.extensions["shop_health_redis"] = client
    try:
        client.ping()
    except Exception:  # noqa: BLE001 - any failure means "not usable now"
        return "unavailable"
    return "ok"
