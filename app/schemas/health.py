from __future__ import annotations

import marshmallow as ma


class HealthSchema(ma.Schema):
    status = ma.fields.String()
    database = ma.fields.String()


class UnavailableSchema(HealthSchema):
    code = ma.fields.String(metadata={"example": "unavailable"})
    message = ma.fields.String()
