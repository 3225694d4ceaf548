"""Catalog cache review, round 7: each test failed on the code before its fix
(its docstring says what is promised and what happened instead)."""

from __future__ import annotations

from tests.helpers import auth
from tests.live import eventually
from tests.test_catalog_cache import _cut_off_from_redis


def test_a_names_bump_never_made_stops_serving_the_name_once_the_ttl_passes(
    own_redis, make_app, make_product, admin_token
):
    """README (Caching): a bump Redis never took (its process died while cut
    off) leaves other instances serving what they kept "for at most
    `CATALOG_CACHE_TTL`"; the answer built after that is the database's.
    The suggestion index is kept in each process under the names version
    alone, with no age: once the catalog entry expired, suggest was built
    again from the same index, and a deleted product's name was suggested
    for ever (until some other product was added, renamed or deleted)."""
    url, _process = own_redis
    web = make_app(overrides={"REDIS_URL": url, "CATALOG_CACHE_TTL": 1}).test_client()
    admin_app = make_app(overrides={"REDIS_URL": url})
    gone = make_product(name="Zephyr Lamp")
    path = "/api/products/suggest?q=zeph"
    assert web.get(path).get_json()["suggestions"] == ["Zephyr Lamp"]

    _cut_off_from_redis(admin_app)  # its bumps are owed, and never made
    deleted = admin_app.test_client().delete(f"/api/products/{gone.id}", headers=auth(admin_token))
    assert deleted.status_code == 204

    def suggested() -> list[str]:
        response = web.get(path)
        assert response.status_code == 200
        return response.get_json()["suggestions"]

    # The detail follows once its entry expires; so must the suggestions.
    eventually(lambda: web.get(f"/api/products/{gone.id}").status_code == 404, timeout=10)
    eventually(lambda: suggested() == [], timeout=10, message="the deleted name still suggested")


def test_an_answer_built_from_a_kept_total_expires_with_it(
    own_redis, make_app, make_product, admin_token
):
    """README (Caching): a bump Redis never took leaves other instances
    serving what they kept before the write "for at most
    `CATALOG_CACHE_TTL`". Each kept thing had its own TTL from the moment it
    was kept, and one was built from another: a list's total kept under the
    match version just before the write, then used (a hit) by a page read
    near the end of its life, was served under that page's new catalog entry
    for another whole TTL (a sold-out product counted by `in_stock=true`
    for up to twice the TTL; nested, page ids on a kept total, three times)."""
    import time

    ttl = 6  # room for a slow machine on both sides of each step
    url, _process = own_redis
    web = make_app(overrides={"REDIS_URL": url, "CATALOG_CACHE_TTL": ttl}).test_client()
    seller = make_app(overrides={"REDIS_URL": url})
    product = make_product(name="Last Lamp", stock=1)
    started = time.monotonic()
    first = web.get("/api/products?in_stock=true&sort=price").get_json()
    assert first["total"] == 1  # the filter's total is kept now

    _cut_off_from_redis(seller)  # its bumps are owed, and never made
    sold_out = seller.test_client().put(
        f"/api/products/{product.id}", json={"stock": 0}, headers=auth(admin_token)
    )
    assert sold_out.status_code == 200
    written = time.monotonic()

    # Another sort of the same filter, read while the kept total still lives
    # (two seconds before it expires): its page is new, its total the kept one.
    time.sleep(max(0.0, started + ttl - 2 - time.monotonic()))
    assert time.monotonic() < started + ttl - 1, "too slow to read before the total expires"
    other = "/api/products?in_stock=true&sort=-price"
    assert web.get(other).status_code == 200

    def fresh() -> bool:
        return web.get(other).get_json()["total"] == 0

    # The bound, and time to build it again; before the fix the new page
    # lived until about started + 2 * ttl - 2.
    deadline = written + ttl + 2
    eventually(fresh, timeout=max(0.1, deadline - time.monotonic()), message="the total stale")
