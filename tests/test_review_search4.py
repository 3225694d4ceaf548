"""Review of the catalog cache under faults (session 13, reviewer: search and
cache). Each test fails on the code before its fix."""

from __future__ import annotations

import time

from tests.helpers import PASSWORD, auth
from tests.test_review_faults import paused_redis  # noqa: F401 - a fixture


def test_a_redis_that_does_not_answer_costs_one_timeout_not_one_per_store(
    paused_redis,  # noqa: F811
    make_app,
    make_user,
    make_product,
):
    """With Redis accepting connections but answering nothing (paused, a
    partition), each of an app's version stores (catalog, search text,
    suggest names, matches, accounts) waited out its own 0.5 s socket
    timeout before it marked Redis down for itself: a product PUT that
    changes the name, the price and the stock bumps four of them and took
    2.0 s. One store's timeout now stands for all of them for `retry_after`:
    the PUT answers after one timeout; nothing fails either way."""
    app = make_app(overrides={"REDIS_URL": paused_redis.url})
    client = app.test_client()
    admin = make_user(admin=True)
    login = client.post("/api/auth/login", json={"email": admin.email, "password": PASSWORD})
    token = login.get_json()["access_token"]
    product = make_product(name="Brass lamp", price="10.00", stock=5)
    assert client.get(f"/api/products/{product.id}").status_code == 200  # connections made
    assert client.get("/api/products?q=lamp").status_code == 200

    paused_redis.pause()
    try:
        started = time.monotonic()
        response = client.put(
            f"/api/products/{product.id}",
            json={"name": "Copper lamp", "price": "12.50", "stock": 0},
            headers=auth(token),
        )
        took = time.monotonic() - started
        assert response.status_code == 200, response.get_json()
        # Reads go on from the database, showing the write, without a wait.
        started = time.monotonic()
        read = client.get(f"/api/products/{product.id}")
        search = client.get("/api/products?q=copper")
        read_took = time.monotonic() - started
    finally:
        paused_redis.resume()
    assert read.get_json()["name"] == "Copper lamp"
    assert [item["id"] for item in search.get_json()["items"]] == [product.id]
    assert took < 1.2, f"the PUT took {took:.2f} s"
    assert read_took < 0.4, f"two reads took {read_took:.2f} s"
