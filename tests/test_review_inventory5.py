"""Inventory and reviews, found by review (session 14): each test failed on
the code before its fix (its docstring says what API.md promises and what
happened instead)."""

from __future__ import annotations

from decimal import Decimal

from sqlalchemy import text

from app.extensions import db
from tests.helpers import auth
from tests.reviewing import give_order

# A product this many five-star reviews: 200 * rating_sum + rating_count (the
# numerator of the rounded average) is 2,147,484,339, just past INTEGER.
FIVE_STAR_REVIEWS = 2_145_339


def test_a_product_with_two_million_reviews_still_takes_reviews(
    client, make_user, login, make_product
):
    """API.md, Reviews: the product's `rating_average` and `rating_count`
    "follow every create, edit and delete". services.reviews._move_rating
    derives the average as (200 * rating_sum + rating_count) // (2 *
    rating_count) in SQL, on INTEGER columns: past 10,737,418 stars in all
    (2,145,339 five-star reviews, far below what rating_sum itself holds)
    the product of that multiplication overflows INTEGER on PostgreSQL
    ("integer out of range"), so every later create, edit or delete of a
    review of that product was a 500. (The totals are set straight in the
    database: two million reviewers are too many to make here.)"""
    product = make_product()
    with db.engine.begin() as conn:
        conn.execute(
            text("UPDATE products SET rating_count = :n, rating_sum = :s WHERE id = :i"),
            {"n": FIVE_STAR_REVIEWS, "s": 5 * FIVE_STAR_REVIEWS, "i": product.id},
        )
    user = make_user()
    give_order(user, product)
    token = login(user)["access_token"]

    created = client.post(
        f"/api/products/{product.id}/reviews", json={"rating": 1}, headers=auth(token)
    )
    assert created.status_code == 201, created.get_json()
    shown = client.get(f"/api/products/{product.id}").get_json()
    assert shown["rating_count"] == FIVE_STAR_REVIEWS + 1
    assert Decimal(str(shown["rating_average"])) == 5  # 10,726,696 / 2,145,340 = 4.9999995

    review_id = created.get_json()["id"]
    edited = client.put(f"/api/reviews/{review_id}", json={"rating": 5}, headers=auth(token))
    assert edited.status_code == 200, edited.get_json()
    shown = client.get(f"/api/products/{product.id}").get_json()
    assert shown["rating_count"] == FIVE_STAR_REVIEWS + 1
    assert Decimal(str(shown["rating_average"])) == 5
    # (The delete's totals are not checked: the trigger that recounts after a
    # delete finds the one real review, not the two million set above.)
    assert client.delete(f"/api/reviews/{review_id}", headers=auth(token)).status_code == 204
