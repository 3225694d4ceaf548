"""The product catalog: listing, admin writes, soft delete."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from flask import current_app
from sqlalchemy import Select, delete, func, select

from app.db import paginate
from app.errors import NotFound
from app.extensions import db
from app.models import CartItem, Product, User
from app.models.types import utcnow
from app.services import inventory, search

SORT_COLUMNS = {"name": Product.name, "price": Product.price, "created_at": Product.created_at}
# Unrated products (a NULL average) last either way; each order is one that an
# index of the live catalog walks (see Product's indexes and migration d17a5e0c9b21).
RATING_SORTS = {
    "rating": (Product.rating_average.asc().nulls_last(), Product.id.asc()),
    "-rating": (Product.rating_average.desc().nulls_last(), Product.id.desc()),
}


def active_products():
    return select(Product).where(Product.deleted_at.is_(None))


def filtered(args: dict[str, Any], *, by_category: bool = True) -> Select:
    """The live products that pass the list's filters, search aside
    (`by_category=False`: all but the category filter, for its facet)."""
    stmt = active_products()
    if by_category and "category" in args:
        stmt = stmt.where(func.lower(Product.category) == args["category"].lower())
    if args.get("min_price") is not None:
        stmt = stmt.where(Product.price >= args["min_price"])
    if args.get("max_price") is not None:
        stmt = stmt.where(Product.price <= args["max_price"])
    if args.get("in_stock"):
        stmt = stmt.where(Product.stock > 0)
    if args.get("min_rating") is not None:
        stmt = stmt.where(Product.rating_average >= args["min_rating"])
    return stmt


def search_matches(q: str | None) -> Iterator[search.Match | None]:
    """The ways to apply `q`, to try in turn until one finds something: the
    full-text match, then the engine's spelling-tolerant one (if any). No
    `q`: no search at all."""
    if q is None:
        yield None
        return
    engine, query = search.backend(), search.parse(q)
    yield engine.match(query)
    fuzzy = engine.fuzzy(query) if query.terms else None
    if fuzzy is not None:
        yield fuzzy


def _sorted(stmt: Select, sort: str, match: search.Match | None) -> Select:
    if sort == "relevance":
        return stmt.order_by(*(match.order if match else ()), Product.id.asc())
    if sort in RATING_SORTS:
        return stmt.order_by(*RATING_SORTS[sort])
    column = SORT_COLUMNS[sort.lstrip("-")]
    if sort.startswith("-"):
        return stmt.order_by(column.desc(), Product.id.desc())
    return stmt.order_by(column.asc(), Product.id.asc())


def list_products(args: dict[str, Any]) -> dict[str, Any]:
    """One page of the catalog, filtered, searched and sorted as asked
    (by relevance by default when searching)."""
    sort = args.get("sort") or ("relevance" if "q" in args else "-created_at")
    for match in search_matches(args.get("q")):
        stmt = match(filtered(args)) if match else filtered(args)
        page = paginate(_sorted(stmt, sort, match), args["page"], args["per_page"])
        if page["total"]:
            break
    return page


def get_product(product_id: int) -> Product:
    product = db.session.get(Product, product_id)
    if product is None or product.deleted_at is not None:
        raise NotFound("Product not found")
    return product


def create_product(data: dict[str, Any], actor: User | None = None) -> Product:
    """A new product, its initial stock the first entry of its ledger."""
    data.setdefault("low_stock_threshold", current_app.config["LOW_STOCK_THRESHOLD"])
    product = Product(**data)
    db.session.add(product)
    db.session.flush()
    inventory.record_created(product, actor)
    return product


def update_product(product_id: int, data: dict[str, Any], actor: User) -> Product:
    """Change the given fields; a new `stock` is an adjustment of the difference."""
    product = get_product(product_id)
    stock = data.pop("stock", None)
    for field, value in data.items():
        setattr(product, field, value)
    db.session.flush()
    if stock is not None:
        inventory.set_stock(product, stock, actor)
    return product


def delete_product(product_id: int) -> None:
    """Hide the product and take it out of every cart; orders keep their copies."""
    product = get_product(product_id)
    product.deleted_at = utcnow()
    db.session.execute(delete(CartItem).where(CartItem.product_id == product.id))
