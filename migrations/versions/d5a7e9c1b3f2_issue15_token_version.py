"""users.token_version: raising it revokes every token of the user.

It replaces users.tokens_valid_after (a time cutoff, which depends on every
host's clock agreeing): tokens now carry the version they were issued under.

Revision ID: d5a7e9c1b3f2
Revises: d18a7c3e5b90
Create Date: 2026-11-26 02:30:00
"""
import sqlalchemy as sa
from alembic import op


revision = 'd5a7e9c1b3f2'
down_revision = 'd18a7c3e5b90'
branch_labels = None
depends_on = None


# Plain ALTER TABLE (SQLite 3.35+ drops an unindexed column in place): batch
# mode would copy the table and lose the expression index on lower(username).


def upgrade():
    op.add_column(
        'users', sa.Column('token_version', sa.Integer(), server_default='0', nullable=False)
    )
    # A user with a cutoff (a password reset or change, a logout-all) had
    # tokens refused that carry no `ver` claim, and a token without one counts
    # as version 0: starting them at 1 keeps those tokens refused (at 0 they
    # worked again; found by review). Their tokens issued since are refused
    # too: they sign in once more.
    op.execute('UPDATE users SET token_version = 1 WHERE tokens_valid_after IS NOT NULL')
    op.execute('ALTER TABLE users DROP COLUMN tokens_valid_after')


def downgrade():
    op.add_column(
        'users', sa.Column('tokens_valid_after', sa.DateTime(timezone=True), nullable=True)
    )
    op.execute('ALTER TABLE users DROP COLUMN token_version')
