"""Alembic's entry point, run by `flask db ...`: the app's engine and models'
metadata, with the options `create_app` gives Flask-Migrate (batch mode for
SQLite, type comparison, the project's column types)."""

import logging
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
