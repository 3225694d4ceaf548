"""SQLite: the FTS5 indexes keep a word's combining marks in the word.

FTS5's unicode61 tokenizer takes letters, digits and private-use characters
as a word's characters; a combining mark (a Hindi or Tamil vowel sign, a
virama) separated words, so `हिन्दी` was indexed as `ह`, `न` and `द`. The
query was split the same way: the word was found, but so was any product
holding those pieces apart ("ह न द"), and an exclusion of the word removed
that product too (found by review). PostgreSQL's parser keeps the word whole.

`products_fts`, `products_names` and `products_words` are made again with
every combining mark (Unicode categories Mn, Mc, Me, as this Python's
`unicodedata` lists them) as a token character (`tokenchars`; SQLite 3.45's
`categories` option would say it shorter), and filled again from the live
products. The marks FTS5 takes off Latin letters (`remove_diacritics 2`) it
still takes off. Their triggers (e19a5f0c3b21, f26e1a4b7c90) and the vocabulary
tables (`fts5vocab`, which name their table) stay as they are. The search
parses a query into the words the index now holds (`search.query.words_of`).

Revision ID: f44a9c3e7b52
Revises: f43e8b2d4c17
"""

from __future__ import annotations

import sys
import unicodedata

from alembic import op

revision = "f44a9c3e7b52"
down_revision = "f43e8b2d4c17"
branch_labels = None
depends_on = None

MARKS = "".join(
    chr(code)
    for code in range(sys.maxunicode + 1)
    if unicodedata.category(chr(code)) in ("Mn", "Mc", "Me")
)
# No mark is a quote; in the statement each quote of the option is doubled.
TOKENCHARS = f" tokenchars ''{MARKS}''"

# Each table as e19a5f0c3b21 and f26e1a4b7c90 made it, `{}` where the marks go.
TABLES = {
    "products_fts": (
        "CREATE VIRTUAL TABLE products_fts USING fts5(name, description, category, "
        "content='products', content_rowid='id', "
        "tokenize='porter unicode61 remove_diacritics 2{}')",
        "name, description, category",
    ),
    "products_names": (
        "CREATE VIRTUAL TABLE products_names USING fts5(name, content='products', "
        "content_rowid='id', tokenize='unicode61 remove_diacritics 2{}', prefix='1 2 3')",
        "name",
    ),
    "products_words": (
        "CREATE VIRTUAL TABLE products_words USING fts5(name, description, category, "
        "content='products', content_rowid='id', tokenize='unicode61 remove_diacritics 2{}', "
        "detail='none', columnsize=0)",
        "name, description, category",
    ),
}


def _rebuild(tokenchars: str) -> None:
    """Each table made again with `tokenchars`, holding the live products."""
    for table, (create, columns) in TABLES.items():
        op.execute(f"DROP TABLE IF EXISTS {table}")
        op.execute(create.format(tokenchars))
        op.execute(
            f"INSERT INTO {table}(rowid, {columns}) "  # noqa: S608 - the names above
            f"SELECT id, {columns} FROM products WHERE deleted_at IS NULL"
        )


def upgrade():
    if op.get_bind().dialect.name == "sqlite":
        _rebuild(TOKENCHARS)


def downgrade():
    if op.get_bind().dialect.name == "sqlite":
        _rebuild("")
