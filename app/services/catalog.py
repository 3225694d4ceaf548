"""The product catalog: listing, admin writes, soft delete."""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Callable, Iterator, Mapping
from dataclasses import replace
from typing import Any, NamedTuple

from flask import current_app
from sqlalchemy import (
    ARRAY,
    BindParameter,
    ColumnElement,
    Integer,
    Select,
    String,
    any_,
    bindparam,
    cast,
    column,
    delete,
    func,
    literal_column,
    select,
    table,
    true,
)
from sqlalchemy.sql.util import ClauseAdapter

from app.db import read_connection
from app.errors import NotFound
from app.extensions import db
from app.models import CartItem, Product, User
from app.models.types import utcnow
from app.services import inventory, matches, search
from app.services.search import rankings

PAGE_ARGS = frozenset({"page", "per_page", "sort"})
PRODUCTS = Product.__table__
# What a public catalog read shows (ProductSchema's fields), read as plain rows:
# no ORM objects to build for a page (0.5 -> 0.25 ms for 20 products).
SHOWN = tuple(
    PRODUCTS.c[name]
    for name in (
        *("id", "name", "description", "price", "stock", "category", "image_url"),
        *("low_stock_threshold", "rating_average", "rating_count", "created_at", "updated_at"),
    )
)
# The list's filters: each adds one WHERE clause on a parameter of its name
# (`filter_values` gives the values).
FILTERS: dict[str, Callable[[BindParameter], ColumnElement[bool]]] = {
    # Both sides lower-cased by the database, the same way: Python's lower()
    # of the value missed stored categories the database folds otherwise
    # (PostgreSQL: a final sigma, a dotted capital I; SQLite folds ASCII only).
    "category": lambda value: func.lower(Product.category) == func.lower(value),
    "min_price": lambda value: Product.price >= value,
    "max_price": lambda value: Product.price <= value,
    "in_stock": lambda _value: Product.stock > 0,
    "min_rating": lambda value: Product.rating_average >= value,
}
SORT_COLUMNS = {"name": Product.name, "price": Product.price, "created_at": Product.created_at}
# Unrated products (a NULL average) last either way; each order is one that an
# index of the live catalog walks (see Product's indexes and migration d17a5e0c9b21).
RATING_SORTS = {
    "rating": (Product.rating_average.asc().nulls_last(), Product.id.asc()),
    "-rating": (Product.rating_average.desc().nulls_last(), Product.id.desc()),
}


def active_products():
    return select(Product).where(Product.deleted_at.is_(None))


def filter_values(args: dict[str, Any], *, by_category: bool = True) -> dict[str, Any]:
    """The filters `args` asks for (FILTERS' names, in their order) and the
    value of each one's parameter."""
    values: dict[str, Any] = {}
    if by_category and "category" in args:
        values["category"] = args["category"]
    for name in ("min_price", "max_price"):
        if args.get(name) is not None:
            values[name] = args[name]
    if args.get("in_stock"):
        values["in_stock"] = True
    if args.get("min_rating") is not None:
        values["min_rating"] = args["min_rating"]
    return values


def search_matches(q: str | None) -> Iterator[search.Match | None]:
    """The ways to apply `q`, to try in turn until one finds something: the
    full-text match, then the engine's spelling-tolerant one (if any). No
    `q`: no search at all. Whether the next is tried is `retry_fuzzily`'s
    to say."""
    if q is None:
        yield None
        return
    engine, query = search.backend(), search.parse(q)
    match = engine.match(query)
    fuzzy = engine.fuzzy(query) if query.terms else None
    if fuzzy is not None and (query.phrases or query.excluded):
        words = dict.fromkeys([*query.words, *(w for phrase in query.phrases for w in phrase)])
        alone = replace(query, words=tuple(words), phrases=(), excluded=())
        match = replace(match, words=engine.match(alone))
    yield match
    if fuzzy is not None:
        yield fuzzy


def retry_fuzzily(tries: list, attempt: int, found: bool, filtered: bool) -> bool:
    """Whether a search whose try number `attempt` (of `search_matches`'
    `tries`) found nothing tries the next, its spelling-tolerant match: only
    when there is one (no check on SQLite, which has none) and the words
    themselves match no live product. When they match some, only the other
    filters (a category, a price, in stock) left nothing, and
    `q=lamp&category=Office` listed "Clamp" while `q=lamp` listed no Office
    product at all (found by review). So do the query's exclusions and
    phrases (`Match.words`): `lamp -desk` listed "Clamp" where "Desk Lamp"
    was the only lamp, and `"lamp home"` "Desk Lamp" filed under Home
    (found by review)."""
    match = tries[attempt]
    if found or match is None or attempt + 1 == len(tries):
        return False
    words = match.words or match
    if not filtered and words is match:
        return True
    stmt = _any_match(words)
    return read_connection().execute(stmt, dict(words.params)).first() is None


