"""A product's category of "" (stored before categories were 1 to 80
characters) is no category: NULL. An answer of "" broke the document's
`minLength: 1`, and no filter could name it (found by review).

Revision ID: f32c5e7a9d03
Revises: f31b2d4c6e81
"""

from __future__ import annotations

from alembic import op

revision = "f32c5e7a9d03"
down_revision = "f31b2d4c6e81"
branch_labels = None
depends_on = None


def upgrade():
    op.execute("UPDATE products SET category = NULL WHERE category = ''")


def downgrade():
    pass  # "" and NULL said the same: nothing to give back
