"""Reviews: who may write them, validation, the product's rating aggregate,
lists, and the catalog's rating filter and sort."""

from __future__ import annotations

from decimal import Decimal

import pytest

from tests.helpers import IS_POSTGRES, auth, scalar
from tests.reviewing import give_order

REVIEW = {"rating": 4, "title": "Solid", "body": "Does what it says."}


@pytest.fixture
def buyer(make_user, login, make_product):
    """(user, token, product): the user has received the product."""

    def make(product=None, status="delivered"):
        product = product or make_product()
        user = make_user()
        give_order(user, product, status)
        return user, login(user)["access_token"], product

    return make


def post_review(client, product_id, token, body=None):
    return client.post(
        f"/api/products/{product_id}/reviews", json=body or REVIEW, headers=auth(token)
    )


def product_rating(client, product_id):
    body = client.get(f"/api/products/{product_id}").get_json()
    average = body["rating_average"]  # parsed as a Decimal: compare as a float
    return (None if average is None else float(average)), body["rating_count"]


def truth(product_id):
    """The aggregate computed from the reviews themselves, for comparison."""
    count = scalar("SELECT count(*) FROM reviews WHERE product_id = :p", p=product_id)
    total = scalar(
        "SELECT coalesce(sum(rating), 0) FROM reviews WHERE product_id = :p", p=product_id
    )
    stored = (
        scalar("SELECT rating_count FROM products WHERE id = :p", p=product_id),
        scalar("SELECT rating_sum FROM products WHERE id = :p", p=product_id),
    )
    assert stored == (count, total)
    return count, total


# --- who may review -------------------------------------------------------------


def test_buyer_reviews_a_delivered_product(client, buyer):
    user, token, product = buyer()
    response = post_review(client, product.id, token)
    assert response.status_code == 201, response.get_json()
    body = response.get_json()
    assert set(body) == {
        "id", "product_id", "user", "rating", "title", "body", "created_at", "updated_at"
    }  # fmt: skip
    assert body["user"] == {"id": user.id, "username": user.username}
    assert body["product_id"] == product.id and body["rating"] == 4
    assert body["title"] == "Solid" and body["body"] == "Does what it says."
    assert body["created_at"].endswith("+00:00")
    assert product_rating(client, product.id) == (4.0, 1)


def test_anonymous_cannot_review(client, make_product):
    product = make_product()
    response = client.post(f"/api/products/{product.id}/reviews", json=REVIEW)
    assert response.status_code == 401


@pytest.mark.parametrize("status", ["pending", "processing", "shipped", "cancelled"])
def test_an_order_not_delivered_is_not_enough(client, buyer, status):
    _, token, product = buyer(status=status)
    response = post_review(client, product.id, token)
    assert response.status_code == 403
    assert response.get_json()["code"] == "not_a_buyer"
    assert response.get_json()["message"].startswith("Only a customer")
    assert scalar("SELECT count(*) FROM reviews") == 0


def test_non_buyer_gets_not_a_buyer(client, buyer, make_product):
    _, token, _ = buyer()  # bought something else
    other = make_product()
    response = post_review(client, other.id, token)
    assert response.status_code == 403
    assert response.get_json()["code"] == "not_a_buyer"


def test_second_review_is_already_reviewed(client, buyer):
    _, token, product = buyer()
    assert post_review(client, product.id, token).status_code == 201
    response = post_review(client, product.id, token, {"rating": 1})
    assert response.status_code == 409
    assert response.get_json()["code"] == "already_reviewed"
    assert product_rating(client, product.id) == (4.0, 1)
    assert truth(product.id) == (1, 4)


def test_unknown_or_deleted_product_is_404(client, buyer, admin_token):
    _, token, product = buyer()
    assert post_review(client, 999999, token).status_code == 404
    client.delete(f"/api/products/{product.id}", headers=auth(admin_token))
    assert post_review(client, product.id, token).status_code == 404


