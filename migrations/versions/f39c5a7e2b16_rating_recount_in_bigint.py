"""The PostgreSQL rating recount (f31b2d4c6e81, f33d6f8b0e14) computes the
average's `200 * sum` in BIGINT, as `services.reviews` does since cd7757b:
in INTEGER it overflowed from 10,737,419 stars on one product, and deleting
any of that product's reviews outside the API (an account deleted with its
reviews, an operator's SQL) failed with "integer out of range". SQLite's
integers are 64-bit already.

Revision ID: f39c5a7e2b16
Revises: f38b4e6a8c12
"""

from __future__ import annotations

from alembic import op

revision = "f39c5a7e2b16"
down_revision = "f38b4e6a8c12"
branch_labels = None
depends_on = None

BODY = """
CREATE OR REPLACE FUNCTION reviews_rating_recount() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM 1 FROM products WHERE id = OLD.product_id FOR UPDATE;
    UPDATE products AS p
    SET rating_count = t.n,
        rating_sum = t.s,
        rating_average = CASE WHEN t.n > 0 THEN ((200 * {sum} + t.n) / (2 * t.n)) / 100.0 END,
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


def upgrade():
    if op.get_bind().dialect.name == "postgresql":
        op.execute(BODY.format(sum="t.s::bigint"))


def downgrade():
    if op.get_bind().dialect.name == "postgresql":
        op.execute(BODY.format(sum="t.s"))
