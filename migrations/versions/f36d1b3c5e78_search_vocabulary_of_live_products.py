"""PostgreSQL: the prefix's vocabulary (`products_words`) holds the words of
the live products only, as SQLite's (`products_words_vocab`) does.

It kept every word ever written: after "Generators" was renamed, `generato`
still reached the old word, whose stem (`gener`) matched "generate" in live
products; and old words counted towards the 16 words a prefix lists (found
by review). Each word now counts the live products that hold it
(`products`); the triggers add a new live row's words, move a changed row's
from its old text to its new (also when it is deleted or restored), take a
deleted row's away and drop a word no product holds any more, in word order
(concurrent writers lock the same rows in the same order). A TRUNCATE of
products empties it. Existing rows are counted again.

Revision ID: f36d1b3c5e78
Revises: f34e7a9c1f25
"""

from __future__ import annotations

from alembic import op

revision = "f36d1b3c5e78"
down_revision = "f34e7a9c1f25"
branch_labels = None
depends_on = None

# As f29a1c3e5b70 spells them.
PUNCTUATION = "!\"#$%&''()*+,-./:;<=>?@[\\]^_`{|}~"
SPACES = " " * 32


def _words_of(row: str) -> str:
    """The distinct words of a row's name, category and description."""
    joined = " || ' ' || ".join(
        f"translate(coalesce({row}{column}, ''), '{PUNCTUATION}', '{SPACES}')"
        for column in ("name", "category", "description")
    )
    return f"unnest(tsvector_to_array(to_tsvector('shop_words'::regconfig, {joined})))"


# Applies `words` and `changes` (parallel arrays, the words in order) to the
# counts; a word left at 0 goes.
_APPLY = """
    INSERT INTO products_words (word, products)
        SELECT word, change FROM unnest(words, changes) AS delta (word, change)
        WHERE change <> 0 ORDER BY word
        ON CONFLICT (word) DO UPDATE SET products = products_words.products + EXCLUDED.products;
    DELETE FROM products_words WHERE word = ANY (words) AND products <= 0;
"""


def _function(name: str, delta: str) -> str:
    """A trigger function applying the (word, change) rows of `delta`."""
    return f"""
CREATE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    words text[];
    changes integer[];
BEGIN
    SELECT coalesce(array_agg(word ORDER BY word), '{{}}'),
           coalesce(array_agg(change ORDER BY word), '{{}}')
        INTO words, changes
        FROM ({delta}) AS delta (word, change);
    {_APPLY}
    RETURN NULL;
END $$
"""


UPGRADE = [
    "ALTER TABLE products_words ADD COLUMN products integer NOT NULL DEFAULT 0",
    "DROP TRIGGER IF EXISTS products_words_insert ON products",
    "DROP TRIGGER IF EXISTS products_words_update ON products",
    "DROP FUNCTION IF EXISTS products_words_add()",
    "DROP FUNCTION IF EXISTS products_words_add_row()",
    _function(
        "products_words_add",
        f"SELECT word, count(*) FROM new_rows, {_words_of('new_rows.')} AS word "
        "WHERE new_rows.deleted_at IS NULL GROUP BY word",
    ),
    _function(
        "products_words_remove",
        f"SELECT word, -count(*) FROM old_rows, {_words_of('old_rows.')} AS word "
        "WHERE old_rows.deleted_at IS NULL GROUP BY word",
    ),
    _function(
        "products_words_change_row",
        "SELECT word, sum(change) FROM ("
        f"SELECT word, -1 AS change FROM {_words_of('OLD.')} AS word "
        "WHERE OLD.deleted_at IS NULL UNION ALL "
        f"SELECT word, 1 FROM {_words_of('NEW.')} AS word WHERE NEW.deleted_at IS NULL"
        ") AS changes GROUP BY word",
    ),
    """
CREATE FUNCTION products_words_truncate() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    TRUNCATE products_words;
    RETURN NULL;
END $$
""",
    "CREATE TRIGGER products_words_insert AFTER INSERT ON products "
    "REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION products_words_add()",
    "CREATE TRIGGER products_words_delete AFTER DELETE ON products "
    "REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT "
    "EXECUTE FUNCTION products_words_remove()",
    "CREATE TRIGGER products_words_update AFTER UPDATE OF name, description, category, "
    "deleted_at ON products FOR EACH ROW WHEN (OLD.name IS DISTINCT FROM NEW.name "
    "OR OLD.description IS DISTINCT FROM NEW.description "
    "OR OLD.category IS DISTINCT FROM NEW.category "
    "OR (OLD.deleted_at IS NULL) <> (NEW.deleted_at IS NULL)) "
    "EXECUTE FUNCTION products_words_change_row()",
    "CREATE TRIGGER products_words_truncate AFTER TRUNCATE ON products "
    "FOR EACH STATEMENT EXECUTE FUNCTION products_words_truncate()",
    "TRUNCATE products_words",
    "INSERT INTO products_words (word, products) "
    f"SELECT word, count(*) FROM products, {_words_of('products.')} AS word "
    "WHERE products.deleted_at IS NULL GROUP BY word ORDER BY word",
    "ALTER TABLE products_words ALTER COLUMN products DROP DEFAULT",
]

# f29a1c3e5b70's functions and f26e1a4b7c90's triggers, and every word again.
DOWNGRADE = [
    "DROP TRIGGER IF EXISTS products_words_insert ON products",
    "DROP TRIGGER IF EXISTS products_words_delete ON products",
    "DROP TRIGGER IF EXISTS products_words_update ON products",
    "DROP TRIGGER IF EXISTS products_words_truncate ON products",
    "DROP FUNCTION IF EXISTS products_words_add()",
    "DROP FUNCTION IF EXISTS products_words_remove()",
    "DROP FUNCTION IF EXISTS products_words_change_row()",
    "DROP FUNCTION IF EXISTS products_words_truncate()",
    "ALTER TABLE products_words DROP COLUMN products",
    f"""
CREATE FUNCTION products_words_add() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO products_words (word)
        SELECT DISTINCT word FROM new_rows, {_words_of("new_rows.")} AS word
        ORDER BY word
        ON CONFLICT (word) DO NOTHING;
    RETURN NULL;
END $$
""",
    f"""
CREATE FUNCTION products_words_add_row() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO products_words (word)
        SELECT DISTINCT word FROM {_words_of("NEW.")} AS word
        ORDER BY word
        ON CONFLICT (word) DO NOTHING;
    RETURN NULL;
END $$
""",
    "CREATE TRIGGER products_words_insert AFTER INSERT ON products "
    "REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION products_words_add()",
    "CREATE TRIGGER products_words_update AFTER UPDATE OF name, description, category "
    "ON products FOR EACH ROW WHEN (OLD.name IS DISTINCT FROM NEW.name "
    "OR OLD.description IS DISTINCT FROM NEW.description "
    "OR OLD.category IS DISTINCT FROM NEW.category) "
    "EXECUTE FUNCTION products_words_add_row()",
    "INSERT INTO products_words (word) "
    f"SELECT DISTINCT word FROM products, {_words_of('products.')} AS word "
    "ORDER BY word ON CONFLICT (word) DO NOTHING",
]


def upgrade():
    if op.get_bind().dialect.name == "postgresql":
        for statement in UPGRADE:
            op.execute(statement)


def downgrade():
    if op.get_bind().dialect.name == "postgresql":
        for statement in DOWNGRADE:
            op.execute(statement)
