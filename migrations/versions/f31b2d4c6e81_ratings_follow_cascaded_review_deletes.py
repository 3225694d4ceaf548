"""A product's rating follows reviews the database deletes by itself: an
account's reviews go with the account (reviews.user_id is ON DELETE
CASCADE), and only `services.reviews` moved rating_count, rating_sum and
rating_average, so a deleted account's review stayed counted (found by
review). An AFTER DELETE trigger counts the product's remaining reviews
again and writes the totals when they differ: a delete through the API has
moved them already (`_move_rating`, before its DELETE), so it writes
nothing; any other delete (a cascade, an operator's SQL) corrects them.
The average is rounded half up to hundredths in integer arithmetic, as
`_move_rating` does.

Revision ID: f31b2d4c6e81
Revises: f30d5e7a9b14
"""

from __future__ import annotations

from alembic import op

revision = "f31b2d4c6e81"
down_revision = "f30d5e7a9b14"
branch_labels = None
depends_on = None

POSTGRES_FUNCTION = """
CREATE FUNCTION reviews_rating_recount() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
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

# SQLite: the new totals in a CTE-less form (a trigger's UPDATE takes no
# WITH); the subqueries read the product's index of reviews.
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


def upgrade():
    if op.get_bind().dialect.name == "postgresql":
        op.execute(POSTGRES_FUNCTION)
        op.execute(
            "CREATE TRIGGER reviews_rating_after_delete AFTER DELETE ON reviews "
            "FOR EACH ROW EXECUTE FUNCTION reviews_rating_recount()"
        )
    else:
        op.execute(SQLITE_TRIGGER)
    # Totals already off (reviews of accounts deleted before this revision).
    op.execute(
        """
        UPDATE products SET
            rating_count = (SELECT count(*) FROM reviews WHERE product_id = products.id),
            rating_sum = (SELECT coalesce(sum(rating), 0) FROM reviews WHERE product_id = products.id)
        WHERE rating_count <> (SELECT count(*) FROM reviews WHERE product_id = products.id)
           OR rating_sum <> (SELECT coalesce(sum(rating), 0) FROM reviews WHERE product_id = products.id)
        """
    )
    op.execute(
        """
        UPDATE products SET rating_average = CASE WHEN rating_count > 0
            THEN ((200 * rating_sum + rating_count) / (2 * rating_count)) / 100.0 END
        WHERE (rating_count = 0) <> (rating_average IS NULL)
           OR rating_average <> CASE WHEN rating_count > 0
               THEN ((200 * rating_sum + rating_count) / (2 * rating_count)) / 100.0 END
        """
    )


def downgrade():
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS reviews_rating_after_delete ON reviews")
        op.execute("DROP FUNCTION IF EXISTS reviews_rating_recount()")
    else:
        op.execute("DROP TRIGGER IF EXISTS reviews_rating_after_delete")
