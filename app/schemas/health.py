from __future__ import annotations

import marshmallow as ma


class HealthSchema(ma.Schema):
    status = ma.fields.String(metadata={"description": "`ok`, or `degraded` when Redis is down"})
    database = ma.fields.String()
    redis = ma.fields.String(metadata={"description": "`ok`, `unavailable` or `disabled`"})


class UnavailableSchema(HealthSchema):
    code = ma.fields.String(metadata={"example": "unavailable"})
    message = ma.fields.String()
