"""Suggestions from the in-memory name index (app/services/search/suggestions.py):
the same answers as the database's own suggest, fresh after every name
change, untouched (and not rebuilt) by stock, price or review writes."""

from __future__ import annotations

import random

import pytest
from flask import current_app
from sqlalchemy import text
from sqlalchemy.orm import Session

from app.extensions import db
from app.models import Product
from app.services import search
from app.services.catalog_cache import RedisStore
from app.services.search import suggestions
from tests.helpers import auth

WORDS = [
    *("desk", "lamp", "lampshade", "floor", "clamp", "lantern", "wi-fi", "router", "smart"),
    *("led", "lamps", "steel", "stand", "light", "Mini", "XL", "04", "2000"),
]


def index_suggest(prefix: str) -> list[str]:
    index = suggestions.current()
    assert index is not None
    return index.suggest(prefix, search.SUGGEST_LIMIT)


def database_suggest(prefix: str) -> list[str]:
    return search.backend().suggest(prefix, search.SUGGEST_LIMIT)


def test_the_index_answers_as_the_database_does(make_product, client, admin_token):
    """On a catalog of random names (duplicates, a deleted one, one word
    inside another, hyphens, digits, upper case), every prefix of one to
    three words gives the database's own answer, in its order."""
    chooser = random.Random(19)
    names = [" ".join(chooser.choices(WORDS, k=chooser.randint(1, 4))) for _ in range(250)]
    for name in names:
        make_product(name=name.title() if chooser.random() < 0.3 else name)
    gone = make_product(name="lamp desk gone")
    assert client.delete(f"/api/products/{gone.id}", headers=auth(admin_token)).status_code == 204
    prefixes = {w[:n] for w in WORDS for n in range(1, len(w) + 1)}
    prefixes |= {f"{a} {b[:n]}" for a in WORDS[:8] for b in WORDS for n in (1, 3)}
    prefixes |= {"lamp desk g", "DESK L", "wi-f", "wi fi", "  lamp  ", "lamp-", "zzz", "🔦", "x"}
    for prefix in sorted(prefixes):
        assert index_suggest(prefix) == database_suggest(prefix), prefix


def test_diacritics_and_case_are_folded_on_either_database(make_product):
    make_product(name="Café Crème Mug")
    make_product(name="CAFETIÈRE")
    assert index_suggest("cafe") == ["CAFETIÈRE", "Café Crème Mug"]
    assert index_suggest("CRÈME") == ["Café Crème Mug"]
    assert index_suggest("café cre") == ["Café Crème Mug"]


def test_a_suggest_is_no_query_once_the_index_is_built(
    client, make_product, count_queries, make_app
):
    for n in range(30):
        make_product(name=f"Lamp {n}")
    app = make_app(overrides={"CATALOG_CACHE": False})  # every request reaches the view
    client = app.test_client()
    with app.app_context(), count_queries() as first:
        assert client.get("/api/products/suggest?q=la").status_code == 200
    assert first.count == 2  # the index is built: the live names counted, then read
    with app.app_context(), count_queries() as q:
        response = client.get("/api/products/suggest?q=lamp 1")
    assert response.status_code == 200 and q.count == 0
    assert response.get_json()["suggestions"][:2] == ["Lamp 1", "Lamp 10"]


def test_every_name_change_shows_at_once(client, admin_token, make_product):
    lamp = make_product(name="Desk Lamp")
    assert index_suggest("des") == ["Desk Lamp"]
    created = client.post(
        "/api/products",
        json={"name": "Designer Chair", "price": "50.00", "stock": 1},
        headers=auth(admin_token),
    )
    assert created.status_code == 201
    assert index_suggest("des") == ["Desk Lamp", "Designer Chair"]
    url = f"/api/products/{lamp.id}"
    assert (
        client.put(url, json={"name": "Reading Lamp"}, headers=auth(admin_token)).status_code == 200
    )
    assert index_suggest("des") == ["Designer Chair"]
    assert index_suggest("read") == ["Reading Lamp"]
    assert client.delete(url, headers=auth(admin_token)).status_code == 204
    assert index_suggest("read") == []
    db.session.execute(
        text("UPDATE products SET deleted_at = NULL WHERE id = :id"), {"id": lamp.id}
    )
    db.session.commit()  # a raw SQL write is noticed too
    assert index_suggest("read") == ["Reading Lamp"]
    db.session.execute(db.update(Product).where(Product.id == lamp.id).values(name="Floor Lamp"))
    db.session.commit()  # and a Core UPDATE that sets the name
    assert index_suggest("read") == [] and index_suggest("flo") == ["Floor Lamp"]


def test_stock_and_price_writes_keep_the_index(client, make_product, user_token, admin_token):
    lamp = make_product(name="Desk Lamp", stock=5)
    built = suggestions.current()
    assert (
        client.post("/api/cart", json={"product_id": lamp.id}, headers=auth(user_token)).status_code
        == 201
    )
    placed = client.post(
        "/api/orders", json={"shipping_address": "1 Road"}, headers=auth(user_token)
    )
    assert placed.status_code == 201  # a checkout moves stock: a Core UPDATE of stock
    url = f"/api/products/{lamp.id}"
    assert client.put(url, json={"price": "12.00"}, headers=auth(admin_token)).status_code == 200
    db.session.execute(
        db.update(Product).where(Product.id == lamp.id).values(stock=Product.stock + 1)
    )
    db.session.commit()
    assert suggestions.current() is built
    db.session.execute(db.update(Product).where(Product.id == lamp.id).values(name="Desk Lamp"))
    db.session.commit()  # the same name, but an UPDATE that sets it: a new version
    assert suggestions.current() is not built