@pytest.mark.parametrize(
    ("who", "put", "delete"),
    [("author", 200, 204), ("other", 404, 404), ("admin", 404, 204), ("anonymous", 401, 401)],
)
def test_edit_and_delete_matrix(client, buyer, make_user, login, who, put, delete):
    _, token, product = buyer()
    review_id = post_review(client, product.id, token).get_json()["id"]
    headers = {
        "author": auth(token),
        "other": auth(login(make_user())["access_token"]),
        "admin": auth(login(make_user(admin=True))["access_token"]),
        "anonymous": {},
    }[who]
    response = client.put(f"/api/reviews/{review_id}", json={"rating": 2}, headers=headers)
    assert response.status_code == put, response.get_json()
    expected = (2.0, 1) if put == 200 else (4.0, 1)
    assert product_rating(client, product.id) == expected
    response = client.delete(f"/api/reviews/{review_id}", headers=headers)
    assert response.status_code == delete
    if delete == 204:
        assert response.data == b""
        assert product_rating(client, product.id) == (None, 0)
        assert client.delete(f"/api/reviews/{review_id}", headers=headers).status_code == 404
    else:
        assert product_rating(client, product.id) == expected
    truth(product.id)


def test_other_buyer_cannot_touch_my_review(client, buyer):
    _, mine, product = buyer()
    _, theirs, _ = buyer(product)
    review_id = post_review(client, product.id, mine).get_json()["id"]
    assert (
        client.put(f"/api/reviews/{review_id}", json={"rating": 1}, headers=auth(theirs))
    ).status_code == 404
    assert client.delete(f"/api/reviews/{review_id}", headers=auth(theirs)).status_code == 404
    assert scalar("SELECT rating FROM reviews WHERE id = :i", i=review_id) == 4


def test_deleted_products_reviews_disappear(client, buyer, admin_token):
    _, token, product = buyer()
    review_id = post_review(client, product.id, token).get_json()["id"]
    assert (
        client.delete(f"/api/products/{product.id}", headers=auth(admin_token)).status_code == 204
    )
    assert client.get(f"/api/products/{product.id}/reviews").status_code == 404
    assert (
        client.put(f"/api/reviews/{review_id}", json={"rating": 1}, headers=auth(token))
    ).status_code == 404
    assert client.delete(f"/api/reviews/{review_id}", headers=auth(admin_token)).status_code == 404
    assert client.delete(f"/api/reviews/{review_id}", headers=auth(token)).status_code == 404


def test_edit_changes_fields_and_updated_at(client, buyer):
    _, token, product = buyer()
    created = post_review(client, product.id, token).get_json()
    response = client.put(
        f"/api/reviews/{created['id']}", json={"title": "Better", "body": ""}, headers=auth(token)
    )
    assert response.status_code == 200
    body = response.get_json()
    assert body["title"] == "Better" and body["body"] == "" and body["rating"] == 4
    assert body["created_at"] == created["created_at"]
    assert body["updated_at"] >= created["updated_at"]
    assert product_rating(client, product.id) == (4.0, 1)


def test_unknown_review_is_404(client, user_token):
    for method, body in (("put", {"rating": 3}), ("delete", None)):
        response = getattr(client, method)(
            "/api/reviews/424242", json=body, headers=auth(user_token)
        )
        assert response.status_code == 404


# --- validation -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"rating": 0}, "rating"),
        ({"rating": 6}, "rating"),
        ({"rating": 4.5}, "rating"),
        ({"rating": "5"}, "rating"),
        ({"rating": True}, "rating"),
        ({"rating": None}, "rating"),
        ({"title": "No rating"}, "rating"),
        ({"rating": 3, "title": "x" * 121}, "title"),
        ({"rating": 3, "body": "x" * 5001}, "body"),
        ({"rating": 3, "title": None}, "title"),
        ({"rating": 3, "stars": 5}, "stars"),
        ({"rating": 3, "user_id": 1}, "user_id"),
        ({"rating": 3, "product_id": 2}, "product_id"),
    ],
)
def test_create_validation(client, buyer, body, field):
    _, token, product = buyer()
    response = post_review(client, product.id, token, body)
    assert response.status_code == 422
    assert field in response.get_json()["errors"]
    assert scalar("SELECT count(*) FROM reviews") == 0


def test_longest_title_and_body_and_rating_only(client, buyer):
    _, token, product = buyer()
    body = {"rating": 5, "title": "t" * 120, "body": "b" * 5000}
    assert post_review(client, product.id, token, body).status_code == 201
    _, token, product = buyer()
    response = post_review(client, product.id, token, {"rating": 1})
    assert response.status_code == 201
    assert response.get_json()["title"] == "" and response.get_json()["body"] == ""


