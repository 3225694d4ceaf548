"""Sort indexes over the live catalog only (WHERE deleted_at IS NULL).

Written by hand: autogenerate does not compare an index's WHERE clause.

Revision ID: b7c1d2e3f4a5
Revises: a009b583a24a
Create Date: 2026-11-25 00:55:00
"""
from alembic import op
import sqlalchemy as sa


revision = 'b7c1d2e3f4a5'
down_revision = 'a009b583a24a'
branch_labels = None
depends_on = None

INDEXES = {
    'ix_products_created_at_id': ['created_at', 'id'],
    'ix_products_price_id': ['price', 'id'],
    'ix_products_name_id': ['name', 'id'],
}
LIVE = sa.text('deleted_at IS NULL')


def upgrade():
    for name, columns in INDEXES.items():
        op.drop_index(name, table_name='products')
        op.create_index(name, 'products', columns, sqlite_where=LIVE, postgresql_where=LIVE)


def downgrade():
    for name, columns in INDEXES.items():
        op.drop_index(name, table_name='products')
        op.create_index(name, 'products', columns)
