"""Catalog cache review (issue 21): each test fails on the current code
because of a real defect (its docstring says what is promised and what
happens instead)."""

from __future__ import annotations

import pytest
from sqlalchemy import Integer, column, text

from app.models import User
from tests.helpers import IS_POSTGRES, auth
from tests.reviewing import give_order


def _reviewed(client, make_user, login, product, rating):
    """A verified buyer of `product` who reviewed it with `rating` stars."""
    user = make_user()
    give_order(user, product)
    token = login(user)["access_token"]
    response = client.post(
        f"/api/products/{product.id}/reviews", json={"rating": rating}, headers=auth(token)
    )
    assert response.status_code == 201, response.get_json()
    return user


def _rating_reads(client):
    listed = client.get("/api/products?min_rating=4").get_json()
    by_rating = client.get("/api/products?sort=-rating").get_json()
    facets = client.get("/api/products/facets").get_json()
    return listed, by_rating, facets


def _seen(listed, by_rating, facets):
    return (
        [p["id"] for p in listed["items"]],
        listed["total"],
        [p["id"] for p in by_rating["items"]],
        facets["ratings"][0]["count"],
    )


def _orm_account_delete(db, user_id):
    db.session.delete(db.session.get(User, user_id))


def _sql_account_delete(db, user_id):
    db.session.execute(text("DELETE FROM users WHERE id = :u"), {"u": user_id})


def _sql_reviews_delete(db, user_id):
    db.session.execute(text("DELETE FROM reviews WHERE user_id = :u"), {"u": user_id})


@pytest.mark.parametrize("remove", [_orm_account_delete, _sql_account_delete, _sql_reviews_delete])
def test_reviews_the_database_deletes_move_the_rating_filters(
    client, db, make_user, login, make_product, remove
):
    """API.md: "A cached read is never stale: after any write that changes
    what it shows ... the next read on any instance shows the change";
    README (Reviews): a review the database deletes by itself (an account
    an operator removes, an operator's SQL) is taken out of the product's
    rating by a trigger (migration f31b2d4c6e81). Done on the app's session
    (an ORM delete of the account, or a text() DELETE of it or of its
    reviews), it does change rating_average, and the catalog version moves
    (users and reviews are watched by the catalog cache), but the match
    version does not: app/services/matches.py watches only `products`
    columns (MARK, COLUMNS), so neither a users/reviews row removed nor a
    `DELETE FROM users|reviews` marks it. The kept page ids, totals and
    facets stay: `?min_rating=4` still lists the now unrated product with
    total 2, `sort=-rating` keeps it first, and the facets still count it at
    4+ stars."""
    rated = make_product(name="Rated")
    other = make_product(name="Other")
    leaver = _reviewed(client, make_user, login, rated, 5)
    _reviewed(client, make_user, login, other, 4)
    # (min_rating=4 ids, its total, sort=-rating ids, facets' 4+ count)
    assert _seen(*_rating_reads(client)) == ([other.id, rated.id], 2, [rated.id, other.id], 2)

    remove(db, leaver.id)
    db.session.commit()
    assert client.get(f"/api/products/{rated.id}").get_json()["rating_average"] is None

    assert _seen(*_rating_reads(client)) == ([other.id], 1, [other.id, rated.id], 1)


SPELLINGS = {
    "schema-qualified": ("UPDATE main.products", "UPDATE public.products"),
    "quoted schema": ('UPDATE "main"."products"', 'UPDATE "public"."products"'),
    "dialect form": ("UPDATE OR ABORT products", "UPDATE ONLY products"),
    "returning rows": ("UPDATE products", "UPDATE products"),
}


