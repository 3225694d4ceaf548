"""PostgreSQL: the live catalog's size kept in a one-row table by triggers.

The unfiltered product list's exact total was a `count(*)` of every live
product on each cache miss: an index-only scan of 10,000 entries, ~1 ms of
server CPU, most of a list miss on PostgreSQL (SQLite counts whole b-trees
instead, see e22d5b7a9c14). `products_live_count` holds the number and the
triggers keep it in the same transaction as the write:

- INSERT and DELETE: statement-level, from the transition tables (a bulk
  insert of 10,000 rows is one counter update);
- UPDATE OF deleted_at: row-level, only where liveness changes (a stock or
  price update never fires it, so checkout never touches the counter);
- TRUNCATE: zero.

Only product creation and (soft) deletion take the counter's row lock.

Revision ID: e23b8c1d4f57
Revises: e22d5b7a9c14
Create Date: 2026-11-26 09:50:00
"""
from alembic import op


revision = 'e23b8c1d4f57'
down_revision = 'e22d5b7a9c14'
branch_labels = None
depends_on = None

UPGRADE = """
CREATE TABLE products_live_count (
    one boolean PRIMARY KEY DEFAULT true CHECK (one),
    live bigint NOT NULL CHECK (live >= 0)
);
INSERT INTO products_live_count (live)
    SELECT count(*) FROM products WHERE deleted_at IS NULL;

CREATE FUNCTION products_live_count_add() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    delta bigint;
BEGIN
    IF TG_OP = 'INSERT' THEN
        SELECT count(*) INTO delta FROM new_rows WHERE deleted_at IS NULL;
    ELSE
        SELECT -count(*) INTO delta FROM old_rows WHERE deleted_at IS NULL;
    END IF;
    IF delta <> 0 THEN
        UPDATE products_live_count SET live = live + delta;
    END IF;
    RETURN NULL;
END $$;

CREATE FUNCTION products_live_count_liveness() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE products_live_count
       SET live = live + CASE WHEN NEW.deleted_at IS NULL THEN 1 ELSE -1 END;
    RETURN NULL;
END $$;

CREATE FUNCTION products_live_count_truncate() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE products_live_count SET live = 0;
    RETURN NULL;
END $$;

CREATE TRIGGER products_live_count_insert AFTER INSERT ON products
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION products_live_count_add();
CREATE TRIGGER products_live_count_delete AFTER DELETE ON products
    REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION products_live_count_add();
CREATE TRIGGER products_live_count_liveness AFTER UPDATE OF deleted_at ON products
    FOR EACH ROW WHEN ((OLD.deleted_at IS NULL) <> (NEW.deleted_at IS NULL))
    EXECUTE FUNCTION products_live_count_liveness();
CREATE TRIGGER products_live_count_truncate AFTER TRUNCATE ON products
    FOR EACH STATEMENT EXECUTE FUNCTION products_live_count_truncate();
"""

DOWNGRADE = """
DROP TRIGGER IF EXISTS products_live_count_insert ON products;
DROP TRIGGER IF EXISTS products_live_count_delete ON products;
DROP TRIGGER IF EXISTS products_live_count_liveness ON products;
DROP TRIGGER IF EXISTS products_live_count_truncate ON products;
DROP FUNCTION IF EXISTS products_live_count_add();
DROP FUNCTION IF EXISTS products_live_count_liveness();
DROP FUNCTION IF EXISTS products_live_count_truncate();
DROP TABLE IF EXISTS products_live_count;
"""


def upgrade():
    if op.get_bind().dialect.name == 'postgresql':
        op.execute(UPGRADE)


def downgrade():
    if op.get_bind().dialect.name == 'postgresql':
        op.execute(DOWNGRADE)
