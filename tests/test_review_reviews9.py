"""Review round 9 (reviews and ratings), on SQLite and PostgreSQL: the
verified-buyer rule along an order's real life (placed, paid, shipped,
cancelled, delivered) through the API; ratings with 1 and 2,000 reviews,
kept without a query per review; concurrent writes beside accounts deleted
in SQL, compared with an independent AVG; review text (emoji, HTML, bidi
controls, NUL); list bounds and paging over equal timestamps; the author
shown without an email. Ratings are compared with values computed here from
the reviews table alone."""

from __future__ import annotations

import json
import random
import threading
import time
from decimal import ROUND_HALF_UP, Decimal
from types import SimpleNamespace

import pytest
from sqlalchemy import insert, text

from app.extensions import db
from app.models import Review, User
from app.models.types import INTEGER_MAX
from tests.helpers import DATABASE_URL, IS_POSTGRES, auth, order_for, pay, race
from tests.live import gunicorn
from tests.reviewing import give_order
from tests.test_review_reviews6 import stored


def truth(product_id: int) -> tuple[Decimal | None, int, int]:
    """(average rounded half up to cents, count, sum) from the reviews table alone."""
    with db.engine.connect() as conn:
        count, total, mean = conn.execute(
            text(
                "SELECT count(*), coalesce(sum(rating), 0), avg(rating) "
                "FROM reviews WHERE product_id = :p"
            ),
            {"p": product_id},
        ).one()
    if not count:
        assert mean is None
        return None, 0, 0
    exact = Decimal(total) / count
    # AVG() agrees with sum / count (to a float's precision on SQLite).
    assert abs(Decimal(str(mean)) - exact) < Decimal("1e-9")
    return exact.quantize(Decimal("0.01"), ROUND_HALF_UP), count, total


def shown(client, product_id: int) -> tuple[Decimal | None, int]:
    response = client.get(f"/api/products/{product_id}")
    assert response.status_code == 200
    body = json.loads(response.data, parse_float=Decimal)
    return body["rating_average"], body["rating_count"]


def reviewer(make_user, login, *products, admin=False):
    user = make_user(admin=admin)
    for product in products:
        give_order(user, product)
    return user, login(user)["access_token"]


def post(client, product_id, token, body=None):
    return client.post(
        f"/api/products/{product_id}/reviews", json=body or {"rating": 4}, headers=auth(token)
    )


# --- the verified-buyer rule along an order's life ------------------------------


def test_only_a_delivered_order_through_the_api_makes_a_buyer(
    client, make_user, login, make_product, admin_token
):
    """API.md: the caller must have a `delivered` order holding the product.
    Orders placed, paid, shipped and cancelled (a paid one refunded) through
    the API make no buyer; once the admin delivers one, the buyer reviews,
    once; a second delivered order of the product gives no second review.
    An admin is held to the same rule."""
    product, other = make_product(stock=50), make_product(stock=50)

    def move(order_id, status):
        response = client.put(
            f"/api/orders/{order_id}", json={"status": status}, headers=auth(admin_token)
        )
        assert response.status_code == 200, response.get_json()

    user = make_user()
    token = login(user)["access_token"]
    order = order_for(client, token, (product, 1), (other, 1))
    assert post(client, product.id, token).status_code == 403  # pending
    assert pay(client, token, order["id"]).status_code == 200  # processing
    assert post(client, product.id, token).get_json()["code"] == "not_a_buyer"
    move(order["id"], "shipped")
    assert post(client, product.id, token).status_code == 403

    # A second order, paid and cancelled (its payment refunded): no buyer either.
    second = order_for(client, token, (product, 2))
    assert pay(client, token, second["id"]).status_code == 200
    cancelled = client.post(f"/api/orders/{second['id']}/cancel", headers=auth(token))
    assert cancelled.get_json()["payment_status"] == "refunded"
    assert post(client, product.id, token).status_code == 403
    assert stored(product.id) == truth(product.id) == (None, 0, 0)

    move(order["id"], "delivered")
    # Nothing leaves delivered: no cancel takes the buyer's standing away.
    refused = client.post(f"/api/orders/{order['id']}/cancel", headers=auth(admin_token))
    assert refused.status_code == 409, refused.get_json()
    response = post(client, product.id, token, {"rating": 2})
    assert response.status_code == 201, response.get_json()
    assert post(client, other.id, token, {"rating": 5}).status_code == 201

    # Another delivered order of the same product: still one review.
    third = order_for(client, token, (product, 1))
    for status in ("processing", "shipped", "delivered"):
        move(third["id"], status)
    response = post(client, product.id, token, {"rating": 5})
    assert response.status_code == 409 and response.get_json()["code"] == "already_reviewed"
    assert stored(product.id) == truth(product.id) == (Decimal("2.00"), 1, 2)

    # An admin without a delivered order is no buyer; with one, reviews.
    admin = make_user(admin=True)
    admin_own = login(admin)["access_token"]
    assert post(client, product.id, admin_own).status_code == 403
    give_order(admin, product)
    assert post(client, product.id, admin_own, {"rating": 5}).status_code == 201
    assert shown(client, product.id) == (Decimal("3.50"), 2)

    # The product deleted after delivery: its reviews are gone with it (no
    # restore exists), and a new one is a 404.
    _, buyer_token = reviewer(make_user, login, other)
    client.delete(f"/api/products/{other.id}", headers=auth(admin_token))
    assert post(client, other.id, buyer_token).status_code == 404
    assert client.get(f"/api/products/{other.id}/reviews").status_code == 404


