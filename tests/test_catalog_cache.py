"""The catalog cache: public catalog reads served from the cache and by ETag,
never stale after a write, degrading to the database when Redis is away;
private answers never cached."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import text

from app.models import Product
from app.services import catalog_cache
from app.services.catalog_cache import LocalStore
from tests.helpers import auth, order_for


def test_a_hit_does_not_query_and_a_write_shows_at_once(
    client, db, make_product, admin_token, count_queries
):
    product = make_product(price="10.00")
    url = f"/api/products/{product.id}"
    assert client.get(url).get_json()["price"] == 10
    with count_queries() as q:
        assert client.get(url).get_json()["price"] == 10
    assert q.count == 0, q.statements
    put = client.put(url, json={"price": "12.50"}, headers=auth(admin_token))
    assert put.status_code == 200
    assert client.get(url).get_json()["price"] == 12.5
    listed = client.get("/api/products").get_json()["items"]
    assert [p["price"] for p in listed] == [12.5]


def test_stock_moved_by_an_order_shows_at_once(client, make_product, user_token):
    product = make_product(stock=5)
    url = f"/api/products/{product.id}"
    assert client.get(url).get_json()["stock"] == 5
    assert client.get("/api/products?in_stock=true").get_json()["total"] == 1
    order = order_for(client, user_token, (product, 5))
    assert client.get(url).get_json()["stock"] == 0
    assert client.get("/api/products?in_stock=true").get_json()["total"] == 0
    cancel = client.post(f"/api/orders/{order['id']}/cancel", headers=auth(user_token))
    assert cancel.status_code == 200
    assert client.get(url).get_json()["stock"] == 5


def test_raw_sql_and_core_writes_bump_too(client, db, make_product):
    product = make_product(stock=5)
    url = f"/api/products/{product.id}"
    assert client.get(url).get_json()["stock"] == 5
    db.session.execute(text("UPDATE products SET stock = 3 WHERE id = :i"), {"i": product.id})
    db.session.commit()
    assert client.get(url).get_json()["stock"] == 3
    db.session.execute(db.update(Product).where(Product.id == product.id).values(stock=2))
    db.session.commit()
    assert client.get(url).get_json()["stock"] == 2


def test_a_rolled_back_write_keeps_the_version(client, db, make_product):
    product = make_product()
    version = catalog_cache.store().version()
    db.session.execute(db.update(Product).where(Product.id == product.id).values(stock=1))
    db.session.rollback()
    assert catalog_cache.store().version() == version
    db.session.get(Product, product.id).stock = 4
    db.session.commit()
    assert catalog_cache.store().version() != version


def test_etag_304_then_200_with_a_new_etag_after_a_write(
    client, make_product, admin_token, count_queries
):
    product = make_product()
    for stock, url in enumerate(
        (
            f"/api/products/{product.id}",
            "/api/products?page=1&per_page=5",
            "/api/products/facets",
            "/api/products/suggest?q=prod",
        )
    ):
        first = client.get(url)
        assert first.status_code == 200
        etag = first.headers["ETag"]
        assert first.headers["Cache-Control"] == "no-cache"
        with count_queries() as q:
            again = client.get(url, headers={"If-None-Match": etag})
        assert again.status_code == 304 and again.data == b""
        assert again.headers["ETag"] == etag
        assert q.count == 0, q.statements
        put = client.put(
            f"/api/products/{product.id}", json={"stock": 100 + stock}, headers=auth(admin_token)
        )
        assert put.status_code == 200
        after = client.get(url, headers={"If-None-Match": etag})
        if "suggest" in url or "facets" in url:
            # Neither shows the stock (the product stays in stock): the same
            # bytes, so the same ETag.
            assert after.status_code == 304 and after.headers["ETag"] == etag
            assert client.get(url).data == first.data
        else:
            assert after.status_code == 200 and after.headers["ETag"] != etag
            assert after.headers["ETag"] == client.get(url).headers["ETag"]


def test_the_same_query_in_another_order_shares_an_entry(client, make_product):
    make_product()
    first = client.get("/api/products?per_page=5&page=1")
    second = client.get("/api/products?page=1&per_page=5&_=1234")  # ignored: no new entry
    assert first.headers["ETag"] == second.headers["ETag"]
    assert client.get("/api/products?page=2&per_page=5").headers["ETag"] != first.headers["ETag"]


def test_private_answers_are_never_cached(client, make_product, make_user, login):
    product = make_product()
    tokens = [login(make_user())["access_token"] for _ in range(2)]
    client.post("/api/cart", json={"product_id": product.id}, headers=auth(tokens[0]))
    carts = [client.get("/api/cart", headers=auth(t)) for t in tokens]
    assert [len(c.get_json()["items"]) for c in carts] == [1, 0]
    for cart in carts:
        assert cart.headers["Cache-Control"] == "no-store"
        assert "ETag" not in cart.headers
    user = make_user()
    login_response = client.post(
        "/api/auth/login", json={"email": user.email, "password": "correct-horse-9"}
    )
    assert login_response.headers["Cache-Control"] == "no-store"


def test_redis_stopped_mid_run_reads_keep_answering(own_redis, make_app, make_product, db):
    url, process = own_redis
    app = make_app(overrides={"REDIS_URL": url})
    client = app.test_client()
    product = make_product(stock=5)
    path = f"/api/products/{product.id}"
    with app.app_context():
        assert isinstance(catalog_cache.store(), catalog_cache.RedisStore)
        catalog_cache.store().bump()
    first = client.get(path)
    assert first.get_json()["stock"] == 5 and "ETag" in first.headers
    assert client.get(path).get_json()["stock"] == 5  # a hit
    process.kill()
    process.wait()
    for _ in range(3):
        response = client.get(path)
        assert response.status_code == 200 and response.get_json()["stock"] == 5
    with app.app_context():
        db.session.execute(db.update(Product).where(Product.id == product.id).values(stock=1))
        db.session.commit()  # the bump fails: the write does not
        db.session.remove()
    response = client.get(path)
    assert response.status_code == 200 and response.get_json()["stock"] == 1
    assert client.get("/api/products").status_code == 200


def test_a_repeated_argument_is_never_served_from_an_entry(client, make_product):
    """A repeated argument is the view's 422 (review 9: it was read at its
    first value, and `sort=price&sort=-price` once shared an entry and an
    ETag with `sort=-price&sort=price`): in either order, before and after
    the single value's answer is kept, never a 200 from the cache."""
    make_product(name="Cheap lamp", price="1.00")
    make_product(name="Dear phone", price="99.00")

    def names(url):
        response = client.get(url)
        assert response.status_code == 200, response.get_json()
        return [p["name"] for p in response.get_json()["items"]], response.headers["ETag"]

    for _ in range(2):
        assert names("/api/products?sort=price")[0] == ["Cheap lamp", "Dear phone"]
        for query in ("sort=price&sort=-price", "sort=-price&sort=price", "q=lamp&q=phone"):
            response = client.get(f"/api/products?{query}")
            assert response.status_code == 422 and "ETag" not in response.headers
    # Other names still sort: the same request in another order shares its entry.
    assert (
        names("/api/products?per_page=5&sort=price&q=lamp")[1]
        == (names("/api/products?sort=price&q=lamp&per_page=5")[1])
    )


