"""Column types shared by the models."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

from sqlalchemy import DateTime, Numeric, TypeDecorator

CENT = Decimal("0.01")
# INTEGER's largest value on PostgreSQL: every id column, stock and the
# bounds a request's integers are held to.
INTEGER_MAX = 2_147_483_647


def utcnow() -> datetime:
    return datetime.now(UTC)


def as_created(context) -> datetime:
    """A new row's `updated_at`: its `created_at` (computed first, in column
    order), so a row nobody changed shows one instant; two calls of
    `utcnow` were microseconds apart (found by review). In a multi-row
    INSERT ... VALUES the rows' parameters are named `created_at_m1`, ...
    (the first row's `created_at_m0` when given, else `created_at`), as this
    column's own (`updated_at_m1`): `get_current_parameters()` raised a
    KeyError on ORM rows there (found by review)."""
    params = context.get_current_parameters(isolate_multiinsert_groups=False)
    suffix = context.current_column.key.removeprefix("updated_at")  # "" or "_m<row>"
    if suffix:
        created = params.get("created_at" + suffix)
    else:
        created = params.get("created_at_m0", params.get("created_at"))
    return created if created is not None else utcnow()


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
        if value is not None:
            if value.tzinfo is None:
                value = value.replace(tzinfo=UTC)
            elif value.utcoffset():  # PostgreSQL answers in the session's TimeZone
                value = value.astimezone(UTC)
        return value


# Money is NUMERIC(p, 2) and `Decimal` in Python. On SQLite the value round-trips
# through a REAL: exact for the at most 14 significant digits these columns hold
# (a double keeps 15), and no sum is ever computed in SQL.
def MoneyColumn(precision: int = 12) -> Numeric:  # noqa: N802 - reads like a type
    return Numeric(precision, 2, asdecimal=True)


def render_migration_type(type_, obj, autogen_context):
    """Alembic hook: migrations name plain SQLAlchemy types, not app classes."""
    if type_ == "type" and isinstance(obj, UTCDateTime):
        return "sa.DateTime(timezone=True)"
    return False


# Objects made by hand in migrations for one database only (see the migrations
# e19a5f0c3b21, e21c4a6b8d02 (search) and
# d17a5e0c9b21 (reviews)): the models do not declare them,
# autogenerate leaves them alone.
DATABASE_SPECIFIC_INDEXES = frozenset(
    {
        "ix_products_search_vector",
        "ix_products_name_words",
        "ix_products_rating_desc_id",
        "ix_products_fuzzy",
    }
)
DATABASE_SPECIFIC_COLUMNS = frozenset({"search_vector"})
# SQLite's FTS5 tables and their shadow tables (products_fts_data, ...);
# PostgreSQL's trigger-kept count of live products (e23b8c1d4f57); the
# vocabularies of the words written in products, both (f26e1a4b7c90).
DATABASE_SPECIFIC_TABLE_PREFIXES = (
    "products_fts",
    "products_names",
    "products_live_count",
    "products_words",
)


def include_in_autogenerate(obj, name, type_, reflected, compare_to):
    """Alembic hook: skip the database-specific objects above."""
    if not reflected:
        return True
    if type_ == "index":
        return name not in DATABASE_SPECIFIC_INDEXES
    if type_ == "column":
        return name not in DATABASE_SPECIFIC_COLUMNS
    if type_ == "table":
        return not name.startswith(DATABASE_SPECIFIC_TABLE_PREFIXES)
    return True
