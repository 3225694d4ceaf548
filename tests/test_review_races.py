"""Concurrent review writes through real gunicorn processes (several workers,
several threads each): the product's aggregate stays exact and one user gets
one review, on SQLite and, in CI's second leg, PostgreSQL."""

from __future__ import annotations

from collections import Counter
from decimal import ROUND_HALF_UP, Decimal

import pytest

from tests.helpers import DATABASE_URL, race, scalar
from tests.live import gunicorn
from tests.reviewing import give_order

pytestmark = pytest.mark.server


@pytest.fixture(scope="module")
def server(app):
    with gunicorn(DATABASE_URL, workers=3, threads=4) as live:
        yield live


def buyers(make_user, login, product, count):
    tokens = []
    for _ in range(count):
        user = make_user()
        give_order(user, product)
        tokens.append(login(user)["access_token"])
    return tokens


def aggregate(server, product_id):
    """(average, count) as the API shows them, and checked against the reviews."""
    status, body = server.request("GET", f"/api/products/{product_id}")
    assert status == 200
    count = scalar("SELECT count(*) FROM reviews WHERE product_id = :p", p=product_id)
    total = scalar(
        "SELECT coalesce(sum(rating), 0) FROM reviews WHERE product_id = :p", p=product_id
    )
    assert body["rating_count"] == count
    assert scalar("SELECT rating_sum FROM products WHERE id = :p", p=product_id) == total
    expected = None
    if count:
        expected = (Decimal(total) / count).quantize(Decimal("0.01"), ROUND_HALF_UP)
    average = body["rating_average"]
    average = None if average is None else Decimal(str(average))
    assert average == expected
    return average, count


def test_one_user_racing_posts_gets_one_review(server, make_user, login, make_product):
    product = make_product()
    (token,) = buyers(make_user, login, product, 1)
    url = f"/api/products/{product.id}/reviews"
    results = race([lambda r=r: server.request("POST", url, {"rating": r}, token) for r in
                    [1, 2, 3, 4, 5] * 2])  # fmt: skip
    statuses = Counter(status for status, _ in results)
    assert statuses == {201: 1, 409: 9}, statuses
    created = next(body for status, body in results if status == 201)
    assert aggregate(server, product.id) == (created["rating"], 1)


def test_many_buyers_at_once_keep_the_aggregate_exact(server, make_user, login, make_product):
    product = make_product()
    tokens = buyers(make_user, login, product, 24)
    url = f"/api/products/{product.id}/reviews"
    ratings = [n % 5 + 1 for n in range(24)]
    ratings[0] = 2  # 71 / 24 = 2.958...: a rounded average
    pairs = zip(tokens, ratings, strict=True)
    results = race(
        [lambda t=t, r=r: server.request("POST", url, {"rating": r}, t) for t, r in pairs]
    )
    assert Counter(status for status, _ in results) == {201: 24}
    assert aggregate(server, product.id) == (Decimal("2.96"), 24)


def test_racing_edits_deletes_and_posts(server, make_user, login, admin_token, make_product):
    product = make_product()
    tokens = buyers(make_user, login, product, 18)
    url = f"/api/products/{product.id}/reviews"
    review_ids = []
    for token in tokens[:12]:
        status, body = server.request("POST", url, {"rating": 3}, token)
        assert status == 201
        review_ids.append(body["id"])
    calls = []
    for n, (token, review_id) in enumerate(zip(tokens[:12], review_ids, strict=True)):
        if n % 3 == 0:
            calls.append(
                lambda i=review_id: server.request("DELETE", f"/api/reviews/{i}", None, admin_token)
            )
        else:
            for rating in (5, 1):
                calls.append(
                    lambda t=token, i=review_id, r=rating: server.request(
                        "PUT", f"/api/reviews/{i}", {"rating": r}, t
                    )
                )
    for token in tokens[12:]:
        calls.append(lambda t=token: server.request("POST", url, {"rating": 4}, t))
    results = race(calls)
    assert {status for status, _ in results} <= {200, 201, 204}, Counter(s for s, _ in results)
    _, count = aggregate(server, product.id)
    assert count == 12 - 4 + 6
