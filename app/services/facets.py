"""Facets for the catalog's filter sidebar: counts over the current filters."""

from __future__ import annotations

from typing import Any

from sqlalchemy import ColumnElement, Select, func

from app.extensions import db
from app.models import Product
from app.services.catalog import filtered, search_matches

RATING_LEVELS = (4, 3, 2, 1)


def _rating_average() -> ColumnElement | None:
    """The products' average rating column, once reviews give them one."""
    return Product.__table__.c.get("rating_average")


def _summary(stmt: Select) -> dict[str, Any]:
    average = _rating_average()
    ratings = [
        func.count().filter(average >= level) if average is not None else func.count() * 0
        for level in RATING_LEVELS
    ]
    row = db.session.execute(
        stmt.with_only_columns(
            func.count(),
            func.min(Product.price),
            func.max(Product.price),
            func.count().filter(Product.stock > 0),
            *ratings,
        ).order_by(None)
    ).one()
    total, low, high, in_stock, *rated = row
    return {
        "total": total,
        "price": {"min": low, "max": high},
        "in_stock": in_stock,
        "ratings": [
            {"min_rating": level, "count": count or 0}
            for level, count in zip(RATING_LEVELS, rated, strict=True)
        ],
    }


def _categories(stmt: Select) -> list[dict[str, Any]]:
    count = func.count().label("count")
    rows = db.session.execute(
        stmt.with_only_columns(Product.category, count)
        .where(Product.category.is_not(None))
        .group_by(Product.category)
        .order_by(count.desc(), Product.category.asc())
    )
    return [{"value": value, "count": n} for value, n in rows]


def facets(args: dict[str, Any]) -> dict[str, Any]:
    """Totals, price range, stock and rating counts over the products the list
    would show, and category counts over the same filters but the category
    itself. Two queries (four when a search falls back to fuzzy matching)."""
    for match in search_matches(args.get("q")):
        apply = match or (lambda stmt: stmt)
        summary = _summary(apply(filtered(args)))
        if summary["total"]:
            break
    summary["categories"] = _categories(apply(filtered(args, by_category=False)))
    return summary