@pytest.mark.parametrize("cached", [False, True])
def test_if_none_match_any_is_a_304_only_for_an_answer_that_exists(
    client, make_product, admin_token, cached
):
    """`If-None-Match: *` matches any current answer: a 304 where a 200
    would be (from the cache or not), the 404 or 422 otherwise."""
    product = make_product(name="Anything lamp")
    gone = make_product()
    assert client.delete(f"/api/products/{gone.id}", headers=auth(admin_token)).status_code == 204
    any_tag = {"If-None-Match": "*"}
    for url in (f"/api/products/{product.id}", "/api/products?q=lamp", "/api/products/facets"):
        if cached:
            assert client.get(url).status_code == 200
        answer = client.get(url, headers=any_tag)
        assert answer.status_code == 304 and answer.data == b"", url
        assert answer.headers["ETag"] == client.get(url).headers["ETag"]
    for url, status in (
        (f"/api/products/{gone.id}", 404),
        ("/api/products/999999", 404),
        (f"/api/products/{gone.id}/reviews", 404),
        ("/api/products?page=0", 422),
        ("/api/products/suggest?q=", 422),
    ):
        if cached:
            client.get(url)
        answer = client.get(url, headers=any_tag)
        assert answer.status_code == status, (url, answer.status_code)
        assert answer.get_json()["code"]


