"""Review of search on PostgreSQL (round 9, reviewer: searchpg): the
spelling-tolerant (trigram) retry - stop words, filters, exclusions,
ranking and paging, facets, its cost on 10,000 products - ranking ties
across pages, stemming, facets counted here from the rows, and the
OpenAPI document's price filters. Most run on both databases; the retry's
own tests need PostgreSQL (SQLite has none)."""

from __future__ import annotations

import re
import time
from decimal import Decimal

import jsonschema_rs
import pytest
from sqlalchemy import event, insert, text

from app.extensions import db
from app.models import Product
from app.services.search.postgres import SUGGEST, PostgresSearch
from tests.helpers import IS_POSTGRES, auth

postgres_only = pytest.mark.skipif(not IS_POSTGRES, reason="the trigram retry is PostgreSQL's")


def listed(client, **params) -> dict:
    response = client.get("/api/products", query_string=params)
    assert response.status_code == 200, (params, response.get_json())
    return response.get_json()


def names(client, **params) -> list[str]:
    return [p["name"] for p in listed(client, per_page=100, **params)["items"]]


def ids(client, **params) -> list[int]:
    return [p["id"] for p in listed(client, per_page=100, **params)["items"]]


def facets(client, **params) -> dict:
    response = client.get("/api/products/facets", query_string=params)
    assert response.status_code == 200, (params, response.get_json())
    return response.get_json()


# --- the spelling-tolerant retry ---------------------------------------------------


@postgres_only
@pytest.mark.parametrize(
    "q, expected",
    [
        ("the labtop", ["Gaming Laptop", "Laptop Sleeve"]),
        ("labtop for gaming", ["Gaming Laptop"]),
        ("a labtop of the gaming kind", []),  # `kind` is a word: it must match too
        ("gamng labtop and", ["Gaming Laptop"]),
    ],
)
def test_stop_words_never_stop_the_spelling_tolerant_retry(client, make_product, q, expected):
    """Stop words are ignored on PostgreSQL (README), by the full-text match
    and so by its retry: `the labtop` asked each word, `the` included, to be
    close to a word of the name or category, and found nothing where
    `labtop` finds both laptops."""
    make_product(name="Gaming Laptop", category="Computers")
    make_product(name="Laptop Sleeve", category="Accessories")
    make_product(name="Desk Lamp", category="Home")
    assert sorted(names(client, q=q)) == expected
    assert facets(client, q=q)["total"] == len(expected)


@postgres_only
def test_a_query_of_stop_words_only_is_never_retried_on_their_trigrams(client, make_product):
    """`the and` has no word the search reads: it finds nothing, as any query
    with no words; the retry listed "Theo Handy Stand", whose words share
    trigrams with `the` and `and`. (`the` as the last word is a prefix too:
    `and the` finds "Theo" by it, rightly.)"""
    make_product(name="Theo Handy Stand", category="Tools")
    make_product(name="Desk Lamp", category="Home")
    assert names(client, q="and the") == ["Theo Handy Stand"]
    for q in ("the and", '"the and"'):
        assert names(client, q=q) == [], q
        assert facets(client, q=q)["total"] == 0, q


