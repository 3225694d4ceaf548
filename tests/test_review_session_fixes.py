"""Defects in the fixes of this session (8ec2c3e..HEAD), found by review:
each test fails on the current code because of a real defect (its
docstring says what the docs promise and what happens instead)."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
from sqlalchemy import text

from tests.helpers import IS_POSTGRES, auth, scalar
from tests.reviewing import give_order

ROOT = Path(__file__).resolve().parent.parent


def _reviewed(client, make_user, login, product, rating):
    """A verified buyer of `product` who reviewed it with `rating` stars."""
    user = make_user()
    give_order(user, product)
    token = login(user)["access_token"]
    response = client.post(
        f"/api/products/{product.id}/reviews", json={"rating": rating}, headers=auth(token)
    )
    assert response.status_code == 201, response.get_json()
    return user, response.get_json()


def _wait_until_blocked(pid: int) -> None:
    """Until the backend `pid` waits for a lock (at most 10 s)."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        waiting = scalar("SELECT wait_event_type FROM pg_stat_activity WHERE pid = :p", p=pid)
        if waiting == "Lock":
            return
        time.sleep(0.02)
    raise AssertionError("the second delete never waited for the first")


def _totals(product_id):
    return (
        scalar("SELECT rating_count FROM products WHERE id = :p", p=product_id),
        scalar("SELECT rating_sum FROM products WHERE id = :p", p=product_id),
    )


def _actual(product_id):
    return (
        scalar("SELECT count(*) FROM reviews WHERE product_id = :p", p=product_id),
        scalar("SELECT coalesce(sum(rating), 0) FROM reviews WHERE product_id = :p", p=product_id),
    )


@pytest.mark.skipif(not IS_POSTGRES, reason="concurrent writers are PostgreSQL's")
def test_two_concurrent_account_deletions_leave_the_rating_exact(
    client, db, make_user, login, make_product
):
    """README (Reviews) and migration f31b2d4c6e81: a review the database
    deletes by itself (an account an operator removes) is taken out of the
    product's totals by a trigger that counts the remaining reviews again;
    "any other delete (a cascade, an operator's SQL) corrects them". On
    PostgreSQL the trigger's UPDATE ... FROM (SELECT count(*), sum(rating)
    ...) reads the reviews in the snapshot its statement took before it
    waited for the product row: two accounts deleted at once (two operator
    sessions, or one beside an API delete) each count the other's review as
    still there, and the second writes its stale count over the first's
    (or writes nothing when both ratings are equal). The product keeps
    counting a deleted review: rating_count 2, rating_sum 9 where one
    4-star review is left."""
    product = make_product()
    first, _ = _reviewed(client, make_user, login, product, 5)
    second, _ = _reviewed(client, make_user, login, product, 3)
    _reviewed(client, make_user, login, product, 4)
    assert _totals(product.id) == (3, 12)

    holder = db.engine.connect()
    other = db.engine.connect()
    try:
        holder.begin()
        holder.execute(text("DELETE FROM users WHERE id = :u"), {"u": first.id})
        other_pid = other.exec_driver_sql("SELECT pg_backend_pid()").scalar()
        other.commit()
        failure = []

        def delete_second():
            try:
                with other.begin():
                    other.execute(text("DELETE FROM users WHERE id = :u"), {"u": second.id})
            except Exception as error:  # reported below  # noqa: BLE001
                failure.append(error)

        thread = threading.Thread(target=delete_second)
        thread.start()
        _wait_until_blocked(other_pid)
        holder.commit()
        thread.join(10)
        assert not failure, failure
    finally:
        holder.close()
        other.close()

    assert _actual(product.id) == (1, 4)
    assert _totals(product.id) == (1, 4)


EXTRA_REVISION = '''"""A data fix that relies on ON DELETE CASCADE (a test's own revision)."""
from alembic import op

revision = "ffff0000test"
down_revision = "{head}"
branch_labels = None
depends_on = None


def upgrade():
    op.execute("DELETE FROM users WHERE username = 'leaver'")


def downgrade():
    pass
'''


