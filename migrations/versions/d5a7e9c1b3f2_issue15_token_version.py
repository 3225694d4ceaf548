"""users.token_version: raising it revokes every token of the user.

Revision ID: d5a7e9c1b3f2
Revises: e20a4b7c9d13
Create Date: 2026-11-26 02:30:00
"""
import sqlalchemy as sa
from alembic import op


revision = 'd5a7e9c1b3f2'
down_revision = 'e20a4b7c9d13'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.add_column(
            sa.Column('token_version', sa.Integer(), server_default='0', nullable=False)
        )


def downgrade():
    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.drop_column('token_version')
