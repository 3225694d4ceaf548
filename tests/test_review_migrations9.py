"""Migrations review (9): a live shop's database upgraded to head from each
earlier revision it could be at, with rows written at that revision (raw SQL
in that revision's schema), must keep them and the app at head must serve
them; downgrades of the last revisions with data present, and `flask db
upgrade` run by two processes at once.

Not repeated here (pinned elsewhere): the schema after a downgrade and
upgrade (test_review_faults6), the order lines kept by e20a4b7c9d13 on SQLite
and downgrade to base (test_review_ops), the opening balance of d18a7c3e5b90
alone (test_inventory), f44a9c3e7b52's vocabulary and its downgrade with
marked words (test_review_search9), the email rewrites' collisions
(test_account_integrity, test_review_auth)."""

from __future__ import annotations

import os
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.script import ScriptDirectory
from flask import current_app
from flask_migrate import downgrade, upgrade
from werkzeug.security import generate_password_hash

from app.extensions import db
from tests.helpers import DATABASE_URL, IS_POSTGRES, PASSWORD, auth

ROOT = Path(__file__).resolve().parent.parent
STAMP = "2026-01-02 03:04:05"
DELETED = "2026-01-03 00:00:00"
HINDI = "हिन्दी पुस्तक"
# Batch rebuilds on SQLite warn that they cannot reflect lower(...) indexes;
# `flask db` prints it and goes on.
quiet_rebuild = pytest.mark.filterwarnings("ignore:Skipped unsupported reflection")


def _chain() -> list[str]:
    """Every revision, oldest first."""
    script = ScriptDirectory.from_config(current_app.extensions["migrate"].migrate.get_config())
    return [rev.revision for rev in reversed(list(script.walk_revisions()))]


def _before(start: str, revision: str) -> bool:
    """Whether `revision` is applied by an upgrade from `start`."""
    chain = _chain()
    return chain.index(start) < chain.index(revision)


def _columns(conn) -> dict[str, set[str]]:
    inspector = sa.inspect(conn)
    return {t: {c["name"] for c in inspector.get_columns(t)} for t in inspector.get_table_names()}


def _insert(conn, schema, table: str, **values) -> None:
    """One row, with only the columns `table` has at this revision."""
    values = {k: v for k, v in values.items() if k in schema[table]}
    names = ", ".join(values)
    marks = ", ".join(f":{k}" for k in values)
    conn.execute(sa.text(f"INSERT INTO {table} ({names}) VALUES ({marks})"), values)  # noqa: S608