@functools.lru_cache(maxsize=128)
def _any_match(match: search.Match) -> Select:
    """One live product `match` matches, if any (built once per shape)."""
    return match(select(Product.id).where(Product.deleted_at.is_(None))).limit(1)


def _order(sort: str, match: search.Match | None) -> tuple[ColumnElement, ...]:
    """The ORDER BY of `sort`, ties broken by id: one order for any page."""
    if sort == "relevance":
        return (*(match.order if match else ()), Product.id.asc())
    if sort in RATING_SORTS:
        return RATING_SORTS[sort]
    column = SORT_COLUMNS[sort.lstrip("-")]
    if sort.startswith("-"):
        return (column.desc(), Product.id.desc())
    return (column.asc(), Product.id.asc())


def _sorted(stmt: Select, sort: str, match: search.Match | None) -> Select:
    return stmt.order_by(*_order(sort, match))


# The unfiltered catalog's exact total without counting its rows. SQLite
# counts a whole table (and the small index of deleted rows) from b-tree pages
# without visiting a row: ~0.005 ms against ~0.3 ms for 10,000 live rows.
# PostgreSQL visits every row to count (~1 ms for 10,000), so triggers keep
# the number in a one-row table (migration e23b8c1d4f57).
LIVE_TOTAL = {
    "sqlite": (
        select(func.count()).select_from(PRODUCTS).scalar_subquery()
        - select(func.count())
        .select_from(PRODUCTS)
        .where(PRODUCTS.c.deleted_at.is_not(None))
        .scalar_subquery()
    ),
    "postgresql": select(column("live"))
    .select_from(table("products_live_count"))
    .scalar_subquery(),
}


class Listing(NamedTuple):
    """The statements of one list (filters, search, sort), their values as
    parameters, plus `limit` and `offset`."""

    page: Select  # one page of rows
    counted: Select  # the same with the total of every page as a last column
    count: Select  # the total alone
    # The engine's own best page (a search with no filter, by relevance):
    # its ids and total are kept under the text version (search.rankings).
    ranked: bool = False


def listing(
    stmt: Select, total: ColumnElement[int] | None = None, page: Select | None = None
) -> Listing:
    """The statements for `stmt`'s rows; `total`: how to count them, if not
    by counting `stmt`'s rows; `page`: how to read one page, if not as
    `stmt`'s rows with LIMIT :limit OFFSET :offset."""
    stmt = stmt.with_only_columns(*SHOWN)
    if total is None:
        total = select(func.count()).select_from(stmt.order_by(None).subquery()).scalar_subquery()
    if page is None:
        page = stmt.limit(bindparam("limit")).offset(bindparam("offset"))
    return Listing(page, page.add_columns(total.label("total_count")), select(total))


@functools.lru_cache(maxsize=512)  # the filters' 32 combinations x 8 sorts x 2 databases
def plain_listing(names: tuple[str, ...], sort: str, dialect: str) -> Listing:
    """The listing of a request without `q`, built once per set of filters and
    sort: building the statements and their cache keys is ~0.2 ms a request."""
    order = _order(sort, None)
    base = active_products().where(*(FILTERS[name](bindparam(name)) for name in names))
    total = None if names else LIVE_TOTAL.get(dialect)
    page = _page_by_keys(base, order) if dialect == "postgresql" else None
    return listing(base.order_by(*order), total, page)


def _page_by_keys(base: Select, order: tuple[ColumnElement, ...]) -> Select:
    """PostgreSQL's page of `base` found by its products' ids first, then only
    those products read whole: the rows OFFSET skips come from the sort's
    index alone (every sort has one, `(column, id) WHERE deleted_at IS
    NULL`), where whole rows were read and thrown away. Each product is read
    by a LATERAL subquery with LIMIT 1, which the planner cannot turn into a
    join: under the generic plan of a prepared statement it guessed LIMIT $1
    at 1,000 rows and hash-joined a scan of every product (3.4 ms). 10,000
    products, newest first, generic plan (EXPLAIN ANALYZE): page 37 0.30 ->
    0.20 ms, OFFSET 9,000 11.0 -> 1.35 ms. (SQLite skips rows without
    reading them already: 0.47 ms at OFFSET 9,000 either way.)"""
    keys = (
        base.with_only_columns(Product.id)
        .order_by(*order)
        .limit(bindparam("limit"))
        .offset(bindparam("offset"))
        .subquery("keys")
    )
    product = (
        select(*SHOWN)
        .where(PRODUCTS.c.id == keys.c.id)
        .limit(literal_column("1"))
        .lateral("product")
    )
    by_product = ClauseAdapter(product)  # the order, on the lateral's columns
    return (
        select(*product.c)
        .select_from(keys.join(product, true()))
        .order_by(*(by_product.traverse(clause) for clause in order))
    )


