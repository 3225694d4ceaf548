"""Reviews and ratings, found by review: each test fails on the current code
because of a defect (its docstring says what API.md promises and what
happens instead)."""

from __future__ import annotations

import threading

import pytest

from app.models import User
from tests.helpers import auth, scalar
from tests.reviewing import give_order


def reviewer(make_user, login, product):
    """A user who has received `product`, and their access token."""
    user = make_user()
    give_order(user, product)
    return user, login(user)["access_token"]


def review(client, product_id, token, rating):
    response = client.post(
        f"/api/products/{product_id}/reviews", json={"rating": rating}, headers=auth(token)
    )
    assert response.status_code == 201, response.get_json()
    return response.get_json()


def test_deleting_an_account_keeps_its_reviews_in_the_products_rating(
    client, db, make_user, login, make_product
):
    """API.md, Products: `rating_count` is "the number of reviews" and
    `rating_average` "the mean of the product's review ratings"; Reviews:
    they "follow every create, edit and delete at once". An account's
    reviews go with it (reviews.user_id is ON DELETE CASCADE, as are its
    orders; the project deletes accounts this way, see
    test_account_integrity), but the product's rating_count / rating_sum /
    rating_average are only moved by services.reviews, so they keep
    counting the deleted account's review: the product says 2 reviews
    averaging 3.0 where one 5-star review is left, and the review list's
    envelope (whose total is rating_count) says total 2 beside one item."""
    product = make_product()
    _, keeps = reviewer(make_user, login, product)
    leaver, leaves = reviewer(make_user, login, product)
    review(client, product.id, keeps, 5)
    review(client, product.id, leaves, 1)

    db.session.delete(db.session.get(User, leaver.id))
    db.session.commit()
    assert scalar("SELECT count(*) FROM reviews WHERE product_id = :p", p=product.id) == 1

    shown = client.get(f"/api/products/{product.id}").get_json()
    page = client.get(f"/api/products/{product.id}/reviews").get_json()
    assert (shown["rating_count"], float(shown["rating_average"])) == (1, 5.0), shown
    assert (page["total"], len(page["items"])) == (1, 1), page


def test_a_new_reviews_updated_at_is_its_created_at(client, make_user, login, make_product):
    """API.md, Reviews: a review carries `created_at` and `updated_at`, and
    PUT is the one way to update it - a storefront marks a review "edited"
    when `updated_at` is after `created_at`. A review nobody has edited must
    show the same instant twice (as orders do: services.orders writes one
    `now` to both). models.Review gives each column its own `default=utcnow`,
    called once per column on INSERT, so every new review (in the 201 and
    in the list) looks edited a few microseconds after it was written."""
    product = make_product()
    _, token = reviewer(make_user, login, product)

    created = review(client, product.id, token, 4)
    (listed,) = client.get(f"/api/products/{product.id}/reviews").get_json()["items"]

    assert created["updated_at"] == created["created_at"], created
    assert listed["updated_at"] == listed["created_at"], listed


def test_a_review_page_never_counts_other_reviews_than_it_lists(
    app, client, make_user, login, make_product, monkeypatch
):
    """API.md: every list answers the page envelope `{items, page, per_page,
    total, pages}`. services.reviews.list_reviews takes `total` from the
    product row (`rating_count`, read by get_product) and the items from a
    second statement; a read runs outside a transaction (each statement its
    own snapshot, on PostgreSQL and SQLite), so a review written between
    the two lands in `items` but not in `total`: the page below listed 2
    reviews under total 1 and pages 1 (the product list reads its total in
    the page's own statement for this reason). The second review is posted
    through the API by another request, at the moment between the two reads
    (after the product's)."""
    from app.services import reviews as review_service

    product = make_product()
    _, first = reviewer(make_user, login, product)
    _, second = reviewer(make_user, login, product)
    review(client, product.id, first, 4)
    get_product, posted = review_service.get_product, []

    def review_lands_between_the_reads(*args, **kwargs):
        product = get_product(*args, **kwargs)
        if not posted:

            def other_request():
                with app.app_context():
                    response = app.test_client().post(
                        f"/api/products/{product.id}/reviews",
                        json={"rating": 2},
                        headers=auth(second),
                    )
                    posted.append(response.status_code)

            writer = threading.Thread(target=other_request)
            writer.start()
            writer.join()
        return product

    monkeypatch.setattr(review_service, "get_product", review_lands_between_the_reads)
    page = client.get(f"/api/products/{product.id}/reviews").get_json()

    assert posted == [201]
    assert page["total"] == len(page["items"]), {k: v for k, v in page.items() if k != "items"}


@pytest.mark.parametrize(
    "body",
    [
        {"rating": 5, "title": "Great\x1b[2J\x1b[31m"},
        {"rating": 5, "title": "Ring\x07"},
        {
            "rating": 5,
            "body": "Line one\nline two\x1b]8;;https://evil.example\x07click\x1b]8;;\x07",
        },
        {"rating": 5, "body": "\x08\x08\x08\x7f"},
    ],
)
def test_a_reviews_public_text_refuses_control_characters(
    client, make_user, login, make_product, body
):
    """A review's title and body are public catalog text, shown by every
    storefront and served to everyone from the catalog cache, like a
    product's name and description. The project holds public text to one
    rule (schemas.product: names refuse control characters, descriptions
    every control character but line breaks and tabs, "names refuse control
    characters ... descriptions control characters but line breaks and
    tabs" in commit 02806e0; an email address refuses them too), but
    schemas.review.ReviewSchema checks only lengths: any buyer publishes
    terminal escapes (ESC sequences that clear a screen or hide a link,
    BEL, backspaces, DEL) to every reader of the product's reviews. A 201
    where the rule gives a 422 naming the field."""
    product = make_product()
    _, token = reviewer(make_user, login, product)

    response = client.post(f"/api/products/{product.id}/reviews", json=body, headers=auth(token))

    field = "title" if "title" in body else "body"
    assert response.status_code == 422, response.get_json()
    assert field in response.get_json()["errors"]
