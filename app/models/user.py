from __future__ import annotations

from datetime import datetime

from flask import current_app
from sqlalchemy import Boolean, Index, Integer, String, false, func
from sqlalchemy.orm import Mapped, mapped_column
from werkzeug.security import check_password_hash, generate_password_hash

from app.extensions import db
from app.models.types import UTCDateTime, as_created, utcnow


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
        """`password` hashed by the configured PASSWORD_HASH_METHOD."""
        return generate_password_hash(password, method=current_app.config["PASSWORD_HASH_METHOD"])

    def check_password(self, password: str) -> bool:
        return check_password_hash(self.password_hash, password)

    def __repr__(self) -> str:
        return f"<User {self.id} {self.username}>"
