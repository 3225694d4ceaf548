"""Caching and reliability review (session 14): the README named a Redis key
that does not exist (its `SUGGEST_INDEX_PREFIX` row, now fixed)."""

from __future__ import annotations

import uuid

import pytest

from tests.helpers import REDIS_URL


@pytest.mark.skipif(not REDIS_URL, reason="needs REDIS_URL")
def test_the_names_version_lives_under_the_prefix_and_version(make_app, make_product):
    """README (Configuration) called `SUGGEST_INDEX_PREFIX` the "Redis key of
    the names version": the version lives at `<prefix>:version`, as the
    other prefixes' keys do, and `<prefix>` itself does not exist, so an
    operator looking for the key the README named found nothing. On a real
    Redis, after a suggest."""
    import redis

    run = uuid.uuid4().hex
    prefixes = {
        f"{name}_PREFIX": f"r5-{name.lower()}-{run}"
        for name in ("CATALOG_CACHE", "SEARCH_RANKINGS", "CATALOG_MATCHES", "ACCOUNT_CACHE")
    }
    prefix = f"r5-names-{run}"
    app = make_app("testing", {"REDIS_URL": REDIS_URL, "SUGGEST_INDEX_PREFIX": prefix, **prefixes})
    make_product(name="Lantern")
    client = app.test_client()
    assert client.get("/api/products/suggest?q=lan").get_json()["suggestions"] == ["Lantern"]
    server = redis.Redis.from_url(REDIS_URL)
    try:
        assert server.exists(f"{prefix}:version") and not server.exists(prefix)
    finally:
        server.delete(f"{prefix}:version")
