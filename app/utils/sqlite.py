"""Make SQLite fit for a web server with several threads and processes."""

from __future__ import annotations

from flask import has_request_context, request
from sqlalchemy import Engine, event

READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def configure_sqlite(engine: Engine, busy_timeout_ms: int) -> None:
    """Foreign keys on, WAL, a busy timeout, and write transactions that take
    the write lock at BEGIN so concurrent writers queue instead of failing with
    "database is locked" when a reader tries to upgrade its lock."""

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection, _record):
        # Let SQLAlchemy's "begin" event below emit BEGIN itself (pysqlite's own
        # implicit BEGIN is deferred and cannot be made IMMEDIATE).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection):
        # Reads keep a deferred transaction (readers never wait for writers in
        # WAL); anything else - a write request, the CLI - locks up front.
        if has_request_context() and request.method in READ_METHODS:
            connection.exec_driver_sql("BEGIN")
        else:
            connection.exec_driver_sql("BEGIN IMMEDIATE")
