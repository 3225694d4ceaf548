"""The match version (app/services/matches.py): a list's total and the facets
are kept until which products match a filter changes. A checkout that sells
nothing out keeps them; every write that changes a match (a sell-out, a
restock from zero, a price, a rating, a category, a create or delete, any
other write of `stock`) serves the new numbers at once. Each answer is
compared with numbers computed here from the products' rows."""

from __future__ import annotations

from decimal import Decimal

import pytest
from sqlalchemy import select, update

from app.extensions import db
from app.models import Product
from app.services import catalog_cache, matches
from tests.helpers import SHIPPING, auth, fill_cart
from tests.reviewing import give_order

FILTERS = [
    {},
    {"in_stock": "true"},
    {"category": "Home"},
    {"min_price": "20.00"},
    {"min_rating": "4"},
    {"q": "lamp", "in_stock": "true"},
]


def live_rows() -> list[dict]:
    with db.engine.connect() as connection:
        columns = (
            *("id", "name", "description", "category", "price", "stock"),
            *("rating_average", "created_at"),
        )
        typed = select(*(Product.__table__.c[name] for name in columns))
        return [
            dict(row)
            for row in connection.execute(typed.where(Product.deleted_at.is_(None))).mappings()
        ]


def expected(params: dict) -> dict:
    """Total, in-stock count, price range, category counts and ratings of the
    live products passing `params`, from their rows."""
    facets = expected_with_orders(params)
    del facets["orders"]
    return facets


def expected_with_orders(params: dict) -> dict:
    """`expected`, and the ids in the order of two sorts (`orders`)."""

    def passes(row, with_category=True) -> bool:
        words = f"{row['name']} {row['description']} {row['category'] or ''}".lower().split()
        rating = row["rating_average"]
        return (
            all(word in words for word in params.get("q", "").split())
            and (not with_category or "category" not in params or row["category"] == "Home")
            and ("min_price" not in params or Decimal(row["price"]) >= Decimal("20.00"))
            and ("in_stock" not in params or row["stock"] > 0)
            and ("min_rating" not in params or (rating is not None and Decimal(rating) >= 4))
        )

    rows = live_rows()
    matching = [row for row in rows if passes(row)]
    by_price = sorted(matching, key=lambda row: (Decimal(row["price"]), row["id"]))
    newest = sorted(matching, key=lambda row: (row["created_at"], row["id"]), reverse=True)
    categories: dict[str, int] = {}
    for row in rows:
        if row["category"] and passes(row, with_category=False):
            categories[row["category"]] = categories.get(row["category"], 0) + 1
    prices = [Decimal(row["price"]) for row in matching]
    ratings = [Decimal(row["rating_average"]) for row in matching if row["rating_average"]]
    return {
        "total": len(matching),
        "in_stock": sum(1 for row in matching if row["stock"] > 0),
        "price": {"min": min(prices, default=None), "max": max(prices, default=None)},
        "categories": sorted(
            ({"value": value, "count": count} for value, count in categories.items()),
            key=lambda c: (-c["count"], c["value"]),
        ),
        "ratings": [
            {"min_rating": level, "count": sum(1 for r in ratings if r >= level)}
            for level in (4, 3, 2, 1)
        ],
        "orders": {
            "price": [row["id"] for row in by_price],
            "-created_at": [row["id"] for row in newest],
        },
    }


