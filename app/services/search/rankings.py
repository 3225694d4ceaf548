"""Search rankings kept under the **text version**: which products a search
finds, in which order, does not change when a checkout moves stock or an
admin changes a price.

The catalog cache keeps whole answers under the catalog's version, which
every checkout moves; after that, a search by relevance ranked every match
again (bm25 or ts_rank of all 1,241 products matching "lamp" in the
benchmark's catalog, ~2 ms of SQL), for the same order as before. A ranking
depends only on the indexed text of the live products, so for a search with
no filter, by relevance (the engine's own best page, `Match.top`), the
page's product ids and the total are kept under a version that moves only
on a commit that adds or removes a product or sets its name, description,
category or `deleted_at` (`app.services.versions`, as the suggestions' names
version). The page's products themselves are read again each time (by id),
so their price, stock and rating are those of the moment.

The version and the entries live where the catalog cache's do (Redis with
REDIS_URL, else a memory-mapped version file per host and entries in each
process); `SEARCH_RANKINGS_MAX_ENTRIES=0`, or the catalog cache off, turns
this off. Redis unreachable: the search ranks in the database, as without it.
"""

from __future__ import annotations

from collections.abc import Callable

from app.services import matches
from app.services.catalog_cache import KeptUnderVersion

# What a ranking depends on: the indexed text of a product, and which products
# are live. Inserts and deletes of the table count too (`versions.watch`).
TEXT_COLUMNS = {"products": ("name", "description", "category", "deleted_at")}


KEPT = KeptUnderVersion(
    "search_rankings", "search_text_changed", TEXT_COLUMNS, "SEARCH_RANKINGS", "search-text"
)
init_rankings, store, bump = KEPT.init_app, KEPT.store, KEPT.bump


def ranked_page(
    key: str,
    rank: Callable[[], tuple[matches.Rows, int]],
    read: Callable[[list[int]], matches.Rows],
) -> tuple[matches.Rows, int]:
    """A page of a search by relevance and its total: `rank()` (the page's
    rows, with their `id`, and the total), kept by ids under the text
    version (read BEFORE ranking) for `key`; a kept page is `read(ids)`
    (the rows of those products that are still live, in that order)."""
    return matches.kept_page(store(), "rank:" + key, rank, read)
