"""Database plumbing: the unit of work, engine set-up (transactions only where
a request may write, pings only where a dead connection could not be retried,
SQLite tuning), and small query helpers (upsert, pagination, vacuum) shared by
the services."""

from __future__ import annotations

import atexit
import math
import re
import sqlite3
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from typing import Any

from flask import Flask, current_app, g, has_request_context, request
from sqlalchemy import Connection, Engine, QueuePool, Select, event, exc, func, select, true
from sqlalchemy.dialects import postgresql, sqlite

from app.extensions import db

READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
# connection.info key: this SQLite transaction began deferred and takes the
# write lock at its first write (see `defer_write_lock`).
LOCK_AT_FIRST_WRITE = "sqlite_lock_at_first_write"
# pool record info keys (`begin_immediate`): the SQLite connection's busy
# timeout, its process's writer turn (a lock), whether it holds the turn now.
BUSY_TIMEOUT_MS = "sqlite_busy_timeout_ms"
WRITER_TURN = "sqlite_writer_turn"
HOLDS_TURN = "sqlite_holds_writer_turn"
# g key: a read request's own connection (`read_connection`).
READ_CONNECTION = "read_connection"
WRITE_STATEMENT = re.compile(r"\s*(?:INSERT|UPDATE|DELETE|REPLACE)\b", re.IGNORECASE)


@contextmanager
def unit_of_work() -> Iterator[None]:
    """One transaction: commit when the block (or the decorated function) ends
    normally, roll back when it raises. The one place that commits: views
    run inside one per request (`app.web.blueprint.Blueprint`); use it as
    `@unit_of_work()` on a CLI command or background task, inside an app
    context. Not nested: the session's earlier, uncommitted work joins it."""
    try:
        yield
        if db.session.registry.has():  # a request that never touched the database
            db.session.commit()  # (a catalog cache hit) has nothing to end
    except BaseException:
        if db.session.registry.has():
            db.session.rollback()
        raise


def in_read_request() -> bool:
    """Whether this runs for a GET, HEAD or OPTIONS request (which the API
    answers without writing anything that must be undone)."""
    return has_request_context() and request.method in READ_METHODS


def read_connection() -> Connection:
    """The connection a Core read (a catalog page, a cart, an order) runs on.
    In a read request, the thread's own from the engine (`Held`),
    for the request: its statements run on their own anyway
    (`begin_only_where_writes_may_happen`), and the session's transaction
    bookkeeping around one query - beginning on first use, the commit, the
    removal - cost 200-340 us of a 1-4 ms read here (SQLite and PostgreSQL
    alike, 4,000 alternating requests). The session's when the request has
    begun one already (a user read on an accounts cache miss), and anywhere
    else (a write request, the CLI, a task), so the read sees the
    transaction's own flushed writes."""
    if not in_read_request():
        return db.session.connection()
    if db.session.registry.has() and db.session().in_transaction():
        return db.session.connection()  # already paid for: one connection, not two
    connection = g.get(READ_CONNECTION)
    if connection is None or connection.closed:
        connection = _held_connection()
        setattr(g, READ_CONNECTION, connection)
    return connection


# A thread's read connection stays checked out between its read requests
# (`Held`): taking one from the pool and giving it back (SQLAlchemy's
# Connection, the pool's checkout and checkin events, the reset) cost 7-13 %
# of a cart, order, list or search read (in-process, 3,000 alternating
# requests: PostgreSQL order 2,160 -> 1,964 us, cart 2,250 -> 2,017; SQLite
# cart 934 -> 808, search 1,696 -> 1,504). A thread holds at most one
# connection still: a write request gives its read connection back first
# (`_let_go_before_writes`), and one is kept only while the pool has room for
# others (`_may_keep`).
class Held:
    """The thread's kept read connection, given back to its pool when the
    thread ends (its thread-local storage goes) or another replaces it."""

    __slots__ = ("connection", "pool", "since")

    def __init__(self, connection: Connection) -> None:
        self.connection, self.pool, self.since = connection, connection.engine.pool, 0.0

    def let_go(self) -> None:
        connection, self.connection = self.connection, None
        if connection is None or connection.closed:
            return
        if connection.engine.pool is not self.pool:
            # The engine was disposed meanwhile: its old pool would only drop
            # the connection, unclosed.
            connection.invalidate()
        connection.close()

    def __del__(self) -> None:
        if sys.is_finalizing():
            return  # the process ends: so do its connections
        with suppress(Exception):
            self.let_go()


