"""Alembic's entry point, run by `flask db ...`: the app's engine and models'
metadata, with the options `create_app` gives Flask-Migrate (batch mode for
SQLite, type comparison, the project's column types)."""

import logging
import time
from logging.config import fileConfig

from alembic import context
from flask import current_app

config = context.config
fileConfig(config.config_file_name, disable_existing_loggers=False)
logger = logging.getLogger("alembic.env")


def get_engine():
    return current_app.extensions["migrate"].db.engine


def get_engine_url():
    return get_engine().url.render_as_string(hide_password=False).replace("%", "%%")


config.set_main_option("sqlalchemy.url", get_engine_url())
target_db = current_app.extensions["migrate"].db


def get_metadata():
    return target_db.metadata


# PostgreSQL advisory lock key of `flask db upgrade`/`downgrade`/`stamp` ("shopdb").
MIGRATION_LOCK = 0x73686F706462


def one_run_at_a_time(connection):
    """Hold, until the run's commit, the database's migration lock: a second
    `flask db upgrade` (a deploy that runs it on every host) waits for the
    first, then reads the revision the first left and applies nothing. Two at
    once both started from the same revision and ran the same DDL: one died of
    a deadlock or a "relation already exists" (found by review). Polled with
    pg_try_advisory_xact_lock, so the wait (as long as the first run takes)
    never meets the lock timeout set below. SQLite needs none: the CLI's BEGIN IMMEDIATE
    queues the second run on the write lock."""
    if connection.dialect.name != "postgresql":
        return
    said = False
    while not connection.exec_driver_sql(
        f"SELECT pg_try_advisory_xact_lock({MIGRATION_LOCK})"
    ).scalar():
        if not said:
            logger.info("Waiting for another `flask db` run on this database to finish.")
            said = True
        time.sleep(0.2)


def statements_as_long_as_they_take(connection):
    """PostgreSQL: no statement timeout for the run, only a lock timeout of
    as long (DB_STATEMENT_TIMEOUT_MS, when it is not 0). A migration that rewrites a table
    (f38b4e6a8c12's search vector) took longer than the 30 s default on a
    catalog of 200,000 products and the upgrade failed, every release after
    it undeployable (found by review); a wait for a lock behind the live
    shop's transactions still fails, cleanly, instead of holding every
    request to that table behind it."""
    if connection.dialect.name != "postgresql":
        return
    timeout = int(current_app.config.get("DB_STATEMENT_TIMEOUT_MS") or 0)
    connection.exec_driver_sql("SET LOCAL statement_timeout = 0")
    if timeout:
        connection.exec_driver_sql(f"SET LOCAL lock_timeout = {timeout}")


def run_migrations_offline():
    """Emit the migrations as SQL (`flask db upgrade --sql`), with no database."""
    url = config.get_main_option("sqlalchemy.url")
    # "named": no paramstyle of the driver's, which wrote every % of a
    # migration's SQL twice (`translate(..., '!"#$%%&...')`; found by review).
    context.configure(
        url=url,
        target_metadata=get_metadata(),
        literal_binds=True,
        dialect_opts={"paramstyle": "named"},
    )

    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online():
    """Run the migrations on the app's database."""

    # `flask db migrate` with no model change writes no empty revision.
    def process_revision_directives(context, revision, directives):
        if getattr(config.cmd_opts, "autogenerate", False):
            script = directives[0]
            if script.upgrade_ops.is_empty():
                directives[:] = []
                logger.info("No changes in schema detected.")

    conf_args = current_app.extensions["migrate"].configure_args
    if conf_args.get("process_revision_directives") is None:
        conf_args["process_revision_directives"] = process_revision_directives

    applied = []  # the steps this run took (upgrade, downgrade or stamp)

    def on_version_apply(**step):
        applied.append(step)

    with get_engine().connect() as connection:
        sqlite = connection.dialect.name == "sqlite"
        if sqlite:
            # Batch mode rebuilds a table (copy, DROP, rename): with foreign
            # keys on, the DROP deleted every row that pointed at it (an
            # upgrade emptied order_items; found by review). Off for the run
            # (a no-op inside a transaction, so on the driver's connection,
            # before one begins), and checked before the commit instead.
            connection.connection.driver_connection.execute("PRAGMA foreign_keys=OFF")
        try:
            context.configure(
                connection=connection,
                target_metadata=get_metadata(),
                # SQLite's DDL is transactional, though Alembic's dialect says
                # not: one transaction for the run, so the foreign key check
                # below comes before its commit (each revision committed on
                # its own, and a check that failed left its rows behind;
                # found by review).
                **({"transactional_ddl": True} if sqlite else {}),
                **{**conf_args, "on_version_apply": on_version_apply},
            )

            with context.begin_transaction():
                statements_as_long_as_they_take(connection)
                one_run_at_a_time(connection)
                context.run_migrations()
                if sqlite:
                    broken = connection.exec_driver_sql("PRAGMA foreign_key_check").all()
                    if broken:
                        raise RuntimeError(f"rows left without their parent: {broken[:10]}")
        finally:
            if sqlite:
                connection.rollback()
                connection.connection.driver_connection.execute("PRAGMA foreign_keys=ON")

    if applied:
        # A migration writes behind the session's back: whatever the caches
        # kept (the catalog's answers and ETags, rankings, suggestions, the
        # accounts) may be from before it (found by review).
        from app.services import versions

        versions.bump_all()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
