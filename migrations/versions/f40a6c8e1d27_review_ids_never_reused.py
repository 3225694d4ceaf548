"""A review's id is never given to a later review: on SQLite `reviews.id` is
now INTEGER PRIMARY KEY AUTOINCREMENT. Without it SQLite gave a new row the
highest rowid + 1, so once the newest review was deleted the next one got
its id, and a DELETE of the deleted review's id (an admin's retry, a second
moderator) deleted that other customer's review with a 204 (found by
review). PostgreSQL's sequence never reuses an id: nothing to do there.

SQLite cannot add AUTOINCREMENT to a table: the table is rebuilt (foreign
keys off, as `migrations/env.py` runs every SQLite migration), with its
indexes and the rating recount trigger of f31b2d4c6e81, which the drop of
the old table takes with it.

Revision ID: f40a6c8e1d27
Revises: f39c5a7e2b16
"""

from __future__ import annotations

from alembic import op

revision = "f40a6c8e1d27"
down_revision = "f39c5a7e2b16"
branch_labels = None
depends_on = None

# f31b2d4c6e81's trigger, as it was made there.
SQLITE_TRIGGER = """
CREATE TRIGGER reviews_rating_after_delete AFTER DELETE ON reviews
WHEN (SELECT rating_count FROM products WHERE id = OLD.product_id)
     IS NOT (SELECT count(*) FROM reviews WHERE product_id = OLD.product_id)
  OR (SELECT rating_sum FROM products WHERE id = OLD.product_id)
     IS NOT (SELECT coalesce(sum(rating), 0) FROM reviews WHERE product_id = OLD.product_id)
BEGIN
    UPDATE products
    SET rating_count = (SELECT count(*) FROM reviews WHERE product_id = OLD.product_id),
        rating_sum = (SELECT coalesce(sum(rating), 0) FROM reviews WHERE product_id = OLD.product_id),
        rating_average = (
            SELECT CASE WHEN n > 0 THEN ((200 * s + n) / (2 * n)) / 100.0 END
            FROM (
                SELECT count(*) AS n, coalesce(sum(rating), 0) AS s
                FROM reviews WHERE product_id = OLD.product_id
            )
        ),
        updated_at = strftime('%Y-%m-%d %H:%M:%f000', 'now')
    WHERE id = OLD.product_id;
END
"""


# `reviews` as d17a5e0c9b21 made it, the id's clause aside. Written out, not
# rebuilt by batch mode: batch mode reflects the table and writes its
# constraints in a set's order, another DDL text on each rebuild.
TABLE = """
CREATE TABLE reviews_rebuilt (
    {id},
    product_id INTEGER NOT NULL,
    user_id INTEGER NOT NULL,
    rating SMALLINT NOT NULL,
    title VARCHAR(120) DEFAULT '' NOT NULL,
    body TEXT DEFAULT '' NOT NULL,
    created_at DATETIME NOT NULL,
    updated_at DATETIME NOT NULL,
    {primary_key}CONSTRAINT ck_reviews_rating_range CHECK (rating BETWEEN 1 AND 5),
    CONSTRAINT fk_reviews_product_id_products FOREIGN KEY(product_id)
        REFERENCES products (id) ON DELETE CASCADE,
    CONSTRAINT fk_reviews_user_id_users FOREIGN KEY(user_id)
        REFERENCES users (id) ON DELETE CASCADE,
    CONSTRAINT uq_reviews_user_id_product_id UNIQUE (user_id, product_id)
)
"""
COLUMNS = "id, product_id, user_id, rating, title, body, created_at, updated_at"
INDEXES = (
    "CREATE INDEX ix_reviews_product_id_created_at_id ON reviews (product_id, created_at, id)",
    "CREATE INDEX ix_reviews_product_id_rating_id ON reviews (product_id, rating, id)",
    "CREATE INDEX ix_reviews_user_id ON reviews (user_id)",
)


def _rebuild(autoincrement: bool) -> None:
    """Copy, drop, rename (foreign keys are off: `migrations/env.py`), then
    the indexes and the trigger the drop took with the table."""
    if op.get_bind().dialect.name != "sqlite":
        return
    if autoincrement:
        table = TABLE.format(id="id INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT", primary_key="")
    else:
        primary_key = "CONSTRAINT pk_reviews PRIMARY KEY (id),\n    "
        table = TABLE.format(id="id INTEGER NOT NULL", primary_key=primary_key)
    op.execute(table)
    op.execute(f"INSERT INTO reviews_rebuilt ({COLUMNS}) SELECT {COLUMNS} FROM reviews")
    op.execute("DROP TABLE reviews")
    op.execute("ALTER TABLE reviews_rebuilt RENAME TO reviews")
    for index in INDEXES:
        op.execute(index)
    op.execute(SQLITE_TRIGGER)


def upgrade():
    _rebuild(autoincrement=True)


def downgrade():
    _rebuild(autoincrement=False)
