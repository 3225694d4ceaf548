"""Facets for the catalog's filter sidebar: counts over the current filters."""

from __future__ import annotations

import functools
from typing import Any

from sqlalchemy import Row, Select, String, bindparam, func

from app.db import read_connection
from app.models import Product
from app.services import search
from app.services.catalog import FILTERS, active_products, filter_values, search_matches

RATING_LEVELS = (4, 3, 2, 1)


@functools.lru_cache(maxsize=256)
def grouped(match: search.Match | None, names: tuple[str, ...]) -> Select:
    """One row per category as the category filter tells them apart (by
    the database's lower(): "Audio" and "AUDIO" are one, shown as the
    first spelling in sort order), with the counts the facets add up over
    the live products that pass the filters `names` and the match; its last
    column is the requested category lower-cased the same way (the
    parameter `wanted`, NULL for none). Built once per shape of query and
    set of filters (building it cost more than running it); all of it is
    read from the covering index ix_products_facets."""
    stmt = active_products().where(*(FILTERS[name](bindparam(name)) for name in names))
    if match is not None:
        stmt = match(stmt)
    folded = func.lower(Product.category)
    return stmt.with_only_columns(
        func.min(Product.category),
        folded,
        func.count(),
        func.min(Product.price),
        func.max(Product.price),
        func.count().filter(Product.stock > 0),
        *(func.count().filter(Product.rating_average >= level) for level in RATING_LEVELS),
        func.lower(bindparam("wanted", type_=String)),
    ).group_by(folded)


def _summary(groups: list[Row]) -> dict[str, Any]:
    lows = [g[3] for g in groups if g[3] is not None]
    highs = [g[4] for g in groups if g[4] is not None]
    return {
        "total": sum(g[2] for g in groups),
        "price": {"min": min(lows, default=None), "max": max(highs, default=None)},
        "in_stock": sum(g[5] for g in groups),
        "ratings": [
            {"min_rating": level, "count": sum(g[6 + i] or 0 for g in groups)}
            for i, level in enumerate(RATING_LEVELS)
        ],
    }


def facets(args: dict[str, Any]) -> dict[str, Any]:
    """Totals, price range, stock and rating counts over the products the list
    would show, and category counts over the same filters but the category
    itself. One grouped query answers both: the category filter selects
    groups. (A search that falls back to fuzzy matching runs it twice.)"""
    wanted = args.get("category")
    values = {**filter_values(args, by_category=False), "wanted": wanted}
    names = tuple(name for name in values if name != "wanted")
    connection = read_connection()
    for match in search_matches(args.get("q")):
        params = {**values, **match.params} if match else values
        groups = connection.execute(grouped(match, names), params).all()
        chosen = [g for g in groups if wanted is None or g[1] == g[-1]]
        summary = _summary(chosen)
        if summary["total"]:
            break
    categories = [{"value": g[0], "count": g[2]} for g in groups if g[0] is not None]
    summary["categories"] = sorted(categories, key=lambda c: (-c["count"], c["value"]))
    return summary
