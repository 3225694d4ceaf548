"""PostgreSQL: index the words as the search splits a query into them.

A query's words are runs of letters and digits; every other character only
separates them (app/services/search/query.py). PostgreSQL's parser keeps
some of those characters inside a token - `2.5`, `v1.2`, `3.5` and `mm` of
`3.5mm`, `2.4` and `ghz` of `2.4GHz` - so a product reading "Length 2.5 m" was
not found by `2.5` (the query's words `2` and `5`; found by review).
`search_vector` now reads the text with its ASCII punctuation turned into
spaces, as SQLite's unicode61 tokenizer (and the query parser) split it.

The generated column is made again (PostgreSQL cannot change the expression
of one), with its GIN index.

Revision ID: f27b3c5d8e12
Revises: f26e1a4b7c90
Create Date: 2026-11-27 13:30:00
"""
from alembic import op


revision = 'f27b3c5d8e12'
down_revision = 'f26e1a4b7c90'
branch_labels = None
depends_on = None

# Every ASCII punctuation character, and as many spaces (in SQL, ' doubled).
PUNCTUATION = "!\"#$%&''()*+,-./:;<=>?@[\\]^_`{|}~"
SPACES = " " * 32


def _vector(text_of) -> str:
    parts = [
        f"setweight(to_tsvector('english'::regconfig, {text_of(column)}), '{weight}')"
        for column, weight in (("name", "A"), ("category", "B"), ("description", "C"))
    ]
    return " || ".join(parts)


def _split(column: str) -> str:
    return f"translate(coalesce({column}, ''), '{PUNCTUATION}', '{SPACES}')"


def _as_typed(column: str) -> str:
    return f"coalesce({column}, '')"


def _replace(vector: str) -> None:
    op.execute("DROP INDEX IF EXISTS ix_products_search_vector")
    op.execute("ALTER TABLE products DROP COLUMN search_vector")
    op.execute(
        f"ALTER TABLE products ADD COLUMN search_vector tsvector GENERATED ALWAYS AS ({vector}) STORED"
    )
    op.execute(
        "CREATE INDEX ix_products_search_vector ON products USING gin (search_vector) "
        "WHERE deleted_at IS NULL"
    )


def upgrade():
    if op.get_bind().dialect.name == 'postgresql':
        _replace(_vector(_split))


def downgrade():
    if op.get_bind().dialect.name == 'postgresql':
        _replace(_vector(_as_typed))
