"""Catalog cache review, round 9: the write paths round 8
(tests/test_review_cache8.py) did not walk, each read back at once through
every cached read that shows it - list pages and their sorts and filters,
detail, facets, suggest, search, review lists - and compared with the
database's own answer (an app with the catalog cache off), and every ETag
taken before the write revalidated after it: a 304 only where the answer is
still the same. In one process without Redis, in two apps of one process
sharing a Redis database, and across two gunicorn instances sharing Redis.

The paths: a new description (the search's text version), a new image, a
PUT of the stock to zero and back (a sell-out and a restock from zero by
`set_stock`), adjustments to zero and back, a checkout that sells nothing
out, an admin's status moves and cancel of a processing order, an owner's
cancel through `PUT /orders/<id>`, `flask cancel-expired-orders` (the CLI
of the payment-timeout sweep), a review's title edit and its rating on a
second product (the rating sort's order), the delete of a reviewed product
that sits in a cart, `flask seed --products N`, `flask seed` on an empty
catalog (its demo reviews included), and the Stripe webhook's payment,
second-charge refund, partial and full refunds and late money for a
cancelled order (none may change a read). Also: writers and a cron job
with their caches off on the readers' Redis, two gunicorn instances of
one host without Redis, and reads hammering one instance while the other
writes.

Already pinned elsewhere, not repeated: price, threshold, name, category,
+1 adjustment, a sell-out checkout, pay, a paid order's cancel, reviews'
create/edit/delete, an author's rename, the payment-timeout service,
create and delete (test_review_cache8.py); reviews removed with their
account in SQL (test_review_cache.py); an ETag after a write
(test_catalog_cache.py). No API deletes an account, and no CLI command
moves stock, so neither has a path here."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
import uuid
from decimal import Decimal
from typing import NamedTuple

import pytest
from sqlalchemy import text

from tests.helpers import DATABASE_URL, IS_POSTGRES, SHIPPING, auth
from tests.live import gunicorn
from tests.reviewing import give_order
from tests.test_payments_stripe import (  # noqa: F401 - fixtures: stripe_app, stripe_http
    deliver,
    event,
    signed,
    stripe_app,
    stripe_http,
    succeeded,
)
from tests.test_review_cache8 import (
    Api,
    Fresh,
    _client_sender,
    _expire_orders,
    _login,
    _prefixes,
    _Row,
    _server_sender,
)

# The Redis database this review's tests use (one per helper).
REDIS = "redis://127.0.0.1:6379/13"


class Read(NamedTuple):
    status: int
    body: object
    etag: str | None


def _paths(ids: list[int]) -> list[str]:
    """Every public cached read that shows the products `ids` (or would)."""
    paths = [
        "/api/products",
        "/api/products?per_page=100",
        "/api/products?sort=-rating",
        "/api/products?sort=rating",
        "/api/products?sort=price",
        "/api/products?sort=-price",
        "/api/products?sort=name",
        "/api/products?min_rating=4",
        "/api/products?min_rating=2&sort=-rating",
        "/api/products?in_stock=true",
        "/api/products?in_stock=true&sort=price",
        "/api/products?max_price=15",
        "/api/products?category=office&sort=name",
        "/api/products?q=lamp",
        "/api/products?q=lamp&sort=price",
        "/api/products?q=lamp&in_stock=true",
        "/api/products?q=desk",
        "/api/products?q=torch",
        "/api/products?q=reading&in_stock=true",
        "/api/products/facets",
        "/api/products/facets?q=lamp",
        "/api/products/facets?in_stock=true",
        "/api/products/facets?q=torch",
        "/api/products/suggest?q=la",
        "/api/products/suggest?q=fl",
        "/api/products/suggest?q=wid",
    ]
    for product_id in ids:
        paths += [
            f"/api/products/{product_id}",
            f"/api/products/{product_id}/reviews",
            f"/api/products/{product_id}/reviews?sort=-rating",
        ]
    return paths


def _client_reader(client):
    def read(path: str, etag: str | None = None) -> Read:
        headers = {"If-None-Match": etag} if etag else {}
        response = client.get(path, headers=headers)
        body = response.get_json() if response.data else None
        return Read(response.status_code, body, response.headers.get("ETag"))

    return read


def _server_reader(server):
    def read(path: str, etag: str | None = None) -> Read:
        request = urllib.request.Request(server.url + path)
        if etag:
            request.add_header("If-None-Match", etag)
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                raw = response.read()
                body = json.loads(raw, parse_float=Decimal)  # as the test client reads it
                return Read(response.status, body, response.headers.get("ETag"))
        except urllib.error.HTTPError as error:
            with error:
                raw = error.read()
            body = json.loads(raw, parse_float=Decimal) if raw else None
            return Read(error.code, body, error.headers.get("ETag"))

    return read


class Check:
    """Primes every read, then after each write compares it with the
    database's answer and revalidates the ETag taken before the write."""

    def __init__(self, read, fresh: Fresh):
        self.read, self.fresh = read, fresh
        self.ids: list[int] = []
        self.primed: dict[str, Read] = {}
        self.wrong: dict[str, list[str]] = {}

    def prime(self) -> None:
        self.primed = {}
        for path in _paths(self.ids):
            self.read(path)
            self.primed[path] = self.read(path)  # the second from the cache

    def after(self, step: str, changes: bool = True) -> None:
        """`changes`: whether the write must change some read (else none may):
        a write that changed nothing would pass the comparison unseen."""
        wrong, moved = [], 0
        for path in _paths(self.ids):
            want = self.fresh.read(path)
            got = self.read(path)
            primed = self.primed.get(path)
            moved += primed is not None and (primed.status, primed.body) != want
            if (got.status, got.body) != want:
                wrong.append(f"{path}: {_dump(got[:2])} != {_dump(want)}")
            before = self.primed.get(path)
            if before is None or before.etag is None:
                continue
            again = self.read(path, before.etag)
            if again.status == 304:
                if (before.status, before.body) != want:
                    wrong.append(f"{path}: 304 for the ETag from before, now {_dump(want)}")
            elif (again.status, again.body) != want:
                wrong.append(f"{path} (If-None-Match): {_dump(again[:2])} != {_dump(want)}")
        if changes != bool(moved):
            wrong.append(f"{moved} reads changed, expected {'some' if changes else 'none'}")
        if wrong:
            self.wrong[step] = wrong
        self.prime()

    def assert_fresh(self) -> None:
        assert not self.wrong, "\n".join(
            f"{step}:\n  " + "\n  ".join(lines) for step, lines in self.wrong.items()
        )