@pytest.mark.skipif(IS_POSTGRES, reason="migrations run with foreign keys off on SQLite only")
def test_sqlite_migration_that_orphans_rows_is_refused_before_its_commit(make_app, tmp_path):
    """docs/ARCHITECTURE.md (a migration): "On SQLite `migrations/env.py`
    runs migrations with foreign keys off ... and checks them (`PRAGMA
    foreign_key_check`) before the commit". Alembic's SQLite dialect has no
    transactional DDL, so `context.begin_transaction()` in env.py opens no
    transaction: every revision runs in a transaction of its own and is
    committed (its version row too) before env.py's foreign_key_check runs.
    A revision that deletes an account and relies on ON DELETE CASCADE
    (with foreign keys off nothing cascades) fails `flask db upgrade` with
    "rows left without their parent" - after the delete and the new version
    were committed: the account is gone, its cart and orders are orphans,
    and alembic_version names the revision as applied. Expected: the
    upgrade refused and nothing of that revision kept."""
    import shutil

    from alembic.script import ScriptDirectory
    from flask_migrate import upgrade

    from app.extensions import db as _db
    from app.services.auth import create_user

    directory = tmp_path / "migrations"
    shutil.copytree(ROOT / "migrations", directory)
    head = ScriptDirectory(str(directory)).get_current_head()
    extra = directory / "versions" / "ffff0000test_data_fix.py"
    extra.write_text(EXTRA_REVISION.format(head=head))
    shop = make_app("testing", {"SQLALCHEMY_DATABASE_URI": f"sqlite:///{tmp_path}/shop.db"})
    with shop.app_context():
        upgrade(directory=str(directory), revision=head)
        create_user("leaver", "leaver@example.com", "correct-horse-9")
        _db.session.commit()

        with pytest.raises(SystemExit):  # Flask-Migrate logs the RuntimeError, exits 1
            upgrade(directory=str(directory), revision="ffff0000test")
        _db.session.remove()
        with _db.engine.connect() as conn:
            version = conn.exec_driver_sql("SELECT version_num FROM alembic_version").scalar()
            users = conn.exec_driver_sql("SELECT count(*) FROM users").scalar()
    assert (version, users) == (head, 1)


@pytest.mark.parametrize("value", ["2", "y", "True "])
def test_production_refuses_every_flask_debug_value_flask_treats_as_on(
    make_app, monkeypatch, value
):
    """README (Configuration): `FLASK_CONFIG=production` refuses to start
    "when `FLASK_DEBUG` is on" (config.ProductionConfig.check: "`flask run`
    would start Werkzeug's debugger: code execution for whoever reaches an
    error"). Flask reads FLASK_DEBUG as on for any value but "0", "false"
    and "no" (flask.helpers.get_debug_flag), and under the `flask` command
    sets app.debug and the debugger from it, over the pinned DEBUG = False;
    the check refuses only "1", "true", "yes" and "on". FLASK_DEBUG=2 (or
    y, or "True " with a space) starts production, and `flask run` serves
    it with the interactive debugger. Expected: refused."""
    from flask.helpers import get_debug_flag

    from tests.helpers import DATABASE_URL

    monkeypatch.setenv("DATABASE_URL", DATABASE_URL)
    monkeypatch.setenv("MAIL_BACKEND", "console")
    monkeypatch.setenv("PAYMENT_PROVIDER", "test")
    monkeypatch.setenv("FLASK_DEBUG", value)
    overrides = {
        "SQLALCHEMY_DATABASE_URI": DATABASE_URL,
        "SQLALCHEMY_ENGINE_OPTIONS": {"hide_parameters": True},
        "RATELIMIT_ENABLED": False,
        "BACKGROUND_MODE": "off",
        "REDIS_URL": None,
        "SECRET_KEY": "s" * 48,
        "JWT_SECRET_KEY": "j" * 48,
        "PAYMENT_PROVIDER": "test",
    }
    assert get_debug_flag()  # what `flask run` starts its debugger on
    with pytest.raises(RuntimeError, match="FLASK_DEBUG"):
        make_app("production", overrides)


def test_a_bump_while_redis_is_skipped_does_not_wait_for_the_background_retrier():
    """README (The catalog cache): "A stopped Redis costs speed: reads go to
    the database"; RedisStore._call skips Redis for `retry_after` after a
    failure, so a commit's version bump made meanwhile is owed at once and
    the request goes on (it did before the retrier). The retrier thread
    (`_settle_later`) now calls Redis inside `_settle`, holding the
    process-wide `RedisStore._owed_lock` for the whole round trip (up to
    the 0.5 s socket timeout against a Redis that accepts but does not
    answer: a partition, a stopped host), every 0.25 s; every `bump()` takes
    that lock to note its bump, so a checkout, a stock change or a logout
    committed during such an outage waits up to 0.5 s (often ~1 s) for the
    retrier's try instead of 0 s. Expected: a bump in the skip window
    returns at once."""
    import socket

    from app.services.catalog_cache import RedisStore

    silent = socket.socket()  # accepts connections (the backlog), never answers
    silent.bind(("127.0.0.1", 0))
    silent.listen(64)
    store = RedisStore(f"redis://127.0.0.1:{silent.getsockname()[1]}/0", "review-fixes", ttl=0)
    slowest = 0.0
    try:
        store.bump()  # fails after the socket timeout: Redis is skipped for retry_after
        while time.monotonic() < store.down_until - 0.1:
            started = time.monotonic()
            store.bump()
            slowest = max(slowest, time.monotonic() - started)
            time.sleep(0.02)
    finally:
        store.owed.clear()  # lets the retrier thread end
        silent.close()
    assert slowest < 0.1, f"a bump waited {slowest:.3f} s while Redis was being skipped"
