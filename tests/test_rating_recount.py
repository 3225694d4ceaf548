"""The rating recount after a review is deleted outside the API (an account
deleted with its reviews, an operator's SQL): PostgreSQL's trigger function
(migrations f31b2d4c6e81, f33d6f8b0e14, f39c5a7e2b16)."""

from __future__ import annotations

from decimal import Decimal

import pytest
from sqlalchemy import text

from tests.helpers import IS_POSTGRES

# 5 * 2,147,484 = 10,737,420 stars: 200 * that passes INTEGER (2,147,483,647).
FIVE_STAR_REVIEWS = 2_147_484


@pytest.mark.skipif(not IS_POSTGRES, reason="SQLite's integers are 64-bit: no overflow")
def test_deleting_a_review_of_a_product_with_ten_million_stars_recounts_it(
    db, make_user, make_product
):
    """The recount's 200 * sum was INTEGER arithmetic: deleting any review of
    a product past 10,737,418 stars failed with "integer out of range" (so an
    account holding one of its reviews could not be deleted). The rows are
    real (the trigger counts them); foreign keys are off while they go in
    (there are no two million users), and the transaction is rolled back."""
    product = make_product()
    user = make_user()
    with db.engine.connect() as conn:
        transaction = conn.begin()
        try:
            # Foreign keys are triggers on PostgreSQL: "replica" skips them
            # (and the recount trigger) for the bulk insert only.
            conn.execute(text("SET LOCAL session_replication_role = replica"))
            # Without the secondary indexes the insert takes half the time.
            conn.execute(text("ALTER TABLE reviews DROP CONSTRAINT uq_reviews_user_id_product_id"))
            for index in ("ix_reviews_product_id_created_at_id", "ix_reviews_user_id"):
                conn.execute(text(f"DROP INDEX {index}"))
            conn.execute(
                text(
                    "INSERT INTO reviews (product_id, user_id, rating, created_at, updated_at) "
                    "SELECT :p, :u + g, 5, now(), now() FROM generate_series(1, :n) AS g"
                ),
                {"p": product.id, "u": user.id, "n": FIVE_STAR_REVIEWS},
            )
            conn.execute(
                text(
                    "INSERT INTO reviews (product_id, user_id, rating, created_at, updated_at) "
                    "VALUES (:p, :u, 1, now(), now())"
                ),
                {"p": product.id, "u": user.id},
            )
            conn.execute(text("SET LOCAL session_replication_role = origin"))

            conn.execute(text("DELETE FROM users WHERE id = :u"), {"u": user.id})

            count, total, average = conn.execute(
                text("SELECT rating_count, rating_sum, rating_average FROM products WHERE id = :p"),
                {"p": product.id},
            ).one()
            assert (count, total) == (FIVE_STAR_REVIEWS, 5 * FIVE_STAR_REVIEWS)
            assert average == Decimal("5.00")
        finally:
            transaction.rollback()