def _write_shop(start: str) -> None:
    """A shop's rows at revision `start`, as that revision's schema holds them:
    three users, four products (one soft-deleted, non-ASCII names, an empty
    category where it could be stored), a cart, three orders in three
    statuses with lines and history, payments, reviews with matching totals,
    the stock ledger, outbox rows, an idempotency key and a revoked token."""
    password = generate_password_hash(PASSWORD, method="pbkdf2:sha256:1000")
    with db.engine.begin() as conn:
        schema = _columns(conn)
        # An IDNA ASCII domain where the rewrite (f30d5e7a9b14) is to come.
        ana_email = (
            "ana@xn--exmple-cua.com" if _before(start, "f30d5e7a9b14") else "ana@exämple.com"
        )
        for user_id, name, email, admin in (
            (1, "zoe", "zoe@example.com", False),
            (2, "Ana", ana_email, False),
            (3, "boss", "boss@example.com", True),
        ):
            _insert(
                conn,
                schema,
                "users",
                id=user_id,
                username=name,
                email=email,
                password_hash=password,
                is_admin=admin,
                created_at=STAMP,
                updated_at=STAMP,
                email_verified=True,
            )
        reviews = "reviews" in schema
        empty = "" if _before(start, "f32c5e7a9d03") else None
        for pid, name, description, category, price, stock, deleted, ratings in (
            (1, "Crème Brûlée Torch", "A kitchen torch, 1.5 kg", "Kitchen", "24.99", 7, None, 9),
            (2, HINDI, "किताब", "Books", "12.50", 3, None, 3),
            (3, "Ωmega Lamp", "A lamp", "Lighting", "5.00", 2, DELETED, 0),
            (4, "Wool Socks", "Warm", empty, "9.99", 0, None, 0),
        ):
            count = {9: 2, 3: 1, 0: 0}[ratings]
            _insert(
                conn,
                schema,
                "products",
                id=pid,
                name=name,
                description=description,
                category=category,
                price=price,
                stock=stock,
                created_at=STAMP,
                updated_at=STAMP,
                deleted_at=deleted,
                **(
                    {
                        "rating_count": count,
                        "rating_sum": ratings,
                        "rating_average": f"{ratings / count:.2f}" if count else None,
                    }
                    if reviews
                    else {}
                ),
            )
            if "stock_movements" in schema:
                _insert(
                    conn,
                    schema,
                    "stock_movements",
                    product_id=pid,
                    delta=stock + 1,
                    stock_after=stock + 1,
                    reason="created",
                    created_at=STAMP,
                    low_stock_alert=False,
                )
                _insert(
                    conn,
                    schema,
                    "stock_movements",
                    product_id=pid,
                    delta=-1,
                    stock_after=stock,
                    reason="adjustment",
                    actor_id=3,
                    note="Breakage",
                    created_at=STAMP,
                    low_stock_alert=False,
                )
        if reviews:
            for rid, product_id, user_id, rating in ((1, 1, 1, 5), (2, 1, 2, 4), (3, 2, 1, 3)):
                _insert(
                    conn,
                    schema,
                    "reviews",
                    id=rid,
                    product_id=product_id,
                    user_id=user_id,
                    rating=rating,
                    title="Très bien",
                    body="",
                    created_at=STAMP,
                    updated_at=STAMP,
                )
        _insert(conn, schema, "carts", id=1, user_id=1, created_at=STAMP, updated_at=STAMP)
        _insert(
            conn, schema, "cart_items", id=1, cart_id=1, product_id=1, quantity=2, created_at=STAMP
        )
        if _before(start, "e25d0e3f6b79"):  # a deleted product's line, swept there
            _insert(
                conn,
                schema,
                "cart_items",
                id=2,
                cart_id=1,
                product_id=3,
                quantity=1,
                created_at=STAMP,
            )
        orders = (
            (1, 1, "delivered", "49.98", "paid", [(1, 1, "Crème Brûlée Torch", "24.99", 2)]),
            (2, 1, "pending", "12.50", "unpaid", [(2, 2, HINDI, "12.50", 1)]),
            (3, 2, "cancelled", "5.00", "refunded", [(3, 3, "Ωmega Lamp", "5.00", 1)]),
        )
        for order_id, user_id, status, total, paid, lines in orders:
            _insert(
                conn,
                schema,
                "orders",
                id=order_id,
                user_id=user_id,
                status=status,
                total_amount=total,
                shipping_address="Hauptstraße 5, München",
                created_at=STAMP,
                updated_at=STAMP,
                currency="USD",
                payment_status=paid,
            )
            for line_id, product_id, name, price, quantity in lines:
                _insert(
                    conn,
                    schema,
                    "order_items",
                    id=line_id,
                    order_id=order_id,
                    product_id=product_id,
                    product_name=name,
                    unit_price=price,
                    quantity=quantity,
                    subtotal=str(Decimal(price) * quantity),
                )
            for step in ("pending", status) if status != "pending" else ("pending",):
                _insert(
                    conn, schema, "order_status_history", order_id=order_id, status=step, at=STAMP
                )
        if "payments" in schema:
            for pay_id, order_id, amount, status in (
                (1, 1, 4998, "succeeded"),
                (2, 3, 500, "refunded"),
            ):
                _insert(
                    conn,
                    schema,
                    "payments",
                    id=pay_id,
                    order_id=order_id,
                    provider="test",
                    intent_id=f"pi_{pay_id}",
                    amount=amount,
                    currency="USD",
                    status=status,
                    attempt=1,
                    created_at=STAMP,
                    updated_at=STAMP,
                    amount_refunded=amount if status == "refunded" else 0,
                )
        if "outbox" in schema:
            for box_id, status in ((1, "pending"), (2, "sent")):
                _insert(
                    conn,
                    schema,
                    "outbox",
                    id=box_id,
                    kind="email",
                    topic="order_confirmation",
                    recipient="zoe@example.com",
                    payload='{"order_id": 1}',
                    status=status,
                    attempts=0 if status == "pending" else 1,
                    available_at="2099-01-01 00:00:00",
                    created_at=STAMP,
                    sent_at=STAMP if status == "sent" else None,
                )
        _insert(
            conn,
            schema,
            "idempotency_keys",
            id=1,
            user_id=1,
            key="k-1",
            fingerprint="f" * 64,
            response_status=201,
            response_body='{"id": 1}',
            created_at=STAMP,
        )
        _insert(conn, schema, "revoked_tokens", jti="j" * 32, expires_at="2099-01-01 00:00:00")


