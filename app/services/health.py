"""Whether the service's dependencies answer."""

from __future__ import annotations

import ast
import functools
from pathlib import Path

from flask import current_app
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from app.extensions import db

MIGRATIONS = Path(__file__).resolve().parents[2] / "migrations" / "versions"
UPGRADE = "run `flask db upgrade`"


def database_ok() -> bool:
    """True if the database answers a trivial query (asked twice if the first
    try only found a pooled connection the database had dropped: a restart)."""
    for attempt in (1, 2):
        try:
            db.session.execute(text("SELECT 1"))
        except SQLAlchemyError as error:
            db.session.rollback()
            if attempt == 2 or not getattr(error, "connection_invalidated", False):
                return False
        else:
            return True
    return False


def redis_status() -> str:
    """`ok` if Redis (REDIS_URL) answers a PING within a quarter of a second,
    `unavailable` if not, `disabled` without REDIS_URL. A quarter, not the
    second it was: a Redis that accepts connections and answers nothing kept
    every health check a full second, the timeout of many balancers' checks
    (Kubernetes' default), which then took every instance out (found by
    review); a Redis next to the app answers a PING in well under 1 ms.
    Without Redis the app still serves correctly - rate limits fall back to
    per-process counters and revocations are recorded in the database - so
    it is degraded, not down."""
    url = current_app.config.get("REDIS_URL")
    if not url:
        return "disabled"
    client = current_app.extensions.get("shop_health_redis")
    if client is None:
        import redis

        client = redis.Redis.from_url(url, socket_connect_timeout=0.25, socket_timeout=0.25)
        current_app.extensions["shop_health_redis"] = client
    try:
        client.ping()
    except Exception:  # noqa: BLE001 - any failure means "not usable now"
        return "unavailable"
    return "ok"


@functools.cache
def code_revisions() -> tuple[frozenset[str], frozenset[str]]:
    """(every revision the code ships, its heads), read from
    migrations/versions as text: a web worker never imports Alembic (11.6 MB;
    app/__init__.py's init_migrations). Empty without the directory."""
    revisions: set[str] = set()
    parents: set[str] = set()
    for path in sorted(MIGRATIONS.glob("*.py")):
        values = {}
        for node in ast.parse(path.read_text(encoding="utf-8")).body:
            target = (
                node.targets[0] if isinstance(node, ast.Assign) else getattr(node, "target", None)
            )
            if isinstance(target, ast.Name) and target.id in ("revision", "down_revision"):
                values[target.id] = ast.literal_eval(node.value)
        if isinstance(values.get("revision"), str):
            revisions.add(values["revision"])
            down = values.get("down_revision")
            parents.update([down] if isinstance(down, str) else down or ())
    return frozenset(revisions), frozenset(revisions - parents)


def schema_problem() -> str | None:
    """Why the database's schema is behind the code (never migrated, or at an
    older revision than the code's head: a deploy whose `flask db upgrade` has
    not run yet), or None when it is at the head, or at a revision the code
    does not know (a newer release migrated it: a migration adds to the
    schema, so the older code still serves during a rolling deploy)."""
    revisions, heads = code_revisions()
    if not heads:
        return None
    try:
        current = set(db.session.execute(text("SELECT version_num FROM alembic_version")).scalars())
    except SQLAlchemyError:
        db.session.rollback()
        return f"the database has no tables yet: {UPGRADE} first"
    if current == heads or current - revisions:
        return None
    return (
        f"the database is at revision {', '.join(sorted(current)) or '(none)'}, older than the "
        f"code's {', '.join(sorted(heads))}: {UPGRADE} first"
    )
