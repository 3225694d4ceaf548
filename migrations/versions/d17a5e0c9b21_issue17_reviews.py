"""Product reviews, and the rating aggregate on products.

`reviews` with one row per user and product (a unique constraint, so racing
posts cannot both land). `products` gains rating_count, rating_sum and
rating_average, kept in step by the review service, and partial indexes for
`sort=rating` / `-rating` over the live catalog. PostgreSQL's `-rating` (DESC
NULLS LAST) needs an index of its own; SQLite cannot declare NULLS LAST in an
index and walks the ascending one backwards for it.

The rating CHECK on products is added on PostgreSQL only: SQLite cannot add a
table constraint without rebuilding the table, and the rebuild would have to
recreate the partial indexes by hand. The service is the same on both.

Written by hand (partial and database-specific indexes).

Revision ID: d17a5e0c9b21
Revises: f19c6d2a8e40
Create Date: 2026-11-26 02:10:00
"""
from alembic import op
import sqlalchemy as sa


revision = 'd17a5e0c9b21'
down_revision = 'f19c6d2a8e40'
branch_labels = None
depends_on = None

LIVE = sa.text('deleted_at IS NULL')


def upgrade():
    is_postgres = op.get_bind().dialect.name == 'postgresql'
    op.add_column('products', sa.Column('rating_count', sa.Integer(), server_default='0', nullable=False))
    op.add_column('products', sa.Column('rating_sum', sa.Integer(), server_default='0', nullable=False))
    op.add_column('products', sa.Column('rating_average', sa.Numeric(precision=3, scale=2), nullable=True))
    if is_postgres:
        op.create_check_constraint(
            'ck_products_rating_totals',
            'products',
            'rating_count >= 0 AND rating_sum BETWEEN rating_count AND 5 * rating_count',
        )
    op.create_index(
        'ix_products_rating_average_id', 'products', ['rating_average', 'id'],
        sqlite_where=LIVE, postgresql_where=LIVE,
    )
    if is_postgres:
        op.execute(
            'CREATE INDEX ix_products_rating_desc_id ON products '
            '(rating_average DESC NULLS LAST, id DESC) WHERE deleted_at IS NULL'
        )

    op.create_table('reviews',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('product_id', sa.Integer(), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=False),
    sa.Column('rating', sa.SmallInteger(), nullable=False),
    sa.Column('title', sa.String(length=120), server_default='', nullable=False),
    sa.Column('body', sa.Text(), server_default='', nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.CheckConstraint('rating BETWEEN 1 AND 5', name=op.f('ck_reviews_rating_range')),
    sa.ForeignKeyConstraint(['product_id'], ['products.id'], name=op.f('fk_reviews_product_id_products'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_reviews_user_id_users'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_reviews')),
    sa.UniqueConstraint('user_id', 'product_id', name='uq_reviews_user_id_product_id')
    )
    with op.batch_alter_table('reviews', schema=None) as batch_op:
        batch_op.create_index('ix_reviews_product_id_created_at_id', ['product_id', 'created_at', 'id'], unique=False)
        batch_op.create_index('ix_reviews_product_id_rating_id', ['product_id', 'rating', 'id'], unique=False)
        batch_op.create_index(batch_op.f('ix_reviews_user_id'), ['user_id'], unique=False)


def downgrade():
    op.drop_table('reviews')
    if op.get_bind().dialect.name == 'postgresql':
        op.execute('DROP INDEX IF EXISTS ix_products_rating_desc_id')
        op.drop_constraint('ck_products_rating_totals', 'products', type_='check')
    op.drop_index('ix_products_rating_average_id', table_name='products')
    # Plain DROP COLUMN (SQLite 3.35+; the CHECK naming them is PostgreSQL's
    # only, dropped above): a batch rebuild of products lost the lower(category)
    # index and the search triggers on SQLite, and took every cart line with
    # it (found by review).
    op.drop_column('products', 'rating_average')
    op.drop_column('products', 'rating_sum')
    op.drop_column('products', 'rating_count')