def _dump(value) -> str:
    return json.dumps(value, default=str)[:600]


def _cli_of(app):
    """`cli(*args)`: a CLI command of `app` (the sweep's and the seed's
    process) run in this process; its output. In `app`'s own context: Flask
    runs a command in the app context already pushed (the suite app's, by
    the autouse fixture), whose bumps went to another store than `app`'s."""

    def cli(*args: str) -> str:
        with app.app_context():
            result = app.test_cli_runner().invoke(args=list(args))
        assert result.exit_code == 0, (args, result.output, result.exception)
        return result.output

    return cli


def _scenario(api: Api, check: Check, make_user, cli) -> None:
    admin_token = _login(api, make_user(admin=True))
    buyer = make_user()
    buyer_token = _login(api, buyer)
    reviewer = make_user()
    reviewer_token = _login(api, reviewer)

    def create(**fields) -> int:
        body = {
            "description": "A thing",
            "price": "10.00",
            "stock": 5,
            "category": "Office",
            "image_url": "https://example.com/x.jpg",
            **fields,
        }
        return api("POST", "/api/products", body, admin_token)["id"]

    lamp = create(name="Desk Lamp", description="A lamp for a desk", price="12.00", stock=2)
    other = create(name="Floor Lamp", description="A lamp for a floor", price="20.00")
    check.ids = [lamp, other]
    check.prime()

    def step(name: str, *write, changes: bool = True) -> dict:
        answer = api(*write)
        check.after(name, changes)
        return answer

    def order_of(*lines: tuple[int, int]) -> int:
        for product_id, quantity in lines:
            api("POST", "/api/cart", {"product_id": product_id, "quantity": quantity}, buyer_token)
        check.after(f"cart {lines}", changes=False)
        return step(f"checkout {lines}", "POST", "/api/orders", SHIPPING, buyer_token)["id"]

    lamp_path, other_path = f"/api/products/{lamp}", f"/api/products/{other}"
    step(
        "description", "PUT", lamp_path, {"description": "A bright torch for reading"}, admin_token
    )
    step("image", "PUT", lamp_path, {"image_url": "https://example.com/new.jpg"}, admin_token)
    step("PUT stock to zero", "PUT", other_path, {"stock": 0}, admin_token)
    step("PUT stock from zero", "PUT", other_path, {"stock": 4}, admin_token)
    step("adjust to zero", "POST", f"{lamp_path}/stock", {"delta": -2}, admin_token)
    step("adjust from zero", "POST", f"{lamp_path}/stock", {"delta": 3, "note": "x"}, admin_token)

    first = order_of((other, 1))  # sells nothing out: 4 -> 3
    path = f"/api/orders/{first}"
    step("admin: processing", "PUT", path, {"status": "processing"}, admin_token, changes=False)
    step("admin cancels a processing order", "PUT", path, {"status": "cancelled"}, admin_token)

    second = order_of((lamp, 3))  # sells the lamp out
    path = f"/api/orders/{second}"
    step("owner cancels by PUT", "PUT", path, {"status": "cancelled"}, buyer_token)

    order_of((other, 4), (lamp, 1))  # sells the floor lamp out
    _expire_orders()
    assert "Cancelled 1 unpaid order(s)." in cli("cancel-expired-orders")
    check.after("flask cancel-expired-orders (restock from zero)")

    give_order(reviewer, _Row(other, "Floor Lamp"))
    give_order(reviewer, _Row(lamp, "Desk Lamp"))
    review = step(
        "review", "POST", f"{other_path}/reviews", {"rating": 3, "title": "Fine"}, reviewer_token
    )["id"]
    step(
        "review of the second product",
        "POST",
        f"{lamp_path}/reviews",
        {"rating": 5, "title": "Bright"},
        reviewer_token,
    )
    step("review title edit", "PUT", f"/api/reviews/{review}", {"title": "Ok"}, reviewer_token)
    step("review rating edit", "PUT", f"/api/reviews/{review}", {"rating": 1}, reviewer_token)
    api("POST", "/api/cart", {"product_id": lamp, "quantity": 1}, buyer_token)
    check.after("cart line of the lamp", changes=False)
    step("delete a reviewed product in a cart", "DELETE", lamp_path, None, admin_token)

    assert "Added 3 products." in cli("seed", "--products", "3")
    check.after("flask seed --products 3")
    check.assert_fresh()


