from __future__ import annotations

import unicodedata
from datetime import datetime

from flask import current_app
from sqlalchemy import Boolean, Index, Integer, String, false, func
from sqlalchemy.orm import Mapped, mapped_column
from werkzeug.security import check_password_hash, generate_password_hash

from app.extensions import db
from app.models.types import UTCDateTime, as_created, utcnow

# The longest password any rule takes (schemas: `PASSWORD_RULE`), in
# characters of its NFC form.
LONGEST_PASSWORD = 128
# NFC composes at most four code points into one (a canonical decomposition
# is at most four long): longer input is never normalised (its time wasted:
# no form of it is a password any account has).
LONGEST_TYPED_PASSWORD = 4 * LONGEST_PASSWORD


def normalise_password(password: str) -> str:
    """A password as it is hashed and checked: NFC, so "café" typed with a
    combining accent (some keyboards, macOS file names pasted) and typed
    precomposed are one password (found by review). Input too long to be a
    password is left as it is (the length rules refuse it)."""
    if len(password) > LONGEST_TYPED_PASSWORD:
        return password
    return unicodedata.normalize("NFC", password)


def password_forms(password: str) -> tuple[str, ...]:
    """The forms of a typed password a hash is checked against, in order:
    its NFC form, then (when it differs) the password as typed, as a hash
    made before passwords were normalised was (a login makes that hash anew
    from the NFC form, `services.auth.authenticate`)."""
    normal = normalise_password(password)
    return (normal,) if normal == password else (normal, password)


class User(db.Model):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(String(80))
    email: Mapped[str] = mapped_column(String(254), unique=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    is_admin: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    email_verified: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    # Every token carries the version it was issued under; raising it revokes
    # all of the user's tokens at once (password change, logout everywhere).
    token_version: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=as_created, onupdate=utcnow)

    __table_args__ = (Index("uq_users_username_lower", func.lower(username), unique=True),)

    def set_password(self, password: str) -> None:
        self.password_hash = self.hash_of(password)

    @staticmethod
    def hash_of(password: str) -> str:
        """`password`'s NFC form hashed by the configured PASSWORD_HASH_METHOD."""
        return generate_password_hash(
            normalise_password(password), method=current_app.config["PASSWORD_HASH_METHOD"]
        )

    def check_password(self, password: str) -> bool:
        return self.password_form(password) is not None

    def password_form(self, password: str) -> str | None:
        """The form of `password` (`password_forms`) the account's hash was
        made from, or None if it is not the account's password."""
        for form in password_forms(password):
            if check_password_hash(self.password_hash, form):
                return form
        return None

    def __repr__(self) -> str:
        return f"<User {self.id} {self.username}>"