def test_no_body_or_bad_json(client, buyer):
    _, token, product = buyer()
    url = f"/api/products/{product.id}/reviews"
    assert client.post(url, headers=auth(token)).status_code == 422
    response = client.post(url, data="{", content_type="application/json", headers=auth(token))
    assert response.status_code == 400


@pytest.mark.parametrize(
    "body",
    [{}, {"rating": 0}, {"rating": "2"}, {"title": "x" * 121}, {"body": "x" * 5001}, {"x": 1}],
)
def test_update_validation(client, buyer, body):
    _, token, product = buyer()
    review_id = post_review(client, product.id, token).get_json()["id"]
    response = client.put(f"/api/reviews/{review_id}", json=body, headers=auth(token))
    assert response.status_code == 422
    assert scalar("SELECT rating FROM reviews WHERE id = :i", i=review_id) == 4


# --- the aggregate ----------------------------------------------------------------


def test_aggregate_after_every_operation(client, buyer):
    _, t1, product = buyer()
    _, t2, _ = buyer(product)
    _, t3, _ = buyer(product)
    assert product_rating(client, product.id) == (None, 0)
    r1 = post_review(client, product.id, t1, {"rating": 5}).get_json()["id"]
    assert product_rating(client, product.id) == (5.0, 1)
    r2 = post_review(client, product.id, t2, {"rating": 4}).get_json()["id"]
    assert product_rating(client, product.id) == (4.5, 2)
    post_review(client, product.id, t3, {"rating": 4})
    assert product_rating(client, product.id) == (4.33, 3)
    assert truth(product.id) == (3, 13)
    client.put(f"/api/reviews/{r1}", json={"rating": 1}, headers=auth(t1))
    assert product_rating(client, product.id) == (3.0, 3)
    client.put(f"/api/reviews/{r1}", json={"title": "same stars"}, headers=auth(t1))
    assert product_rating(client, product.id) == (3.0, 3)
    client.delete(f"/api/reviews/{r2}", headers=auth(t2))
    assert product_rating(client, product.id) == (2.5, 2)
    assert truth(product.id) == (2, 5)
    client.delete(f"/api/reviews/{r1}", headers=auth(t1))
    assert product_rating(client, product.id) == (4.0, 1)
    # Rated again after being unrated: the same path works from zero.
    assert post_review(client, product.id, t2, {"rating": 2}).status_code == 201
    assert product_rating(client, product.id) == (3.0, 2)


def test_average_rounds_half_up_to_two_decimals(client, buyer):
    product = None
    tokens = []
    for _ in range(8):
        _, token, product = buyer(product)
        tokens.append(token)
    for n, token in enumerate(tokens):
        post_review(client, product.id, token, {"rating": 5 if n == 0 else 4})
    # 33 / 8 = 4.125: half up, not to even
    response = client.get(f"/api/products/{product.id}")
    assert response.get_json()["rating_average"] == Decimal("4.13")
    assert b'"rating_average":4.13' in response.data


# --- review lists -----------------------------------------------------------------


def test_list_envelope_sorts_and_authors(client, buyer):
    product = None
    made = []
    for rating in (3, 5, 1, 5):
        user, token, product = buyer(product)
        body = post_review(client, product.id, token, {"rating": rating}).get_json()
        made.append((body["id"], rating, user))
    ids = [review_id for review_id, _, _ in made]
    page = client.get(f"/api/products/{product.id}/reviews").get_json()
    assert {k: page[k] for k in ("page", "per_page", "total", "pages")} == {
        "page": 1, "per_page": 20, "total": 4, "pages": 1
    }  # fmt: skip
    # Created within the same instant, or not: ties fall to the id.
    assert [r["id"] for r in page["items"]] == ids[::-1]
    first = page["items"][-1]
    assert first["user"] == {"id": made[0][2].id, "username": made[0][2].username}

    def order(sort):
        url = f"/api/products/{product.id}/reviews?sort={sort}"
        return [r["id"] for r in client.get(url).get_json()["items"]]

    assert order("created_at") == ids
    assert order("-rating") == [ids[3], ids[1], ids[0], ids[2]]
    assert order("rating") == [ids[2], ids[0], ids[1], ids[3]]
    page = client.get(f"/api/products/{product.id}/reviews?per_page=3&page=2").get_json()
    assert [r["id"] for r in page["items"]] == [ids[0]] and page["pages"] == 2


