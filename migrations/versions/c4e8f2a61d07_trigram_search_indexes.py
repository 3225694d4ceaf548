"""Trigram indexes for the catalog search on PostgreSQL.

`GET /api/products?q=` is a substring match (ILIKE '%q%') on name and
description; a btree cannot serve it, pg_trgm's GIN indexes can. SQLite has no
equivalent: there the search stays a scan of the live catalog. The indexes
cover every row (deleted products are few). Rows inserted in bulk wait in a
GIN index's pending list until the next VACUUM, and the planner ignores the
index meanwhile: `flask seed` runs VACUUM ANALYZE after loading.

Written by hand; the app's `include_object` keeps autogenerate from proposing
to drop these (the models do not declare database-specific indexes).

Revision ID: c4e8f2a61d07
Revises: b7c1d2e3f4a5
Create Date: 2026-11-25 14:20:00
"""
from alembic import op


revision = 'c4e8f2a61d07'
down_revision = 'b7c1d2e3f4a5'
branch_labels = None
depends_on = None

COLUMNS = ('name', 'description')


def upgrade():
    if op.get_bind().dialect.name != 'postgresql':
        return
    # pg_trgm is a trusted extension (PostgreSQL 13+): the database owner may create it.
    op.execute('CREATE EXTENSION IF NOT EXISTS pg_trgm')
    for column in COLUMNS:
        op.execute(
            f'CREATE INDEX ix_products_trgm_{column} ON products '
            f'USING gin ({column} gin_trgm_ops)'
        )


def downgrade():
    if op.get_bind().dialect.name != 'postgresql':
        return
    for column in COLUMNS:
        op.execute(f'DROP INDEX IF EXISTS ix_products_trgm_{column}')
