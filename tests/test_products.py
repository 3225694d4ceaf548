"""The catalog (API.md, Products)."""

from __future__ import annotations

import re
from datetime import timedelta
from decimal import Decimal

import pytest
from sqlalchemy import select, text

from app.models import Cart, CartItem, Product
from app.models.types import utcnow
from app.services import catalog_cache, versions
from app.services.catalog import LIVE_TOTAL
from tests.helpers import IS_POSTGRES, auth, scalar

NEW = {
    "name": "Phone",
    "description": "A phone",
    "price": 699.99,
    "stock": 5,
    "category": "Phones",
    "image_url": "https://img.example.com/p.jpg",
}


def list_products(client, **params):
    response = client.get("/api/products", query_string=params)
    assert response.status_code == 200, response.get_json()
    return response.get_json()


# --- reads --------------------------------------------------------------------


def test_product_fields_and_money_as_number(client, make_product):
    product = make_product(price="699.99")
    response = client.get(f"/api/products/{product.id}")
    assert response.status_code == 200
    body = response.get_json()
    assert set(body) == {
        "id",
        "name",
        "description",
        "price",
        "stock",
        "category",
        "image_url",
        "low_stock_threshold",
        "rating_average",
        "rating_count",
        "created_at",
        "updated_at",
    }
    assert body["rating_average"] is None and body["rating_count"] == 0
    assert b'"price":699.99' in response.data
    assert body["created_at"].endswith("+00:00")


def test_unknown_product_is_404(client):
    response = client.get("/api/products/999999")
    assert response.status_code == 404
    assert response.get_json()["message"]


def test_page_envelope_and_maths(client, make_product):
    for _ in range(45):
        make_product()
    page = list_products(client, page=3, per_page=20)
    assert {k: page[k] for k in ("page", "per_page", "total", "pages")} == {
        "page": 3,
        "per_page": 20,
        "total": 45,
        "pages": 3,
    }
    assert len(page["items"]) == 5
    beyond = list_products(client, page=9, per_page=20)
    assert beyond["items"] == [] and beyond["total"] == 45


def test_empty_catalog_page(client):
    page = list_products(client)
    assert page == {"items": [], "page": 1, "per_page": 20, "total": 0, "pages": 0}


def test_per_page_above_100_is_clamped(client, make_product):
    for _ in range(3):
        make_product()
    page = list_products(client, per_page=1000)
    assert page["per_page"] == 100


@pytest.mark.parametrize(
    ("param", "value"),
    [
        ("page", "abc"),
        ("page", "0"),
        ("page", "-1"),
        ("page", "1.5"),
        ("per_page", "0"),
        ("per_page", "x"),
        ("sort", "bogus"),
        ("sort", "id"),
        ("sort", ""),
        ("min_price", "x"),
        ("min_price", "-1"),
        ("max_price", "1.234"),
        ("max_price", "NaN"),
        ("in_stock", "maybe"),
        ("category", ""),
        ("q", "x" * 201),
    ],
)
def test_malformed_query_parameters_are_422(client, param, value):
    response = client.get("/api/products", query_string={param: value})
    assert response.status_code == 422, response.get_json()
    assert param in response.get_json()["errors"]


def test_unknown_query_parameters_are_ignored(client):
    # Like cache-busters (`_=1700000000`): documented in the README.
    assert client.get("/api/products?_=123").status_code == 200


def test_min_above_max_is_422(client):
    response = client.get("/api/products", query_string={"min_price": 10, "max_price": 5})
    assert response.status_code == 422


def test_category_filter_ignores_case(client, make_product):
    a = make_product(category="Books")
    make_product(category="Toys")
    c = make_product(category="BOOKS")
    ids = {p["id"] for p in list_products(client, category="books")["items"]}
    assert ids == {a.id, c.id}


@pytest.mark.parametrize("category", ["ΗΧΟΣ", "İçecek", "Écrans", "ÅNGSTRÖM"])
def test_a_category_spelled_as_stored_is_found_and_faceted(client, make_product, category):
    """The value was lower-cased by Python and the column by the database,
    which fold some letters otherwise (a final sigma, a dotted capital I;
    SQLite only ASCII): such a category was listed in the facets and found
    by nothing. Both sides are folded by the database now."""
    product = make_product(category=category)
    make_product(category="Other")
    page = list_products(client, category=category)
    assert [p["id"] for p in page["items"]] == [product.id]
    facets = client.get("/api/products/facets", query_string={"category": category}).get_json()
    assert facets["total"] == 1
    assert {"value": category, "count": 1} in facets["categories"]