def _seed_scenario(check: Check, cli) -> None:
    """`flask seed` on an empty catalog whose reads were cached empty."""
    check.ids = [1, 2, 3]
    check.prime()
    assert "Added 24 products and 9 reviews." in cli("seed")
    # Every id the demo catalog has (SQLite and PostgreSQL may start past 1).
    listed = check.fresh.read("/api/products?per_page=100")[1]["items"]
    check.ids = [item["id"] for item in listed]
    check.after("flask seed")
    check.assert_fresh()


def test_every_other_write_shows_at_once_in_one_process_without_redis(
    app, client, make_app, make_user
):
    check = Check(_client_reader(client), Fresh(make_app))
    _scenario(Api(_client_sender(client)), check, make_user, _cli_of(app))


def test_flask_seed_shows_at_once_in_one_process_without_redis(app, client, make_app):
    _seed_scenario(Check(_client_reader(client), Fresh(make_app)), _cli_of(app))


# A writer or a cron job with its caches off still moves every version the
# readers keep answers under (README: "Turning a cache off ...").
CACHES_OFF = {
    "CATALOG_CACHE": False,
    "SUGGEST_INDEX_MAX_NAMES": 0,
    "CATALOG_MATCHES_MAX_ENTRIES": 0,
    "SEARCH_RANKINGS_MAX_ENTRIES": 0,
}


