"""Review round 8 (reviews and ratings): what this review checked, on SQLite
and PostgreSQL. Ratings are compared with values computed here from the
reviews table alone."""

from __future__ import annotations

import json
import random
import urllib.error
import urllib.request
import uuid
from decimal import ROUND_HALF_UP, Decimal

import pytest
from sqlalchemy import text

from app.extensions import db
from tests.helpers import DATABASE_URL, REDIS_URL, auth
from tests.live import gunicorn
from tests.reviewing import give_order


def truth(product_id: int) -> tuple[Decimal | None, int]:
    """(average rounded half up to cents, count) from the reviews table alone."""
    with db.engine.connect() as conn:
        count, total = conn.execute(
            text("SELECT count(*), coalesce(sum(rating), 0) FROM reviews WHERE product_id = :p"),
            {"p": product_id},
        ).one()
    if not count:
        return None, 0
    return (Decimal(total) / count).quantize(Decimal("0.01"), ROUND_HALF_UP), count


def shown(product: dict) -> tuple[Decimal | None, int]:
    average = product["rating_average"]
    return (None if average is None else Decimal(str(average))), product["rating_count"]


def reviewer(make_user, login, *products, admin=False):
    """A user who has received each of `products`, and their access token."""
    user = make_user(admin=admin)
    for product in products:
        give_order(user, product)
    return user, login(user)["access_token"]


# --- every instance shows a review write at once, with a new ETag ---------------


def fetch(url: str, etag: str | None = None) -> tuple[int, str | None, dict]:
    request = urllib.request.Request(url)
    if etag:
        request.add_header("If-None-Match", etag)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            raw = response.read()
            return response.status, response.headers.get("ETag"), json.loads(raw) if raw else {}
    except urllib.error.HTTPError as err:
        with err:
            raw = err.read()
        return err.code, err.headers.get("ETag"), json.loads(raw) if raw else {}


STORES = ["local"] + (["redis"] if REDIS_URL else [])


@pytest.fixture(scope="module", params=STORES)
def server(request, app):
    env = {"CATALOG_CACHE_TTL": "300"}
    if request.param == "redis":
        prefix = f"rev8:{uuid.uuid4().hex}"
        env |= {"REDIS_URL": REDIS_URL, "CATALOG_CACHE_PREFIX": prefix}
        env |= {"CATALOG_MATCHES_PREFIX": prefix + ":m", "ACCOUNT_CACHE_PREFIX": prefix + ":a"}
    with gunicorn(DATABASE_URL, workers=3, threads=2, extra_env=env) as live:
        yield live


@pytest.mark.server
def test_every_worker_shows_each_review_write_with_a_new_etag(
    server, make_user, login, make_product
):
    """API.md: a cached catalog read is never stale after a review, on any
    instance; `If-None-Match` with the ETag from before the write is a 200
    with the new answer. Three gunicorn workers (each its own cache, or one
    Redis), read many times right after each write so every worker answers."""
    product, other = make_product(), make_product()
    _, admin_token = reviewer(make_user, login, admin=True)
    tokens = [reviewer(make_user, login, product)[1] for _ in range(3)]
    base = server.url + "/api/products"
    paths = {
        "detail": f"/{product.id}",
        "reviews": f"/{product.id}/reviews",
        "list": "?sort=-rating",
        "facets": "/facets?min_rating=4",
    }
    seen = {name: fetch(base + path)[1:] for name, path in paths.items()}

    def check():
        average, count = truth(product.id)
        for _ in range(6):
            for name, path in paths.items():
                etag_before, body_before = seen[name]
                status, etag, body = fetch(base + path)
                assert status == 200, (name, status)
                # The old ETag still names this answer only if the bytes are the same.
                assert (etag == etag_before) == (body == body_before), name
                revalidated = fetch(base + path, etag_before)[0]
                assert revalidated == (304 if etag == etag_before else 200), name
                if name == "detail":
                    assert shown(body) == (average, count)
                elif name == "reviews":
                    assert body["total"] == len(body["items"]) == count
                elif name == "list":
                    first = body["items"][0]
                    assert first["id"] == (product.id if count else other.id)
                    assert shown(first) == (average, count)
                else:
                    assert body["total"] == int(average is not None and average >= 4)
        seen.update({name: fetch(base + path)[1:] for name, path in paths.items()})

    def write(method, path, token, body=None):
        status, answer = server.request(method, "/api" + path, body, token)
        assert status in (200, 201, 204), (status, answer)
        return answer

    ids = [
        write("POST", f"/products/{product.id}/reviews", token, {"rating": rating})["id"]
        for token, rating in zip(tokens, (5, 4, 4), strict=True)
    ]
    check()
    write("PUT", f"/reviews/{ids[0]}", tokens[0], {"rating": 1})
    check()
    write("DELETE", f"/reviews/{ids[1]}", admin_token)
    check()
    write("DELETE", f"/reviews/{ids[0]}", tokens[0])
    write("DELETE", f"/reviews/{ids[2]}", tokens[2])
    check()