def test_facets_count_a_category_as_the_filter_does(client, make_product):
    """ "Audio" and "AUDIO" are one category to the filter: the facets listed
    them apart (4 and 1) while either filter found all 5."""
    for category in ("Audio", "Audio", "AUDIO", "audio", "Toys"):
        make_product(category=category)
    facets = client.get("/api/products/facets").get_json()
    assert sorted((c["value"].lower(), c["count"]) for c in facets["categories"]) == [
        ("audio", 4),
        ("toys", 1),
    ]
    for entry in facets["categories"]:
        listed = list_products(client, category=entry["value"])["total"]
        assert listed == entry["count"], entry
    chosen = client.get("/api/products/facets?category=aUdIo").get_json()
    assert chosen["total"] == 4 and len(chosen["categories"]) == 2


def test_facets_add_up_every_spelling_of_a_category(client, make_product):
    """The facets are grouped by spelling and the spellings added up in
    Python (`facets.merged`): prices, stock and ratings of every spelling
    count, as the category filter (lower() on both sides) counts them."""
    make_product(category="Audio", price="10.00", stock=0)
    make_product(category="AUDIO", price="5.00", stock=3)
    make_product(category="audio", price="20.00", stock=1)
    make_product(category="Toys", price="1.00", stock=1)
    chosen = client.get("/api/products/facets?category=audio").get_json()
    assert chosen["total"] == 3 and chosen["in_stock"] == 2
    assert chosen["price"] == {"min": 5, "max": 20}
    audio = [c for c in chosen["categories"] if c["value"].lower() == "audio"]
    assert [c["count"] for c in audio] == [3]
    assert audio[0]["value"] == "AUDIO"  # the first spelling in code point order
    everything = client.get("/api/products/facets").get_json()
    assert everything["total"] == 4 and everything["price"] == {"min": 1, "max": 20}


def test_search_in_name_and_description_ignoring_case(client, make_product):
    by_name = make_product(name="Red Guitar", description="string instrument")
    by_description = make_product(name="Amp", description="for a GUITAR")
    make_product(name="Drum", description="percussion")
    for q in ("guitar", "GuItAr"):
        ids = {p["id"] for p in list_products(client, q=q)["items"]}
        assert ids == {by_name.id, by_description.id}, q


def test_search_wildcards_are_not_wildcards(client, make_product):
    make_product(name="xbz cotton")
    assert list_products(client, q="x%z")["total"] == 0
    assert list_products(client, q="x_z")["total"] == 0
    assert list_products(client, q="_")["total"] == 0


def test_price_range_and_in_stock(client, make_product):
    cheap = make_product(price="5.00", stock=0)
    mid = make_product(price="10.00", stock=3)
    make_product(price="20.01", stock=3)
    ids = {p["id"] for p in list_products(client, min_price="5", max_price="20.00")["items"]}
    assert ids == {cheap.id, mid.id}
    ids = {p["id"] for p in list_products(client, in_stock="true")["items"]}
    assert cheap.id not in ids and mid.id in ids
    assert list_products(client, in_stock="false")["total"] == 3


def test_sorts(client, db, make_product):
    now = utcnow()
    b = make_product(name="Banana", price="2.00", created_at=now - timedelta(days=2))
    a = make_product(name="apple", price="3.00", created_at=now - timedelta(days=1))
    c = make_product(name="Cherry", price="1.00", created_at=now - timedelta(days=3))

    def order(sort):
        return [p["id"] for p in list_products(client, sort=sort)["items"]]

    assert order("price") == [c.id, b.id, a.id]
    assert order("-price") == [a.id, b.id, c.id]
    assert order("created_at") == [c.id, b.id, a.id]
    assert order("-created_at") == [a.id, b.id, c.id]
    assert [p["id"] for p in list_products(client)["items"]] == [a.id, b.id, c.id]
    names = [p["name"] for p in list_products(client, sort="name")["items"]]
    assert sorted(names) == names or names == ["Banana", "Cherry", "apple"]
    assert list(reversed(order("name"))) == order("-name")