# --- exact averages, with 1 and with 2,000 reviews -------------------------------


def _bulk_reviews(product_id: int, ratings: list[int]) -> None:
    """len(ratings) users and their reviews of the product, straight into the
    tables (with the product's totals recounted as the API would have kept
    them: the API adds to them, it never recounts)."""
    start = db.session.scalar(text("SELECT coalesce(max(id), 0) FROM users")) + 1
    tag = f"bulk{product_id}x"
    db.session.execute(
        insert(User),
        [
            {"username": f"{tag}{n}", "email": f"{tag}{n}@example.com", "password_hash": "x"}
            for n in range(len(ratings))
        ],
    )
    ids = db.session.scalars(
        text("SELECT id FROM users WHERE username LIKE :t AND id >= :s ORDER BY id"),
        {"t": tag + "%", "s": start},
    ).all()
    db.session.execute(
        insert(Review),
        [
            {"product_id": product_id, "user_id": uid, "rating": r}
            for uid, r in zip(ids, ratings, strict=True)
        ],
    )
    db.session.execute(
        text(
            "UPDATE products SET rating_count = :n, rating_sum = :s, "
            "rating_average = ((200 * :s + :n) / (2 * :n)) / 100.0 WHERE id = :p"
        ),
        {"n": len(ratings), "s": sum(ratings), "p": product_id},
    )
    db.session.commit()


def test_averages_with_one_and_with_two_thousand_reviews(
    client, make_user, login, make_product, admin_token, count_queries
):
    """A rating is two decimals, rounded half up, a JSON number (not a
    string, not a float's digits), after every create, edit and delete; a
    write on a product with 2,000 reviews takes as many statements as one
    on a product with none (the totals are moved, never recounted)."""
    single, big = make_product(), make_product()
    rng = random.Random(9)
    ratings = [rng.randint(1, 5) for _ in range(1_999)]
    _bulk_reviews(big.id, ratings)
    assert stored(big.id) == truth(big.id)

    _, token = reviewer(make_user, login, single, big)

    def write(method, path, body=None, who=None):
        with count_queries() as counter:
            response = client.open(path, method=method, json=body, headers=auth(who or token))
        assert response.status_code < 300, response.get_json()
        return response, counter.count

    _, one_post = write("POST", f"/api/products/{single.id}/reviews", {"rating": 3})
    raw = client.get(f"/api/products/{single.id}").data
    assert b'"rating_average":3.00,' in raw and b'"rating_count":1,' in raw
    response, many_post = write("POST", f"/api/products/{big.id}/reviews", {"rating": 5})
    assert many_post == one_post
    review_id = response.get_json()["id"]
    assert stored(big.id) == truth(big.id)
    assert shown(client, big.id)[1] == 2_000
    assert shown(client, big.id)[0] == truth(big.id)[0]

    single_id = client.get(f"/api/products/{single.id}/reviews").get_json()["items"][0]["id"]
    _, one_put = write("PUT", f"/api/reviews/{single_id}", {"rating": 1})
    _, many_put = write("PUT", f"/api/reviews/{review_id}", {"rating": 1})
    assert many_put == one_put
    assert shown(client, single.id) == (Decimal("1.00"), 1)
    assert stored(big.id) == truth(big.id)
    assert shown(client, big.id) == truth(big.id)[:2]

    _, one_delete = write("DELETE", f"/api/reviews/{single_id}", who=admin_token)
    _, many_delete = write("DELETE", f"/api/reviews/{review_id}", who=admin_token)
    assert many_delete == one_delete
    assert shown(client, single.id) == (None, 0)
    assert stored(big.id) == truth(big.id)
    assert shown(client, big.id) == truth(big.id)[:2]
    # The list's total and pages over 1,999 reviews, without a count per page.
    page = client.get(f"/api/products/{big.id}/reviews?per_page=100&page=20").get_json()
    assert (page["total"], page["pages"], len(page["items"])) == (1_999, 20, 99)