def _counts() -> dict[str, int]:
    with db.engine.connect() as conn:
        tables = sa.inspect(conn).get_table_names()
        wanted = (
            "users", "products", "carts", "cart_items", "orders", "order_items",
            "order_status_history", "payments", "reviews", "stock_movements", "outbox",
            "idempotency_keys", "revoked_tokens",
        )  # fmt: skip
        return {
            t: conn.execute(sa.text(f"SELECT count(*) FROM {t}")).scalar_one()  # noqa: S608
            for t in wanted
            if t in tables
        }


def _indexed_words() -> set[str]:
    """The words the search's own indexes hold: SQLite's FTS5 tables (their
    vocabularies, and `names:<word>` for a word the names' table finds),
    PostgreSQL's prefix vocabulary."""
    with db.engine.connect() as conn:
        if IS_POSTGRES:
            return set(conn.execute(sa.text("SELECT word FROM products_words")).scalars())
        words = set()
        for vocab in ("products_fts_vocab", "products_words_vocab"):
            words |= set(conn.execute(sa.text(f"SELECT term FROM {vocab}")).scalars())  # noqa: S608
        for word in ("ωmega", "lamp", "torch"):
            hit = conn.execute(
                sa.text("SELECT rowid FROM products_names WHERE products_names MATCH :q"),
                {"q": f'"{word}"'},
            ).first()
            if hit is not None:
                words.add(f"names:{word}")
        return words


def _names(client, **query) -> list[str]:
    response = client.get("/api/products", query_string=query)
    assert response.status_code == 200, response.get_json()
    return sorted(item["name"] for item in response.get_json()["items"])


def _token(client, username: str) -> str:
    response = client.post("/api/auth/login", json={"username": username, "password": PASSWORD})
    assert response.status_code == 200, response.get_json()
    return response.get_json()["access_token"]


def _check_served(client, start: str, before: dict[str, int]) -> None:
    """What the app at head serves of the rows written at `start`."""
    after = _counts()
    expected = dict(before)
    if _before(start, "e25d0e3f6b79"):
        expected["cart_items"] -= 1  # the deleted product's line, swept
    if _before(start, "d18a7c3e5b90"):
        expected["stock_movements"] = 4  # one opening balance per product
    assert {t: after[t] for t in expected} == expected

    # The catalog: prices exact, the deleted product gone, the search finds the old rows.
    assert _names(client) == sorted(["Crème Brûlée Torch", HINDI, "Wool Socks"])
    assert client.get("/api/products").get_json()["total"] == 3  # the live count
    torch = client.get("/api/products/1").get_json()
    assert (torch["name"], torch["price"], torch["stock"]) == (
        "Crème Brûlée Torch",
        Decimal("24.99"),
        7,
    )
    assert client.get("/api/products/3").status_code == 404
    socks = client.get("/api/products/4").get_json()
    assert socks["category"] is None  # "" before f32c5e7a9d03, NULL after
    assert _names(client, q="creme brulee") == ["Crème Brûlée Torch"]
    assert _names(client, q="torch") == ["Crème Brûlée Torch"]
    assert _names(client, q="हिन्दी") == [HINDI]
    assert _names(client, q="किताब") == [HINDI]
    assert _names(client, q="omega") == _names(client, q="Ωmega") == []
    indexed = _indexed_words()
    assert indexed & {"ωmega", "lamp", "names:ωmega", "names:lamp"} == set()  # the deleted one's
    assert {"creme", "torch", "हिन्दी"} <= indexed
    assert IS_POSTGRES or "names:torch" in indexed
    suggest = client.get("/api/products/suggest", query_string={"q": "crè"}).get_json()
    assert suggest["suggestions"] == ["Crème Brûlée Torch"]
    if "reviews" in before:
        assert (torch["rating_count"], torch["rating_average"]) == (2, Decimal("4.50"))
        reviews = client.get("/api/products/1/reviews").get_json()["items"]
        assert sorted(r["rating"] for r in reviews) == [4, 5]

    # The ledger adds up to the stock, for every product (the deleted one too).
    with db.engine.connect() as conn:
        off = conn.execute(
            sa.text(
                "SELECT p.id, p.stock, coalesce(sum(m.delta), 0) FROM products p "
                "LEFT JOIN stock_movements m ON m.product_id = p.id GROUP BY p.id, p.stock "
                "HAVING p.stock <> coalesce(sum(m.delta), 0)"
            )
        ).all()
    assert off == []

    # The buyer's orders, cart and the admin's view of a refund.
    zoe = _token(client, "zoe")
    orders = client.get("/api/orders", headers=auth(zoe)).get_json()["items"]
    assert sorted((o["id"], o["status"], o["total_amount"]) for o in orders) == [
        (1, "delivered", Decimal("49.98")),
        (2, "pending", Decimal("12.50")),
    ]
    first = client.get("/api/orders/1", headers=auth(zoe)).get_json()
    assert [(i["product_name"], i["quantity"], i["subtotal"]) for i in first["items"]] == [
        ("Crème Brûlée Torch", 2, Decimal("49.98"))
    ]
    assert first["shipping_address"] == "Hauptstraße 5, München"
    cart = client.get("/api/cart", headers=auth(zoe)).get_json()
    assert [(i["product_id"], i["quantity"]) for i in cart["items"]] == [(1, 2)]
    ana = client.get("/api/auth/profile", headers=auth(_token(client, "Ana"))).get_json()
    assert ana["email"] == "ana@exämple.com"
    boss = _token(client, "boss")
    refunds = client.get("/api/orders/3/payments", headers=auth(boss)).get_json()
    if "payments" in before:
        assert (refunds["payment_status"], refunds["amount_refunded"]) == (
            "refunded",
            Decimal("5.00"),
        )
    pending = client.get("/api/orders/2", headers=auth(zoe)).get_json()
    assert pending["payment_status"] == "unpaid"