@postgres_only
def test_the_retry_keeps_every_filter_and_never_a_deleted_product(
    client, make_product, admin_token
):
    """in_stock, min_price, max_price, category and min_rating all apply to
    the retry's matches, as to the full-text ones; a deleted product never
    shows, and the facets count what the list shows."""
    rows = [
        ("Laptop Stand", "Office", "30.00", 4, "4.50"),
        ("Laptop Sleeve", "Bags", "20.00", 0, "3.00"),
        ("Laptop Bag", "Bags", "55.00", 2, None),
        ("Laptop Riser", "office", "70.00", 9, "4.00"),
        ("Desk Lamp", "Office", "30.00", 4, "5.00"),
    ]
    made = {}
    for name, category, price, stock, rating in rows:
        made[name] = make_product(name=name, category=category, price=price, stock=stock)
        if rating is not None:
            db.session.execute(
                text(
                    "UPDATE products SET rating_average = :r, rating_count = 2,"
                    " rating_sum = :s WHERE id = :i"
                ),
                {"r": Decimal(rating), "s": int(2 * Decimal(rating)), "i": made[name].id},
            )
    gone = make_product(name="Laptop Dock", category="Office", price="40.00", stock=5)
    db.session.commit()
    assert client.delete(f"/api/products/{gone.id}", headers=auth(admin_token)).status_code == 204

    laptops = [r for r in rows if r[0].startswith("Laptop")]
    combos = [
        {},
        {"in_stock": "true"},
        {"min_price": "25", "max_price": "60"},
        {"category": "OFFICE", "in_stock": "true", "max_price": "69.99"},
        {"min_rating": "4"},
        {"min_rating": "3", "category": "bags"},
        {"min_price": "80"},
    ]
    for params in combos:

        def passes(row, params=params, with_category=True):
            _, category, price, stock, rating = row
            return (
                (
                    not with_category
                    or "category" not in params
                    or category.lower() == params["category"].lower()
                )
                and ("in_stock" not in params or stock > 0)
                and ("min_price" not in params or Decimal(price) >= Decimal(params["min_price"]))
                and ("max_price" not in params or Decimal(price) <= Decimal(params["max_price"]))
                and (
                    "min_rating" not in params
                    or (rating is not None and Decimal(rating) >= Decimal(params["min_rating"]))
                )
            )

        expected = sorted(r[0] for r in laptops if passes(r))
        assert sorted(names(client, q="labtop", **params)) == expected, params
        got = facets(client, q="labtop", **params)
        assert got["total"] == len(expected), params
        chosen = [r for r in laptops if passes(r)]
        assert got["in_stock"] == sum(1 for r in chosen if r[3] > 0), params
        prices = [Decimal(r[2]) for r in chosen]
        assert got["price"] == {
            "min": min(prices, default=None),
            "max": max(prices, default=None),
        }, params
        counts: dict[str, int] = {}
        for r in laptops:
            if passes(r, with_category=False):
                key = r[1].lower()
                counts[key] = counts.get(key, 0) + 1
        assert {c["value"].lower(): c["count"] for c in got["categories"]} == counts, params
        assert [r["count"] for r in got["ratings"]] == [
            sum(1 for r in chosen if r[4] is not None and Decimal(r[4]) >= level)
            for level in (4, 3, 2, 1)
        ], params
    assert "Laptop Dock" not in names(client, q="labtop dokc")
    assert names(client, q="dokc") == []


@postgres_only
def test_the_retry_never_lists_a_product_with_an_excluded_word(client, make_product):
    """An exclusion takes out a product holding the word anywhere (name,
    category or description, stemmed), in the retry as in the match."""
    make_product(name="Gaming Laptop", description="Refurbished, like new", category="Computers")
    make_product(name="Laptop Sleeve", description="Neoprene", category="Accessories")
    make_product(name="Laptop Stand", description="Aluminium", category="Office Refurbishing")
    make_product(name="Laptop Riser", description="Oak", category="Office")
    assert sorted(names(client, q="labtop -refurbished")) == ["Laptop Riser", "Laptop Sleeve"]
    assert sorted(names(client, q="labtop -office -neoprene")) == ["Gaming Laptop"]
    assert names(client, q='labtop -"like new" -sleeve -office') == []
    assert facets(client, q="labtop -refurbished")["total"] == 2


