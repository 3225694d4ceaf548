from __future__ import annotations

import marshmallow as ma
from marshmallow import ValidationError, fields, validate, validates_schema

from app.schemas.common import (
    ChangeSchema,
    NoControl,
    PageQuerySchema,
    StrictInt,
    page_schema,
)

SORTS = ("-created_at", "created_at", "-rating", "rating")


class AuthorSchema(ma.Schema):
    """A review's author as the public sees it: no email."""

    id = fields.Integer()
    username = fields.String()


class ReviewSchema(ma.Schema):
    id = fields.Integer(dump_only=True)
    product_id = fields.Integer(dump_only=True)
    user = fields.Nested(AuthorSchema, dump_only=True)
    rating = StrictInt(
        required=True,
        validate=validate.Range(1, 5),
        metadata={"description": "Stars, an integer from 1 to 5."},
    )
    # Public text, held to the catalog's rule: no control characters (a
    # body keeps its line breaks and tabs), as a product's name and description.
    title = fields.String(validate=[validate.Length(max=120), NoControl()])
    body = fields.String(validate=[validate.Length(max=5000), NoControl(allowed="\t\n\r")])
    created_at = fields.DateTime(dump_only=True)
    updated_at = fields.DateTime(dump_only=True)


class ReviewUpdateSchema(ChangeSchema, ReviewSchema):
    """Any of rating, title, body (loaded with partial=True); not none of them.
    A ChangeSchema, so the OpenAPI document says so too (`minProperties: 1`,
    an example with one field): it documented `{}`, which this rejects."""

    @validates_schema
    def not_empty(self, data, **kwargs):
        if not data:
            raise ValidationError("Give 'rating', 'title' and/or 'body'.", "_schema")


ReviewPageSchema = page_schema(ReviewSchema, "ReviewPageSchema")


class ReviewQuerySchema(PageQuerySchema):
    sort = fields.String(load_default="-created_at", validate=validate.OneOf(SORTS))
