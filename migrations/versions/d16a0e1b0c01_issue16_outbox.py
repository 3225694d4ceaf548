"""Issue 16: the transactional outbox, periodic job runs, account tokens (password reset, email verification), users.email_verified and
users.tokens_valid_after.

Revision ID: d16a0e1b0c01
Revises: e20a4b7c9d13
Create Date: 2026-11-26 02:03:11.651736

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = 'd16a0e1b0c01'
down_revision = 'e20a4b7c9d13'
branch_labels = None
depends_on = None


def upgrade():
    
    op.create_table('outbox',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('kind', sa.String(length=10), nullable=False),
    sa.Column('topic', sa.String(length=80), nullable=False),
    sa.Column('recipient', sa.String(length=254), nullable=True),
    sa.Column('payload', sa.JSON(), nullable=False),
    sa.Column('status', sa.String(length=10), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('available_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('last_error', sa.Text(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('sent_at', sa.DateTime(timezone=True), nullable=True),
    sa.CheckConstraint("kind IN ('email', 'task')", name=op.f('ck_outbox_kind_known')),
    sa.CheckConstraint("status IN ('pending', 'sent', 'failed')", name=op.f('ck_outbox_status_known')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_outbox'))
    )
    op.create_index('ix_outbox_status_available_at', 'outbox', ['status', 'available_at'], unique=False)

    op.create_table('periodic_job_runs',
    sa.Column('name', sa.String(length=80), nullable=False),
    sa.Column('last_run_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('name', name=op.f('pk_periodic_job_runs'))
    )
    op.create_table('account_tokens',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=False),
    sa.Column('purpose', sa.String(length=20), nullable=False),
    sa.Column('token_hash', sa.String(length=64), nullable=False),
    sa.Column('email', sa.String(length=254), nullable=False),
    sa.Column('expires_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('used_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.CheckConstraint("purpose IN ('password_reset', 'verify_email')", name=op.f('ck_account_tokens_purpose_known')),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_account_tokens_user_id_users'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_account_tokens')),
    sa.UniqueConstraint('token_hash', name=op.f('uq_account_tokens_token_hash'))
    )
    op.create_index(op.f('ix_account_tokens_user_id'), 'account_tokens', ['user_id'], unique=False)

    # A plain ADD COLUMN (SQLite has it): batch mode would rebuild `users` and
    # lose its expression index.
    op.add_column('users', sa.Column('email_verified', sa.Boolean(), server_default=sa.false(), nullable=False))
    op.add_column('users', sa.Column('tokens_valid_after', sa.DateTime(timezone=True), nullable=True))

    


def downgrade():
    
    op.drop_column('users', 'tokens_valid_after')
    op.drop_column('users', 'email_verified')
    op.drop_index(op.f('ix_account_tokens_user_id'), table_name='account_tokens')

    op.drop_table('account_tokens')
    op.drop_table('periodic_job_runs')
    op.drop_index('ix_outbox_status_available_at', table_name='outbox')

    op.drop_table('outbox')
    