@postgres_only
def test_the_retry_ranks_the_closest_first_ties_by_id_on_every_page(client, make_product):
    """The retry's order is its similarity, ties by id: pages of any size
    tile the whole list, no product twice or never."""
    made = []
    for n in range(7):
        made.append(make_product(name="Laptop Stand", category="Office"))
        made.append(make_product(name=f"Laptops Bundle {n}", category="Bundles"))
    whole = ids(client, q="labtop")
    assert sorted(whole) == sorted(p.id for p in made)
    stands = [i for i in whole if i in {p.id for p in made[::2]}]
    assert stands == sorted(stands)  # equal names, equal similarity: by id
    for per_page in (1, 3, 4):
        paged = []
        for page in range(1, len(whole) // per_page + 2):
            paged += [
                p["id"] for p in listed(client, q="labtop", per_page=per_page, page=page)["items"]
            ]
        assert paged == whole, per_page
    by_price = ids(client, q="labtop", sort="-price")
    assert by_price == sorted(whole, reverse=True)  # equal prices: by id, descending
    assert listed(client, q="labtop")["total"] == facets(client, q="labtop")["total"] == 14


def _bulk_products(count: int) -> None:
    words = ["Desk", "Lamp", "Chair", "Table", "Laptop", "Stand", "Cable", "Phone", "Case", "Mug"]
    rows = [
        {
            "name": f"{words[n % 10]} {words[(n * 7) % 10]} {n}",
            "description": f"Item {n} made of {words[(n * 3) % 10].lower()} parts",
            "price": Decimal(n % 500) + Decimal("0.99"),
            "stock": n % 4,
            "category": ["Home", "Office", "Tech", "Kitchen"][n % 4],
            "low_stock_threshold": 5,
        }
        for n in range(count)
    ]
    db.session.execute(insert(Product), rows)
    db.session.commit()
    db.session.execute(text("ANALYZE products"))
    db.session.commit()


@postgres_only
def test_the_retry_is_served_by_the_trigram_index_on_10000_products(client):
    """The retry's statement finds its candidates through `ix_products_fuzzy`
    (no scan of every product computing a similarity) and answers in well
    under a second on 10,000 products."""
    _bulk_products(10_000)
    statements: list[tuple[str, object]] = []

    def capture(_conn, _cursor, statement, parameters, _context, _executemany):
        statements.append((statement, parameters))

    event.listen(db.engine, "before_cursor_execute", capture)
    try:
        started = time.perf_counter()
        body = listed(client, q="labtop caes", in_stock="true")
        elapsed = time.perf_counter() - started
        facet = facets(client, q="labtop caes", in_stock="true")
    finally:
        event.remove(db.engine, "before_cursor_execute", capture)
    assert body["total"] == facet["total"] > 0
    assert all("Laptop" in p["name"] for p in body["items"])
    assert elapsed < 1.0, elapsed
    fuzzy = [(s, p) for s, p in statements if "<%" in s]
    assert fuzzy, "no trigram statement ran"
    with db.engine.connect() as conn:
        for statement, parameters in fuzzy:
            plan = "\n".join(
                row[0] for row in conn.exec_driver_sql("EXPLAIN " + statement, parameters)
            )
            assert "ix_products_fuzzy" in plan, plan
            assert not re.search(r"Seq Scan on products\b", plan), plan
        # So does the generic plan the server keeps for a statement psycopg
        # prepared, where each word's test is computed once, not per row.
        conn.exec_driver_sql("SET plan_cache_mode = force_generic_plan")
        for statement, parameters in fuzzy:
            plan = "\n".join(
                row[0] for row in conn.exec_driver_sql("EXPLAIN " + statement, parameters)
            )
            assert "$1" in plan or "InitPlan" in plan, plan
            assert "ix_products_fuzzy" in plan, plan
            per_row = [line for line in plan.splitlines() if "Filter" in line or "Recheck" in line]
            assert not any("to_tsvector" in line for line in per_row), plan
        conn.exec_driver_sql("RESET plan_cache_mode")
        # The database's suggestions (without the in-memory index) through
        # the names' word index, ten at most, live names starting with q first.
        params = {"tsquery": "lap:*", "start": "lap", "n": 30}
        plan = "\n".join(row[0] for row in conn.execute(text("EXPLAIN " + str(SUGGEST)), params))
        assert "ix_products_name_words" in plan, plan
    started = time.perf_counter()
    suggested = PostgresSearch().suggest("lap")
    assert time.perf_counter() - started < 0.5
    assert len(suggested) == 10 and all(name.startswith("Laptop ") for name in suggested)


# --- ranking and paging of full-text results ----------------------------------------


@pytest.mark.parametrize("params", [{}, {"in_stock": "true"}, {"sort": "relevance"}])
def test_equal_scores_page_by_id_without_gaps_or_repeats(client, make_product, params):
    """Twenty equally relevant products, paged 3 at a time, by the engine's
    own page (no filter) and by the general statement (a filter): every
    product once, in id order."""
    made = [make_product(name="Brass Lamp", description="Same", category="Home") for _ in range(20)]
    make_product(name="Lamp Oil", description="Refill for a lamp", category="Home")
    name_matches = [p.id for p in made]
    paged = []
    for page in range(1, 9):
        paged += [
            p["id"]
            for p in listed(client, q="brass lamp", per_page=3, page=page, **params)["items"]
        ]
    assert paged == sorted(name_matches)


def test_a_name_match_ranks_above_a_description_match_with_sort_price_left_alone(
    client, make_product
):
    described = make_product(name="Bulb", description="For any lamp", price="5.00")
    named = make_product(name="Lamp", description="Bright", price="50.00")
    assert ids(client, q="lamp") == [named.id, described.id]
    assert ids(client, q="lamp", sort="price") == [described.id, named.id]
    assert ids(client, q="lamp", sort="-price") == [named.id, described.id]
    response = client.get("/api/products", query_string={"sort": "relevance"})
    assert response.status_code == 422  # relevance only with q (API.md)


# --- stemming and stop words ---------------------------------------------------------


@pytest.mark.parametrize(
    "q, expected",
    [
        ("running", ["Run Tracker", "Running Shoes"]),
        ("run", ["Run Tracker", "Running Shoes"]),
        # The prefix reaches the word `running`, and so its stem `run`.
        ("runn", ["Run Tracker", "Running Shoes"]),
        ("shoe", ["Running Shoes"]),
    ],
)
def test_words_match_their_inflections(client, make_product, q, expected):
    make_product(name="Running Shoes", description="Light", category="Sport")
    make_product(name="Run Tracker", description="Counts steps", category="Sport")
    make_product(name="Rug", description="Wool", category="Home")
    assert sorted(names(client, q=q)) == expected


# --- the OpenAPI document's price filters ---------------------------------------------


def _parameter(spec, path, name):
    for parameter in spec["paths"][path]["get"]["parameters"]:
        if parameter["name"] == name:
            return parameter
    raise AssertionError(f"{name} not documented on {path}")


@pytest.mark.parametrize("path", ["/api/products", "/api/products/facets"])
@pytest.mark.parametrize("name", ["min_price", "max_price"])
def test_the_document_takes_the_price_filters_the_server_takes(client, path, name):
    """A query's value is text: the document said `type: number` with no
    word of the two decimals, so a generator (schemathesis) sent
    `min_price=0.001`, valid by the document, and got a 422. The parameter
    is now the string form of a request body's money (its pattern): every
    value it takes the server takes, and every one it refuses the server
    refuses."""
    spec = client.get("/api/openapi.json").get_json()
    schema = _parameter(spec, path, name)["schema"]
    validator = jsonschema_rs.validator_for(schema)
    for value in ("0", "0.5", "0.07", "19.99", "1000000", "1000000.00", "999999.99", "5"):
        assert validator.is_valid(value), value
        response = client.get(path, query_string={name: value})
        assert response.status_code == 200, (value, response.get_json())
    for value in ("0.001", "1.234", "1000000.01", "1e2", "+5", "05", " 5", "-1", "abc", "5."):
        assert not validator.is_valid(value), value
        response = client.get(path, query_string={name: value})
        assert response.status_code == 422, (value, response.get_json())
        assert name in response.get_json()["errors"]
    example = schema.get("example")
    assert example is not None and validator.is_valid(example)
