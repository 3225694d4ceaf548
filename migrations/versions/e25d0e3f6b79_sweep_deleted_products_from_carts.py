"""Take deleted products out of every cart.

A product's delete takes it out of every cart, but on PostgreSQL a cart add
that read the product before the delete and wrote its line after it could
leave a line behind (fixed in app/services/cart.py: the add now holds the
product FOR SHARE). Such a line blocked every checkout of its cart with a
409. This removes any left; there is nothing to put back.

Revision ID: e25d0e3f6b79
Revises: e24c9d2e5a68
Create Date: 2026-11-26 18:50:00
"""
from alembic import op


revision = 'e25d0e3f6b79'
down_revision = 'e24c9d2e5a68'
branch_labels = None
depends_on = None


def upgrade():
    op.execute(
        "DELETE FROM cart_items WHERE product_id IN "
        "(SELECT id FROM products WHERE deleted_at IS NOT NULL)"
    )


def downgrade():
    pass  # the lines swept were of products that are gone
