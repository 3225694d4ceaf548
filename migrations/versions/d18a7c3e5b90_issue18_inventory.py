"""Inventory: the stock ledger (stock_movements) and each product's low-stock threshold.

Every product already in the database gets one `created` movement for its
current stock, so that from this revision on the sum of a product's deltas is
its stock.

Revision ID: d18a7c3e5b90
Revises: d17a5e0c9b21
Create Date: 2026-11-26 02:05:00
"""
from alembic import op
import sqlalchemy as sa


revision = 'd18a7c3e5b90'
down_revision = 'd17a5e0c9b21'
branch_labels = None
depends_on = None

LIVE = sa.text('deleted_at IS NULL')


def upgrade():
    op.create_table(
        'stock_movements',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('product_id', sa.Integer(), nullable=False),
        sa.Column('delta', sa.Integer(), nullable=False),
        sa.Column('stock_after', sa.Integer(), nullable=False),
        sa.Column('reason', sa.String(length=20), nullable=False),
        sa.Column('order_id', sa.Integer(), nullable=True),
        sa.Column('actor_id', sa.Integer(), nullable=True),
        sa.Column('note', sa.String(length=500), nullable=True),
        sa.Column('low_stock_alert', sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "reason IN ('created', 'order', 'cancel', 'adjustment')",
            name=op.f('ck_stock_movements_reason_known'),
        ),
        sa.CheckConstraint(
            'stock_after >= 0', name=op.f('ck_stock_movements_stock_after_non_negative')
        ),
        sa.ForeignKeyConstraint(
            ['actor_id'], ['users.id'],
            name=op.f('fk_stock_movements_actor_id_users'), ondelete='SET NULL',
        ),
        sa.ForeignKeyConstraint(
            ['order_id'], ['orders.id'],
            name=op.f('fk_stock_movements_order_id_orders'), ondelete='SET NULL',
        ),
        sa.ForeignKeyConstraint(
            ['product_id'], ['products.id'],
            name=op.f('fk_stock_movements_product_id_products'), ondelete='CASCADE',
        ),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_stock_movements')),
    )
    with op.batch_alter_table('stock_movements', schema=None) as batch_op:
        batch_op.create_index('ix_stock_movements_order_id', ['order_id'], unique=False)
        batch_op.create_index(
            'ix_stock_movements_product_id_id', ['product_id', 'id'], unique=False
        )

    # Plain ALTER TABLE on both databases: SQLite adds a column with its CHECK
    # in place, where a batch "move and copy" would rebuild the table and lose
    # the indexes it cannot reflect (lower(category), the partial ones).
    op.execute(
        'ALTER TABLE products ADD COLUMN low_stock_threshold INTEGER DEFAULT 5 NOT NULL '
        'CONSTRAINT ck_products_low_stock_threshold_non_negative '
        'CHECK (low_stock_threshold >= 0)'
    )
    op.create_index(
        'ix_products_stock_id', 'products', ['stock', 'id'],
        sqlite_where=LIVE, postgresql_where=LIVE,
    )

    # The opening balance: the ledger of every existing product starts at its stock.
    op.execute(
        'INSERT INTO stock_movements (product_id, delta, stock_after, reason, note, created_at) '
        "SELECT id, stock, stock, 'created', 'Opening balance', created_at FROM products"
    )


def downgrade():
    op.drop_index('ix_products_stock_id', table_name='products')
    # SQLite drops a column whose CHECK is its own column constraint in place.
    op.execute('ALTER TABLE products DROP COLUMN low_stock_threshold')

    with op.batch_alter_table('stock_movements', schema=None) as batch_op:
        batch_op.drop_index('ix_stock_movements_product_id_id')
        batch_op.drop_index('ix_stock_movements_order_id')

    op.drop_table('stock_movements')