def test_ties_break_by_id_so_pages_never_overlap(client, make_product):
    same = utcnow()
    ids = [make_product(price="1.00", created_at=same).id for _ in range(7)]
    for sort, expected in [("-created_at", sorted(ids, reverse=True)), ("price", sorted(ids))]:
        seen = []
        for page in (1, 2, 3):
            seen += [
                p["id"] for p in list_products(client, sort=sort, per_page=3, page=page)["items"]
            ]
        assert seen == expected


def test_list_is_one_query_and_detail_one(client, make_product, count_queries):
    for _ in range(30):
        make_product()
    lists = [
        "/api/products?per_page={n}&q=Product&sort=price",
        "/api/products?per_page={n}",
        "/api/products?per_page={n}&category=GENERAL&min_price=1&in_stock=true&sort=-name",
    ]
    for path in lists:
        for per_page in (1, 30, 100):
            versions.bump_all()  # a miss: the budget is for building the answer
            with count_queries() as q:
                assert client.get(path.format(n=per_page)).status_code == 200
            # The total comes with the page (a scalar subquery): one statement.
            assert q.count == 1, q.statements
    # Another page of the same filters, same version: the total is known.
    with count_queries() as q:
        assert client.get("/api/products?per_page=1&page=2&q=Product&sort=price").status_code == 200
    assert q.count == 1, q.statements
    # A page past the end with an unknown total: the page is empty, then a count.
    versions.bump_all()
    with count_queries() as q:
        body = client.get("/api/products?page=5&per_page=10").get_json()
    assert (body["items"], body["total"], body["pages"]) == ([], 30, 3)
    assert q.count == 2, q.statements
    with count_queries() as q:  # the total is known now: no query at all for that page
        assert client.get("/api/products?page=6&per_page=10").get_json()["total"] == 30
    assert q.count == 0, q.statements
    catalog_cache.bump()
    with count_queries() as q:
        assert client.get("/api/products/1").status_code == 200
    assert q.count == 1, q.statements


# --- writes -------------------------------------------------------------------


def test_admin_creates_product(client, db, admin_token):
    response = client.post("/api/products", json=NEW, headers=auth(admin_token))
    assert response.status_code == 201
    body = response.get_json()
    assert body["price"] == Decimal("699.99") and b'"price":699.99' in response.data
    stored = db.session.get(Product, body["id"])
    assert stored.price == Decimal("699.99")
    assert client.get(f"/api/products/{body['id']}").get_json() == body


def test_create_minimal_product(client, admin_token):
    response = client.post(
        "/api/products", json={"name": "X", "price": "0", "stock": 0}, headers=auth(admin_token)
    )
    assert response.status_code == 201
    assert response.get_json()["price"] == 0


def test_price_as_numeric_string_is_exact(client, db, admin_token):
    response = client.post(
        "/api/products", json={**NEW, "price": "0.10"}, headers=auth(admin_token)
    )
    assert response.status_code == 201
    assert db.session.get(Product, response.get_json()["id"]).price == Decimal("0.10")


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("name", ""),
        ("name", "   "),
        ("name", "x" * 201),
        ("name", None),
        ("name", 5),
        ("description", "x" * 5001),
        ("description", 7),
        ("price", -1),
        ("price", "1.999"),
        ("price", 1.005),
        ("price", 1000000.01),
        ("price", "abc"),
        ("price", None),
        ("price", True),
        ("price", "NaN"),
        ("price", "Infinity"),
        ("price", [1]),
        ("price", "1e999999"),
        ("stock", -1),
        ("stock", 1.5),
        ("stock", "3"),
        ("stock", None),
        ("stock", True),
        ("stock", 2**31),
        ("stock", 10**40),
        ("category", "x" * 81),
        ("category", 3),
        ("image_url", "ftp://x.com/a.jpg"),
        ("image_url", "not a url"),
        ("image_url", "javascript:alert(1)"),
        ("image_url", "https://x.com/" + "a" * 500),
    ],
)
def test_create_validation_matrix(client, db, admin_token, field, value):
    response = client.post("/api/products", json={**NEW, field: value}, headers=auth(admin_token))
    assert response.status_code == 422, response.get_json()
    assert field in response.get_json()["errors"]
    assert db.session.scalar(db.select(db.func.count()).select_from(Product)) == 0