def _redis_apps(make_app, *settings: dict) -> list:
    """An app on this test's Redis keys for each of `settings`."""
    prefixes = {key: f"r9-{value}" for key, value in _prefixes(uuid.uuid4().hex).items()}
    return [make_app(overrides={"REDIS_URL": REDIS, **prefixes, **more}) for more in settings]


def _redis_or_skip() -> None:
    import redis

    try:
        redis.Redis.from_url(REDIS, socket_connect_timeout=1).ping()
    except redis.RedisError:
        pytest.skip("no Redis on 127.0.0.1:6379")


@pytest.mark.parametrize("writers", [{}, CACHES_OFF], ids=["caches on", "writers' caches off"])
def test_every_other_write_shows_at_once_on_another_app_sharing_redis(make_app, make_user, writers):
    """Writes on one app, reads on another, the CLI in a third, one Redis."""
    _redis_or_skip()
    writer, reader, cli_app = _redis_apps(make_app, writers, {}, writers)
    check = Check(_client_reader(reader.test_client()), Fresh(make_app))
    _scenario(Api(_client_sender(writer.test_client())), check, make_user, _cli_of(cli_app))


def test_flask_seed_shows_at_once_on_another_app_sharing_redis(make_app):
    _redis_or_skip()
    reader, cli_app = _redis_apps(make_app, {}, CACHES_OFF)
    _seed_scenario(Check(_client_reader(reader.test_client()), Fresh(make_app)), _cli_of(cli_app))


@pytest.mark.server
@pytest.mark.skipif(not IS_POSTGRES, reason="two gunicorn instances need PostgreSQL")
def test_every_other_write_on_one_instance_shows_on_the_other(make_app, make_user):
    """Two gunicorn instances (two workers each) sharing one Redis: writes
    on A, reads on B, the CLI commands in a third app (this process's)."""
    _redis_or_skip()
    prefixes = {key: f"r9-{value}" for key, value in _prefixes(uuid.uuid4().hex).items()}
    env = {"REDIS_URL": REDIS, **prefixes}
    cli_app = make_app(overrides=env)
    with (
        gunicorn(DATABASE_URL, workers=2, threads=2, extra_env=env) as a,
        gunicorn(DATABASE_URL, workers=2, threads=2, extra_env=env) as b,
    ):
        check = Check(_server_reader(b), Fresh(make_app))
        _scenario(Api(_server_sender(a)), check, make_user, _cli_of(cli_app))


@pytest.mark.server
@pytest.mark.skipif(not IS_POSTGRES, reason="two gunicorn instances need PostgreSQL")
def test_flask_seed_on_one_host_shows_on_an_instance_sharing_redis(make_app):
    _redis_or_skip()
    prefixes = {key: f"r9-{value}" for key, value in _prefixes(uuid.uuid4().hex).items()}
    env = {"REDIS_URL": REDIS, **prefixes}
    cli_app = make_app(overrides=env)
    with gunicorn(DATABASE_URL, workers=2, threads=2, extra_env=env) as server:
        _seed_scenario(Check(_server_reader(server), Fresh(make_app)), _cli_of(cli_app))


def test_the_helpers_see_a_stale_read(client, make_app, make_product, db):
    """The check itself: a write made behind the session's back (no bump)
    is reported, both as a stale body and as a 304 for the old ETag."""
    product = make_product(name="Desk Lamp", price="12.00")
    check = Check(_client_reader(client), Fresh(make_app))
    check.ids = [product.id]
    check.prime()
    with db.engine.begin() as conn:
        conn.execute(text("UPDATE products SET price = 13 WHERE id = :id"), {"id": product.id})
    check.after("behind the session's back")
    wrong = "\n".join(check.wrong.get("behind the session's back", []))
    assert f"/api/products/{product.id}: " in wrong
    assert f"/api/products/{product.id}: 304 for the ETag from before" in wrong
    db.session.remove()