def assert_fresh(client, when: str) -> None:
    """Facets, totals and the order of every page (two sorts, pages of two)
    as computed from the rows; stock and price as they are now."""
    rows = {row["id"]: row for row in live_rows()}
    for params in FILTERS:
        want = expected_with_orders(params)
        orders = want.pop("orders")
        facets = client.get("/api/products/facets", query_string=params).get_json()
        assert facets == want, (when, params)
        for sort, ids in orders.items():
            seen = []
            for page in range(1, 2 + len(ids) // 2):
                query = {**params, "sort": sort, "per_page": 2, "page": page}
                listed = client.get("/api/products", query_string=query).get_json()
                assert listed["total"] == want["total"], (when, params, sort)
                seen += listed["items"]
            assert [item["id"] for item in seen] == ids, (when, params, sort)
            for item in seen:
                row = rows[item["id"]]
                assert (item["stock"], Decimal(str(item["price"]))) == (
                    row["stock"],
                    Decimal(row["price"]),
                ), (when, item)


@pytest.fixture
def shop(make_product):
    """Three lamps and a chair, one lamp with a single unit left."""
    return {
        "lamp": make_product(name="Desk Lamp", category="Home", price=Decimal("25.00"), stock=50),
        "last": make_product(name="Floor Lamp", category="Home", price=Decimal("40.00"), stock=1),
        "cheap": make_product(name="Clip Lamp", category="Office", price=Decimal("9.99"), stock=8),
        "chair": make_product(name="Oak Chair", category="Home", price=Decimal("80.00"), stock=3),
    }


def version() -> str | None:
    return matches.store().version()


def test_a_checkout_that_sells_nothing_out_keeps_totals_and_facets(
    client, shop, user_token, count_queries
):
    assert_fresh(client, "before")
    before = version()
    fill_cart(client, user_token, (shop["lamp"], 2), (shop["chair"], 1))
    assert client.post("/api/orders", json=SHIPPING, headers=auth(user_token)).status_code == 201
    assert version() == before  # every product is still in stock
    with count_queries() as q:
        facets = client.get("/api/products/facets?in_stock=true").get_json()
    assert q.count == 0, q.statements  # the catalog's miss, the matches' hit
    assert facets == expected({"in_stock": "true"})
    with count_queries() as q:
        listed = client.get("/api/products?in_stock=true&per_page=2").get_json()
    assert q.count == 1, q.statements  # the page; its total is kept
    assert listed["total"] == 4
    # The page itself is read again: the stock sold is shown.
    with count_queries() as q:
        shown = client.get(f"/api/products/{shop['lamp'].id}").get_json()
    assert shown["stock"] == 48 and q.count == 1


def test_every_write_that_changes_a_match_serves_new_numbers(
    client, shop, make_user, login, user_token, admin_token
):
    admin = auth(admin_token)
    assert_fresh(client, "start")

    # The last unit sold: out of stock.
    before = version()
    fill_cart(client, user_token, (shop["last"], 1))
    placed = client.post("/api/orders", json=SHIPPING, headers=auth(user_token))
    assert placed.status_code == 201
    assert version() != before
    assert_fresh(client, "sold out")

    # Cancelled: back in stock.
    order_id = placed.get_json()["id"]
    cancelled = client.post(f"/api/orders/{order_id}/cancel", headers=auth(user_token))
    assert cancelled.status_code == 200, cancelled.get_json()
    assert_fresh(client, "restocked by a cancel")

    # An adjustment to zero, and one back.
    lamp = shop["cheap"]
    for delta in (-8, 5):
        moved = client.post(f"/api/products/{lamp.id}/stock", json={"delta": delta}, headers=admin)
        assert moved.status_code in (200, 201), moved.get_json()
        assert_fresh(client, f"adjusted by {delta}")

    # A stock set through the product's PUT, to zero.
    put = client.put(f"/api/products/{shop['chair'].id}", json={"stock": 0}, headers=admin)
    assert put.status_code == 200, put.get_json()
    assert_fresh(client, "stock set to 0")

    # A price, a category, a name.
    for change in ({"price": "19.50"}, {"category": "Garden"}, {"name": "Desk Light"}):
        put = client.put(f"/api/products/{shop['lamp'].id}", json=change, headers=admin)
        assert put.status_code == 200, put.get_json()
        assert_fresh(client, f"changed {change}")

    # A review: the rating counts and the rating filter.
    reviewer = make_user()
    give_order(reviewer, shop["cheap"])
    token = login(reviewer)["access_token"]
    review = {"rating": 5, "title": "Bright", "body": "Lights the desk."}
    posted = client.post(
        f"/api/products/{shop['cheap'].id}/reviews", json=review, headers=auth(token)
    )
    assert posted.status_code == 201, posted.get_json()
    assert_fresh(client, "reviewed")

    # A product created, and one deleted.
    created = client.post(
        "/api/products",
        json={"name": "Wall Lamp", "price": "30.00", "stock": 4, "category": "Home"},
        headers=admin,
    )
    assert created.status_code == 201, created.get_json()
    assert_fresh(client, "created")
    assert client.delete(f"/api/products/{shop['chair'].id}", headers=admin).status_code == 204
    assert_fresh(client, "deleted")


def test_a_stock_write_outside_inventory_counts(app, client, shop):
    """Only inventory's own UPDATEs are left to it: any other write of `stock`
    moves the version, whether or not it crosses zero."""
    assert_fresh(client, "before")
    before = version()
    db.session.execute(update(Product).where(Product.id == shop["lamp"].id).values(stock=0))
    db.session.commit()
    assert version() != before
    assert_fresh(client, "stock written by a Core UPDATE")


def test_a_checkout_that_fails_moves_nothing(client, shop, user_token):
    """A 409 (a line short) rolls the sell-out of its other line back: the
    version stays, and so do the numbers."""
    assert_fresh(client, "before")
    fill_cart(client, user_token, (shop["last"], 1), (shop["chair"], 3))
    db.session.execute(update(Product).where(Product.id == shop["chair"].id).values(stock=2))
    db.session.commit()
    assert_fresh(client, "chair short")
    before = version()
    response = client.post("/api/orders", json=SHIPPING, headers=auth(user_token))
    assert response.status_code == 409, response.get_json()
    assert version() == before
    assert_fresh(client, "after the 409")


def test_off_builds_every_answer(app, client, shop, count_queries):
    kept = app.extensions["catalog_matches"]
    app.extensions["catalog_matches"] = None
    try:
        for _ in range(2):
            catalog_cache.bump()
            with count_queries() as q:
                body = client.get("/api/products/facets?q=lamp").get_json()
            assert body == expected({"q": "lamp"})
            assert q.count == 1, q.statements
    finally:
        app.extensions["catalog_matches"] = kept