# --- concurrent writes beside accounts deleted in SQL -----------------------------


@pytest.fixture(scope="module")
def server(app):
    with gunicorn(DATABASE_URL, workers=2, threads=4) as live:
        yield live


@pytest.mark.server
def test_racing_review_writes_and_sql_account_deletes_keep_the_totals_exact(
    server, make_user, login, make_product, admin_token
):
    """Posts, edits, author and admin deletes through gunicorn at once, while
    an operator deletes reviewers' accounts in SQL (their reviews cascade,
    and the database recounts the product): after each round every
    product's stored totals equal an independent count, sum and AVG."""
    rng = random.Random(99)
    products = [make_product() for _ in range(2)]
    users = [reviewer(make_user, login, *products) for _ in range(16)]
    reviews: dict[tuple[int, int], int] = {}  # (user slot, product id) -> review id
    for slot in range(10):
        for product in products:
            status, body = server.request(
                "POST", f"/api/products/{product.id}/reviews", {"rating": rng.randint(1, 5)},
                users[slot][1],
            )  # fmt: skip
            assert status == 201, body
            reviews[slot, product.id] = body["id"]

    engine = db.engine

    def delete_account(user_id):
        def run():
            with engine.begin() as conn:
                conn.execute(text("DELETE FROM users WHERE id = :u"), {"u": user_id})
            return 204, {}

        return run

    for _round in range(3):
        calls, doomed = [], rng.sample(range(len(users)), 2)
        for slot, (_user, token) in enumerate(users):
            if slot in doomed:
                calls.append(delete_account(users[slot][0].id))
                continue
            for product in products:
                key = (slot, product.id)
                if key not in reviews:
                    url = f"/api/products/{product.id}/reviews"
                    body = {"rating": rng.randint(1, 5)}
                    calls.append(lambda u=url, b=body, t=token: server.request("POST", u, b, t))
                elif rng.random() < 0.6:
                    url, body = f"/api/reviews/{reviews[key]}", {"rating": rng.randint(1, 5)}
                    calls.append(lambda u=url, b=body, t=token: server.request("PUT", u, b, t))
                else:
                    who = admin_token if rng.random() < 0.5 else token
                    url = f"/api/reviews/{reviews[key]}"
                    calls.append(lambda u=url, t=who: server.request("DELETE", u, None, t))
        rng.shuffle(calls)
        results = race(calls)
        assert {status for status, _ in results} <= {200, 201, 204}, results
        for product in products:
            assert stored(product.id) == truth(product.id), _round
        # Who has which review now, from the table; new reviewers for the doomed.
        with db.engine.connect() as conn:
            rows = conn.execute(text("SELECT id, user_id, product_id FROM reviews")).all()
        by_user = {user.id: slot for slot, (user, _) in enumerate(users)}
        reviews = {(by_user[u], p): r for r, u, p in rows if u in by_user}
        for slot in doomed:
            users[slot] = reviewer(make_user, login, *products)
    for product in products:
        status, body = server.request("GET", f"/api/products/{product.id}")
        average, count, _ = truth(product.id)
        shown_average = body["rating_average"]
        shown_average = None if shown_average is None else Decimal(str(shown_average))
        assert (shown_average, body["rating_count"]) == (average, count)


