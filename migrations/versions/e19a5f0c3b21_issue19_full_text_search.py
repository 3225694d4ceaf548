"""Full-text search indexes, built for the existing rows and kept by the database.

SQLite: two FTS5 external-content tables over `products` (rowid = id) holding
the live products only: `products_fts` (name, description, category; porter
stemming) for search, `products_names` (name; no stemming, prefix indexes) for
suggestions. Triggers keep them in the transaction of every insert, update of
an indexed column or of `deleted_at`, and delete. A later batch migration that
recreates `products` on SQLite drops these triggers with the table: it must
create them again (the search freshness tests fail otherwise).

PostgreSQL: `search_vector`, a generated tsvector (name A, category B,
description C, English) with a GIN index over the live rows, and a GIN index
on `to_tsvector('simple', name)` for suggestions. pg_trgm (migration
c4e8f2a61d07) serves the spelling-tolerant fallback.

Written by hand: the models do not declare these database-specific objects
and the app's `include_object` keeps autogenerate away from them.

Revision ID: e19a5f0c3b21
Revises: d13a7c5e9b21
Create Date: 2026-11-26 02:20:00
"""
from alembic import op


revision = 'e19a5f0c3b21'
down_revision = 'd13a7c5e9b21'
branch_labels = None
depends_on = None

SQLITE_TABLES = [
    "CREATE VIRTUAL TABLE products_fts USING fts5(name, description, category, "
    "content='products', content_rowid='id', tokenize='porter unicode61 remove_diacritics 2')",
    "CREATE VIRTUAL TABLE products_names USING fts5(name, content='products', "
    "content_rowid='id', tokenize='unicode61 remove_diacritics 2', prefix='1 2 3')",
]
ADD_NEW = """
    INSERT INTO products_fts(rowid, name, description, category)
        SELECT new.id, new.name, new.description, new.category WHERE new.deleted_at IS NULL;
    INSERT INTO products_names(rowid, name)
        SELECT new.id, new.name WHERE new.deleted_at IS NULL;
"""
# External content: a row leaves the index by restating what was indexed.
REMOVE_OLD = """
    INSERT INTO products_fts(products_fts, rowid, name, description, category)
        SELECT 'delete', old.id, old.name, old.description, old.category
        WHERE old.deleted_at IS NULL;
    INSERT INTO products_names(products_names, rowid, name)
        SELECT 'delete', old.id, old.name WHERE old.deleted_at IS NULL;
"""
SQLITE_TRIGGERS = [
    f"CREATE TRIGGER products_search_insert AFTER INSERT ON products BEGIN {ADD_NEW} END",
    f"CREATE TRIGGER products_search_delete AFTER DELETE ON products BEGIN {REMOVE_OLD} END",
    # Not on stock or price changes: checkouts do not touch the index.
    "CREATE TRIGGER products_search_update AFTER UPDATE OF name, description, category, "
    f"deleted_at ON products BEGIN {REMOVE_OLD} {ADD_NEW} END",
]
SQLITE_FILL = [
    "INSERT INTO products_fts(rowid, name, description, category) "
    "SELECT id, name, description, category FROM products WHERE deleted_at IS NULL",
    "INSERT INTO products_names(rowid, name) "
    "SELECT id, name FROM products WHERE deleted_at IS NULL",
]

POSTGRES_UP = [
    "ALTER TABLE products ADD COLUMN search_vector tsvector GENERATED ALWAYS AS ("
    "setweight(to_tsvector('english'::regconfig, coalesce(name, '')), 'A') || "
    "setweight(to_tsvector('english'::regconfig, coalesce(category, '')), 'B') || "
    "setweight(to_tsvector('english'::regconfig, coalesce(description, '')), 'C')"
    ") STORED",
    "CREATE INDEX ix_products_search_vector ON products USING gin (search_vector) "
    "WHERE deleted_at IS NULL",
    "CREATE INDEX ix_products_name_words ON products "
    "USING gin (to_tsvector('simple'::regconfig, name)) WHERE deleted_at IS NULL",
]


def upgrade():
    if op.get_bind().dialect.name == 'postgresql':
        for statement in POSTGRES_UP:
            op.execute(statement)
        return
    for statement in SQLITE_TABLES + SQLITE_TRIGGERS + SQLITE_FILL:
        op.execute(statement)


def downgrade():
    if op.get_bind().dialect.name == 'postgresql':
        op.execute('DROP INDEX IF EXISTS ix_products_name_words')
        op.execute('DROP INDEX IF EXISTS ix_products_search_vector')
        op.execute('ALTER TABLE products DROP COLUMN IF EXISTS search_vector')
        return
    for trigger in ('insert', 'delete', 'update'):
        op.execute(f'DROP TRIGGER IF EXISTS products_search_{trigger}')
    op.execute('DROP TABLE IF EXISTS products_names')
    op.execute('DROP TABLE IF EXISTS products_fts')