@pytest.mark.parametrize("spelling", sorted(SPELLINGS))
def test_a_text_update_of_products_in_any_spelling_bumps(client, db, make_product, spelling):
    """app/services/catalog_cache.py and versions.py: the commit of a
    transaction that wrote a catalog table "(an ORM flush or a Core / text()
    statement) bumps the version" (tests/test_catalog_cache.py checks
    `UPDATE products`). versions.watch's `raw_write` pattern wants the bare
    table name right after UPDATE / INSERT INTO / DELETE FROM, so the same
    write spelled with its schema (`main.products`, `public.products`,
    quoted or not) or in the dialect's own form (SQLite `UPDATE OR ABORT`,
    PostgreSQL `UPDATE ONLY`) marks nothing; and `versions._on_execute`
    returns early for any statement whose `is_select` is true, which a
    text() write given result columns (`UPDATE ... RETURNING id` with
    `.columns(...)`, a TextualSelect) is. The product detail keeps answering
    the old stock from the cache after the commit."""
    product = make_product(stock=5)
    url = f"/api/products/{product.id}"
    assert client.get(url).get_json()["stock"] == 5
    sqlite_form, postgres_form = SPELLINGS[spelling]
    update = text(f"{postgres_form if IS_POSTGRES else sqlite_form} SET stock = 3 WHERE id = :i")
    if spelling == "returning rows":
        update = text(update.text + " RETURNING id").columns(column("id", Integer))
    db.session.execute(update, {"i": product.id})
    db.session.commit()
    stored = db.session.scalar(text("SELECT stock FROM products WHERE id = :i"), {"i": product.id})
    assert stored == 3
    assert client.get(url).get_json()["stock"] == 3


def test_an_admin_demoted_by_a_schema_qualified_update_loses_admin_reads(
    client, db, make_user, login
):
    """The same pattern (versions.watch's `raw_write`) guards the accounts
    cache (app/services/account_cache.py: "the version moves on every commit
    that writes `users` ... a demotion is refused on the very next request
    anywhere"). An operator's `UPDATE public.users SET is_admin = false`
    (SQLite: `main.users`) run on the app's session commits the demotion,
    but the accounts version stays, and read requests keep the cached
    admin: the demoted account still reads the admin-only low-stock list,
    200 where a 403 is due."""
    admin = make_user(admin=True)
    token = login(admin)["access_token"]
    assert client.get("/api/inventory/low-stock", headers=auth(token)).status_code == 200
    table = "public.users" if IS_POSTGRES else "main.users"
    demote = text(f"UPDATE {table} SET is_admin = false WHERE id = :u")  # noqa: S608 - ours
    db.session.execute(demote, {"u": admin.id})
    db.session.commit()
    assert client.get("/api/inventory/low-stock", headers=auth(token)).status_code == 403


def test_a_catalog_cache_ttl_below_one_second_stops_start_up():
    """Redis takes no expiry of 0 (or below): with CATALOG_CACHE_TTL=0 every
    entry was refused, the cache logged itself unreachable and never served
    (found by review). Start-up now says which setting is wrong."""
    import os
    import subprocess
    import sys

    env = {**os.environ, "CATALOG_CACHE_TTL": "0"}
    result = subprocess.run(
        [sys.executable, "-c", "import config"], env=env, capture_output=True, text=True
    )
    assert result.returncode != 0
    assert "CATALOG_CACHE_TTL must be at least 1" in result.stderr


def test_a_signup_keeps_the_catalog_cache_and_a_username_change_or_deletion_moves_it(
    client, db, make_user
):
    """A catalog read shows an account only as a review's author: a new
    account shows nowhere, so a signup must not bump the catalog version
    (each did: every signup emptied the catalog cache everywhere; found by
    review), while a new username, or the account removed (its reviews go
    with it), must."""
    from app.services import catalog_cache

    version = catalog_cache.store().version()
    response = client.post(
        "/api/auth/signup",
        json={"username": "newbie", "email": "newbie@example.com", "password": "long-enough-1"},
    )
    assert response.status_code == 201, response.get_json()
    assert catalog_cache.store().version() == version
    user = make_user()
    assert catalog_cache.store().version() == version
    db.session.execute(text("UPDATE users SET username = 'renamed' WHERE id = :u"), {"u": user.id})
    db.session.commit()
    renamed = catalog_cache.store().version()
    assert renamed != version
    db.session.delete(db.session.get(User, user.id))
    db.session.commit()
    assert catalog_cache.store().version() != renamed