@functools.lru_cache(maxsize=512)
def search_listing(match: search.Match, names: tuple[str, ...], sort: str) -> Listing:
    """The listing of a search, built once per shape of query (the backend's
    Match: how many words, phrases, ...), set of filters and sort; run with
    the filters' values and the match's `params`."""
    if not names and sort == "relevance" and match.top is not None:
        return top_listing(match)
    base = active_products().where(*(FILTERS[name](bindparam(name)) for name in names))
    narrowed = match.ranked(base) if sort == "relevance" else match(base)
    return listing(_sorted(narrowed, sort, match))


def top_listing(match: search.Match) -> Listing:
    """A search with no filter, by relevance, where the engine ranks and
    pages by itself (`Match.top`): the page's products joined to its best
    page, in its order; the total counted from the index."""
    top = match.top.subquery("top")
    page = (
        select(*SHOWN)
        .select_from(top.join(PRODUCTS, PRODUCTS.c.id == top.c.id))
        .where(PRODUCTS.c.deleted_at.is_(None))
        .order_by(top.c.score.asc(), top.c.id.asc())
    )
    # The total joined in as a one-row table: as a scalar subquery over the
    # FTS5 table SQLite ran it once per row of the page (0.8 -> 1.4 ms).
    total = match.count.subquery("total")
    counted = page.add_columns(total.c[0].label("total_count")).join(total, true())
    return Listing(page, counted, match.count, ranked=True)


def run_listing(
    lists: Listing, params: dict[str, Any], page: int, per_page: int, count_key: str, sort: str
) -> dict[str, Any]:
    """One page of rows (mappings) in the page envelope. An unknown total
    (not kept) comes with the page, in one statement. `count_key`: the
    filters and search (every sort and page of them has one total)."""
    offset = (page - 1) * per_page
    page_key = f"{count_key}:{sort}:{offset}:{per_page}"
    params = {**params, "limit": per_page, "offset": offset}
    connection = read_connection()
    rows = None

    def count() -> int:
        nonlocal rows
        rows = connection.execute(lists.counted, params).mappings().all()
        if rows:
            return rows[0]["total_count"]
        if offset == 0:
            return 0
        return connection.execute(lists.count, params).scalar_one()  # a page past the end

    def rank() -> tuple[list, int]:
        total = count()
        return rows or [], total

    if lists.ranked:
        # Kept until a product's text changes, not only until the catalog does.
        rows, total = rankings.ranked_page(page_key, rank, lambda ids: _by_ids(connection, ids))
    else:
        # Every page of one filter has the same total: counted once per match
        # version; the page's ids are kept under it too (a checkout that sells
        # nothing out keeps both), its products read again by id.
        def read_page() -> tuple[list, int]:
            total = matches.count(count_key, count)
            if rows is not None:
                return rows, total
            if offset >= total:
                return [], total
            return connection.execute(lists.page, params).mappings().all(), total

        rows, total = matches.page(page_key, read_page, lambda ids: _by_ids(connection, ids))
    return {
        "items": rows,
        "page": page,
        "per_page": per_page,
        "total": total,
        "pages": math.ceil(total / per_page),
    }


# The ids as one parameter, not an expanding IN (whose statement SQLAlchemy
# renders again on every execution: 0.2 ms of a 1 ms search): a JSON array
# on SQLite, an int[] literal as text on PostgreSQL (psycopg dumps a Python
# list through its pure-Python array dumper; the text, cast by the server,
# and one fetchall instead of a fetch per row took a PostgreSQL search
# miss from 3,232 to 3,068 us, in-process, 3,000 alternating requests).
# On PostgreSQL `id = ANY(array)`: one index scan over the array's keys, where
# `id IN (SELECT unnest(array))` hashed the array and joined a scan per id
# (pgbench, 20 ids, prepared, one connection, 3 alternating runs of 4 s:
# 9,300-11,400 -> 12,600-13,300 queries/s).
_IDS = bindparam("ids", type_=String)
BY_IDS = {
    "sqlite": select(*SHOWN).where(
        PRODUCTS.c.id.in_(select(column("value")).select_from(func.json_each(_IDS))),
        PRODUCTS.c.deleted_at.is_(None),
    ),
    "postgresql": select(*SHOWN).where(
        PRODUCTS.c.id == any_(cast(_IDS, ARRAY(Integer))), PRODUCTS.c.deleted_at.is_(None)
    ),
}


