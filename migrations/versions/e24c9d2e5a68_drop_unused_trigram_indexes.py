"""PostgreSQL: drop the trigram indexes on name and description.

They served the first search (an ILIKE '%q%' on name and description,
c4e8f2a61d07). Search now matches `search_vector` (its own GIN index) and
retries misspellings through `ix_products_fuzzy` (e21c4a6b8d02); no query
reads these two any more, but every non-HOT update of a product row - each
stock change at checkout - still wrote trigrams into both, the description's
dozens per row. A checkout-like UPDATE of three products with its commit:
0.63 -> 0.57 ms (2,000 transactions, 10,000 products).

Revision ID: e24c9d2e5a68
Revises: e23b8c1d4f57
Create Date: 2026-11-26 10:15:00
"""
from alembic import op


revision = 'e24c9d2e5a68'
down_revision = 'e23b8c1d4f57'
branch_labels = None
depends_on = None

COLUMNS = ('name', 'description')


def upgrade():
    if op.get_bind().dialect.name != 'postgresql':
        return
    for column in COLUMNS:
        op.execute(f'DROP INDEX IF EXISTS ix_products_trgm_{column}')


def downgrade():
    if op.get_bind().dialect.name != 'postgresql':
        return
    for column in COLUMNS:
        op.execute(
            f'CREATE INDEX ix_products_trgm_{column} ON products '
            f'USING gin ({column} gin_trgm_ops)'
        )
