"""Operations: /api/health."""

import marshmallow as ma
from flask import jsonify
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from app.extensions import db, limiter
from app.utils.api import Blueprint

blp = Blueprint("health", __name__, description="Service health")


class HealthSchema(ma.Schema):
    status = ma.fields.String()
    database = ma.fields.String()


class UnavailableSchema(HealthSchema):
    code = ma.fields.String(metadata={"example": "unavailable"})
    message = ma.fields.String()


@blp.route("/health", methods=["GET"])
@limiter.exempt  # load balancers poll it
@blp.response(200, HealthSchema)
@blp.alt_response(503, schema=UnavailableSchema, description="The database cannot be reached")
def health():
    """Whether the service and its database answer."""
    try:
        db.session.execute(text("SELECT 1"))
    except SQLAlchemyError:
        db.session.rollback()
        response = jsonify(
            status="unavailable",
            database="unavailable",
            code="unavailable",
            message="Database unavailable",
        )
        response.status_code = 503
        return response
    return {"status": "ok", "database": "ok"}
