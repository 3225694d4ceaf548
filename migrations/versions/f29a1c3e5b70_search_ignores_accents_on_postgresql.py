"""PostgreSQL: search ignores accents, as SQLite's index does.

SQLite's tokenizers remove diacritics (`remove_diacritics 2`), so `creme`
finds "Crème" there, and suggestions fold accents on either database; on
PostgreSQL `creme` found "Crème" only through the spelling-tolerant retry,
and `creme brulee`, `"creme brulee"`, `-creme` or `decorati` (for
"Décorations") not at all. Two text search configurations run every word
with a letter outside ASCII (and every word with a digit) through the
`unaccent` dictionary (the contrib extension, trusted: a database owner may
create it) before the usual one:
- `shop_english` makes `search_vector` and every query's tsquery: then
  English stemming, without stop words for a word written with a letter
  outside ASCII (`thé` is not the stop word `the`), `simple` for a word with
  a digit (`Café2000` as `cafe2000`);
- `shop_words` (then `simple`) makes the vocabulary of written words that
  the last word's prefix reaches (f26e1a4b7c90), filled again, and the
  suggestions' index on the name (`ix_products_name_words`, made again);
- `shop_unaccent(text)`, `unaccent` as an IMMUTABLE function, folds the
  spelling-tolerant retry's text and its index (`ix_products_fuzzy`, made
  again), and the prefix where the vocabulary is looked up.
Each names `unaccent` in the schema its extension is in.

The generated column is made again with its GIN index (PostgreSQL cannot
change the expression of one).

Revision ID: f29a1c3e5b70
Revises: f28c4d6e9f23
Create Date: 2026-11-27 16:20:00
"""

from alembic import op


revision = "f29a1c3e5b70"
down_revision = "f28c4d6e9f23"
branch_labels = None
depends_on = None

# Every ASCII punctuation character, and as many spaces (in SQL, ' doubled),
# as f27b3c5d8e12 and f28c4d6e9f23 spell them.
PUNCTUATION = "!\"#$%&''()*+,-./:;<=>?@[\\]^_`{|}~"
SPACES = " " * 32
# The parser's token types of words with a letter outside ASCII, and of words
# with a digit (ASCII or not).
LETTER_WORDS = "word, hword, hword_part"
DIGIT_WORDS = "numword, numhword, hword_numpart"
LIVE = "WHERE deleted_at IS NULL"
NAME_WORDS = (
    "CREATE INDEX ix_products_name_words ON products USING gin (to_tsvector('{}'::regconfig, name)) "
    + LIVE
)
FUZZY = "CREATE INDEX ix_products_fuzzy ON products USING gin (({}) gin_trgm_ops) " + LIVE
HAYSTACK = "name || ' ' || coalesce(category, '')"


def _split(value: str) -> str:
    return f"translate(coalesce({value}, ''), '{PUNCTUATION}', '{SPACES}')"


def _vector(config: str) -> str:
    return " || ".join(
        f"setweight(to_tsvector('{config}'::regconfig, {_split(column)}), '{weight}')"
        for column, weight in (("name", "A"), ("category", "B"), ("description", "C"))
    )


def _replace_vector(config: str) -> None:
    op.execute("DROP INDEX IF EXISTS ix_products_search_vector")
    op.execute("ALTER TABLE products DROP COLUMN search_vector")
    op.execute(
        "ALTER TABLE products ADD COLUMN search_vector tsvector "
        f"GENERATED ALWAYS AS ({_vector(config)}) STORED"
    )
    op.execute(
        "CREATE INDEX ix_products_search_vector ON products USING gin (search_vector) " + LIVE
    )


def _replace_indexes(words_config: str, haystack: str) -> None:
    op.execute("DROP INDEX IF EXISTS ix_products_name_words")
    op.execute(NAME_WORDS.format(words_config))
    op.execute("DROP INDEX IF EXISTS ix_products_fuzzy")
    op.execute(FUZZY.format(haystack))