_thread = threading.local()


def _held() -> Held | None:
    return getattr(_thread, "held", None)


def _held_connection() -> Connection:
    engine = db.engine
    held = _held()
    if held is not None and not _still_good(held, engine):
        _let_go()
        held = None
    if held is None:
        held = _thread.held = Held(engine.connect())
    return held.connection


def _still_good(held: Held, engine: Engine) -> bool:
    """Whether the kept connection can serve this read: open, from this app's
    engine's current pool, and (PostgreSQL) answering a ping when it sat
    unused for DB_PING_IDLE_SECONDS, as `ping_when_it_matters` checks a pooled
    one. A connection that died sooner fails its statement, and the read
    runs again on a new one (`run_in_unit_of_work`)."""
    connection = held.connection
    if connection.closed or connection.invalidated or held.pool is not engine.pool:
        return False
    if _past_its_time(connection, engine.pool):
        return False
    if engine.dialect.name == "sqlite":
        return True
    if time.monotonic() - held.since < current_app.config["DB_PING_IDLE_SECONDS"]:
        return True
    try:
        engine.dialect.do_ping(connection.connection.dbapi_connection)
    except engine.dialect.loaded_dbapi.Error as error:
        # As a failed checkout ping does (`ping_when_it_matters`): a restart
        # ends every connection, so the pool replaces all of them.
        engine.pool._invalidate(connection.connection, error)
        return False
    return True


def _past_its_time(connection: Connection, pool) -> bool:
    """What the pool checks at each checkout, which a kept connection skips:
    it was made before the pool was last invalidated (a disconnect found on
    any connection: a restart ends them all; the pool invalidates itself
    only for a connection newer than its last invalidation), or it is older
    than `pool_recycle`."""
    record = connection.connection._connection_record
    if record is None:
        return True
    started = record.starttime
    if started <= pool._invalidate_time:
        return True
    return pool._recycle > -1 and time.time() - started > pool._recycle


def _may_keep(connection: Connection) -> bool:
    """Keep a read connection for the thread's next read only while the pool
    has room for the other threads (a pool of one never keeps one) and it
    ended its work cleanly."""
    if connection.closed or connection.invalidated:
        return False
    pool = connection.engine.pool
    return isinstance(pool, QueuePool) and pool.checkedout() < pool.size()


def _let_go() -> None:
    held = _held()
    _thread.held = None
    if held is not None:
        held.let_go()


atexit.register(_let_go)  # the main thread's, at a clean exit


@event.listens_for(db.session, "do_orm_execute")
def _session_before_its_connection(orm_execute_state) -> None:
    """The session is about to take a connection (its first statement) in a
    read request, e.g. to read the token's user on an accounts cache miss:
    the thread's kept read connection goes back first, so the thread holds
    one connection, not two (a pool of two with two threads ran out; found
    by review). The request's reads then run on the session's
    (`read_connection`)."""
    if not orm_execute_state.session.in_transaction() and in_read_request():
        release_read_connection()
        _let_go()


def _let_go_before_writes() -> None:
    if request.method not in READ_METHODS:
        _let_go()


def release_read_connection() -> None:
    """Give back the read request's own connection (`read_connection`), before
    the session takes one to write: a request holds one connection, not two."""
    connection = g.pop(READ_CONNECTION, None)
    if connection is None:
        return
    held = _held()
    if held is not None and held.connection is connection:
        _let_go()
    else:
        connection.close()


def _end_read_connection() -> None:
    """At a request's end: its read connection ends its transaction (no
    round trip: the driver has none open) and stays the thread's, or goes
    back to the pool."""
    connection, held = g.get(READ_CONNECTION), _held()
    if connection is not None and held is not None and held.connection is connection:
        with suppress(exc.DBAPIError):  # invalidated by now: given back below
            connection.rollback()
        if _may_keep(connection):
            g.pop(READ_CONNECTION)
            held.since = time.monotonic()
            return
    release_read_connection()


