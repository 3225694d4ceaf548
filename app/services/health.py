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
    """`ok` if Redis (REDIS_URL) answers a PING within a quarter of a second,
    `unavailable` if not, `disabled` without REDIS_URL. A quarter, not the
    second it was: a Redis that accepts connections and answers nothing kept
    every health check a full second, the timeout of many balancers' checks
    (Kubernetes' default), which then took every instance out (found by
    review); a Redis next to the app answers a PING in well under 1 ms.
    Without Redis the app still serves correctly - rate limits fall back to
    per-process counters and revocations are recorded in the database - so
    it is degraded, not down."""
    url = current_app.config.get("REDIS_URL")
    if not url:
        return "disabled"
    client = current_app.extensions.get("shop_health_redis")
    if client is None:
        import redis

        client = redis.Redis.from_url(url, socket_connect_timeout=0.25, socket_timeout=0.25)
        current_app.extensions["shop_health_redis"] = client
    try:
        client.ping()
    except Exception:  # noqa: BLE001 - any failure means "not usable now"
        return "unavailable"
    return "ok"
