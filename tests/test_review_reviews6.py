"""Review round 6 (reviews and ratings, low-stock alerts and the report): the
behaviours this review checked on SQLite and PostgreSQL. Each rating is
compared with one computed here from the reviews table alone."""

from __future__ import annotations

import random
from collections import Counter
from decimal import ROUND_HALF_UP, Decimal

import pytest
from sqlalchemy import text

from app.extensions import db
from tests.helpers import (
    DATABASE_URL,
    auth,
    buyers_with_carts,
    order_for,
    race,
    scalar,
)
from tests.live import gunicorn
from tests.reviewing import give_order


def truth(product_id: int) -> tuple[Decimal | None, int, int]:
    """(average, count, sum) from the reviews table alone, rounded half up."""
    with db.engine.connect() as conn:
        count, total = conn.execute(
            text("SELECT count(*), coalesce(sum(rating), 0) FROM reviews WHERE product_id = :p"),
            {"p": product_id},
        ).one()
    average = None
    if count:
        average = (Decimal(total) / count).quantize(Decimal("0.01"), ROUND_HALF_UP)
    return average, count, total


def stored(product_id: int) -> tuple[Decimal | None, int, int]:
    """(average, count, sum) as the product row keeps them."""
    with db.engine.connect() as conn:
        count, total, average = conn.execute(
            text("SELECT rating_count, rating_sum, rating_average FROM products WHERE id = :p"),
            {"p": product_id},
        ).one()
    if average is not None:
        average = Decimal(str(average)).quantize(Decimal("0.01"))
    return average, count, total


def reviewer(make_user, login, *products):
    user = make_user()
    for product in products:
        give_order(user, product)
    return user, login(user)["access_token"]


# --- ratings follow every write --------------------------------------------------


def test_a_random_sequence_of_review_writes_keeps_every_rating_exact(
    client, make_user, login, make_product, admin_token
):
    """Creates, edits, deletes (author and admin), product deletes and accounts
    deleted in SQL (their reviews cascade), in a random order: after each step
    every product's stored count, sum and average equal the reviews table's."""
    rng = random.Random(6)
    products = [make_product() for _ in range(3)]
    users = [reviewer(make_user, login, *products) for _ in range(5)]
    mine: dict[tuple[int, int], int] = {}  # (user slot, product id) -> review id
    live = {p.id for p in products}
    for step in range(200):
        slot, product_id, roll = rng.randrange(len(users)), rng.choice(products).id, rng.random()
        token = users[slot][1]
        if roll < 0.4:
            body = {"rating": rng.randint(1, 5)}
            r = client.post(f"/api/products/{product_id}/reviews", json=body, headers=auth(token))
            assert r.status_code in (201, 404, 409), r.get_json()
            if r.status_code == 201:
                mine[slot, product_id] = r.get_json()["id"]
        elif roll < 0.7 and (slot, product_id) in mine:
            body = {"rating": rng.randint(1, 5)}
            r = client.put(f"/api/reviews/{mine[slot, product_id]}", json=body, headers=auth(token))
            assert r.status_code == (200 if product_id in live else 404), r.get_json()
        elif roll < 0.9 and (slot, product_id) in mine:
            who = admin_token if rng.random() < 0.3 else token
            r = client.delete(f"/api/reviews/{mine[slot, product_id]}", headers=auth(who))
            assert r.status_code == (204 if product_id in live else 404), r.get_json()
            if r.status_code == 204:
                del mine[slot, product_id]
        elif roll < 0.93 and len(live) > 1 and product_id in live:
            r = client.delete(f"/api/products/{product_id}", headers=auth(admin_token))
            assert r.status_code == 204
            live.discard(product_id)
        elif roll < 0.96:
            with db.engine.begin() as conn:
                conn.execute(text("DELETE FROM users WHERE id = :u"), {"u": users[slot][0].id})
            mine = {key: value for key, value in mine.items() if key[0] != slot}
            users[slot] = reviewer(make_user, login, *products)
        for product in products:
            assert stored(product.id) == truth(product.id), (step, product.id)
    for product_id in live:
        page = client.get(f"/api/products/{product_id}/reviews?per_page=100").get_json()
        assert page["total"] == len(page["items"]) == truth(product_id)[1]


