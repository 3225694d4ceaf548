"""Operations: /api/health."""

from flask import jsonify

from app.schemas.health import HealthSchema, UnavailableSchema
from app.services.health import database_ok, redis_status
from app.web.blueprint import Blueprint

blp = Blueprint("health", __name__, description="Service health")


@blp.route("/health", methods=["GET"])
@blp.unlimited  # load balancers poll it
@blp.response(200, HealthSchema)
@blp.alt_response(503, schema=UnavailableSchema, description="The database cannot be reached")
def health():
    """Whether the service, its database and Redis answer (503 without the database)."""
    redis = redis_status()
    if not database_ok():
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
