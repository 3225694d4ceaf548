"""A process that keeps nothing under a shared version (its cache turned off:
a worker, a cron job, an instance configured apart) still bumps that version
after its commits: the other processes on the host (the version file) or
behind the same Redis keep answers under it, and must not serve them after
its writes. Found by review of the match version: a worker with
CATALOG_MATCHES_MAX_ENTRIES=0 restocked a product and the web processes
went on saying it was out of stock. Each cache here: the web app (the
suite's, every cache on) reads, the other app (that cache off) writes
through its API, the web app reads the change at once."""

from __future__ import annotations

import uuid
from decimal import Decimal

import pytest

from tests.helpers import REDIS_URL, auth

OFF = {
    "catalog": {"CATALOG_CACHE": False},
    "rankings": {"SEARCH_RANKINGS_MAX_ENTRIES": 0},
    "matches": {"CATALOG_MATCHES_MAX_ENTRIES": 0},
    "names": {"SUGGEST_INDEX_MAX_NAMES": 0},
    "accounts": {"ACCOUNT_CACHE_MAX_ENTRIES": 0},
}


def check(name, web, other, admin, user, product):
    """Read on `web`, write on `other`, read on `web` again: the new answer."""
    path = f"/api/products/{product.id}"
    if name == "catalog":
        assert web.get(path).get_json()["price"] == Decimal("10.00")
        assert other.put(path, json={"price": "12.50"}, headers=admin).status_code == 200
        assert web.get(path).get_json()["price"] == Decimal("12.50")
    elif name == "rankings":
        assert web.get("/api/products?q=lantern").get_json()["total"] == 0
        assert other.put(path, json={"name": "Lantern"}, headers=admin).status_code == 200
        assert web.get("/api/products?q=lantern").get_json()["total"] == 1
    elif name == "matches":
        facets = "/api/products/facets?in_stock=true"
        assert web.get(facets).get_json()["in_stock"] == 1
        moved = other.post(f"{path}/stock", json={"delta": -5}, headers=admin)
        assert moved.status_code in (200, 201), moved.get_json()
        assert web.get(facets).get_json()["in_stock"] == 0
        assert web.get("/api/products?in_stock=true").get_json()["total"] == 0
    elif name == "names":
        assert web.get("/api/products/suggest?q=lan").get_json()["suggestions"] == []
        assert other.put(path, json={"name": "Lantern"}, headers=admin).status_code == 200
        assert web.get("/api/products/suggest?q=lan").get_json()["suggestions"] == ["Lantern"]
    else:  # accounts: a read request's token user is kept; logout-all ends it
        assert web.get("/api/cart", headers=user).status_code == 200
        assert web.get("/api/cart", headers=user).status_code == 200  # kept
        assert other.post("/api/auth/logout-all", headers=user).status_code in (200, 204)
        assert web.get("/api/cart", headers=user).status_code == 401


@pytest.mark.parametrize("name", list(OFF))
def test_a_process_with_a_cache_off_still_moves_its_version(
    name, client, make_app, make_product, admin_token, user_token
):
    """One host, no Redis: both apps map the same version files."""
    product = make_product(name="Bulb", price=Decimal("10.00"), stock=5)
    other = make_app("testing", OFF[name]).test_client()
    check(name, client, other, auth(admin_token), auth(user_token), product)


@pytest.mark.skipif(not REDIS_URL, reason="needs REDIS_URL")
@pytest.mark.parametrize("name", list(OFF))
def test_with_redis_an_instance_with_a_cache_off_still_moves_its_version(
    name, make_app, make_product, admin_token, user_token
):
    """Two instances sharing Redis (fresh key prefixes), one with that cache off."""
    shared = {"REDIS_URL": REDIS_URL}
    for prefix in ("CATALOG_CACHE", "SEARCH_RANKINGS", "CATALOG_MATCHES", "SUGGEST_INDEX"):
        shared[f"{prefix}_PREFIX"] = f"shared-{prefix.lower()}-{uuid.uuid4().hex}"
    shared["ACCOUNT_CACHE_PREFIX"] = f"shared-accounts-{uuid.uuid4().hex}"
    product = make_product(name="Bulb", price=Decimal("10.00"), stock=5)
    web = make_app("testing", shared).test_client()
    other = make_app("testing", {**shared, **OFF[name]}).test_client()
    check(name, web, other, auth(admin_token), auth(user_token), product)