def test_list_of_unreviewed_and_unknown_products(client, make_product):
    product = make_product()
    page = client.get(f"/api/products/{product.id}/reviews").get_json()
    assert page == {"items": [], "page": 1, "per_page": 20, "total": 0, "pages": 0}
    assert client.get("/api/products/999999/reviews").status_code == 404


@pytest.mark.parametrize("query", ["sort=stars", "sort=", "page=0", "per_page=0", "page=x"])
def test_list_query_validation(client, make_product, query):
    product = make_product()
    response = client.get(f"/api/products/{product.id}/reviews?{query}")
    assert response.status_code == 422


def test_reviews_of_other_products_stay_out(client, buyer):
    _, token, product = buyer()
    _, other_token, other = buyer()
    post_review(client, product.id, token)
    post_review(client, other.id, other_token)
    page = client.get(f"/api/products/{product.id}/reviews").get_json()
    assert [r["product_id"] for r in page["items"]] == [product.id]


def test_review_list_is_two_queries(client, db, buyer, make_user, make_product, count_queries):
    from app.models import Review

    product = make_product()
    users = [make_user() for _ in range(30)]
    db.session.add_all(Review(product_id=product.id, user_id=u.id, rating=3) for u in users)
    db.session.execute(
        db.text("UPDATE products SET rating_count = 30, rating_sum = 90, rating_average = 3")
    )
    db.session.commit()
    for per_page in (1, 30, 100):
        for sort in ("-created_at", "rating"):
            with count_queries() as q:
                url = f"/api/products/{product.id}/reviews?per_page={per_page}&sort={sort}"
                response = client.get(url)
                assert response.status_code == 200
            assert q.count == 2, q.statements
            assert len(response.get_json()["items"]) == min(per_page, 30)
            assert response.get_json()["total"] == 30


# --- the catalog: min_rating and sort=rating ----------------------------------------


def rate(db, product, ratings):
    """Set a product's aggregate as if these reviews had been written."""
    from app.models import Product
    from app.services.reviews import _move_rating

    _move_rating(product.id, len(ratings), sum(ratings))
    db.session.commit()
    return db.session.get(Product, product.id)


def test_catalog_min_rating_and_rating_sorts(client, db, make_product):
    unrated_a = make_product()
    high = make_product()
    low = make_product()
    unrated_b = make_product()
    tie = make_product()
    rate(db, high, [5, 4])  # 4.5
    rate(db, low, [2])
    rate(db, tie, [4, 5])  # 4.5, ties with `high` by id

    def ids(**params):
        body = client.get("/api/products", query_string=params).get_json()
        return [p["id"] for p in body["items"]]

    assert ids(sort="rating") == [low.id, high.id, tie.id, unrated_a.id, unrated_b.id]
    assert ids(sort="-rating") == [tie.id, high.id, low.id, unrated_b.id, unrated_a.id]
    assert ids(min_rating=4, sort="rating") == [high.id, tie.id]
    assert ids(min_rating="4.5", sort="-rating") == [tie.id, high.id]
    assert ids(min_rating=1, sort="rating") == [low.id, high.id, tie.id]
    assert ids(min_rating=5) == []
    body = client.get(f"/api/products/{high.id}").get_json()
    assert body["rating_average"] == 4.5 and body["rating_count"] == 2


@pytest.mark.parametrize("value", ["0", "5.01", "6", "x", "NaN", "inf", ""])
def test_catalog_min_rating_validation(client, value):
    assert client.get(f"/api/products?min_rating={value}").status_code == 422


def test_catalog_rating_fields_are_read_only(client, admin_token, make_product):
    product = make_product()
    for field, value in (("rating_average", 5), ("rating_count", 9)):
        response = client.put(
            f"/api/products/{product.id}", json={field: value}, headers=auth(admin_token)
        )
        assert response.status_code == 422