def test_if_none_match_with_the_cache_off(make_app, make_product):
    """With the catalog cache off (or Redis unreachable) every answer is built,
    with the ETag of its bytes: its own tag or `*` (an answer that exists) is
    a 304 where a 200 would be, the 404 otherwise (`*` was a 200)."""
    client = make_app(overrides={"CATALOG_CACHE": False}).test_client()
    product = make_product(name="Uncached lamp")
    any_tag = {"If-None-Match": "*"}
    for url in (f"/api/products/{product.id}", "/api/products?q=lamp", "/api/products/facets"):
        plain = client.get(url)
        assert plain.status_code == 200 and plain.headers["ETag"], url
        assert plain.headers["ETag"] == client.get(url).headers["ETag"], url
        answer = client.get(url, headers=any_tag)
        assert answer.status_code == 304 and answer.data == b"", url
        same = client.get(url, headers={"If-None-Match": plain.headers["ETag"]})
        assert same.status_code == 304 and same.headers["ETag"] == plain.headers["ETag"], url
    missing = client.get("/api/products/999999", headers=any_tag)
    assert missing.status_code == 404 and missing.get_json()["code"]


def test_openapi_documents_etag_and_304(client):
    paths = client.get("/api/openapi.json").get_json()["paths"]
    for path in ("/api/products", "/api/products/{product_id}", "/api/products/facets"):
        get = paths[path]["get"]
        assert "ETag" in get["responses"]["200"]["headers"]
        assert "304" in get["responses"]


def test_a_review_and_its_authors_new_name_show_at_once(client, db, make_product, make_user):
    from app.models import Review, User

    product = make_product()
    author = make_user()
    path = f"/api/products/{product.id}/reviews"
    assert client.get(path).get_json()["items"] == []
    db.session.add(Review(product_id=product.id, user_id=author.id, rating=4))
    db.session.execute(db.update(Product).values(rating_count=1, rating_sum=4))
    db.session.commit()
    assert [r["user"]["username"] for r in client.get(path).get_json()["items"]] == [
        author.username
    ]
    version = catalog_cache.store().version()
    db.session.execute(db.update(User).where(User.id == author.id).values(email_verified=True))
    db.session.get(User, author.id).email = "someone-else@example.com"
    db.session.commit()
    assert catalog_cache.store().version() == version  # nothing a catalog read shows
    db.session.get(User, author.id).username = "renamed-author"
    db.session.commit()
    assert [r["user"]["username"] for r in client.get(path).get_json()["items"]] == [
        "renamed-author"
    ]


def test_the_local_version_is_shared_by_every_process_of_the_host(tmp_path):
    """Without Redis the version lives in a memory-mapped file: a bump in
    another process (a second gunicorn worker) is seen here at once, and a
    bump here clears this process's answers."""
    path = tmp_path / "catalog-version.bin"
    here = LocalStore(path, max_entries=10)
    before = here.version()
    here.set("answer", b"{}")
    bump_elsewhere = (
        "import sys; from pathlib import Path; "
        "from app.services.catalog_cache import LocalStore; "
        "LocalStore(Path(sys.argv[1]), max_entries=1).bump()"
    )
    root = Path(__file__).resolve().parent.parent
    subprocess.run([sys.executable, "-c", bump_elsewhere, str(path)], check=True, cwd=root)
    after = here.version()
    assert after != before
    assert LocalStore(path, max_entries=1).version() == after  # a new process reads it too
    here.bump()
    assert here.version() not in (before, after)
    assert here.get("answer") is None


def test_a_redis_hit_is_one_round_trip_and_a_write_still_shows(
    own_redis, make_app, make_product, admin_token
):
    """With Redis, a hit reads the version and the answer in one MGET; the
    answer kept at an older version is a miss, never served."""
    import redis

    url, _process = own_redis
    app = make_app(overrides={"REDIS_URL": url})
    client = app.test_client()
    product = make_product(price="10.00")
    path = f"/api/products/{product.id}"
    assert client.get(path).get_json()["price"] == 10  # the miss keeps the answer
    server = redis.Redis.from_url(url)
    server.config_resetstat()
    for _ in range(5):
        assert client.get(path).get_json()["price"] == 10
    stats = server.info("commandstats")
    commands = {name: value["calls"] for name, value in stats.items() if "config" not in name}
    assert commands == {"cmdstat_mget": 5}  # no GET, SET or INCR: five hits, five round trips
    response = client.put(path, json={"price": 11.50}, headers=auth(admin_token))
    assert response.status_code == 200
    assert client.get(path).get_json()["price"] == 11.5


