"""PostgreSQL: the vocabulary of written words splits them as the index does.

`products_words` (f26e1a4b7c90) took the words from `to_tsvector('simple', ...)`
of the raw text, whose parser keeps `stand/detachable`, `sturdy.collapsible`
or `info@removable.com` whole; the search then dropped them (not letters and
digits only), and `detacha` found nothing although `detachable` does (found
by review). The words now come from the text with its ASCII punctuation as
spaces, as `search_vector` reads it since f27b3c5d8e12; the vocabulary is
filled again.

Revision ID: f28c4d6e9f23
Revises: f27b3c5d8e12
Create Date: 2026-11-27 13:50:00
"""
from alembic import op


revision = 'f28c4d6e9f23'
down_revision = 'f27b3c5d8e12'
branch_labels = None
depends_on = None

PUNCTUATION = "!\"#$%&''()*+,-./:;<=>?@[\\]^_`{|}~"
SPACES = " " * 32


def _words_of(row: str, split: bool) -> str:
    def text_of(column: str) -> str:
        value = f"coalesce({row}{column}, '')"
        return f"translate({value}, '{PUNCTUATION}', '{SPACES}')" if split else value

    joined = " || ' ' || ".join(text_of(c) for c in ("name", "category", "description"))
    return f"unnest(tsvector_to_array(to_tsvector('simple'::regconfig, {joined})))"


def _functions(split: bool) -> list[str]:
    return [
        f"""
CREATE OR REPLACE FUNCTION products_words_add() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO products_words (word)
        SELECT DISTINCT word FROM new_rows, {_words_of("new_rows.", split)} AS word
        ORDER BY word
        ON CONFLICT (word) DO NOTHING;
    RETURN NULL;
END $$
""",
        f"""
CREATE OR REPLACE FUNCTION products_words_add_row() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO products_words (word)
        SELECT DISTINCT word FROM {_words_of("NEW.", split)} AS word
        ORDER BY word
        ON CONFLICT (word) DO NOTHING;
    RETURN NULL;
END $$
""",
        "TRUNCATE products_words",
        f"INSERT INTO products_words (word) SELECT DISTINCT word FROM products, "
        f"{_words_of('products.', split)} AS word ORDER BY word ON CONFLICT (word) DO NOTHING",
    ]


def upgrade():
    if op.get_bind().dialect.name == 'postgresql':
        for statement in _functions(split=True):
            op.execute(statement)


def downgrade():
    if op.get_bind().dialect.name == 'postgresql':
        for statement in _functions(split=False):
            op.execute(statement)
