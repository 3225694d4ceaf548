"""PostgreSQL: a word-final sigma written in a product (`ς`) is indexed as
`σ`, as PostgreSQL's own lower() indexes a capital `Σ` and as the app now
sends every word (`query.words_of`; SQLite's FTS5 folds `ς` to `σ` itself).

"ΦΑΚΟΣ Lens" was indexed `φακοσ` (lower() makes `Σ` `σ`, never `ς`) and
"Φακος Case", written with `ς`, `φακος`; the query's words, lower-cased by
Python, end in `ς` when typed in capitals: `ΦΑΚΟΣ` found only "Φακος Case",
in search and in suggestions (found by review). Every text the search reads
now has `ς` made `σ` in the translate() that already makes ASCII punctuation
spaces (f27b3c5d8e12, f28c4d6e9f23): the search vector (made again with its
GIN index), the prefix's vocabulary (its trigger functions, f36d1b3c5e78,
and every word counted again) and the suggestions' index on the name
(f34e7a9c1f25); and the spelling-tolerant retry's text and its trigram index
(f29a1c3e5b70). `app/services/search/postgres.py` spells the same
expressions.

Revision ID: f38b4e6a8c12
Revises: f37a2c4e6b89
"""

from __future__ import annotations

from alembic import op

revision = "f38b4e6a8c12"
down_revision = "f37a2c4e6b89"
branch_labels = None
depends_on = None

# As f29a1c3e5b70 spells them (in SQL, ' doubled): each ASCII punctuation
# character becomes a space; now also the final sigma becomes a sigma.
PUNCTUATION = "!\"#$%&''()*+,-./:;<=>?@[\\]^_`{|}~"
SPACES = " " * 32
FINAL_SIGMA, SIGMA = "\u03c2", "\u03c3"
OLD = (PUNCTUATION, SPACES)
NEW = (PUNCTUATION + FINAL_SIGMA, SPACES + SIGMA)
LIVE = "WHERE deleted_at IS NULL"
HAYSTACK = "name || ' ' || coalesce(category, '')"


def _split(value: str, mapping: tuple[str, str]) -> str:
    return f"translate({value}, '{mapping[0]}', '{mapping[1]}')"


def _text(column: str, mapping: tuple[str, str]) -> str:
    return _split(f"coalesce({column}, '')", mapping)


def _vector(mapping: tuple[str, str]) -> str:
    return " || ".join(
        f"setweight(to_tsvector('shop_english'::regconfig, {_text(column, mapping)}), '{weight}')"
        for column, weight in (("name", "A"), ("category", "B"), ("description", "C"))
    )


def _search_vector(mapping: tuple[str, str]) -> list[str]:
    """The generated column again, with its GIN index (PostgreSQL cannot
    change the expression of one)."""
    return [
        "DROP INDEX IF EXISTS ix_products_search_vector",
        "ALTER TABLE products DROP COLUMN search_vector",
        "ALTER TABLE products ADD COLUMN search_vector tsvector "
        f"GENERATED ALWAYS AS ({_vector(mapping)}) STORED",
        f"CREATE INDEX ix_products_search_vector ON products USING gin (search_vector) {LIVE}",
    ]


def _indexes(mapping: tuple[str, str], haystack: str) -> list[str]:
    """The suggestions' index on the name's words, and the trigram index of
    the spelling-tolerant retry's text."""
    return [
        "DROP INDEX IF EXISTS ix_products_name_words",
        "CREATE INDEX ix_products_name_words ON products USING gin "
        f"(to_tsvector('shop_words'::regconfig, {_split('name', mapping)})) {LIVE}",
        "DROP INDEX IF EXISTS ix_products_fuzzy",
        f"CREATE INDEX ix_products_fuzzy ON products USING gin (({haystack}) gin_trgm_ops) {LIVE}",
    ]


def _words_of(row: str, mapping: tuple[str, str]) -> str:
    """The distinct words of a row's name, category and description."""
    joined = " || ' ' || ".join(
        _text(f"{row}{column}", mapping) for column in ("name", "category", "description")
    )
    return f"unnest(tsvector_to_array(to_tsvector('shop_words'::regconfig, {joined})))"


# As f36d1b3c5e78: applies `words` and `changes` (parallel arrays, the words
# in order) to the counts; a word left at 0 goes.
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
CREATE OR REPLACE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS $$
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


def _vocabulary(mapping: tuple[str, str]) -> list[str]:
    """f36d1b3c5e78's trigger functions with `mapping`, and every live
    product's words counted again."""
    return [
        _function(
            "products_words_add",
            f"SELECT word, count(*) FROM new_rows, {_words_of('new_rows.', mapping)} AS word "
            "WHERE new_rows.deleted_at IS NULL GROUP BY word",
        ),
        _function(
            "products_words_remove",
            f"SELECT word, -count(*) FROM old_rows, {_words_of('old_rows.', mapping)} AS word "
            "WHERE old_rows.deleted_at IS NULL GROUP BY word",
        ),
        _function(
            "products_words_change_row",
            "SELECT word, sum(change) FROM ("
            f"SELECT word, -1 AS change FROM {_words_of('OLD.', mapping)} AS word "
            "WHERE OLD.deleted_at IS NULL UNION ALL "
            f"SELECT word, 1 FROM {_words_of('NEW.', mapping)} AS word "
            "WHERE NEW.deleted_at IS NULL"
            ") AS changes GROUP BY word",
        ),
        "TRUNCATE products_words",
        "INSERT INTO products_words (word, products) "
        f"SELECT word, count(*) FROM products, {_words_of('products.', mapping)} AS word "
        "WHERE products.deleted_at IS NULL GROUP BY word ORDER BY word",
    ]


def _statements(mapping: tuple[str, str], haystack: str) -> list[str]:
    return [*_search_vector(mapping), *_vocabulary(mapping), *_indexes(mapping, haystack)]


def upgrade():
    if op.get_bind().dialect.name == "postgresql":
        haystack = f"shop_unaccent({_split(HAYSTACK, (FINAL_SIGMA, SIGMA))})"
        for statement in _statements(NEW, haystack):
            op.execute(statement)


def downgrade():
    if op.get_bind().dialect.name == "postgresql":
        for statement in _statements(OLD, f"shop_unaccent({HAYSTACK})"):
            op.execute(statement)