@pytest.mark.server
def test_every_other_write_on_one_instance_shows_on_another_of_the_host_without_redis(
    make_app, make_user
):
    """Two gunicorn instances (two workers, two threads each) on one host
    with no Redis: the versions live in the host's memory-mapped files, and
    each worker thread keeps its read connection between requests."""
    with (
        gunicorn(DATABASE_URL, workers=2, threads=2) as a,
        gunicorn(DATABASE_URL, workers=2, threads=2) as b,
    ):
        check = Check(_server_reader(b), Fresh(make_app))
        _scenario(Api(_server_sender(a)), check, make_user, _cli_of(make_app()))


def test_webhook_payments_refunds_and_late_money_keep_every_read_fresh(
    stripe_app,  # noqa: F811 - the imported fixture
    stripe_http,  # noqa: F811
    client,
    make_app,
    make_user,
    login,
    make_product,
):
    """The Stripe webhook's paths (a payment, a second charge refunded, a
    partial and a full refund made at Stripe, money arriving for a cancelled
    order and refunded): none moves stock or a product, and every read,
    primed before each event, is still the database's after it. Writes
    through the Stripe app, reads through another app of the host."""
    product = make_product(name="Desk Lamp", price="19.99", stock=1)
    spare = make_product(name="Floor Lamp", price="19.99", stock=3)
    check = Check(_client_reader(client), Fresh(make_app))
    check.ids = [product.id, spare.id]
    check.prime()
    shop = stripe_app.test_client()
    token = login(make_user())["access_token"]
    refund = (200, {"id": "re_1", "object": "refund", "status": "succeeded"})

    def checkout(product_id: int) -> int:
        line = {"product_id": product_id, "quantity": 1}
        assert shop.post("/api/cart", json=line, headers=auth(token)).status_code == 201
        placed = shop.post("/api/orders", json=SHIPPING, headers=auth(token))
        assert placed.status_code == 201, placed.get_json()
        check.after(f"checkout of {product_id}")
        return placed.get_json()["id"]

    def webhook(step: str, payload: bytes, *answers) -> None:
        stripe_http.answers = list(answers)
        response = deliver(shop, payload, signed(payload))
        assert response.status_code == 200, response.get_json()
        assert not stripe_http.answers, "a refund the test expected was not asked for"
        check.after(step, changes=False)  # no webhook moves stock or a product

    order = checkout(product.id)  # sells it out
    webhook("payment_intent.succeeded", succeeded(order, "pi_first", "evt_paid"))
    webhook("a second charge, refunded", succeeded(order, "pi_second", "evt_twice"), refund)
    charge = {"object": "charge", "payment_intent": "pi_first", "amount": 1999}
    partial = event("charge.refunded", {**charge, "amount_refunded": 500}, "evt_part")
    webhook("a partial refund at Stripe", partial)
    full = event(
        "charge.refunded", {**charge, "amount_refunded": 1999, "refunded": True}, "evt_all"
    )
    webhook("a full refund at Stripe", full)

    late = checkout(spare.id)
    cancelled = shop.post(f"/api/orders/{late}/cancel", headers=auth(token))
    assert cancelled.status_code == 200, cancelled.get_json()
    check.after("cancel of an unpaid order")
    webhook("money for a cancelled order", succeeded(late, "pi_late", "evt_late"), refund)
    assert client.get(f"/api/products/{spare.id}").get_json()["stock"] == 3
    check.assert_fresh()