def test_the_review_list_is_never_stale_after_a_review_write(
    client, make_user, login, make_product, admin_token
):
    product = make_product()
    url = f"/api/products/{product.id}/reviews"
    tokens = [reviewer(make_user, login, product)[1] for _ in range(3)]

    def read(query: str = ""):
        response = client.get(url + query)
        assert response.status_code == 200
        return response.get_json(), response.headers["ETag"]

    page, etag = read()
    assert page["total"] == 0
    ids = []
    for n, token in enumerate(tokens):
        response = client.post(url, json={"rating": n + 3, "title": f"t{n}"}, headers=auth(token))
        assert response.status_code == 201
        ids.append(response.get_json()["id"])
        page, new_etag = read()
        assert page["total"] == n + 1 and new_etag != etag
        etag = new_etag
    assert client.get(url, headers={"If-None-Match": etag}).status_code == 304
    # A title-only edit moves no rating, but the list shows the title.
    edit = client.put(f"/api/reviews/{ids[0]}", json={"title": "changed"}, headers=auth(tokens[0]))
    assert edit.status_code == 200
    response = client.get(url, headers={"If-None-Match": etag})
    assert response.status_code == 200
    assert response.get_json()["items"][-1]["title"] == "changed"
    assert [r["rating"] for r in read("?sort=-rating")[0]["items"]] == [5, 4, 3]
    assert [r["rating"] for r in read("?sort=rating")[0]["items"]] == [3, 4, 5]
    assert read("?per_page=1&page=3")[0]["pages"] == 3
    past = read("?per_page=1&page=4")[0]
    assert past["items"] == [] and past["total"] == 3
    # The author's new name shows at once.
    renamed = client.put(
        "/api/auth/profile", json={"username": "renamed_6"}, headers=auth(tokens[1])
    )
    assert renamed.status_code == 200
    assert "renamed_6" in [r["user"]["username"] for r in read()[0]["items"]]
    # An admin's delete: gone from the list and from the count.
    assert client.delete(f"/api/reviews/{ids[2]}", headers=auth(admin_token)).status_code == 204
    page = read()[0]
    assert page["total"] == 2 == len(page["items"])
    assert client.get(f"/api/products/{product.id}").get_json()["rating_count"] == 2
    # A deleted product's reviews are a 404, to read, edit and delete.
    assert (
        client.delete(f"/api/products/{product.id}", headers=auth(admin_token)).status_code == 204
    )
    assert client.get(url).status_code == 404
    gone = client.put(f"/api/reviews/{ids[0]}", json={"rating": 1}, headers=auth(tokens[0]))
    assert gone.status_code == 404
    assert client.delete(f"/api/reviews/{ids[0]}", headers=auth(admin_token)).status_code == 404
    assert stored(product.id) == truth(product.id)


def test_rating_filters_sorts_and_facets_follow_review_writes(
    client, make_user, login, make_product, admin_token
):
    a = make_product(name="Alpha", category="Round6")
    b = make_product(name="Beta", category="Round6")
    _, token = reviewer(make_user, login, a, b)

    def listed(query: str):
        page = client.get("/api/products?category=Round6&" + query).get_json()
        return [p["id"] for p in page["items"]], page["total"]

    def four_plus() -> int:
        return client.get("/api/products/facets?category=Round6").get_json()["ratings"][0]["count"]

    assert listed("min_rating=4") == ([], 0) and four_plus() == 0
    ra = client.post(f"/api/products/{a.id}/reviews", json={"rating": 5}, headers=auth(token))
    assert listed("min_rating=4") == ([a.id], 1) and four_plus() == 1
    assert listed("sort=-rating")[0] == [a.id, b.id]
    rb = client.post(f"/api/products/{b.id}/reviews", json={"rating": 4}, headers=auth(token))
    assert listed("min_rating=4")[1] == 2 and four_plus() == 2
    edit = client.put(
        f"/api/reviews/{ra.get_json()['id']}", json={"rating": 1}, headers=auth(token)
    )
    assert edit.status_code == 200
    assert listed("min_rating=4") == ([b.id], 1) and four_plus() == 1
    assert listed("sort=-rating")[0] == [b.id, a.id]
    removed = client.delete(f"/api/reviews/{rb.get_json()['id']}", headers=auth(admin_token))
    assert removed.status_code == 204
    assert listed("min_rating=4") == ([], 0) and four_plus() == 0
    # Unrated last either way.
    assert listed("sort=-rating")[0] == [a.id, b.id] == listed("sort=rating")[0]


@pytest.mark.parametrize(
    "raw",
    [
        '{"rating": 5, "title": "\\ud800"}',
        '{"rating": 5, "body": "a\\udc00b"}',
        '{"rating": 5.00}',
        '{"rating": 5e0}',
        '{"rating": 1E400}',
        '{"rating": "5"}',
        '{"rating": true}',
        '{"rating": 0}',
        '{"rating": 6}',
        '{"rating": 100000000000000000000000000000000000000}',
        '{"rating": 5, "title": {"a": 1}}',
        '{"rating": 5, "body": null}',
        '{"rating": 5, "title": "a\\u0085b"}',
        "[]",
        "null",
    ],
)
def test_odd_review_bodies_are_refused_without_a_write(client, make_user, login, make_product, raw):
    product = make_product()
    _, token = reviewer(make_user, login, product)
    headers = {**auth(token), "Content-Type": "application/json"}
    url = f"/api/products/{product.id}/reviews"
    response = client.post(url, data=raw, headers=headers)
    assert response.status_code == 422, response.get_json()
    assert response.get_json()["code"] == "validation_failed"
    assert truth(product.id) == (None, 0, 0) == stored(product.id)
    review = client.post(url, json={"rating": 3}, headers=auth(token)).get_json()
    response = client.put(f"/api/reviews/{review['id']}", data=raw, headers=headers)
    assert response.status_code == 422, response.get_json()
    assert stored(product.id) == truth(product.id) == (Decimal("3.00"), 1, 3)


