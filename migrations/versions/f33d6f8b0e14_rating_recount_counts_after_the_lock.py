"""The rating recount of f31b2d4c6e81 on PostgreSQL counts after it holds the
product's row: its UPDATE ... FROM (SELECT count(*) ...) counted in the
snapshot taken before it waited for that lock, so two concurrent deletes
(two accounts', or one beside an API delete or a new review) each counted
the other's review and the second wrote stale totals over the first (found
by review). Now the row is locked first (FOR UPDATE) and the next statement,
with a snapshot of its own, counts. SQLite runs one writer at a time.

Revision ID: f33d6f8b0e14
Revises: f32c5e7a9d03
"""

from __future__ import annotations

from alembic import op

revision = "f33d6f8b0e14"
down_revision = "f32c5e7a9d03"
branch_labels = None
depends_on = None

BODY = """
CREATE OR REPLACE FUNCTION reviews_rating_recount() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    {lock}
    UPDATE products AS p
    SET rating_count = t.n,
        rating_sum = t.s,
        rating_average = CASE WHEN t.n > 0 THEN ((200 * t.s + t.n) / (2 * t.n)) / 100.0 END,
        updated_at = now()
    FROM (
        SELECT count(*)::integer AS n, coalesce(sum(rating), 0)::integer AS s
        FROM reviews WHERE product_id = OLD.product_id
    ) AS t
    WHERE p.id = OLD.product_id AND (p.rating_count, p.rating_sum) IS DISTINCT FROM (t.n, t.s);
    RETURN NULL;
END
$$
"""
LOCK = "PERFORM 1 FROM products WHERE id = OLD.product_id FOR UPDATE;"


def upgrade():
    if op.get_bind().dialect.name == "postgresql":
        op.execute(BODY.format(lock=LOCK))


def downgrade():
    if op.get_bind().dialect.name == "postgresql":
        op.execute(BODY.format(lock=""))