def test_a_new_version_file_starts_at_a_version_never_used_before(tmp_path):
    """A new file (first start, or one deleted while no server ran) starts at
    a random version, which every store opening it then shares: an ETag or
    answer kept under the old file's version never matches again (every new
    file began at all zeros)."""
    path = tmp_path / "catalog-version.bin"
    first = LocalStore(path, max_entries=1)
    assert first.version() != "00" * LocalStore.SIZE
    assert LocalStore(path, max_entries=1).version() == first.version()  # shared
    path.unlink()
    again = LocalStore(path, max_entries=1)
    assert again.version() not in (first.version(), "00" * LocalStore.SIZE)


# --- found by review: validators that outlived their answer ---------------------


def _cut_off_from_redis(app) -> None:
    """`app`'s connections to Redis fail from now on (a network blip seen by
    this process only): every command of its version stores is refused."""
    from app.services.catalog_cache import RedisStore
    from tests.live import free_port

    for store in app.extensions["shared_versions"].values():
        if isinstance(store, RedisStore):
            store.redis.connection_pool.disconnect()
            store.redis.connection_pool.connection_kwargs["port"] = free_port()


def test_a_bump_never_made_gets_a_new_etag_once_the_answer_expires(
    own_redis, make_app, make_product, make_user, login
):
    """A write whose bump Redis never took (its process ended while cut off):
    once the entry expires (CATALOG_CACHE_TTL) the answer is built again at
    the same version, with other bytes: a new ETag, never a 304 for the
    client's old copy (an ETag of the version answered 304 for ever)."""
    import time
    from datetime import timedelta

    from app.models.types import utcnow
    from app.services.payment_timeouts import cancel_expired_orders
    from tests.helpers import fill_cart, place_order, stock

    url, _process = own_redis
    web = make_app(overrides={"REDIS_URL": url, "CATALOG_CACHE_TTL": 1}).test_client()
    sweeper = make_app(overrides={"REDIS_URL": url})  # `flask cancel-expired-orders`
    product = make_product(stock=5)
    token = login(make_user())["access_token"]
    fill_cart(web, token, (product, 2))
    assert place_order(web, token).status_code == 201
    path = f"/api/products/{product.id}"
    before = web.get(path)
    assert before.get_json()["stock"] == 3
    etag = before.headers["ETag"]

    _cut_off_from_redis(sweeper)
    with sweeper.app_context():
        assert cancel_expired_orders(now=utcnow() + timedelta(days=1))  # committed: stock 5
    assert stock(product) == 5

    time.sleep(1.5)  # past CATALOG_CACHE_TTL
    fresh = web.get(path)
    assert fresh.get_json()["stock"] == 5 and fresh.headers["ETag"] != etag
    revalidated = web.get(path, headers={"If-None-Match": etag})
    assert revalidated.status_code == 200 and revalidated.get_json()["stock"] == 5


def test_rows_written_behind_the_session_get_a_new_etag(client, db, make_app, make_product):
    """A release: a migration's data step (on Alembic's connection), then the
    servers start again. The client's copy from before is no match."""
    product = make_product(name="Lamp")
    path = f"/api/products/{product.id}"
    etag = client.get(path).headers["ETag"]
    with db.engine.begin() as connection:
        connection.execute(
            text("UPDATE products SET name = 'Desk lamp' WHERE id = :id"), {"id": product.id}
        )
    restarted = make_app().test_client()
    fresh = restarted.get(path)
    assert fresh.get_json()["name"] == "Desk lamp" and fresh.headers["ETag"] != etag
    assert restarted.get(path, headers={"If-None-Match": etag}).status_code == 200


def test_a_migration_moves_every_version(app, db, make_product, client):
    """`flask db upgrade` / `downgrade` write behind the session's back: a
    run that applies a revision gives every cache a new version."""
    from flask_migrate import downgrade, upgrade

    def now() -> list:
        return [store.version() for store in app.extensions["shared_versions"].values()]

    make_product(name="Lamp")
    client.get("/api/products")
    kept = now()
    assert len(kept) >= 4 and None not in kept
    db.session.remove()
    downgrade(revision="-1")
    after_downgrade = now()
    upgrade()
    after_upgrade = now()
    assert all(a != b for a, b in zip(kept, after_downgrade, strict=True))
    assert all(a != b for a, b in zip(after_downgrade, after_upgrade, strict=True))
    upgrade()  # nothing to apply: nothing moves
    assert now() == after_upgrade


