"""An index of the cart lines by product.

A product's delete takes it out of every cart (`DELETE FROM cart_items WHERE
product_id = ...`, `catalog.delete_product`; the migration e25d0e3f6b79
likewise, and a hard delete's ON DELETE CASCADE), and the only index holding
`product_id` is the unique `(cart_id, product_id)`, which leads with the
cart: each delete read every line of every cart in the shop while it held
the product's row lock, or SQLite's write lock (1,000,000 lines: 86 ms on
PostgreSQL for a product in no cart; found by review).

Revision ID: f42d6a8c1e35
Revises: f41b7d9e2c38
"""

from __future__ import annotations

from alembic import op

revision = "f42d6a8c1e35"
down_revision = "f41b7d9e2c38"
branch_labels = None
depends_on = None


def upgrade():
    op.create_index("ix_cart_items_product_id", "cart_items", ["product_id"])


def downgrade():
    op.drop_index("ix_cart_items_product_id", table_name="cart_items")