def _by_ids(connection, ids: list[int]) -> list:
    """The live products of `ids`, as rows, in the order of `ids`."""
    dialect = connection.dialect.name
    if dialect == "sqlite":
        value = json.dumps(ids)
    else:
        value = "{" + ",".join(str(int(i)) for i in ids) + "}"
    rows = connection.execute(BY_IDS[dialect], {"ids": value}).mappings().all()
    found = {row["id"]: row for row in rows}
    return [found[i] for i in ids if i in found]


def list_products(args: dict[str, Any]) -> dict[str, Any]:
    """One page of the catalog, filtered, searched and sorted as asked
    (by relevance by default when searching): rows, not ORM objects."""
    sort = args.get("sort") or ("relevance" if "q" in args else "-created_at")
    filters = sorted((k, str(v)) for k, v in args.items() if k not in PAGE_ARGS)
    tries = list(search_matches(args.get("q")))
    for attempt, match in enumerate(tries):
        values = filter_values(args)
        if match is None:
            dialect = read_connection().dialect.name
            lists, params = plain_listing(tuple(values), sort, dialect), values
        else:
            lists, params = search_listing(match, tuple(values), sort), {**values, **match.params}
        page = run_listing(
            lists, params, args["page"], args["per_page"], f"{filters}{attempt}", sort
        )
        if not retry_fuzzily(tries, attempt, bool(page["total"]), bool(values)):
            break
    return page


PRODUCT_BY_ID = select(*SHOWN).where(
    PRODUCTS.c.id == bindparam("id"), PRODUCTS.c.deleted_at.is_(None)
)


def read_product(product_id: int) -> Mapping[str, Any]:
    """A live product as a row (the public read: no ORM object to build), or 404."""
    row = read_connection().execute(PRODUCT_BY_ID, {"id": product_id}).mappings().first()
    if row is None:
        raise NotFound("Product not found")
    return row


def get_product(product_id: int) -> Product:
    product = db.session.get(Product, product_id)
    if product is None or product.deleted_at is not None:
        raise NotFound("Product not found")
    return product


def lock_live_product(product_id: int, *, share: bool = False) -> Product:
    """The live product, its row locked until the transaction ends, or a
    404 (also once a delete that held the row commits). A writer of the
    product takes FOR NO KEY UPDATE, the lock its own UPDATE would take,
    at its first read: read unlocked, a PUT of name and stock upgraded to
    FOR UPDATE later and deadlocked with a review (whose row's foreign key
    holds KEY SHARE), and a PUT, a review or a delete that waited on a
    delete wrote to the deleted row (a 200, or a 500). `share`: FOR SHARE,
    for a writer of rows that name the product (a cart line), which a
    delete must wait for. PostgreSQL only; SQLite runs one writer at a time."""
    stmt = select(Product).where(Product.id == product_id, Product.deleted_at.is_(None))
    locked = stmt.with_for_update(read=share, key_share=not share)
    product = db.session.scalar(locked.execution_options(populate_existing=True))
    if product is None:
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
    """Change the given fields; a new `stock` is an adjustment of the difference.
    An edit that makes the product newly low (its stock, its threshold or
    both) alerts once, decided from the product before and after the edit."""
    product = lock_live_product(product_id)
    was_low = inventory.is_low(product)
    stock = data.pop("stock", None)
    for field, value in data.items():
        setattr(product, field, value)
    db.session.flush()
    if stock is None or not inventory.set_stock(product, stock, actor, was_low=was_low):
        inventory.alert_if_newly_low(product, was_low)
    return product


def delete_product(product_id: int) -> None:
    """Hide the product and take it out of every cart; orders keep their copies.
    The product is locked first, then the lines: every writer of both keeps
    that order (docs/ARCHITECTURE.md)."""
    product = lock_live_product(product_id)
    product.deleted_at = utcnow()
    db.session.execute(delete(CartItem).where(CartItem.product_id == product.id))
