from __future__ import annotations

import marshmallow as ma
from marshmallow import ValidationError, fields, validate, validates_schema

from app.schemas.common import ChangeSchema

USERNAME_RULE = validate.Regexp(
    r"^[A-Za-z0-9_.\-]{3,80}$",
    error="3-80 characters: letters, digits, '_', '.' or '-'.",
)
PASSWORD_RULE = validate.Length(8, 128)


class UserSchema(ma.Schema):
    id = fields.Integer(dump_only=True)
    username = fields.String(dump_only=True)
    email = fields.String(dump_only=True)
    is_admin = fields.Boolean(dump_only=True)
    email_verified = fields.Boolean(dump_only=True)
    created_at = fields.DateTime(dump_only=True)


class SignupSchema(ma.Schema):
    username = fields.String(required=True, validate=USERNAME_RULE)
    email = fields.Email(required=True, validate=validate.Length(max=254))
    password = fields.String(required=True, load_only=True, validate=PASSWORD_RULE)


class LoginSchema(ma.Schema):
    email = fields.String(validate=validate.Length(max=254))
    username = fields.String(validate=validate.Length(max=80))
    password = fields.String(required=True, load_only=True, validate=validate.Length(max=128))

    @validates_schema
    def one_identifier(self, data, **kwargs):
        if ("email" in data) == ("username" in data):
            raise ValidationError("Give exactly one of 'email' or 'username'.", "_schema")


class ProfileUpdateSchema(ChangeSchema):
    username = fields.String(validate=USERNAME_RULE)
    email = fields.Email(validate=validate.Length(max=254))
    password = fields.String(load_only=True, validate=PASSWORD_RULE)
    current_password = fields.String(load_only=True, validate=validate.Length(max=128))

    @validates_schema
    def needs_current_password(self, data, **kwargs):
        if ("email" in data or "password" in data) and "current_password" not in data:
            raise ValidationError("Required to change email or password.", "current_password")


class TokensSchema(ma.Schema):
    access_token = fields.String()
    refresh_token = fields.String()
    user = fields.Nested(UserSchema)


class AccessTokenSchema(ma.Schema):
    access_token = fields.String()


class LogoutSchema(ma.Schema):
    refresh_token = fields.String(
        validate=validate.Length(max=4096),
        metadata={"description": "Also revoke this refresh token."},
    )


# Password reset and email verification (issue 16)
TOKEN_RULE = validate.Length(1, 200)


class PasswordResetRequestSchema(ma.Schema):
    email = fields.Email(required=True, validate=validate.Length(max=254))


class PasswordResetConfirmSchema(ma.Schema):
    token = fields.String(required=True, load_only=True, validate=TOKEN_RULE)
    password = fields.String(required=True, load_only=True, validate=PASSWORD_RULE)


class VerifyEmailSchema(ma.Schema):
    token = fields.String(required=True, load_only=True, validate=TOKEN_RULE)