# --- low-stock alerts --------------------------------------------------------------


def alerts(product_id: int) -> int:
    return scalar(
        "SELECT count(*) FROM stock_movements WHERE low_stock_alert AND product_id = :p",
        p=product_id,
    )


def alert_emails() -> int:
    return scalar("SELECT count(*) FROM outbox WHERE topic = 'low_stock'")


def test_one_alert_per_crossing_whichever_path_moves_the_stock(
    client, make_user, login, make_product, admin_token
):
    """One admin (admin_token): one email per alert."""
    product = make_product(stock=10, low_stock_threshold=5)
    url = f"/api/products/{product.id}"

    def put(body):
        assert client.put(url, json=body, headers=auth(admin_token)).status_code == 200

    def adjust(delta):
        body = {"delta": delta}
        response = client.post(f"{url}/stock", json=body, headers=auth(admin_token))
        assert response.status_code == 200

    put({"stock": 5})  # 10 -> 5: a crossing (PUT)
    assert (alerts(product.id), alert_emails()) == (1, 1)
    put({"stock": 4})  # still low
    put({"stock": 5})  # rises, not above
    assert (alerts(product.id), alert_emails()) == (1, 1)
    put({"stock": 6})  # above again
    adjust(-1)  # 6 -> 5: a crossing (adjustment)
    assert (alerts(product.id), alert_emails()) == (2, 2)
    put({"stock": 30, "low_stock_threshold": 25})
    put({"stock": 26, "low_stock_threshold": 25})  # 30 -> 26: above 25
    assert alerts(product.id) == 2
    put({"low_stock_threshold": 5})  # the threshold alone moves no stock
    _, token = reviewer(make_user, login)
    order = order_for(client, token, (product, 21))  # 26 -> 5: a crossing (checkout)
    assert (alerts(product.id), alert_emails()) == (3, 3)
    cancel = client.post(f"/api/orders/{order['id']}/cancel", headers=auth(token))
    assert cancel.status_code == 200  # 5 -> 26: above again, no alert
    assert alerts(product.id) == 3
    order = order_for(client, token, (product, 22))  # 26 -> 4: a crossing
    assert (alerts(product.id), alert_emails()) == (4, 4)
    report = client.get("/api/inventory/low-stock", headers=auth(admin_token)).get_json()
    assert [(p["id"], p["stock"]) for p in report["items"]] == [(product.id, 4)]
    # Deleted: out of the report; its restock raises nothing.
    assert client.delete(url, headers=auth(admin_token)).status_code == 204
    cancel = client.post(f"/api/orders/{order['id']}/cancel", headers=auth(token))
    assert cancel.status_code == 200
    assert (alerts(product.id), alert_emails()) == (4, 4)
    report = client.get("/api/inventory/low-stock", headers=auth(admin_token)).get_json()
    assert report["items"] == [] and report["total"] == 0


# --- races through gunicorn ------------------------------------------------------------


@pytest.fixture(scope="module")
def server(app):
    with gunicorn(DATABASE_URL, workers=3, threads=6) as live:
        yield live


def check_ledger(product_id: int, threshold: int) -> int:
    """The ledger adds up to the stock and marks exactly each crossing
    (under the one threshold the product had throughout); the alerts."""
    with db.engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT delta, stock_after, low_stock_alert FROM stock_movements "
                "WHERE product_id = :p ORDER BY id"
            ),
            {"p": product_id},
        ).all()
    running = crossings = 0
    for n, (delta, after, alert) in enumerate(rows):
        before, running = running, running + delta
        assert after == running >= 0
        assert bool(alert) == (n > 0 and before > threshold >= after)
        crossings += bool(alert)
    assert running == scalar("SELECT stock FROM products WHERE id = :p", p=product_id)
    return crossings


