"""Operations: /api/health."""

from flask import jsonify

from app.schemas.health import HealthSchema, UnavailableSchema
from app.services.health import database_ok, redis_status
from app.web.blueprint import Blueprint
from app.web.openapi_contract import UNAVAILABLE_RETRY_AFTER_HEADER

# A probe may ask again soon: the database may be back in seconds.
RETRY_AFTER = "5"

blp = Blueprint("health", __name__, description="Service health")


@blp.route("/health", methods=["GET"])
@blp.unlimited  # load balancers poll it
@blp.response(200, HealthSchema)
@blp.alt_response(
    503,
    schema=UnavailableSchema,
    description="The database cannot be reached",
    headers={"Retry-After": UNAVAILABLE_RETRY_AFTER_HEADER},
)
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
        # Every 503 says when to retry (README); this one did not (found by review).
        response.headers["Retry-After"] = RETRY_AFTER
        return response
    return {
        "status": "ok" if redis != "unavailable" else "degraded",
        "database": "ok",
        "redis": redis,
    }
