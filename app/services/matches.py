"""Answers kept under the **match version**: a list's total, its pages'
product ids and the facets, which depend on which live products each
filter and search matches, and in which order, not on how many units are
left.

The catalog cache keeps whole answers under the catalog's version, which
every checkout moves. A catalog read after a checkout then counted its
matches again (the list's COUNT) and aggregated them again (the facets:
every matching row, 5-15 ms on 10,000 products), for the same numbers as
before: a checkout that leaves every product in stock changes no filter's
matches, no order and no facet. What they depend on:

- which products are live (a row added or removed, `deleted_at`);
- the text a search matches and the category filter (`name`,
  `description`, `category`);
- `price` (the price filters, the price range), `rating_average` (the
  rating filter and counts), and with `name` and `created_at` every sort's
  key (ties by id);
- whether `stock` is above zero (the in-stock filter and count), not the
  stock itself.

A commit that writes one of those bumps the match version
(`app.services.versions`). Stock moves go through `app.services.inventory`,
which knows each product's stock before and after: its UPDATEs are left to
it (`unwatched_by`) and it marks the transaction only when a stock crosses
zero (`stock_crossed_zero`). Any other write that sets `stock` counts as a
change, as writes of the other columns do.

A kept page is its products' ids: its products are read again by id, so
their stock, price and rating are those of the moment.

The version and the entries live where the catalog cache's do (Redis with
REDIS_URL, else a memory-mapped version file per host and entries in each
process). `CATALOG_MATCHES_MAX_ENTRIES=0`, or the catalog cache off, turns
this off; Redis unreachable: the answers are built from the database.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Mapping, Sequence
from decimal import Decimal
from typing import Any, TypeVar

from sqlalchemy.orm import Session

from app.services import catalog_cache, versions
from app.services.catalog_cache import KeptUnderVersion, LocalStore, RedisStore

MARK = "catalog_matches_changed"
COLUMNS = {
    "products": (
        *("name", "description", "category", "deleted_at"),
        *("price", "rating_average", "stock", "created_at"),
    ),
    # A review's rating, or a review removed: the products' ratings follow
    # (the API sets `rating_average` itself; a trigger recounts it after a
    # delete the database makes, migration f31b2d4c6e81).
    "reviews": ("rating",),
}
# An account removed takes its reviews with it (ON DELETE CASCADE), and the
# trigger recounts their products' ratings (found by review).
REMOVALS = frozenset({"users"})
# The execution option of a stock UPDATE whose caller decides (`stock_crossed_zero`).
STOCK_LEFT_TO_CALLER = {"unwatched_by": (MARK,)}

T = TypeVar("T")
Rows = Sequence[Mapping[str, Any]]


KEPT = KeptUnderVersion(
    "catalog_matches", MARK, COLUMNS, "CATALOG_MATCHES", "catalog-matches", REMOVALS
)
init_matches, store, bump = KEPT.init_app, KEPT.store, KEPT.bump


def stock_crossed_zero(session: Session, before: int, after: int) -> None:
    """Mark the session's transaction as changing the matches when a product's
    stock went from `before` to `after` across zero (for an UPDATE run with
    STOCK_LEFT_TO_CALLER)."""
    if (before > 0) != (after > 0):
        versions.mark(session, MARK)


def kept_in(
    store_: LocalStore | RedisStore | None,
    key: str,
    build: Callable[[], T],
    encode: Callable[[T], bytes],
    decode: Callable[[bytes], T],
) -> T:
    """`build()`, kept in `store_` under its version (read BEFORE building)
    for `key`; with no store (off, or unreachable) built each time."""
    entry = hashlib.blake2b(key.encode(), digest_size=16).hexdigest()
    version, value = store_.lookup(entry) if store_ is not None else (None, None)
    if value is not None:
        # Kept with the time its build started: what is built from it now
        # lives no longer than it does (`catalog_cache.born`).
        built_at, _, body = value.partition(b" ")
        catalog_cache.built_from(float(built_at))
        return decode(body)
    started = time.time()
    answer = build()
    if version is not None:
        born = catalog_cache.born(started)
        store_.keep(entry, version, b"%.3f " % born + encode(answer), born)
    return answer


def count(key: str, counted: Callable[[], int]) -> int:
    """A list's total (every page of one filter has the same)."""
    return kept_in(store(), "count:" + key, counted, lambda n: str(n).encode(), int)


def page(
    key: str, rank: Callable[[], tuple[Rows, int]], read: Callable[[list[int]], Rows]
) -> tuple[Rows, int]:
    """A list's page and its total, kept as ids under the match version
    (`kept_page`)."""
    return kept_page(store(), "page:" + key, rank, read)


def kept_page(
    store_: LocalStore | RedisStore | None,
    key: str,
    rank: Callable[[], tuple[Rows, int]],
    read: Callable[[list[int]], Rows],
) -> tuple[Rows, int]:
    """A page of product rows and the total of its list: `rank()` (the rows,
    each with its `id`, and the total), kept as the rows' ids and the total
    (`kept_in`); a kept page is `read(ids)` (the rows of those products that
    are still live, in that order)."""
    ranked: list[Rows] = []

    def ids_and_total() -> tuple[list[int], int]:
        rows, total = rank()
        ranked.append(rows)
        return [row["id"] for row in rows], total

    ids, total = kept_in(store_, key, ids_and_total, _encode_page, _decode_page)
    if ranked:  # ranked just now: its rows are at hand
        return ranked[0], total
    return (read(ids) if ids else []), total


def _encode_page(page: tuple[list[int], int]) -> bytes:
    ids, total = page
    return (" ".join(map(str, ids)) + "|" + str(total)).encode()


def _decode_page(value: bytes) -> tuple[list[int], int]:
    ids, total = value.decode().split("|")
    return [int(i) for i in ids.split()], int(total)


def facets(key: str, build: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """The facets of one set of filters (prices kept as exact strings)."""
    return kept_in(store(), "facets:" + key, build, _encode_facets, _decode_facets)


def _encode_facets(summary: dict[str, Any]) -> bytes:
    return json.dumps(summary, default=str, separators=(",", ":")).encode()


def _decode_facets(value: bytes) -> dict[str, Any]:
    summary = json.loads(value)
    price = summary["price"]
    for end in ("min", "max"):
        if price[end] is not None:
            price[end] = Decimal(price[end])
    return summary