def run_in_unit_of_work(view: Callable, *args: Any, **kwargs: Any) -> Any:
    """`view(*args, **kwargs)` in a unit of work: how every API view runs
    (`app.web.blueprint.Blueprint`). A read request whose connection turns out
    to be dead (the database restarted, or dropped it while it sat in the
    pool: reads skip the ping, see `ping_when_it_matters`) runs once more on a
    new connection; it had changed nothing, so the user sees only the answer."""
    try:
        with unit_of_work():
            return view(*args, **kwargs)
    except exc.DBAPIError as error:
        if not (error.connection_invalidated and in_read_request()):
            raise
    db.session.remove()
    release_read_connection()
    with unit_of_work():
        return view(*args, **kwargs)


def defer_write_lock(view: Callable) -> Callable:
    """Mark a write view whose reads need not hold SQLite's write lock: its
    transaction takes the lock (BEGIN IMMEDIATE) at its first write statement,
    and the statements before it (the token's user, ...) each run on their
    own while other requests write. What it read before comes from an earlier
    snapshot, so its writes must decide by their own guards (a WHERE, a
    RETURNING, a unique key), as checkout's do; no SAVEPOINT before the first
    write. Nothing changes on PostgreSQL, whose writers lock rows, not the
    database."""
    view.defer_write_lock = True
    return view


def _defers_write_lock() -> bool:
    view = current_app.view_functions.get(request.endpoint)
    return getattr(view, "defer_write_lock", False)


def init_db(app: Flask) -> None:
    """Bind `db` to the app; tune the engine for a web server (SQLite: WAL and
    lock order; PostgreSQL: bounded waits); begin transactions and ping
    connections only where they matter."""
    options = dict(app.config["SQLALCHEMY_ENGINE_OPTIONS"])
    options.pop("pool_pre_ping", None)  # pings are `ping_when_it_matters`'s
    if app.config["SQLALCHEMY_DATABASE_URI"].startswith("postgresql"):
        options = postgres_engine_options({**app.config, "SQLALCHEMY_ENGINE_OPTIONS": options})
    app.config["SQLALCHEMY_ENGINE_OPTIONS"] = options
    db.init_app(app)
    # One session per request, even where the app context outlives the request
    # (tests, CLI): a request never inherits another's open transaction.
    app.teardown_request(_end_session)
    app.before_request(_let_go_before_writes)
    with app.app_context():
        if db.engine.dialect.name == "sqlite":
            configure_sqlite(db.engine, app.config["SQLITE_BUSY_TIMEOUT_MS"])
        else:
            ping_when_it_matters(db.engine, app.config["DB_PING_IDLE_SECONDS"])
        begin_only_where_writes_may_happen(db.engine)


def _end_session(_exc: BaseException | None) -> None:
    _end_read_connection()
    if db.session.registry.has():  # not for a request that never opened one
        db.session.remove()


def postgres_engine_options(config) -> dict[str, Any]:
    """Bounded waits on PostgreSQL: connecting, each statement (lock waits
    included) and a free connection from the pool, so a server that accepts
    but never answers costs a request seconds, not every worker thread minutes.
    The driver is in autocommit mode: `begin_only_where_writes_may_happen`
    sends BEGIN itself."""
    options = dict(config["SQLALCHEMY_ENGINE_OPTIONS"])
    connect_args = dict(options.get("connect_args", {}))
    connect_args.setdefault("connect_timeout", config["DB_CONNECT_TIMEOUT"])
    # A server that vanishes (a partition, a frozen host) behind a pooled
    # connection: TCP keepalives notice an idle one, and tcp_user_timeout
    # ends a wait on data the server never acknowledged, in seconds instead
    # of the kernel's ~15 minutes of retransmissions (found by review).
    connect_args.setdefault("keepalives", 1)
    connect_args.setdefault("keepalives_idle", 30)
    connect_args.setdefault("keepalives_interval", 10)
    connect_args.setdefault("keepalives_count", 3)
    connect_args.setdefault("tcp_user_timeout", 30_000)
    if config["DB_STATEMENT_TIMEOUT_MS"]:
        timeout = int(config["DB_STATEMENT_TIMEOUT_MS"])
        connect_args.setdefault("options", f"-c statement_timeout={timeout}")
    options["connect_args"] = connect_args
    options.setdefault("pool_timeout", config["DB_POOL_TIMEOUT"])
    options["isolation_level"] = "AUTOCOMMIT"
    return options


