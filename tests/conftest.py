"""Fixtures: a migrated database (SQLite by default, PostgreSQL when
TEST_DATABASE_URL names one: see tests/helpers.py), emptied after every test,
and users, products and real tokens obtained through the API. Plain helpers
are in tests/helpers.py."""

from __future__ import annotations

# isort: off
from tests.helpers import IS_POSTGRES, PASSWORD  # first: it picks the database `config` reads
# isort: on

import itertools
import shutil
import subprocess
import time
from collections.abc import Iterator
from decimal import Decimal

import pytest
from flask_migrate import upgrade
from sqlalchemy import event

from app import create_app
from app.extensions import db as _db
from app.models import Product
from app.services import versions
from app.services.auth import create_user
from app.services.catalog import create_product
from tests.live import free_port

_counter = itertools.count(1)


def _reset_schema() -> None:
    """Start from nothing, then apply the committed migrations."""
    with _db.engine.begin() as conn:
        if IS_POSTGRES:
            conn.exec_driver_sql("DROP SCHEMA public CASCADE")
            conn.exec_driver_sql("CREATE SCHEMA public")
        else:
            _db.metadata.drop_all(conn)
            conn.exec_driver_sql("DROP TABLE IF EXISTS alembic_version")
    upgrade()


@pytest.fixture(scope="session")
def app():
    app = create_app("testing")
    with app.app_context():
        _reset_schema()
    yield app
    with app.app_context():
        _db.engine.dispose()


@pytest.fixture
def make_app():
    """Another app (other settings, same database); its pool is closed after."""
    made = []

    def make(config_name: str = "testing", overrides: dict | None = None):
        made.append(create_app(config_name, overrides))
        return made[-1]

    yield make
    for other in made:
        with other.app_context():
            _db.engine.dispose()


@pytest.fixture(autouse=True)
def _limits_as_the_app_has_them(app) -> Iterator[None]:
    """Flask-Limiter's `limiter` is one object: an app made with its limits on
    (`make_app(overrides={"RATELIMIT_ENABLED": True})`) turns them on for every
    app after it; each test ends with them as the suite's app has them."""
    yield
    from app.extensions import limiter

    limiter.enabled = app.config["RATELIMIT_ENABLED"]


