"""Catalog search: full-text matching with relevance, and name suggestions.

One small interface, `SearchBackend`, with an implementation per engine:
SQLite's FTS5 (`sqlite.py`) and PostgreSQL's text search with pg_trgm
(`postgres.py`). The catalog service composes a backend's `Match` with its own
filters, pagination and facets in one SQL statement; docs/ARCHITECTURE.md
says how an Elasticsearch/OpenSearch backend would implement the same
interface. The index itself is kept by the database (triggers, a generated
column), in the same transaction as every product write.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from flask import Flask, current_app
from sqlalchemy import ColumnElement, Engine, Select

from app.extensions import db
from app.services.search import rankings, suggestions
from app.services.search.query import ParsedQuery, parse

__all__ = ["Match", "ParsedQuery", "SearchBackend", "backend", "init_search", "parse", "suggest"]

SUGGEST_LIMIT = 10
# Suggestions are deduplicated in Python over a few times the rows asked for:
# a GROUP BY name in SQL sorts every match twice (twice the time on SQLite).
# Only when those rows hold fewer distinct names than asked for, and more
# may follow, does the grouped query run (`distinct_names`).
DUPLICATES_SLACK = 3


# Relevance tiers (a match in the name, in the category, in the description
# only), each this far apart in a backend's score, whose engine's own score
# orders each tier and never spans this much.
TIER_STEP = 1_000_000


def distinct(names: Iterable[str], limit: int) -> list[str]:
    """The first `limit` distinct names, in order."""
    return list(dict.fromkeys(names))[:limit]


def distinct_names(
    connection, rows_query, grouped_query, params: dict[str, Any], limit: int
) -> list[str]:
    """Up to `limit` distinct names, best first: from `rows_query` (every
    matching row, LIMIT :n) over `limit * DUPLICATES_SLACK` rows, or, when
    duplicates filled those rows (31 products named "Lamp" hid "Lamp Post",
    found by review), from `grouped_query` (one row per name, LIMIT :n)."""
    fetched = limit * DUPLICATES_SLACK
    rows = connection.execute(rows_query, {**params, "n": fetched}).scalars().all()
    names = distinct(rows, limit)
    if len(names) < limit and len(rows) == fetched:
        grouped = connection.execute(grouped_query, {**params, "n": limit})
        names = list(grouped.scalars())
    return names


def starts_pattern(prefix: str) -> str:
    """A LIKE pattern (ESCAPE '\\') for text starting with `prefix`, literally."""
    escaped = prefix.strip().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return escaped + "%"


@dataclass(frozen=True)
class Match:
    """How a parsed query narrows a `select(Product)`: `apply` adds the
    match (a WHERE, or a join to the engine's hits), `order` ranks it, best
    first (ties are broken by the caller). Both name bind parameters whose
    values are `params`: run the statement with them.

    A backend builds one Match per `shape` of query (how many words, phrases,
    ...) and gives each query its values (`given`). Matches are equal, and
    hash, by their shape alone, so a statement built from one can be kept
    (`functools.lru_cache`) and run with any query of that shape: building a
    search's statements costs more than running them."""

    shape: tuple
    apply: Callable[[Select], Select] = field(compare=False)
    order: tuple[ColumnElement, ...] = field(compare=False)
    params: Mapping[str, Any] = field(default_factory=dict, compare=False)
    # Optional, for a search with no other filter, by relevance: the engine's
    # own best page - `id` and `score` of the live matches, best first
    # (score, then id), LIMIT :limit OFFSET :offset - and the number of live
    # matches, each without reading whole products, so only the page's
    # products are read and only ids and scores are sorted.
    top: Select | None = field(default=None, compare=False)
    count: Select | None = field(default=None, compare=False)
    # Optional: how to narrow a statement that is ordered by `order`, where
    # that needs more than `apply` (SQLite: the join to the hits with their
    # scores; `apply` joins their ids alone, so the facets and the other sorts
    # do not score every match).
    ranked_apply: Callable[[Select], Select] | None = field(default=None, compare=False)
    # Optional: the query's words alone (its phrases as words, without its
    # exclusions), for `catalog.retry_fuzzily`: words that match are no typo.
    words: Match | None = field(default=None, compare=False)

    def __call__(self, stmt: Select) -> Select:
        return self.apply(stmt)

    def ranked(self, stmt: Select) -> Select:
        """`stmt` narrowed for ordering by `order`."""
        return (self.ranked_apply or self.apply)(stmt)

    def given(self, **params: Any) -> Match:
        """This shape of match with these values."""
        return replace(self, params=params)


class SearchBackend(Protocol):
    """What the catalog needs from a search engine."""

    name: str

    def match(self, query: ParsedQuery) -> Match:
        """Every positive term matches (the prefix as a prefix), no excluded
        one does; ranked by relevance, a name match above a description one."""

    def fuzzy(self, query: ParsedQuery) -> Match | None:
        """Spelling-tolerant matching, tried when `match` finds nothing; None
        when the engine has none."""

    def suggest(self, prefix: str, limit: int = SUGGEST_LIMIT) -> list[str]:
        """Up to `limit` live product names with a word starting with
        `prefix`, best first."""

    def prepare(self, engine: Engine) -> None:
        """Set up the engine's connections as the backend's queries need."""


def init_search(app: Flask) -> None:
    """Pick the backend for the app's database, once, and let it prepare the
    engine's connections."""
    with app.app_context():
        engine = db.engine
    if engine.dialect.name == "postgresql":
        from app.services.search.postgres import PostgresSearch

        chosen: SearchBackend = PostgresSearch()
    else:
        from app.services.search.sqlite import SqliteSearch

        chosen = SqliteSearch()
    chosen.prepare(engine)
    app.extensions["search"] = chosen
    suggestions.init_suggestions(app)
    rankings.init_rankings(app)


def backend() -> SearchBackend:
    """The backend for the app's database."""
    return current_app.extensions["search"]


def suggest(prefix: str, limit: int = SUGGEST_LIMIT) -> list[str]:
    """Up to `limit` live product names with a word starting with `prefix`,
    best first: from the in-memory name index (`suggestions`), or from the
    backend when the index is off or unavailable."""
    index = suggestions.current()
    if index is not None:
        return index.suggest(prefix, limit)
    return backend().suggest(prefix, limit)