# Where a deployed shop may be: the first revision, and the one before each
# revision that moves data (fills or rebuilds a table, UPDATE/INSERT/DELETE,
# a NOT NULL column, a constraint, a search index built from the rows).
STARTS = [
    "a009b583a24a",  # the first
    "d13a7c5e9b21",  # before e19a5f0c3b21: the FTS index / tsvector filled from the rows
    "e19a5f0c3b21",  # before e20a4b7c9d13: orders rebuilt, NOT NULL payment columns
    "d17a5e0c9b21",  # before d18a7c3e5b90: the ledger's opening balance
    "d18a7c3e5b90",  # before d5a7e9c1b3f2: token_version from the cutoffs
    "e24c9d2e5a68",  # before e25d0e3f6b79: deleted products swept from carts
    "f29a1c3e5b70",  # before f30d5e7a9b14 .. f32c5e7a9d03: emails, ratings, categories
    "f37a2c4e6b89",  # before f38b4e6a8c12: PostgreSQL's vector and vocabulary made again
    "f39c5a7e2b16",  # before f40a6c8e1d27 / f41b7d9e2c38: reviews, cart_items rebuilt (SQLite)
    "f42d6a8c1e35",  # before f43e8b2d4c17: payments rebuilt, amount_refunded filled
    "f43e8b2d4c17",  # before f44a9c3e7b52: SQLite's FTS tables rebuilt
]


@quiet_rebuild
@pytest.mark.parametrize("start", STARTS)
def test_a_shop_upgraded_from_an_earlier_revision_keeps_and_serves_its_data(client, start):
    db.session.remove()
    downgrade(revision=start)
    try:
        _write_shop(start)
        before = _counts()
    finally:
        db.session.remove()
        upgrade()
    _check_served(client, start, before)


# --- two hosts run `flask db upgrade` at once --------------------------------------------


def _flask_db_upgrade() -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "flask", "--app", "app:create_app", "db", "upgrade"],
        env={
            **os.environ,
            "FLASK_CONFIG": "testing",
            "TEST_DATABASE_URL": DATABASE_URL,
            "BACKGROUND_MODE": "off",
        },
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _waiting_backends() -> int:
    """Backends at the door: waiting for a lock, or asking for the migration
    lock again and again (migrations/env.py polls it)."""
    with db.engine.connect() as conn:
        return conn.execute(
            sa.text(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                "AND pid <> pg_backend_pid() AND (wait_event_type = 'Lock' "
                "OR query LIKE '%pg_try_advisory_xact_lock%')"
            )
        ).scalar_one()


