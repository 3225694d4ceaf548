"""Small query helpers shared by the services."""

from __future__ import annotations

import math
from typing import Any

from sqlalchemy import Select, func, select
from sqlalchemy.dialects import postgresql, sqlite

from app.extensions import db


def upsert(model):
    """`INSERT ... ON CONFLICT` for the session's database (PostgreSQL or SQLite)."""
    dialect = db.session.get_bind().dialect.name
    return (postgresql.insert if dialect == "postgresql" else sqlite.insert)(model)


def paginate(stmt: Select, page: int, per_page: int) -> dict[str, Any]:
    """Run `stmt` as one page: one COUNT and one page query."""
    total = db.session.scalar(select(func.count()).select_from(stmt.order_by(None).subquery()))
    items = db.session.scalars(stmt.limit(per_page).offset((page - 1) * per_page)).all()
    return {
        "items": items,
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
