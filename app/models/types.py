"""Column types shared by the models."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

from sqlalchemy import DateTime, Numeric, TypeDecorator

CENT = Decimal("0.01")


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator):
    """Timezone-aware UTC datetimes on every database (SQLite keeps no zone)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is not None:
            if value.tzinfo is None:
                value = value.replace(tzinfo=UTC)
            value = value.astimezone(UTC)
            if dialect.name == "sqlite":
                value = value.replace(tzinfo=None)
        return value

    def process_result_value(self, value, dialect):
        if value is not None and value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value


# Money is NUMERIC(p, 2) and `Decimal` in Python. On SQLite the value round-trips
# through a REAL: exact for the at most 14 significant digits these columns hold
# (a double keeps 15), and no sum is ever computed in SQL.
def Money(precision: int = 12) -> Numeric:  # noqa: N802 - reads like a type
    return Numeric(precision, 2, asdecimal=True)


def render_migration_type(type_, obj, autogen_context):
    """Alembic hook: migrations name plain SQLAlchemy types, not app classes."""
    if type_ == "type" and isinstance(obj, UTCDateTime):
        return "sa.DateTime(timezone=True)"
    return False


# Indexes made by hand in migrations for one database only (see the migrations
# c4e8f2a61d07 and d17a5e0c9b21): the models do not declare them, autogenerate
# leaves them alone.
DATABASE_SPECIFIC_INDEXES = frozenset(
    {"ix_products_trgm_name", "ix_products_trgm_description", "ix_products_rating_desc_id"}
)


def include_in_autogenerate(obj, name, type_, reflected, compare_to):
    """Alembic hook: skip the database-specific indexes above."""
    return not (type_ == "index" and reflected and name in DATABASE_SPECIFIC_INDEXES)
