"""PostgreSQL: a phrase matches within the name, the category or the
description, never across two of them.

`search_vector` joined the three fields' vectors with `||`, which numbers
the right one's words on from the left one's last: "Desk Lamp" filed under
"Home" had `lamp` at 2 and `home` at 3, so `"lamp home"` found it (FTS5
matches a phrase within one column; found by review). A gap of 256
positions now lies between the fields: a lexeme no parser makes (it holds a
space) is put between them and deleted again, so positions stay apart and
nothing else changes. 256 is more than any phrase of a 200-character query
can span (its stop words count as positions). `ts_rank`, which ranks the
search, does not read positions.

The generated column is made again with its GIN index (PostgreSQL cannot
change the expression of one).

Revision ID: f35b8d0e2a47
Revises: f34e7a9c1f25
"""

from __future__ import annotations

from alembic import op

revision = "f35b8d0e2a47"
down_revision = "f34e7a9c1f25"
branch_labels = None
depends_on = None

# As f29a1c3e5b70 spells them.
PUNCTUATION = "!\"#$%&''()*+,-./:;<=>?@[\\]^_`{|}~"
SPACES = " " * 32
LIVE = "WHERE deleted_at IS NULL"
FIELDS = (("name", "A"), ("category", "B"), ("description", "C"))
GAP_LEXEME = "field gap"
# (`\\:`: a colon, not a bind parameter, in the text alembic executes.)
GAP = f"'''{GAP_LEXEME}''\\:256'::tsvector"


def _split(value: str) -> str:
    return f"translate(coalesce({value}, ''), '{PUNCTUATION}', '{SPACES}')"


def _vectors() -> list[str]:
    return [
        f"setweight(to_tsvector('shop_english'::regconfig, {_split(column)}), '{weight}')"
        for column, weight in FIELDS
    ]


def _replace_vector(vector: str) -> None:
    op.execute("DROP INDEX IF EXISTS ix_products_search_vector")
    op.execute("ALTER TABLE products DROP COLUMN search_vector")
    op.execute(
        f"ALTER TABLE products ADD COLUMN search_vector tsvector GENERATED ALWAYS AS ({vector}) STORED"
    )
    op.execute("CREATE INDEX ix_products_search_vector ON products USING gin (search_vector) " + LIVE)


def upgrade():
    if op.get_bind().dialect.name == "postgresql":
        joined = f" || {GAP} || ".join(_vectors())
        _replace_vector(f"ts_delete({joined}, '{GAP_LEXEME}'::text)")


def downgrade():
    if op.get_bind().dialect.name == "postgresql":
        _replace_vector(" || ".join(_vectors()))