def test_a_nul_in_an_ignored_argument_is_a_422_whatever_is_kept(client, make_product):
    make_product()
    assert client.get("/api/products?_=%00").status_code == 422
    filled = client.get("/api/products")
    assert filled.status_code == 200
    assert client.get("/api/products?_=%00").status_code == 422
    etag = {"If-None-Match": filled.headers["ETag"]}
    assert client.get("/api/products?_=%00", headers=etag).status_code == 422


def test_a_catalog_answer_says_it_varies_by_origin(client, make_product):
    """Storable by a shared cache (no-cache), and its CORS headers depend on
    the Origin: `Vary: Origin` also without one, or for an Origin not allowed."""
    product = make_product()
    path = f"/api/products/{product.id}"
    allowed = client.get(path, headers={"Origin": "http://localhost:3000"})
    assert allowed.headers["Access-Control-Allow-Origin"] == "http://localhost:3000"
    for response in (
        allowed,
        client.get(path),
        client.get(path, headers={"Origin": "http://elsewhere.example"}),
        client.get(path, headers={"If-None-Match": allowed.headers["ETag"]}),
    ):
        assert response.headers.get_all("Vary").count("Origin") <= 1
        assert "Origin" in response.headers.get("Vary", ""), dict(response.headers)


# --- found by review: entries shared by two releases through Redis ---------------


def _entry_keys(url: str, prefix: str = "shop:catalog") -> list[bytes]:
    import redis

    client = redis.Redis.from_url(url)
    return [key for key in client.scan_iter(f"{prefix}:*") if key != f"{prefix}:version".encode()]


@pytest.mark.parametrize("name", ["Old-format lamp", "Abcdefgé lamp"])  # é at byte 23
def test_an_entry_kept_by_the_previous_release_is_a_miss(own_redis, make_app, make_product, name):
    """The release before kept `version\\nbody` under the same key; read as
    this release's entry, its body was cut by 25 bytes (a 500 where the cut
    fell inside a letter) and its first bytes were the ETag."""
    import redis

    url, _process = own_redis
    product = make_product(name=name)
    path = f"/api/products/{product.id}"
    fresh = make_app(overrides={"REDIS_URL": url}).test_client().get(path)
    body = fresh.data
    client = redis.Redis.from_url(url)
    version = client.get("shop:catalog:version")
    (key,) = _entry_keys(url)
    client.set(key, version + b"\n" + body, ex=300)  # what the previous release's keep wrote
    again = make_app(overrides={"REDIS_URL": url}).test_client().get(path)
    assert again.status_code == 200 and again.data == body
    assert again.headers["ETag"] == fresh.headers["ETag"]


def test_this_releases_entry_is_not_one_the_previous_release_accepts(
    own_redis, make_app, make_product
):
    """The release before served an entry that starts with `version\\n` (its
    `RedisStore.lookup`): ours, read by it during a rolling deploy, gave the
    JSON with this release's ETag glued to its front."""
    import redis

    url, _process = own_redis
    product = make_product(name="Rolling lamp")
    assert make_app(overrides={"REDIS_URL": url}).test_client().get(f"/api/products/{product.id}")
    client = redis.Redis.from_url(url)
    version = client.get("shop:catalog:version")
    (key,) = _entry_keys(url)
    assert not client.get(key).startswith(version + b"\n")


def test_upgrade_sql_offline_on_postgresql_emits_every_migration(tmp_path):
    """`flask db upgrade --sql` (no database): the accent migration asked the
    database where `unaccent` is (an AttributeError offline), and every `%`
    of a migration's SQL came out twice."""
    import os

    env = {
        **os.environ,
        "FLASK_APP": "app:create_app",
        "FLASK_CONFIG": "development",
        "DATABASE_URL": "postgresql+psycopg://nobody@127.0.0.1:1/none",
    }
    env.pop("REDIS_URL", None)
    flask = Path(sys.executable).parent / "flask"
    run = subprocess.run(
        [str(flask), "db", "upgrade", "--sql", "f26e1a4b7c90:f29a1c3e5b70"],
        cwd=Path(__file__).resolve().parent.parent,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr[-800:]
    assert "shop_unaccent" in run.stdout and "%%" not in run.stdout
    assert "translate(coalesce(name, ''), '!\"#$%&" in run.stdout