@pytest.mark.parametrize(
    "literal", ["1e400", "-0.001", "1E+999999999", "123456789012345678901234567890"]
)
def test_huge_or_tiny_json_number_prices_are_422(client, admin_token, literal):
    body = '{"name": "X", "stock": 1, "price": ' + literal + "}"
    response = client.post(
        "/api/products", data=body, content_type="application/json", headers=auth(admin_token)
    )
    assert response.status_code == 422
    assert "price" in response.get_json()["errors"]


@pytest.mark.parametrize("field", ["name", "price", "stock"])
def test_create_requires_fields(client, admin_token, field):
    body = {k: v for k, v in NEW.items() if k != field}
    response = client.post("/api/products", json=body, headers=auth(admin_token))
    assert response.status_code == 422
    assert field in response.get_json()["errors"]


@pytest.mark.parametrize("field", ["id", "created_at", "updated_at", "deleted_at", "bogus"])
def test_create_rejects_unknown_and_read_only_fields(client, admin_token, field):
    response = client.post("/api/products", json={**NEW, field: 1}, headers=auth(admin_token))
    assert response.status_code == 422
    assert field in response.get_json()["errors"]


def test_price_edges(client, admin_token):
    for price in (0, "1000000", 1000000.00, "0.01"):
        response = client.post(
            "/api/products", json={**NEW, "price": price}, headers=auth(admin_token)
        )
        assert response.status_code == 201, (price, response.get_json())


def test_update_any_subset(client, db, admin_token, make_product):
    product = make_product(name="Old", price="1.00", stock=1)
    response = client.put(
        f"/api/products/{product.id}", json={"price": "2.50"}, headers=auth(admin_token)
    )
    assert response.status_code == 200
    body = response.get_json()
    assert body["price"] == Decimal("2.5") and body["name"] == "Old" and body["stock"] == 1
    response = client.put(
        f"/api/products/{product.id}",
        json={"name": "New", "stock": 9, "category": None},
        headers=auth(admin_token),
    )
    assert response.get_json()["name"] == "New" and response.get_json()["category"] is None
    # Nothing to change is the client's mistake, not a silent 200 (tests/test_errors.py).
    empty = client.put(f"/api/products/{product.id}", json={}, headers=auth(admin_token))
    assert empty.status_code == 422


@pytest.mark.parametrize(
    ("field", "value"), [("price", -5), ("stock", -1), ("name", ""), ("id", 7)]
)
def test_update_validation(client, db, admin_token, make_product, field, value):
    product = make_product(price="1.00", stock=1)
    response = client.put(
        f"/api/products/{product.id}", json={field: value}, headers=auth(admin_token)
    )
    assert response.status_code == 422
    assert scalar("SELECT stock FROM products WHERE id = :i", i=product.id) == 1


def test_update_and_delete_unknown_product_404(client, admin_token):
    assert (
        client.put("/api/products/4242", json={"stock": 1}, headers=auth(admin_token)).status_code
        == 404
    )
    assert client.delete("/api/products/4242", headers=auth(admin_token)).status_code == 404


def test_stock_check_constraint_in_database(db, make_product):
    from sqlalchemy.exc import IntegrityError

    product = db.session.get(Product, make_product(stock=1).id)
    product.stock = -1
    with pytest.raises(IntegrityError):
        db.session.commit()
    db.session.rollback()


# --- permissions --------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("post", "/api/products", NEW),
        ("put", "/api/products/{id}", {"stock": 1}),
        ("delete", "/api/products/{id}", None),
    ],
)
@pytest.mark.parametrize(("who", "status"), [("anonymous", 401), ("user", 403), ("admin", None)])
def test_permission_matrix(
    client, make_product, user_token, admin_token, method, path, body, who, status
):
    product = make_product()
    headers = {"anonymous": {}, "user": auth(user_token), "admin": auth(admin_token)}[who]
    kwargs = {"headers": headers}
    if body is not None:
        kwargs["json"] = body
    response = getattr(client, method)(path.format(id=product.id), **kwargs)
    if status is None:
        assert response.status_code in (200, 201, 204)
    else:
        assert response.status_code == status
        assert response.get_json()["message"]


# --- soft delete ----------------------------------------------------------------


