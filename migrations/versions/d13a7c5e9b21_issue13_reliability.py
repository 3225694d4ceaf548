"""Reliability: idempotency claims carry the token of the request holding them.

Revision ID: d13a7c5e9b21
Revises: c4e8f2a61d07
Create Date: 2026-11-26 02:30:00
"""
from alembic import op
import sqlalchemy as sa


revision = 'd13a7c5e9b21'
down_revision = 'c4e8f2a61d07'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('idempotency_keys', schema=None) as batch_op:
        batch_op.add_column(sa.Column('claim_token', sa.String(length=32), nullable=True))


def downgrade():
    with op.batch_alter_table('idempotency_keys', schema=None) as batch_op:
        batch_op.drop_column('claim_token')