def test_a_rolled_back_rename_keeps_the_index(make_product):
    lamp = make_product(name="Desk Lamp")
    built = suggestions.current()
    db.session.execute(db.update(Product).where(Product.id == lamp.id).values(name="Gone"))
    db.session.rollback()
    assert suggestions.current() is built
    assert index_suggest("des") == ["Desk Lamp"]


def test_another_app_sharing_the_version_sees_a_rename(make_app, make_product):
    """Two apps on one database (two gunicorn workers, or two hosts sharing
    Redis in the PostgreSQL leg): a rename committed by one is suggested by
    the other at once."""
    other = make_app()
    lamp = make_product(name="Desk Lamp")
    with other.app_context():
        assert index_suggest("des") == ["Desk Lamp"]
    db.session.execute(db.update(Product).where(Product.id == lamp.id).values(name="Floor Lamp"))
    db.session.commit()
    with other.app_context():
        assert index_suggest("des") == [] and index_suggest("flo") == ["Floor Lamp"]


def test_too_many_names_or_no_index_ask_the_database(make_app, make_product, count_queries):
    for n in range(5):
        make_product(name=f"Lamp {n}")
    for overrides in ({"SUGGEST_INDEX_MAX_NAMES": 3}, {"SUGGEST_INDEX_MAX_NAMES": 0}):
        app = make_app(overrides={**overrides, "CATALOG_CACHE": False})
        with app.app_context(), count_queries() as q:
            assert suggestions.current() is None
        # Too many: counted in the database, no name sent (off: not even that).
        assert len(q.statements) == (1 if overrides["SUGGEST_INDEX_MAX_NAMES"] else 0)
        assert all("count(" in statement.lower() for statement in q.statements)
        client = app.test_client()
        for _ in range(2):
            with app.app_context(), count_queries() as q:
                response = client.get("/api/products/suggest?q=lam")
            assert response.get_json()["suggestions"][0] == "Lamp 0"
            assert q.count >= 1  # the database answered


@pytest.mark.parametrize("url", ["redis://127.0.0.1:1/0"])
def test_an_unreachable_version_store_falls_back_to_the_database(app, make_product, url):
    make_product(name="Desk Lamp")
    index = app.extensions["suggestions"]
    saved = index.store
    index.store = RedisStore(url, "test:names", ttl=0, retry_after=60)
    try:
        assert suggestions.current() is None
        assert search.suggest("des") == ["Desk Lamp"]
    finally:
        index.store = saved


def test_an_update_whose_columns_are_unknown_counts_as_a_rename(make_product):
    """An ORM bulk UPDATE takes its values from parameters, not `.values()`:
    `versions` cannot tell which columns it sets and assumes the watched
    ones may change (a needless rebuild, never a stale index)."""
    lamp = make_product(name="Desk Lamp", stock=5)
    built = suggestions.current()
    db.session.execute(db.update(Product), [{"id": lamp.id, "stock": 4}])
    db.session.commit()
    assert suggestions.current() is not built
    db.session.execute(db.update(Product), [{"id": lamp.id, "name": "Floor Lamp"}])
    db.session.commit()
    assert index_suggest("flo") == ["Floor Lamp"] and index_suggest("des") == []


def test_a_suggest_between_the_bumps_of_one_commit_keeps_nothing_stale(client, make_product):
    """The names version moves before the catalog's in one commit: a suggest
    between them must not keep the old index's answer under the new catalog
    version (it could, while the catalog's moved first)."""
    make_product(name="Lamp")
    chair = make_product(name="Chair")
    url = "/api/products/suggest?q=lam"
    assert client.get(url).get_json()["suggestions"] == ["Lamp"]
    names = current_app.extensions["suggestions"].store
    real_bump = names.bump

    def bump_late():  # another request lands between this commit's bumps
        client.get(url)
        real_bump()

    names.bump = bump_late
    try:
        with Session(db.engine) as writer:
            writer.get(Product, chair.id).name = "Lamp Chair"
            writer.commit()
    finally:
        del names.bump
    assert client.get(url).get_json()["suggestions"] == ["Lamp", "Lamp Chair"]


def test_duplicates_never_hide_a_name_from_the_database_suggest(make_app, make_product):
    """The database's answer reads a few times the names asked for and drops
    duplicates; when duplicates fill those rows, it asks again, one row per
    name (31 products named "Lamp" hid "Lamp Post"; found by review)."""
    for _ in range(31):
        make_product(name="Lamp")
    make_product(name="Lamp Post")
    for n in range(12):
        make_product(name=f"Lamp {n:02}")
    app = make_app(overrides={"SUGGEST_INDEX_MAX_NAMES": 0})
    with app.app_context():
        assert suggestions.current() is None
        expected = ["Lamp", *(f"Lamp {n:02}" for n in range(9))]
        assert database_suggest("lam") == expected
        assert database_suggest("lamp p") == ["Lamp Post"]
        response = app.test_client().get("/api/products/suggest?q=lam")
    assert response.get_json()["suggestions"] == expected
