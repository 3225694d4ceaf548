"""Operations: /api/health."""

import marshmallow as ma
from flask import current_app, jsonify
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from app.extensions import db, limiter
from app.utils.api import Blueprint

blp = Blueprint("health", __name__, description="Service health")


class HealthSchema(ma.Schema):
    status = ma.fields.String(metadata={"description": "`ok`, or `degraded` when Redis is down"})
    database = ma.fields.String()
    redis = ma.fields.String(metadata={"description": "`ok`, `unavailable` or `disabled`"})


class UnavailableSchema(HealthSchema):
    code = ma.fields.String(metadata={"example": "unavailable"})
    message = ma.fields.String()


def _redis_status() -> str:
    """Redis (REDIS_URL) answers a PING within a second? Without it the app
    still serves correctly - rate limits fall back to per-process counters and
    revocations live in the database - so it degrades the service, not stops it."""
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


@blp.route("/health", methods=["GET"])
@limiter.exempt  # load balancers poll it
@blp.response(200, HealthSchema)
@blp.alt_response(503, schema=UnavailableSchema, description="The database cannot be reached")
def health():
    """Whether the service, its database and Redis answer (503 without the database)."""
    redis = _redis_status()
    try:
        db.session.execute(text("SELECT 1"))
    except SQLAlchemyError:
        db.session.rollback()
        response = jsonify(
            status="unavailable",
            database="unavailable",
            redis=redis,
            code="unavailable",
            message="Database unavailable",
        )
        response.status_code = 503
        return response
    return {
        "status": "ok" if redis != "unavailable" else "degraded",
        "database": "ok",
        "redis": redis,
    }
