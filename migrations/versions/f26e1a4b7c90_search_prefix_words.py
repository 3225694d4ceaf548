"""A vocabulary of the words written in products, for the last word's prefix.

The search indexes hold stems (`adjustable` -> `adjust`, `generator` ->
`gener`), so a prefix longer than a word's stem (`adjustab`, `generat`)
found nothing, though the last word must also match as a prefix. The
vocabulary gives the words written that start with the prefix; the search
matches their stems too (app/services/search/).

SQLite: `products_words`, an FTS5 external-content table over the live
products' name, description and category without stemming (`detail=none`:
terms only), kept by triggers as `products_fts` is; `products_words_vocab`
lists its terms, and `products_fts_vocab` the stems of `products_fts`.

PostgreSQL: `products_words`, every word (`to_tsvector('simple', ...)`) ever
written in a product's name, category or description; a trigger adds the
words of new rows (per statement) and of changed text (per row), in word
order (concurrent writers take the same locks in the same order). Words of
deleted products stay: a prefix that reaches one only matches its stem in
live products.

Revision ID: f26e1a4b7c90
Revises: e25d0e3f6b79
Create Date: 2026-11-27 13:00:00
"""
from alembic import op


revision = 'f26e1a4b7c90'
down_revision = 'e25d0e3f6b79'
branch_labels = None
depends_on = None

SQLITE_UP = [
    "CREATE VIRTUAL TABLE products_words USING fts5(name, description, category, "
    "content='products', content_rowid='id', tokenize='unicode61 remove_diacritics 2', "
    "detail='none', columnsize=0)",
    "CREATE VIRTUAL TABLE products_words_vocab USING fts5vocab(products_words, 'row')",
    "CREATE VIRTUAL TABLE products_fts_vocab USING fts5vocab(products_fts, 'row')",
    "CREATE TRIGGER products_words_insert AFTER INSERT ON products BEGIN "
    "INSERT INTO products_words(rowid, name, description, category) "
    "SELECT new.id, new.name, new.description, new.category WHERE new.deleted_at IS NULL; END",
    "CREATE TRIGGER products_words_delete AFTER DELETE ON products BEGIN "
    "INSERT INTO products_words(products_words, rowid, name, description, category) "
    "SELECT 'delete', old.id, old.name, old.description, old.category "
    "WHERE old.deleted_at IS NULL; END",
    "CREATE TRIGGER products_words_update AFTER UPDATE OF name, description, category, "
    "deleted_at ON products BEGIN "
    "INSERT INTO products_words(products_words, rowid, name, description, category) "
    "SELECT 'delete', old.id, old.name, old.description, old.category "
    "WHERE old.deleted_at IS NULL; "
    "INSERT INTO products_words(rowid, name, description, category) "
    "SELECT new.id, new.name, new.description, new.category WHERE new.deleted_at IS NULL; END",
    "INSERT INTO products_words(rowid, name, description, category) "
    "SELECT id, name, description, category FROM products WHERE deleted_at IS NULL",
]

WORDS_OF = (
    "unnest(tsvector_to_array(to_tsvector('simple'::regconfig, "
    "coalesce({row}name, '') || ' ' || coalesce({row}category, '') || ' ' || "
    "coalesce({row}description, ''))))"
)
POSTGRES_UP = [
    'CREATE TABLE products_words (word text COLLATE "C" PRIMARY KEY)',
    f"""
CREATE FUNCTION products_words_add() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO products_words (word)
        SELECT DISTINCT word FROM new_rows, {WORDS_OF.format(row="new_rows.")} AS word
        ORDER BY word
        ON CONFLICT (word) DO NOTHING;
    RETURN NULL;
END $$
""",
    f"""
CREATE FUNCTION products_words_add_row() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO products_words (word)
        SELECT DISTINCT word FROM {WORDS_OF.format(row="NEW.")} AS word
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
    f"INSERT INTO products_words (word) SELECT DISTINCT word FROM products, "
    f"{WORDS_OF.format(row='products.')} AS word ORDER BY word ON CONFLICT (word) DO NOTHING",
]


def upgrade():
    if op.get_bind().dialect.name == 'postgresql':
        for statement in POSTGRES_UP:
            op.execute(statement)
        return
    for statement in SQLITE_UP:
        op.execute(statement)


def downgrade():
    if op.get_bind().dialect.name == 'postgresql':
        op.execute('DROP TRIGGER IF EXISTS products_words_update ON products')
        op.execute('DROP TRIGGER IF EXISTS products_words_insert ON products')
        op.execute('DROP FUNCTION IF EXISTS products_words_add_row()')
        op.execute('DROP FUNCTION IF EXISTS products_words_add()')
        op.execute('DROP TABLE IF EXISTS products_words')
        return
    for trigger in ('insert', 'delete', 'update'):
        op.execute(f'DROP TRIGGER IF EXISTS products_words_{trigger}')
    op.execute('DROP TABLE IF EXISTS products_fts_vocab')
    op.execute('DROP TABLE IF EXISTS products_words_vocab')
    op.execute('DROP TABLE IF EXISTS products_words')