def _words_of(row: str, config: str) -> str:
    joined = " || ' ' || ".join(_split(f"{row}{c}") for c in ("name", "category", "description"))
    return f"unnest(tsvector_to_array(to_tsvector('{config}'::regconfig, {joined})))"


def _vocabulary(config: str) -> list[str]:
    return [
        f"""
CREATE OR REPLACE FUNCTION products_words_add() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO products_words (word)
        SELECT DISTINCT word FROM new_rows, {_words_of("new_rows.", config)} AS word
        ORDER BY word
        ON CONFLICT (word) DO NOTHING;
    RETURN NULL;
END $$
""",
        f"""
CREATE OR REPLACE FUNCTION products_words_add_row() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO products_words (word)
        SELECT DISTINCT word FROM {_words_of("NEW.", config)} AS word
        ORDER BY word
        ON CONFLICT (word) DO NOTHING;
    RETURN NULL;
END $$
""",
        "TRUNCATE products_words",
        f"INSERT INTO products_words (word) SELECT DISTINCT word FROM products, "
        f"{_words_of('products.', config)} AS word ORDER BY word ON CONFLICT (word) DO NOTHING",
    ]


# The statements that name `unaccent`, run by one DO block that finds the
# schema its extension is in (already there, it may be in one of its own) as
# it runs: also in offline mode (`flask db upgrade --sql`), which has no
# database to ask beforehand (found by review). `%1$s`: the schema.
_NAMING_UNACCENT = [
    "CREATE FUNCTION shop_unaccent(text) RETURNS text "
    "LANGUAGE sql IMMUTABLE PARALLEL SAFE STRICT "
    "AS $f$ SELECT %1$s.unaccent('%1$s.unaccent'::regdictionary, $1) $f$",
    "ALTER TEXT SEARCH CONFIGURATION shop_english "
    f"ALTER MAPPING FOR {LETTER_WORDS} WITH %1$s.unaccent, shop_english_stem",
    "ALTER TEXT SEARCH CONFIGURATION shop_english "
    f"ALTER MAPPING FOR {DIGIT_WORDS} WITH %1$s.unaccent, simple",
    "ALTER TEXT SEARCH CONFIGURATION shop_words "
    f"ALTER MAPPING FOR {LETTER_WORDS}, {DIGIT_WORDS} WITH %1$s.unaccent, simple",
]


def _naming_unaccent() -> str:
    executes = "\n".join(
        f"    EXECUTE format({_quoted(statement)}, schema);" for statement in _NAMING_UNACCENT
    )
    return f"""
DO $$
DECLARE
    schema text := (
        SELECT extnamespace::regnamespace::text FROM pg_extension WHERE extname = 'unaccent'
    );
BEGIN
{executes}
END $$
"""


def _quoted(statement: str) -> str:
    return "'" + statement.replace("'", "''") + "'"


def upgrade():
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute("CREATE EXTENSION IF NOT EXISTS unaccent")
    op.execute(
        "CREATE TEXT SEARCH DICTIONARY shop_english_stem (TEMPLATE = snowball, Language = english)"
    )
    op.execute("CREATE TEXT SEARCH CONFIGURATION shop_english (COPY = english)")
    op.execute("CREATE TEXT SEARCH CONFIGURATION shop_words (COPY = simple)")
    op.execute(_naming_unaccent())
    _replace_vector("shop_english")
    for statement in _vocabulary("shop_words"):
        op.execute(statement)
    _replace_indexes("shop_words", f"shop_unaccent({HAYSTACK})")


def downgrade():
    if op.get_bind().dialect.name != "postgresql":
        return
    _replace_vector("english")
    for statement in _vocabulary("simple"):
        op.execute(statement)
    _replace_indexes("simple", HAYSTACK)
    op.execute("DROP TEXT SEARCH CONFIGURATION IF EXISTS shop_words")
    op.execute("DROP TEXT SEARCH CONFIGURATION IF EXISTS shop_english")
    op.execute("DROP TEXT SEARCH DICTIONARY IF EXISTS shop_english_stem")
    op.execute("DROP FUNCTION IF EXISTS shop_unaccent(text)")
    # The unaccent extension stays: other objects may use it.
