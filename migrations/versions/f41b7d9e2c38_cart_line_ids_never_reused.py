"""A cart line's id is never given to a later line: on SQLite `cart_items.id`
is now INTEGER PRIMARY KEY AUTOINCREMENT, as `reviews.id` (f40a6c8e1d27).
Without it SQLite gave a new line the highest rowid + 1, so once the newest
line was removed (or ordered) the next line added got its id, and a retried
`DELETE /api/cart/<id>` or `PUT` of the removed line emptied or changed that
other line (found by review). PostgreSQL's sequence never reuses an id.

The table is rebuilt (foreign keys off, as `migrations/env.py` runs every
SQLite migration): SQLite cannot add AUTOINCREMENT to a table. No index or
trigger of its own but the unique constraint's, which the DDL holds.

Revision ID: f41b7d9e2c38
Revises: f40a6c8e1d27
"""

from __future__ import annotations

from alembic import op

revision = "f41b7d9e2c38"
down_revision = "f40a6c8e1d27"
branch_labels = None
depends_on = None

# `cart_items` as the initial schema made it, the id's clause aside.
TABLE = """
CREATE TABLE cart_items_rebuilt (
    {id},
    cart_id INTEGER NOT NULL,
    product_id INTEGER NOT NULL,
    quantity INTEGER NOT NULL,
    created_at DATETIME NOT NULL,
    {primary_key}CONSTRAINT ck_cart_items_quantity_positive CHECK (quantity >= 1),
    CONSTRAINT fk_cart_items_cart_id_carts FOREIGN KEY(cart_id)
        REFERENCES carts (id) ON DELETE CASCADE,
    CONSTRAINT fk_cart_items_product_id_products FOREIGN KEY(product_id)
        REFERENCES products (id) ON DELETE CASCADE,
    CONSTRAINT uq_cart_items_cart_id UNIQUE (cart_id, product_id)
)
"""
COLUMNS = "id, cart_id, product_id, quantity, created_at"


def _rebuild(autoincrement: bool) -> None:
    if op.get_bind().dialect.name != "sqlite":
        return
    if autoincrement:
        table = TABLE.format(id="id INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT", primary_key="")
    else:
        primary_key = "CONSTRAINT pk_cart_items PRIMARY KEY (id),\n    "
        table = TABLE.format(id="id INTEGER NOT NULL", primary_key=primary_key)
    op.execute(table)
    op.execute(f"INSERT INTO cart_items_rebuilt ({COLUMNS}) SELECT {COLUMNS} FROM cart_items")
    op.execute("DROP TABLE cart_items")
    op.execute("ALTER TABLE cart_items_rebuilt RENAME TO cart_items")


def upgrade():
    _rebuild(autoincrement=True)


def downgrade():
    _rebuild(autoincrement=False)