def test_catalog_list_stays_one_query_with_rating(client, db, make_product, count_queries):
    for n in range(30):
        product = make_product()
        if n % 3:
            rate(db, product, [n % 5 + 1])
    for params in ("sort=rating", "sort=-rating&min_rating=2", "min_rating=3&per_page=100"):
        with count_queries() as q:
            assert client.get(f"/api/products?{params}").status_code == 200
        assert q.count == 1, q.statements  # the page, its total as a scalar subquery


@pytest.mark.skipif(not IS_POSTGRES, reason="the planner's choice on PostgreSQL")
@pytest.mark.parametrize(
    ("sort", "index"),
    [
        ("rating_average ASC NULLS LAST, id ASC", "ix_products_rating_average_id"),
        ("rating_average DESC NULLS LAST, id DESC", "ix_products_rating_desc_id"),
    ],
)
def test_rating_sorts_walk_an_index_on_10000_products(db, sort, index):
    db.session.execute(
        db.text(
            "INSERT INTO products (name, description, price, stock, created_at, updated_at,"
            " rating_count, rating_sum, rating_average)"
            " SELECT 'P' || n, '', 1, 1, now(), now(),"
            " CASE WHEN n % 4 = 0 THEN 0 ELSE 1 END, CASE WHEN n % 4 = 0 THEN 0 ELSE n % 5 + 1 END,"
            " CASE WHEN n % 4 = 0 THEN NULL ELSE n % 5 + 1 END"
            " FROM generate_series(1, 10000) AS n"
        )
    )
    db.session.commit()
    db.session.execute(db.text("ANALYZE products"))
    query = f"SELECT * FROM products WHERE deleted_at IS NULL ORDER BY {sort} LIMIT 20"  # noqa: S608
    plan = "\n".join(db.session.scalars(db.text("EXPLAIN " + query)))
    db.session.rollback()
    assert index in plan and "Sort" not in plan.split("->")[0], plan


def test_seed_adds_demo_reviews_from_verified_buyers(app, client, db):
    runner = app.test_cli_runner()
    result = runner.invoke(args=["seed"])
    assert result.exit_code == 0 and "and 9 reviews" in result.output, result.output
    assert scalar("SELECT count(*) FROM reviews") == 9
    page = client.get("/api/products?sort=-rating&per_page=100").get_json()
    rated = [p for p in page["items"] if p["rating_count"]]
    assert len(rated) == 6 and page["items"][: len(rated)] == rated
    headphones = next(p for p in rated if p["name"] == "Aurora Wireless Headphones")
    assert (float(headphones["rating_average"]), headphones["rating_count"]) == (4.5, 2)
    for product in rated:
        truth(product["id"])
    reviews = client.get(f"/api/products/{headphones['id']}/reviews").get_json()["items"]
    assert {r["user"]["username"] for r in reviews} == {"demo_ada", "demo_linus"}
    # Every demo reviewer has the delivered order the rule asks for.
    assert (
        scalar(
            "SELECT count(*) FROM reviews r WHERE NOT EXISTS (SELECT 1 FROM orders o"
            " JOIN order_items i ON i.order_id = o.id WHERE o.user_id = r.user_id"
            " AND i.product_id = r.product_id AND o.status = 'delivered')"
        )
        == 0
    )


def test_a_review_moves_the_products_updated_at(client, buyer):
    _, token, product = buyer()
    before = client.get(f"/api/products/{product.id}").get_json()["updated_at"]
    assert post_review(client, product.id, token).status_code == 201
    after = client.get(f"/api/products/{product.id}").get_json()["updated_at"]
    assert after > before


def test_facets_count_rated_products_and_take_min_rating(client, db, make_product):
    for ratings in ([5], [4, 3], [2], [1], []):
        product = make_product()
        if ratings:
            rate(db, product, ratings)
    body = client.get("/api/products/facets").get_json()
    assert body["ratings"] == [
        {"min_rating": 4, "count": 1},
        {"min_rating": 3, "count": 2},
        {"min_rating": 2, "count": 3},
        {"min_rating": 1, "count": 4},
    ]
    body = client.get("/api/products/facets?min_rating=3").get_json()
    assert body["total"] == 2