def test_totals_stay_exact_as_products_are_deleted(client, db, admin_token, make_product):
    """The unfiltered total is counted as all rows minus the deleted ones on
    SQLite (an index of the deleted rows) and read from the trigger-kept
    counter on PostgreSQL; every path agrees with the truth."""
    made = [make_product(category="Lamps" if n % 2 else "Desks") for n in range(9)]
    for product in made[:4]:
        assert client.delete(f"/api/products/{product.id}", headers=auth(admin_token)).status_code
    live = scalar("SELECT count(*) FROM products WHERE deleted_at IS NULL")
    lamps = scalar(
        "SELECT count(*) FROM products WHERE deleted_at IS NULL AND lower(category) = 'lamps'"
    )
    assert (live, lamps) == (5, 2)
    for query, total in [
        ("per_page=2", live),
        ("per_page=2&page=9", live),  # past the end
        ("per_page=2&sort=price", live),
        ("per_page=2&category=lamps", lamps),
    ]:
        catalog_cache.bump()
        body = list_products(client, **dict(p.split("=") for p in query.split("&")))
        assert (body["total"], body["pages"]) == (total, -(-total // 2)), query
        assert len(body["items"]) == (0 if "page=9" in query else 2)


@pytest.mark.skipif(IS_POSTGRES, reason="SQLite's count of a whole b-tree")
def test_sqlite_counts_the_live_catalog_without_visiting_a_row(db):
    sql = select(LIVE_TOTAL["sqlite"]).compile(db.engine)
    details = [row[3] for row in db.session.execute(text(f"EXPLAIN QUERY PLAN {sql}"))]
    db.session.rollback()
    assert any("COVERING INDEX ix_products_deleted_at" in d for d in details), details
    assert all("COVERING INDEX" in d for d in details if " products " in d), details


@pytest.mark.skipif(not IS_POSTGRES, reason="PostgreSQL's trigger-kept count")
def test_postgresql_keeps_the_live_count_through_every_kind_of_write(db, make_product):
    """Bulk insert, soft delete, undelete, a stock update, hard delete and
    TRUNCATE: the counter stays the true count of live rows, and a write that
    changes no liveness never touches it (checkout's stock updates)."""

    def counted() -> tuple[int, int]:
        db.session.commit()
        return (
            scalar("SELECT live FROM products_live_count"),
            scalar("SELECT count(*) FROM products WHERE deleted_at IS NULL"),
        )

    def run(sql: str, **params) -> None:
        db.session.execute(text(sql), params)
        db.session.commit()

    assert counted() == (0, 0)
    made = [make_product() for _ in range(3)]
    run(
        "INSERT INTO products (name, description, price, stock, created_at, updated_at,"
        " deleted_at) SELECT 'bulk ' || n, '', 1, 1, now(), now(),"
        " CASE WHEN n % 4 = 0 THEN now() END FROM generate_series(1, 40) AS n"
    )
    assert counted() == (33, 33)
    xmin = scalar("SELECT xmin::text FROM products_live_count")
    first, second = made[0].id, made[1].id
    run("UPDATE products SET stock = stock + 1, price = 2 WHERE id = :id", id=first)
    assert scalar("SELECT xmin::text FROM products_live_count") == xmin  # not written
    run("UPDATE products SET deleted_at = now() WHERE id IN (:a, :b)", a=first, b=second)
    run("UPDATE products SET deleted_at = now() WHERE id = :id", id=first)  # already deleted
    assert counted() == (31, 31)
    run("UPDATE products SET deleted_at = NULL WHERE id = :id", id=second)
    assert counted() == (32, 32)
    run("DELETE FROM products WHERE name LIKE 'bulk %' AND id % 2 = 0")
    assert counted()[0] == counted()[1]
    run("TRUNCATE products CASCADE")
    assert counted() == (0, 0)


def test_delete_hides_product_and_empties_carts_but_keeps_orders(
    client, db, admin_token, make_user, login, make_product
):
    keep = make_product(price="3.00", stock=10)
    gone = make_product(price="0.10", stock=10, name="Soon gone")
    buyer = login(make_user())["access_token"]
    client.post("/api/cart", json={"product_id": gone.id, "quantity": 3}, headers=auth(buyer))
    placed = client.post(
        "/api/orders", json={"shipping_address": "1 Main Street"}, headers=auth(buyer)
    ).get_json()
    shopper = login(make_user())["access_token"]
    client.post("/api/cart", json={"product_id": gone.id, "quantity": 1}, headers=auth(shopper))
    client.post("/api/cart", json={"product_id": keep.id, "quantity": 1}, headers=auth(shopper))

    response = client.delete(f"/api/products/{gone.id}", headers=auth(admin_token))
    assert response.status_code == 204
    assert response.data == b""

    assert client.get(f"/api/products/{gone.id}").status_code == 404
    assert gone.id not in [p["id"] for p in list_products(client)["items"]]
    assert (
        client.put(
            f"/api/products/{gone.id}", json={"stock": 1}, headers=auth(admin_token)
        ).status_code
        == 404
    )
    assert client.delete(f"/api/products/{gone.id}", headers=auth(admin_token)).status_code == 404
    cart = client.get("/api/cart", headers=auth(shopper)).get_json()
    assert [i["product_id"] for i in cart["items"]] == [keep.id]
    assert (
        client.post("/api/cart", json={"product_id": gone.id}, headers=auth(shopper)).status_code
        == 404
    )
    order = client.get(f"/api/orders/{placed['id']}", headers=auth(buyer)).get_json()
    assert order == placed
    assert order["items"][0]["product_name"] == "Soon gone"
    assert order["total_amount"] == Decimal("0.30")
    assert db.session.scalar(db.select(db.func.count()).select_from(CartItem)) == 1
    assert db.session.scalar(db.select(db.func.count()).select_from(Cart)) >= 2


@pytest.mark.parametrize(
    "sort", ["-created_at", "created_at", "price", "-price", "name", "-name", "rating", "-rating"]
)
def test_every_sort_pages_as_the_direct_statement_orders(client, db, make_product, sort):
    """PostgreSQL reads a page by its ids first (`catalog._page_by_keys`):
    walked page by page, every sort gives the order of the direct statement,
    ties (same price, same time, no rating) and a deleted product included."""
    from app.services import catalog

    same = utcnow()
    ids = []
    for n in range(11):
        product = make_product(
            name=f"Item {n % 4}", price=f"{n % 3}.00", created_at=same - timedelta(days=n % 2)
        )
        ids.append(product.id)
        if n % 3:
            db.session.execute(
                db.update(Product)
                .where(Product.id == product.id)
                .values(rating_count=1, rating_sum=n % 5 + 1, rating_average=n % 5 + 1)
            )
    db.session.execute(db.update(Product).where(Product.id == ids[4]).values(deleted_at=same))
    db.session.commit()
    catalog_cache.bump()
    direct = catalog.listing(catalog._sorted(catalog.active_products(), sort, None)).page
    expected = [row.id for row in db.session.execute(direct, {"limit": 100, "offset": 0})]
    db.session.rollback()
    seen = []
    for page in (1, 2, 3, 4):
        seen += [p["id"] for p in list_products(client, sort=sort, per_page=3, page=page)["items"]]
    assert seen == expected and len(seen) == 10 and ids[4] not in seen


@pytest.mark.skipif(not IS_POSTGRES, reason="PostgreSQL's generic plans")
def test_a_page_reads_only_its_products_under_a_generic_plan(db):
    """psycopg prepares a statement run five times; PostgreSQL may then keep
    a generic plan, which guesses LIMIT $1 at a tenth of the table: the page
    must still read only its products by id, not join a scan of them all."""
    from app.services import catalog

    db.session.execute(
        text(
            "INSERT INTO products (name, description, price, stock, created_at, updated_at)"
            " SELECT 'P' || n, '', n % 50, 1, now() - n * interval '1 minute', now()"
            " FROM generate_series(1, 5000) AS n"
        )
    )
    db.session.commit()
    db.session.execute(text("ANALYZE products"))
    for sort in ("-created_at", "price", "-rating"):
        page = catalog.plain_listing((), sort, "postgresql").counted
        sql = str(page.compile(dialect=db.engine.dialect))
        sql = sql.replace("%(limit)s", "$1").replace("%(offset)s", "$2")
        db.session.execute(text("SET LOCAL plan_cache_mode = force_generic_plan"))
        db.session.execute(text(f"PREPARE page_plan(int, int) AS {sql}"))
        plan = "\n".join(db.session.scalars(text("EXPLAIN EXECUTE page_plan(20, 720)")))
        db.session.execute(text("DEALLOCATE page_plan"))
        assert not re.search(r"Seq Scan on products\b(?!_)", plan), (sort, plan)
        assert "Nested Loop" in plan, (sort, plan)
        assert "Index Scan using pk_products" in plan, (sort, plan)
    db.session.rollback()
