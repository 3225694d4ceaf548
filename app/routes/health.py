"""Operations: /api/health."""

from flask import jsonify

from app.schemas.health import HealthSchema, UnavailableSchema
from app.services.health import database_ok, redis_status, schema_problem
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
    description="The database cannot be reached, or its schema is behind the code "
    "(`database`: `outdated`, before `flask db upgrade`)",
    headers={"Retry-After": UNAVAILABLE_RETRY_AFTER_HEADER},
)
def health():
    """Whether the service, its migrated database and Redis answer (503 without the database)."""
    redis = redis_status()
    if not database_ok():
        return _unavailable("unavailable", redis, "Database unavailable")
    if schema_problem() is not None:
        # A half-done deploy (the new code up before `flask db upgrade`) kept
        # answering 200 while every read of a new column was a 500, so the
        # balancer sent it traffic (found by review).
        return _unavailable(
            "outdated", redis, "Database schema is behind the code: run flask db upgrade"
        )
    return {
        "status": "ok" if redis != "unavailable" else "degraded",
        "database": "ok",
        "redis": redis,
    }


def _unavailable(database: str, redis: str, message: str):
    """The 503 a balancer reads: the database's state, and when to retry (every
    503 says so, README; this one did not, found by review)."""
    response = jsonify(
        status="unavailable", database=database, redis=redis, code="unavailable", message=message
    )
    response.status_code = 503
    response.headers["Retry-After"] = RETRY_AFTER
    return response