@pytest.fixture(autouse=True)
def _app_context(app) -> Iterator[None]:
    with app.app_context():
        yield
        _db.session.remove()
        tables = [t.name for t in reversed(_db.metadata.sorted_tables)]
        with _db.engine.begin() as conn:
            if IS_POSTGRES:
                conn.exec_driver_sql(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY CASCADE")
            else:
                for table in tables:
                    conn.exec_driver_sql(f"DELETE FROM {table}")  # noqa: S608 - our own names
        versions.bump_all()  # the rows went behind the session's back


@pytest.fixture
def db(app):
    return _db


@pytest.fixture
def client(app):
    return app.test_client()


class QueryCounter:
    def __init__(self) -> None:
        self.statements: list[str] = []
        # begin, commit and rollback, in order: with the statements, the round
        # trips (BEGIN is a statement of its own on both drivers).
        self.transactions: list[str] = []

    @property
    def count(self) -> int:
        return len(self.statements)

    def __call__(self, conn, cursor, statement, params, context, executemany):
        if not statement.lstrip().upper().startswith(("BEGIN", "SAVEPOINT", "RELEASE")):
            self.statements.append(statement)


@pytest.fixture
def count_queries(app):
    """Use as `with count_queries() as q: ...; q.count`."""
    from contextlib import contextmanager

    @contextmanager
    def counting():
        counter = QueryCounter()
        ends = {
            name: lambda *_args, name=name: counter.transactions.append(name)
            for name in ("begin", "commit", "rollback")
        }
        event.listen(_db.engine, "before_cursor_execute", counter)
        for name, listener in ends.items():
            event.listen(_db.engine, name, listener)
        try:
            yield counter
        finally:
            event.remove(_db.engine, "before_cursor_execute", counter)
            for name, listener in ends.items():
                event.remove(_db.engine, name, listener)

    return counting


class RoundTrips:
    """What reached the database server, from SQLAlchemy's engine and pool
    events: each statement (BEGIN included: app.db sends it itself), each
    COMMIT or ROLLBACK that had a transaction to end (the drivers send nothing
    otherwise), and each ping on a pool checkout (app.db marks it)."""

    def __init__(self) -> None:
        self.statements: list[str] = []
        self.commits = self.rollbacks = self.pings = 0

    @property
    def begins(self) -> int:
        return sum(s.lstrip().upper().startswith("BEGIN") for s in self.statements)

    @property
    def queries(self) -> list[str]:
        return [s for s in self.statements if not s.lstrip().upper().startswith("BEGIN")]

    @property
    def total(self) -> int:
        return len(self.statements) + self.commits + self.rollbacks + self.pings

    def summary(self) -> dict:
        return {
            "queries": len(self.queries),
            "begins": self.begins,
            "commits": self.commits,
            "rollbacks": self.rollbacks,
            "pings": self.pings,
        }


def _in_transaction(dbapi_connection) -> bool:
    if hasattr(dbapi_connection, "in_transaction"):  # sqlite3
        return dbapi_connection.in_transaction
    from psycopg.pq import TransactionStatus

    return dbapi_connection.info.transaction_status != TransactionStatus.IDLE


@pytest.fixture
def round_trips(app):
    """Use as `with round_trips() as trips: ...; trips.summary()`."""
    from contextlib import contextmanager

    @contextmanager
    def counting(engine=None):
        engine = engine or _db.engine
        trips = RoundTrips()

        def statement(_conn, _cursor, statement, *_args):
            trips.statements.append(statement)

        def commit(conn):
            trips.commits += _in_transaction(conn.connection.dbapi_connection)

        def rollback(conn):
            if not conn.invalidated:  # a dropped connection has nothing to end
                trips.rollbacks += _in_transaction(conn.connection.dbapi_connection)

        def reset(dbapi_connection, _record, _state):
            trips.rollbacks += _in_transaction(dbapi_connection)

        def checkout(_dbapi_connection, record, _proxy):
            trips.pings += bool(record.info.get("pinged"))

        listeners = [
            (engine, "before_cursor_execute", statement),
            (engine, "commit", commit),
            (engine, "rollback", rollback),
            (engine.pool, "reset", reset),
            (engine, "checkout", checkout),
        ]
        for target, name, fn in listeners:
            event.listen(target, name, fn)
        try:
            yield trips
        finally:
            for target, name, fn in listeners:
                event.remove(target, name, fn)

    return counting


def _snapshot(obj):
    """Detach a committed object: test requests share the test's app context
    (and session), and their rollbacks must not expire the test's objects."""
    _db.session.refresh(obj)
    _db.session.expunge(obj)
    _db.session.rollback()  # end the refresh's transaction: it holds SQLite's lock
    return obj


@pytest.fixture
def make_user(app):
    def make(username: str | None = None, *, admin: bool = False, password: str = PASSWORD):
        n = next(_counter)
        username = username or f"user{n}"
        user = create_user(username, f"{username.lower()}@example.com", password, is_admin=admin)
        _db.session.commit()
        return _snapshot(user)

    return make


@pytest.fixture
def login(client):
    """Tokens for a user, obtained through the API."""

    def do_login(user, password: str = PASSWORD) -> dict:
        response = client.post("/api/auth/login", json={"email": user.email, "password": password})
        assert response.status_code == 200, response.get_json()
        return response.get_json()

    return do_login


@pytest.fixture
def buyer(make_user, login):
    """A user and their access token."""
    user = make_user()
    return user, login(user)["access_token"]


@pytest.fixture
def user_token(make_user, login):
    return login(make_user())["access_token"]


@pytest.fixture
def admin_token(make_user, login):
    return login(make_user(admin=True))["access_token"]


@pytest.fixture
def make_product(app):
    def make(**fields) -> Product:
        n = next(_counter)
        values = {
            "name": f"Product {n}",
            "description": f"Description {n}",
            "price": Decimal("10.00"),
            "stock": 10,
            "category": "General",
            "image_url": f"https://example.com/{n}.jpg",
        }
        values.update(fields)
        values["price"] = Decimal(str(values["price"]))
        product = create_product(values)  # the service: its ledger starts too
        _db.session.commit()
        return _snapshot(product)

    return make


@pytest.fixture
def smtp_server(app):
    """A real SMTP server (aiosmtpd); the test app sends to it while the test runs."""
    from tests.smtp import SmtpServer

    server = SmtpServer().start()
    saved = {key: app.config[key] for key in server.config()}
    app.config.update(server.config())
    yield server
    app.config.update(saved)
    server.stop()


@pytest.fixture
def deliver_outbox(app):
    """Deliver every due outbox row now, in the test's process (as a worker would);
    returns how many rows were processed."""
    from app.tasks.runner import drain

    def deliver() -> int:
        _db.session.remove()
        try:
            return drain()
        finally:
            _db.session.remove()

    return deliver


@pytest.fixture
def own_redis():
    """A redis-server of this test's own, on a free port (never the shared one)."""
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("redis-server is not installed")
    port = free_port()
    process = subprocess.Popen(
        [binary, "--port", str(port), "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
    )
    url = f"redis://127.0.0.1:{port}/0"
    import redis

    deadline = time.monotonic() + 10
    while True:
        try:
            redis.Redis.from_url(url).ping()
            break
        except redis.RedisError:
            if time.monotonic() > deadline:
                process.kill()
                raise
            time.sleep(0.05)
    yield url, process
    if process.poll() is None:
        process.kill()
        process.wait()
