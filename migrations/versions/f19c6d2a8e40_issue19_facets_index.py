"""A covering index for the catalog's facets over the live products.

`GET /api/products/facets` groups the live catalog by category with the
price range and stock counts; over (category, price, stock) that is one walk
of a small index instead of the table (SQLite, without statistics, otherwise
picks a narrower partial index and looks every row up).

Revision ID: f19c6d2a8e40
Revises: d16a0e1b0c01
Create Date: 2026-11-26 02:55:00
"""
from alembic import op
import sqlalchemy as sa


revision = 'f19c6d2a8e40'
down_revision = 'd16a0e1b0c01'
branch_labels = None
depends_on = None

LIVE = sa.text('deleted_at IS NULL')


def upgrade():
    op.create_index(
        'ix_products_facets', 'products', ['category', 'price', 'stock'],
        sqlite_where=LIVE, postgresql_where=LIVE,
    )


def downgrade():
    op.drop_index('ix_products_facets', table_name='products')