@pytest.mark.server
@pytest.mark.parametrize("seed", range(3))
def test_reviews_checkouts_and_adjustments_racing_on_one_product(
    server, make_user, login, make_product, admin_token, seed
):
    """New reviews, edits and admin deletes racing checkouts, stock
    adjustments and product PUTs of the same products: no 5xx, ratings exact,
    the ledger adds up and each crossing alerts once."""
    rng = random.Random(seed)
    products = [make_product(stock=30, low_stock_threshold=20) for _ in range(2)]
    reviewers = [reviewer(make_user, login, *products)[1] for _ in range(12)]
    existing = []
    for token in reviewers[:6]:
        for product in products:
            url = f"/api/products/{product.id}/reviews"
            status, body = server.request("POST", url, {"rating": 3}, token)
            assert status == 201
            existing.append((token, body["id"]))
    shoppers = buyers_with_carts(make_user, login, [(products[0], 1), (products[1], 1)], 8)
    calls = []
    for token in reviewers[6:]:
        for product in products:
            url, body = f"/api/products/{product.id}/reviews", {"rating": rng.randint(1, 5)}
            calls.append(lambda u=url, b=body, t=token: server.request("POST", u, b, t))
    for token, review_id in existing:
        url = f"/api/reviews/{review_id}"
        if rng.random() < 0.3:
            calls.append(lambda u=url: server.request("DELETE", u, None, admin_token))
        else:
            body = {"rating": rng.randint(1, 5), "title": "edited"}
            calls.append(lambda u=url, b=body, t=token: server.request("PUT", u, b, t))
    address = {"shipping_address": "1 Race Road"}
    for token in shoppers:
        calls.append(lambda t=token: server.request("POST", "/api/orders", address, t))
    for product in products:
        url = f"/api/products/{product.id}"
        calls.append(lambda u=url: server.request("PUT", u, {"name": "Renamed"}, admin_token))
        calls.append(lambda u=url: server.request("POST", u + "/stock", {"delta": -3}, admin_token))
        calls.append(lambda u=url: server.request("GET", u + "/reviews", None, None))
    rng.shuffle(calls)
    statuses = Counter(status for status, _ in race(calls))
    assert set(statuses) <= {200, 201, 204}, statuses
    assert statuses[201] == 12 + 8  # every new review and every checkout
    for product in products:
        assert stored(product.id) == truth(product.id)
        path = f"/api/products/{product.id}/reviews?per_page=100"
        status, page = server.request("GET", path, None, None)
        assert status == 200 and page["total"] == len(page["items"]) == truth(product.id)[1]
        # 30 - 8 checkouts - 3 = 19: one crossing of 20.
        assert check_ledger(product.id, threshold=20) == 1


def test_a_deleted_reviews_id_never_names_another_review(
    client, make_user, login, make_product, admin_token
):
    """A review's id is never given to a later review (SQLite reused the
    highest rowid once its row was deleted, as PostgreSQL's sequences never
    do): an admin's DELETE retried after its answer was lost (or a second
    moderator's) deleted the next customer's review, a 204 for an id
    API.md says is unknown (404)."""
    product = make_product()
    url = f"/api/products/{product.id}/reviews"
    _, spammer = reviewer(make_user, login, product)
    _, customer = reviewer(make_user, login, product)
    spam = client.post(url, json={"rating": 1, "title": "spam"}, headers=auth(spammer))
    spam_id = spam.get_json()["id"]
    assert client.delete(f"/api/reviews/{spam_id}", headers=auth(admin_token)).status_code == 204
    posted = client.post(url, json={"rating": 5, "title": "honest"}, headers=auth(customer))
    assert posted.status_code == 201
    assert posted.get_json()["id"] != spam_id
    retry = client.delete(f"/api/reviews/{spam_id}", headers=auth(admin_token))
    assert retry.status_code == 404
    assert [r["title"] for r in client.get(url).get_json()["items"]] == ["honest"]
    assert stored(product.id) == truth(product.id) == (Decimal("5.00"), 1, 5)


@pytest.mark.server
def test_racing_re_reviews_and_twice_sent_deletes(
    server, make_user, login, make_product, admin_token
):
    """Each round every review is deleted twice by an admin while every user
    posts three new ones: each id is deleted once (one 204, one 404, never
    a new review under a reused id), each user gets at most one review and
    the rating stays exact."""
    product = make_product()
    users = [reviewer(make_user, login, product)[1] for _ in range(6)]
    url = f"/api/products/{product.id}/reviews"
    for round_ in range(4):
        status, page = server.request("GET", url + "?per_page=100", None, None)
        assert status == 200
        old = [review["id"] for review in page["items"]]
        calls = [
            lambda t=token, r=rating: server.request("POST", url, {"rating": r}, t)
            for token in users
            for rating in (1, 5, 3)
        ]
        for review_id in old * 2:
            path = f"/api/reviews/{review_id}"
            calls.append(lambda p=path: server.request("DELETE", p, None, admin_token))
        random.Random(round_).shuffle(calls)
        statuses = Counter(status for status, _ in race(calls))
        assert set(statuses) <= {201, 204, 404, 409}, statuses
        assert statuses[204] == statuses[404] == len(old), statuses
        assert stored(product.id) == truth(product.id)
        assert truth(product.id)[1] == statuses[201] <= len(users)