# --- rating sorts, filters and facets agree with the ratings shown -------------


def test_rating_sorts_filters_and_facets_agree_with_the_shown_ratings(
    client, make_user, login, make_product, admin_token
):
    """API.md: `sort=rating` / `-rating` put unrated products last either way,
    ties by id; `min_rating` keeps products whose (rounded) average reaches
    it; facets' `ratings` count 4+, 3+, 2+, 1+. Every page size walks the
    same order, every page's total is the filter's count, and a deleted
    rated product is in none of them."""
    rng = random.Random(8)
    products = [make_product() for _ in range(9)]
    tokens = [reviewer(make_user, login, *products)[1] for _ in range(3)]
    for product in products[:7]:
        for token in tokens[: rng.randint(1, 3)]:
            body = {"rating": rng.choice([2, 3, 4, 5])}
            response = client.post(
                f"/api/products/{product.id}/reviews", json=body, headers=auth(token)
            )
            assert response.status_code == 201, response.get_json()
    assert (
        client.delete(f"/api/products/{products[0].id}", headers=auth(admin_token)).status_code
        == 204
    )
    listed = client.get("/api/products?per_page=100").get_json()["items"]
    assert len(listed) == 8
    for product in listed:
        assert shown(product) == truth(product["id"])

    for sort in ("rating", "-rating"):
        for min_rating in (None, "3.5", "4"):
            kept = [
                p
                for p in listed
                if min_rating is None
                or (p["rating_average"] is not None and shown(p)[0] >= Decimal(min_rating))
            ]
            rated = sorted(
                (p for p in kept if p["rating_average"] is not None),
                key=lambda p: (shown(p)[0], p["id"]),
                reverse=sort == "-rating",
            )
            unrated = sorted(
                (p for p in kept if p["rating_average"] is None),
                key=lambda p: p["id"],
                reverse=sort == "-rating",
            )
            expected = [p["id"] for p in rated + unrated]
            query = f"sort={sort}" + (f"&min_rating={min_rating}" if min_rating else "")
            for per_page in (1, 2, 3, 100):
                walked, page = [], 1
                while True:
                    body = client.get(f"/api/products?{query}&per_page={per_page}&page={page}")
                    body = body.get_json()
                    assert body["total"] == len(expected), (query, per_page, page)
                    if not body["items"]:
                        break
                    walked += [p["id"] for p in body["items"]]
                    page += 1
                assert walked == expected, (query, per_page)
            facets = client.get(
                "/api/products/facets" + (f"?min_rating={min_rating}" if min_rating else "")
            ).get_json()
            assert facets["total"] == len(expected)
            for level in facets["ratings"]:
                reached = [p for p in rated if shown(p)[0] >= level["min_rating"]]
                assert level["count"] == len(reached), (min_rating, level)


# --- who may write what --------------------------------------------------------


@pytest.mark.parametrize(
    "raw",
    [
        '{"rating": true}',
        '{"rating": false}',
        '{"rating": 5.0}',
        '{"rating": 4.5}',
        '{"rating": "5"}',
        '{"rating": 1e400}',
        '{"rating": 99999999999999999999999999999}',
        '{"rating": -9223372036854775809}',
        '{"rating": 0}',
        '{"rating": 6}',
        '{"rating": null}',
        '{"rating": [5]}',
        '{"title": "no rating"}',
    ],
)
def test_a_rating_is_a_json_integer_from_1_to_5(client, make_user, login, make_product, raw):
    """API.md: `rating` an integer 1-5, required on create. Booleans,
    fractions (even 5.0), strings and numbers past any integer column are a
    422 naming `rating`, with no review written and the product unrated."""
    product = make_product()
    _, token = reviewer(make_user, login, product)
    response = client.post(
        f"/api/products/{product.id}/reviews",
        data=raw,
        headers={**auth(token), "Content-Type": "application/json"},
    )
    assert response.status_code == 422, response.get_json()
    assert "rating" in response.get_json()["errors"]
    assert truth(product.id) == (None, 0)
    assert shown(client.get(f"/api/products/{product.id}").get_json()) == (None, 0)