def begin_only_where_writes_may_happen(engine: Engine) -> None:
    """BEGIN (on SQLite BEGIN IMMEDIATE) for every transaction but a read
    request's. A GET's statements each run on their own (autocommit): on
    PostgreSQL that saves the BEGIN and COMMIT round trips (READ COMMITTED
    gave each statement its own snapshot anyway); nothing it does needs undoing
    (the one write a read makes, a first cart, is a single idempotent
    INSERT). Writes, the CLI and background work keep a real transaction;
    SQLite's BEGIN IMMEDIATE takes the write lock up front so concurrent
    writers queue instead of failing with "database is locked" when a reader
    tries to upgrade its lock. The drivers themselves never begin (psycopg in
    autocommit mode, pysqlite with isolation_level None), so what is sent is
    what this decides; a connection asked for AUTOCOMMIT (VACUUM) gets none."""
    sqlite = engine.dialect.name == "sqlite"

    @event.listens_for(engine, "begin")
    def _on_begin(connection):
        # SQLite: a view marked `defer_write_lock` begins at its first write
        # statement instead (`configure_sqlite`'s `_lock_at_first_write`).
        deferred = sqlite and has_request_context() and not in_read_request()
        deferred = deferred and _defers_write_lock()
        connection.info[LOCK_AT_FIRST_WRITE] = deferred
        if in_read_request() or deferred:
            return
        if connection.get_execution_options().get("isolation_level") == "AUTOCOMMIT":
            return
        if sqlite:
            pooled = connection.connection
            begin_immediate(pooled.dbapi_connection, connection.exec_driver_sql, pooled.info)
        else:
            connection.exec_driver_sql("BEGIN")


def ping_when_it_matters(engine: Engine, idle_seconds: float) -> None:
    """Check a pooled connection (a `SELECT 1` round trip) when it is taken
    for work that could not simply run again if the connection were dead - a
    write request, the CLI, a background task - or for a read after it sat
    unused for `idle_seconds` (DB_PING_IDLE_SECONDS). A read on a connection
    that died meanwhile runs again (`run_in_unit_of_work`). A failed ping
    marks every pooled connection stale (a restart ends them all) and the pool
    connects anew. `record.info["pinged"]` tells whether this checkout pinged."""

    @event.listens_for(engine, "checkin")
    def _on_checkin(_dbapi_connection, record):
        record.info["idle_since"] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _on_checkout(dbapi_connection, record, _proxy):
        idle_since = record.info.get("idle_since")
        record.info["pinged"] = idle_since is not None and (
            not in_read_request() or time.monotonic() - idle_since >= idle_seconds
        )
        if record.info["pinged"]:
            try:
                engine.dialect.do_ping(dbapi_connection)
            except engine.dialect.loaded_dbapi.Error as error:
                raise exc.InvalidatePoolError(f"ping failed: {error}") from error


def configure_sqlite(engine: Engine, busy_timeout_ms: int) -> None:
    """Foreign keys on, WAL, a busy timeout; transactions are begun by
    `begin_only_where_writes_may_happen`. A database file has no server that
    drops idle connections: no pings."""
    turn = threading.Lock()  # this process's writers, one at a time (`begin_immediate`)

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection, record):
        # Let the "begin" listener emit BEGIN itself (pysqlite's own implicit
        # BEGIN is deferred and cannot be made IMMEDIATE).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
        cursor.close()
        record.info[BUSY_TIMEOUT_MS] = int(busy_timeout_ms)
        record.info[WRITER_TURN] = turn

    # The turn ends with the transaction (the events come just before the
    # COMMIT or ROLLBACK itself: the next writer's BEGIN polls for the
    # moment between), or when the connection goes back to the pool or dies.
    @event.listens_for(engine, "commit")
    @event.listens_for(engine, "rollback")
    def _end_turn(connection):
        if not connection.invalidated:
            end_writer_turn(connection.connection.info)

    @event.listens_for(engine, "checkin")
    @event.listens_for(engine, "invalidate")
    def _end_turn_of_record(_dbapi_connection, record, *_args):
        end_writer_turn(record.info)

    @event.listens_for(engine, "before_cursor_execute")
    def _lock_at_first_write(connection, cursor, statement, *_args):
        if connection.info.get(LOCK_AT_FIRST_WRITE) and WRITE_STATEMENT.match(statement):
            if connection.in_nested_transaction():  # SAVEPOINT had begun a deferred one
                raise RuntimeError("a deferred write lock is taken before any savepoint")
            connection.info[LOCK_AT_FIRST_WRITE] = False
            raw = cursor.connection
            begin_immediate(raw, raw.execute, connection.connection.info)


