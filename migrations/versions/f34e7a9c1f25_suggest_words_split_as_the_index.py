"""PostgreSQL: the suggestions' database index (`ix_products_name_words`)
splits a name's words at ASCII punctuation, as the search vector, the
in-memory index and SQLite do. The parser kept "Example.com", "1.2.3",
"Model/X2" and "3.5mm" whole, so `com`, `x2` or `5mm` suggested nothing when
suggest read the database (no index kept, a catalog past its size, Redis
down) and `mm` suggested "3.5mm Cable" (found by review).

Revision ID: f34e7a9c1f25
Revises: f33d6f8b0e14
"""

from __future__ import annotations

from alembic import op

revision = "f34e7a9c1f25"
down_revision = "f33d6f8b0e14"
branch_labels = None
depends_on = None

PUNCTUATION = "!\"#$%&''()*+,-./:;<=>?@[\\]^_`{|}~"
SPACES = " " * 32
SPLIT = f"translate(name, '{PUNCTUATION}', '{SPACES}')"
INDEX = (
    "CREATE INDEX ix_products_name_words ON products "
    "USING gin (to_tsvector('shop_words'::regconfig, {})) WHERE deleted_at IS NULL"
)


def upgrade():
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP INDEX IF EXISTS ix_products_name_words")
        op.execute(INDEX.format(SPLIT))


def downgrade():
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP INDEX IF EXISTS ix_products_name_words")
        op.execute(INDEX.format("name"))