def test_who_may_write_a_review_and_its_gone_cases(
    client, make_user, login, make_product, admin_token
):
    """API.md, Reviews: another user's review is a 404 to PUT (an admin's
    too) and, unless admin, to DELETE; a deleted product's reviews are a
    404 to every route, with nothing written; ids past any column are a
    404 (never a 500); a deleted account's token is a 401."""
    product = make_product()
    author, token = reviewer(make_user, login, product)
    _, other = reviewer(make_user, login, product)
    _, admin = reviewer(make_user, login, product, admin=True)
    review_id = client.post(
        f"/api/products/{product.id}/reviews", json={"rating": 4}, headers=auth(token)
    ).get_json()["id"]

    for who in (other, admin):
        response = client.put(f"/api/reviews/{review_id}", json={"rating": 1}, headers=auth(who))
        assert response.status_code == 404, response.get_json()
    assert client.delete(f"/api/reviews/{review_id}", headers=auth(other)).status_code == 404
    assert truth(product.id) == (Decimal("4.00"), 1)

    for huge in (2**31, 2**63, 10**30):
        assert client.get(f"/api/products/{huge}/reviews").status_code == 404
        response = client.post(
            f"/api/products/{huge}/reviews", json={"rating": 3}, headers=auth(token)
        )
        assert response.status_code == 404
        for who in (token, admin):
            assert (
                client.put(
                    f"/api/reviews/{huge}", json={"rating": 3}, headers=auth(who)
                ).status_code
                == 404
            )
            assert client.delete(f"/api/reviews/{huge}", headers=auth(who)).status_code == 404

    assert (
        client.delete(f"/api/products/{product.id}", headers=auth(admin_token)).status_code == 204
    )
    assert client.get(f"/api/products/{product.id}/reviews").status_code == 404
    response = client.post(
        f"/api/products/{product.id}/reviews", json={"rating": 2}, headers=auth(other)
    )
    assert response.status_code == 404
    assert (
        client.put(
            f"/api/reviews/{review_id}", json={"title": "x"}, headers=auth(token)
        ).status_code
        == 404
    )
    assert client.delete(f"/api/reviews/{review_id}", headers=auth(token)).status_code == 404
    assert client.delete(f"/api/reviews/{review_id}", headers=auth(admin)).status_code == 404
    with db.engine.connect() as conn:
        row = conn.execute(
            text("SELECT rating, title FROM reviews WHERE id = :r"), {"r": review_id}
        ).one()
    assert tuple(row) == (4, "")

    with db.engine.begin() as conn:
        conn.execute(text("DELETE FROM users WHERE id = :u"), {"u": author.id})
    response = client.put(f"/api/reviews/{review_id}", json={"title": "x"}, headers=auth(token))
    assert response.status_code == 401, response.get_json()


def test_an_authors_new_name_shows_in_the_cached_review_list(
    client, make_user, login, make_product
):
    """A review names its author; the review list is cached, and a new
    username is shown by the next read (with a new ETag)."""
    product = make_product()
    author, token = reviewer(make_user, login, product)
    client.post(f"/api/products/{product.id}/reviews", json={"rating": 5}, headers=auth(token))
    path = f"/api/products/{product.id}/reviews"
    before = client.get(path)
    assert before.get_json()["items"][0]["user"]["username"] == author.username
    response = client.put("/api/auth/profile", json={"username": "renamed_8"}, headers=auth(token))
    assert response.status_code == 200, response.get_json()
    after = client.get(path, headers={"If-None-Match": before.headers["ETag"]})
    assert after.status_code == 200
    assert after.get_json()["items"][0]["user"] == {"id": author.id, "username": "renamed_8"}