@pytest.mark.skipif(not IS_POSTGRES, reason="SQLite runs one writer at a time")
def test_an_account_deleted_while_a_review_is_written_uncommitted_counts_it(
    app, make_user, make_product
):
    """The interleaving the race above hits by chance, made certain: a
    review is written (its product row locked, its totals moved) and not yet
    committed when an operator deletes another reviewer's account. The
    database's recount must count after the review commits, not from what it
    saw before it waited (it wrote the totals without the new review)."""
    product = make_product()
    gone, writer = make_user(), make_user()
    give_order(gone, product)
    give_order(writer, product)
    db.session.execute(
        insert(Review), [{"product_id": product.id, "user_id": gone.id, "rating": 1}]
    )
    db.session.execute(
        text("UPDATE products SET rating_count = 1, rating_sum = 1, rating_average = 1 "
             "WHERE id = :p"),
        {"p": product.id},
    )  # fmt: skip
    db.session.commit()

    from app.services import reviews as service

    written, release, failures = threading.Event(), threading.Event(), []

    def write_review():
        try:
            with app.app_context():
                service.create_review(SimpleNamespace(id=writer.id), product.id, {"rating": 5})
                written.set()
                assert release.wait(30)
                db.session.commit()
        except Exception as err:  # noqa: BLE001 - any failure is asserted below
            failures.append(err)
            written.set()

    engine = db.engine

    def delete_account():
        try:
            with engine.begin() as conn:
                conn.execute(text("DELETE FROM users WHERE id = :u"), {"u": gone.id})
        except Exception as err:  # noqa: BLE001 - any failure is asserted below
            failures.append(err)

    writing = threading.Thread(target=write_review)
    writing.start()
    assert written.wait(30) and not failures
    deleting = threading.Thread(target=delete_account)
    deleting.start()
    # Until the delete waits on the product row the review holds.
    for _ in range(200):
        with db.engine.connect() as conn:
            waiting = conn.scalar(
                text(
                    "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                    "AND query LIKE 'DELETE FROM users%'"
                )
            )
        if waiting:
            break
        time.sleep(0.05)
    release.set()
    writing.join(30)
    deleting.join(30)
    assert not failures, failures
    assert stored(product.id) == truth(product.id) == (Decimal("5.00"), 1, 5)


# --- review text -------------------------------------------------------------------


TEXTS = [
    ("emoji", "🙂" * 120, "👍🏽 " * 1000),
    ("html", "<script>alert(1)</script>", '<img src=x onerror="alert(1)"> &amp; </textarea>'),
    ("bidi", "good \u202egnp.exe", "\u2066isolate\u2069 \u200fRTL\u200e \ufeffBOM"),
    ("separators", "line\u2028para\u2029", "a\r\nb\tc\n\u2028"),
    ("quotes", "\"\\/'", '{"rating": 1}'),
]


@pytest.mark.parametrize(("name", "title", "body"), TEXTS, ids=[t[0] for t in TEXTS])
def test_review_text_is_stored_and_answered_as_given(
    client, make_user, login, make_product, name, title, body
):
    """Titles up to 120 characters (4-byte emoji count as one), bodies up to
    5000, HTML and bidi controls kept as text: the answer is valid JSON that
    reads back the same text, on create, in the list and after an edit."""
    product = make_product()
    _, token = reviewer(make_user, login, product)
    response = post(client, product.id, token, {"rating": 4, "title": title, "body": body})
    assert response.status_code == 201, response.get_json()
    assert response.mimetype == "application/json"
    created = json.loads(response.data.decode("utf-8"))
    assert (created["title"], created["body"]) == (title, body)
    with db.engine.connect() as conn:
        row = conn.execute(
            text("SELECT title, body FROM reviews WHERE id = :r"), {"r": created["id"]}
        ).one()
    assert tuple(row) == (title, body)
    listed = json.loads(client.get(f"/api/products/{product.id}/reviews").data.decode("utf-8"))
    assert (listed["items"][0]["title"], listed["items"][0]["body"]) == (title, body)
    edited = client.put(f"/api/reviews/{created['id']}", json={"body": title}, headers=auth(token))
    assert edited.status_code == 200, edited.get_json()
    assert json.loads(edited.data.decode("utf-8"))["body"] == title


@pytest.mark.parametrize(
    "change",
    [
        {"title": "🙂" * 121},
        {"body": "x" * 5001},
        {"title": "a\x00b"},
        {"body": "a\x00b"},
        {"title": "tab\there"},
        {"title": "esc\x1b[31m"},
        {"body": "bell\x07"},
        {"body": "nel\x85"},
        {"title": "\ud83d"},
        {"title": None},
        {"body": 5},
    ],
)
def test_refused_review_text_writes_nothing(client, make_user, login, make_product, change):
    """Too long, NUL, control characters (a title takes no tab), a lone
    surrogate, null, a number: a 422 naming the field, on create and on
    edit, with nothing written."""
    product = make_product()
    _, token = reviewer(make_user, login, product)
    field = next(iter(change))

    def send(method, url, body):
        # json.dumps escapes a lone surrogate as \ud83d (the client's own encoder cannot)
        headers = {**auth(token), "Content-Type": "application/json"}
        return client.open(url, method=method, data=json.dumps(body), headers=headers)

    response = send("POST", f"/api/products/{product.id}/reviews", {"rating": 4, **change})
    assert response.status_code == 422, response.get_json()
    assert field in response.get_json()["errors"]
    assert stored(product.id) == truth(product.id) == (None, 0, 0)
    review_id = post(
        client, product.id, token, {"rating": 4, "title": "t", "body": "b"}
    ).get_json()["id"]
    response = send("PUT", f"/api/reviews/{review_id}", change)
    assert response.status_code == 422, response.get_json()
    assert field in response.get_json()["errors"]
    with db.engine.connect() as conn:
        row = conn.execute(
            text("SELECT title, body FROM reviews WHERE id = :r"), {"r": review_id}
        ).one()
    assert tuple(row) == ("t", "b")


