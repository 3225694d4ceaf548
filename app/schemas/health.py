from __future__ import annotations

import marshmallow as ma

REDIS = ma.fields.String(
    metadata={
        "description": "`ok`, `unavailable` or `disabled`",
        "enum": ["ok", "unavailable", "disabled"],
    }
)


class HealthSchema(ma.Schema):
    # Enums in the document, as every answer's `status` (a generated client
    # types them as unions of literals, not `string`; found by review).
    status = ma.fields.String(
        metadata={
            "description": "`ok`, or `degraded` when Redis is down",
            "enum": ["ok", "degraded"],
        }
    )
    database = ma.fields.String(metadata={"enum": ["ok"]})
    redis = REDIS


class UnavailableSchema(ma.Schema):
    status = ma.fields.String(metadata={"enum": ["unavailable"]})
    database = ma.fields.String(
        metadata={
            "description": "`unavailable`, or `outdated`: its schema is behind the code "
            "(`flask db upgrade` has not run)",
            "enum": ["unavailable", "outdated"],
        }
    )
    redis = REDIS
    code = ma.fields.String(metadata={"example": "unavailable", "enum": ["unavailable"]})
    message = ma.fields.String()