def begin_immediate(dbapi_connection, execute: Callable[[str], Any], info: dict) -> None:
    """BEGIN IMMEDIATE (SQLite's write lock) through `execute`, tried again
    every 0.05-1 ms while another writer holds the lock, up to the
    connection's busy timeout (`info`: its pool record's), then SQLite's own
    "database is locked" error.
    SQLite's busy handler sleeps 1, 2, 5, 10, ... up to 100 ms between tries,
    so a writer that just missed the lock slept on long after it was free:
    orders placed by 16 clients at once ran at 0.04 of hello-world, p99 957 ms.
    Only the BEGIN polls this way (the handler is off for it); every other
    statement keeps the busy timeout. Within a process, writers first take
    turns on a lock (`WRITER_TURN`): at most one thread per process polls, the
    others sleep until the turn is theirs."""
    timeout_ms = info.get(BUSY_TIMEOUT_MS, 0)
    if not timeout_ms:
        execute("BEGIN IMMEDIATE")
        return
    deadline = time.monotonic() + timeout_ms / 1000
    turn = info.get(WRITER_TURN)
    if turn is not None and not info.get(HOLDS_TURN):
        if not turn.acquire(timeout=timeout_ms / 1000):
            raise sqlite3.OperationalError("database is locked")
        info[HOLDS_TURN] = True
    pause = 0.00005
    dbapi_connection.execute("PRAGMA busy_timeout=0")
    try:
        while True:
            try:
                execute("BEGIN IMMEDIATE")
                return
            except (sqlite3.OperationalError, exc.OperationalError) as error:
                if "locked" not in str(error) or time.monotonic() >= deadline:
                    raise
            time.sleep(pause)
            pause = min(pause * 2, 0.001)
    except BaseException:
        end_writer_turn(info)
        raise
    finally:
        dbapi_connection.execute(f"PRAGMA busy_timeout={timeout_ms}")


def end_writer_turn(info: dict) -> None:
    """Let this process's next writer try for SQLite's write lock."""
    if info.pop(HOLDS_TURN, False):
        info[WRITER_TURN].release()


def upsert(model):
    """`INSERT ... ON CONFLICT` for the session's database (PostgreSQL or SQLite)."""
    dialect = db.session.get_bind().dialect.name
    return (postgresql.insert if dialect == "postgresql" else sqlite.insert)(model)


def count_rows(stmt: Select) -> int:
    """How many rows `stmt` selects (one COUNT query)."""
    return db.session.scalar(select(func.count()).select_from(stmt.order_by(None).subquery()))


def paginate(stmt: Select, page: int, per_page: int) -> dict[str, Any]:
    """Run `stmt` as one page, its total counted in the page's own statement
    (a one-row table joined in): a read request runs each statement on its
    own, and a write committed between a COUNT and the page's query answered
    a page its total contradicted (`"total": 1` with no item; found by
    review). A page past the end (no row) counts on its own."""
    offset = (page - 1) * per_page
    counted = select(func.count()).select_from(stmt.order_by(None).subquery()).subquery("total")
    rows = db.session.execute(
        stmt.add_columns(counted.c[0]).join(counted, true()).limit(per_page).offset(offset)
    ).all()
    total = rows[0][-1] if rows else (count_rows(stmt) if offset else 0)
    return {
        "items": [row[0] for row in rows],
        "page": page,
        "per_page": per_page,
        "total": total,
        "pages": math.ceil(total / per_page),
    }


def vacuum_analyze(*tables: str) -> None:
    """VACUUM ANALYZE after a bulk write, on PostgreSQL (outside any transaction,
    as VACUUM must be); elsewhere nothing. No table named: the whole database."""
    if db.engine.dialect.name != "postgresql":
        return
    with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        connection.exec_driver_sql(f"VACUUM ANALYZE {', '.join(tables)}".rstrip())