@pytest.mark.server
def test_a_write_shows_at_once_on_the_other_instance_while_it_is_read_hard(
    make_app, make_product, admin_token
):
    """Readers keep hitting instance B (threads, bounded) while A changes a
    price and a stock 20 times: after each write returns, B's detail, list,
    filtered list and facets show it. An answer B built from the database
    while the write committed must be kept under the version from before
    it, never served after it."""
    import threading

    _redis_or_skip()
    prefixes = {key: f"r9-{value}" for key, value in _prefixes(uuid.uuid4().hex).items()}
    env = {"REDIS_URL": REDIS, **prefixes}
    product = make_product(name="Desk Lamp", price="10.00", stock=1)
    detail = f"/api/products/{product.id}"
    busy = [
        detail,
        "/api/products?sort=price",
        "/api/products?in_stock=true",
        "/api/products/facets",
    ]
    with (
        gunicorn(DATABASE_URL, workers=2, threads=4, extra_env=env) as a,
        gunicorn(DATABASE_URL, workers=2, threads=4, extra_env=env) as b,
    ):
        read = _server_reader(b)
        stop = threading.Event()

        def hammer() -> None:
            for _ in range(2000):  # bounded: stops by itself
                if stop.is_set():
                    return
                for path in busy:
                    read(path)

        readers = [threading.Thread(target=hammer, daemon=True) for _ in range(3)]
        for thread in readers:
            thread.start()
        stale = []
        try:
            for n in range(20):
                price, stock = Decimal(11 + n), n % 2  # the stock crosses zero each time
                body = {"price": str(price), "stock": stock}
                assert a.request("PUT", detail, body, token=admin_token)[0] == 200
                shown = read(detail).body
                listed = read("/api/products?sort=price").body["items"]
                in_stock = read("/api/products?in_stock=true").body["total"]
                facets = read("/api/products/facets").body
                seen = (shown["price"], shown["stock"], listed[0]["price"], in_stock)
                if seen != (price, stock, price, stock) or facets["in_stock"] != stock:
                    stale.append((n, seen, facets["in_stock"]))
        finally:
            stop.set()
            for thread in readers:
                thread.join(timeout=60)
        assert not stale, stale


@pytest.mark.server
@pytest.mark.skipif(not IS_POSTGRES, reason="a Celery worker on the test database: PostgreSQL")
def test_the_payment_timeout_sweep_of_a_celery_worker_shows_on_an_instance(
    make_app, make_user, login, make_product
):
    """The periodic sweep in a real Celery worker (beat every second) on the
    readers' Redis: once its cancel commits, the restock from zero shows on
    another instance's cached reads (within a second: a background commit
    has no answer to wait for, and its bump follows its commit)."""
    import redis

    from tests.live import celery_worker, eventually

    _redis_or_skip()
    queue = redis.Redis.from_url(REDIS)
    queue.delete("celery", "unacked", "unacked_index", "unacked_mutex")
    (shop,) = _redis_apps(make_app, {})
    prefixes = {key: shop.config[key] for key in _prefixes("-")}
    web = shop.test_client()
    product = make_product(name="Desk Lamp", stock=2)
    token = login(make_user())["access_token"]
    assert (
        web.post(
            "/api/cart", json={"product_id": product.id, "quantity": 2}, headers=auth(token)
        ).status_code
        == 201
    )
    assert web.post("/api/orders", json=SHIPPING, headers=auth(token)).status_code == 201
    check = Check(_client_reader(web), Fresh(make_app))
    check.ids = [product.id]
    check.prime()  # sold out, kept so
    assert check.primed["/api/products/facets"].body["in_stock"] == 0
    _expire_orders()
    env = {**prefixes, "ORDER_PAYMENT_SWEEP_INTERVAL": "1"}
    try:
        with celery_worker(DATABASE_URL, REDIS, name="cache9", extra_env=env):
            fresh = check.fresh.client
            eventually(lambda: fresh.get(f"/api/products/{product.id}").get_json()["stock"] == 2)
            eventually(
                lambda: web.get("/api/products/facets").get_json()["in_stock"] == 1,
                timeout=1,
                message="the sweep's restock not shown by the cached facets",
            )
            check.after("the Celery worker's payment-timeout sweep")
    finally:
        queue.delete("celery", "unacked", "unacked_index", "unacked_mutex")
        queue.close()
    check.assert_fresh()