@quiet_rebuild
def test_two_upgrades_at_once_one_waits_and_the_other_applies_nothing(client):
    """README: `flask db upgrade` once per release, several hosts on one
    database. A deploy that runs it on each host runs it twice at once. Both
    start from the same revision (held at the door until both are there: a
    lock on alembic_version, or SQLite's write lock); both must succeed, the
    second applying nothing, and the data be as one upgrade leaves it."""
    import time

    start = "e24c9d2e5a68"
    db.session.remove()
    downgrade(revision=start)
    try:
        _write_shop(start)
        before = _counts()
        db.session.remove()
        db.engine.dispose()
        held = db.engine.raw_connection()
        try:
            if IS_POSTGRES:
                held.driver_connection.execute("BEGIN")
                held.driver_connection.execute(
                    "LOCK TABLE alembic_version IN ACCESS EXCLUSIVE MODE"
                )
            else:
                held.driver_connection.execute("BEGIN IMMEDIATE")
            runs = [_flask_db_upgrade(), _flask_db_upgrade()]
            if IS_POSTGRES:
                deadline = time.monotonic() + 60
                while _waiting_backends() < 2 and time.monotonic() < deadline:
                    time.sleep(0.1)
            else:
                time.sleep(4)  # both processes started and waiting for the write lock
        finally:
            held.driver_connection.execute("COMMIT")
            held.close()
        outputs = [run.communicate(timeout=120)[0] for run in runs]
    finally:
        db.session.remove()
        upgrade()  # at head whatever happened (nothing to apply if they did)
    assert [run.returncode for run in runs] == [0, 0], "\n---\n".join(outputs)
    with db.engine.connect() as conn:
        versions_left = conn.execute(sa.text("SELECT version_num FROM alembic_version")).all()
    assert [v for (v,) in versions_left] == [_chain()[-1]]
    from app.services import versions

    versions.bump_all()  # the upgrade ran in other processes
    _check_served(client, start, before)


# --- a release rolled back, then deployed again ------------------------------------------


@quiet_rebuild
def test_the_last_revisions_downgraded_and_upgraded_again_keep_the_data(client):
    """`flask db downgrade f40a6c8e1d27` (f44a9c3e7b52's FTS tables, f43e8b2d4c17's
    payments rebuild, f42d6a8c1e35's index and f41b7d9e2c38's cart_items rebuild
    undone) and `upgrade` again, with a shop's rows present: every row is
    there at the lower revision and at head, and the app serves them as before."""
    head = _chain()[-1]
    _write_shop(head)
    before = _counts()
    db.session.remove()
    try:
        downgrade(revision="f40a6c8e1d27")
        assert _counts() == before
        with db.engine.connect() as conn:
            payments = conn.execute(
                sa.text("SELECT id, order_id, amount, status FROM payments ORDER BY id")
            ).all()
            lines = conn.execute(
                sa.text("SELECT id, cart_id, product_id, quantity FROM cart_items")
            ).all()
        assert [tuple(p) for p in payments] == [(1, 1, 4998, "succeeded"), (2, 3, 500, "refunded")]
        assert [tuple(line) for line in lines] == [(1, 1, 1, 2)]
    finally:
        db.session.remove()
        upgrade()
    _check_served(client, head, before)


# --- a migration on a large catalog ------------------------------------------------------


@pytest.mark.skipif(not IS_POSTGRES, reason="DB_STATEMENT_TIMEOUT_MS is PostgreSQL's")
def test_an_upgrade_that_rewrites_a_large_table_is_not_cut_by_the_statement_timeout(make_app):
    """DB_STATEMENT_TIMEOUT_MS (30 s by default) bounds the requests'
    statements; `flask db upgrade` runs on the same engine. f38b4e6a8c12 makes
    the search vector again, a rewrite of `products`: on 200,000 products it
    took more than 30 s here and the upgrade failed ("canceling statement due
    to statement timeout"). Scaled down: a 100 ms timeout and a catalog whose
    rewrite takes longer. Expected: the upgrade completes."""
    db.session.remove()
    downgrade(revision="f37a2c4e6b89")
    try:
        with db.engine.begin() as conn:
            conn.execute(
                sa.text(
                    "INSERT INTO products (name, description, price, stock, category, "
                    "created_at, updated_at) SELECT 'Lamp ' || g, repeat('A steel lamp ' || g "
                    "|| ' with a long description, ', 20), 9.99, 5, 'Lighting', now(), now() "
                    "FROM generate_series(1, 4000) AS g"
                )
            )
        hurried = make_app("testing", {"DB_STATEMENT_TIMEOUT_MS": 100})
        with hurried.app_context():
            failure = None
            try:
                upgrade()
            except Exception as error:  # noqa: BLE001 - the failure is the finding
                failure = error
    finally:
        db.session.remove()
        upgrade()
    assert failure is None, f"flask db upgrade failed: {failure!r}"