def test_blank_title_and_body_are_kept(client, make_user, login, make_product):
    """Both default to "" and take blanks (only a rating is required)."""
    product = make_product()
    _, token = reviewer(make_user, login, product)
    response = post(client, product.id, token, {"rating": 3, "title": "   ", "body": ""})
    assert response.status_code == 201, response.get_json()
    assert (response.get_json()["title"], response.get_json()["body"]) == ("   ", "")


# --- the list ------------------------------------------------------------------------


def test_list_bounds_sorts_and_authors_without_email(client, make_user, login, make_product):
    """per_page clamps above 100 and refuses below 1; page runs to the
    INTEGER maximum (an empty page there, never a 500); sorts are the four
    documented; each author is {id, username}: no email in any answer."""
    product = make_product()
    authors = [reviewer(make_user, login, product) for _ in range(3)]
    for n, (_, token) in enumerate(authors):
        assert post(client, product.id, token, {"rating": n + 1}).status_code == 201
    url = f"/api/products/{product.id}/reviews"
    page = client.get(url + "?per_page=1000").get_json()
    assert (page["per_page"], page["total"], page["pages"]) == (100, 3, 1)
    for bad in ("per_page=-1", "per_page=0", f"page={INTEGER_MAX + 1}", "page=-1",
                "per_page=1.5", "sort=-title", "sort=updated_at", "sort=RATING"):  # fmt: skip
        response = client.get(f"{url}?{bad}")
        assert response.status_code == 422, (bad, response.get_json())
    far = client.get(f"{url}?page={INTEGER_MAX}&per_page=100")
    assert far.status_code == 200
    assert (far.get_json()["items"], far.get_json()["total"]) == ([], 3)
    raw = client.get(url).data
    for user, _ in authors:
        assert user.email.encode() not in raw
    for item in json.loads(raw)["items"]:
        assert set(item["user"]) == {"id", "username"}
    user, token = authors[0]
    review_id = json.loads(raw)["items"][-1]["id"]
    edited = client.put(f"/api/reviews/{review_id}", json={"body": "x"}, headers=auth(token))
    assert edited.status_code == 200
    assert set(edited.get_json()["user"]) == {"id", "username"}
    assert user.email.encode() not in edited.data


@pytest.mark.parametrize("sort", ["-created_at", "created_at", "-rating", "rating"])
def test_pages_over_equal_timestamps_list_each_review_once(
    client, make_user, login, make_product, sort
):
    """Reviews written in one instant (and equal ratings): walking the pages
    at any size lists every review exactly once, in the sort's order with
    the id breaking ties."""
    product = make_product()
    ids = []
    for n in range(7):
        _, token = reviewer(make_user, login, product)
        ids.append(post(client, product.id, token, {"rating": 3 + n % 2}).get_json()["id"])
    db.session.execute(
        text("UPDATE reviews SET created_at = (SELECT min(created_at) FROM reviews "
             "WHERE product_id = :p) WHERE product_id = :p"),
        {"p": product.id},
    )  # fmt: skip
    db.session.commit()
    with db.engine.connect() as conn:
        rows = conn.execute(
            text("SELECT id, rating FROM reviews WHERE product_id = :p"), {"p": product.id}
        ).all()
    rating = dict(rows)
    key = {
        "-created_at": lambda i: -i,
        "created_at": lambda i: i,
        "-rating": lambda i: (-rating[i], -i),
        "rating": lambda i: (rating[i], i),
    }[sort]
    expected = sorted(ids, key=key)
    for per_page in (1, 2, 3, 7):
        seen = []
        for number in range(1, 10):
            page = client.get(
                f"/api/products/{product.id}/reviews?sort={sort}&per_page={per_page}&page={number}"
            ).get_json()
            assert page["total"] == 7
            seen += [item["id"] for item in page["items"]]
        assert seen == expected, per_page
