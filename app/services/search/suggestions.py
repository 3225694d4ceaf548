"""Type-ahead suggestions from an in-memory index of the live product names.

`GET /products/suggest` is called on every keystroke. In the database it is a
full-text lookup of every name with a word starting with the prefix and a
sort of all of them (1,241 names for "lam" in the benchmark's catalog), paid
again on every catalog write, as a checkout moves stock and so changes the
catalog cache's version. Elasticsearch's completion suggester answers from an
in-memory structure for the same reason; this is the same idea at our scale:

- The index holds each distinct live name once, ranked as suggestions are
  ordered (shorter first, then by name, in code point order), the sorted
  list of their words, each word's names (by rank), and the names sorted by
  their folded text (for "the name starts with the prefix").
- It is valid under the **names version**, which moves on every commit that
  adds or removes a product or changes a name or `deleted_at`
  (`app.services.versions`), and never on a stock, price or review write
  (with Redis, for at most CATALOG_CACHE_TTL seconds: a bump can be lost).
  The version lives where the catalog's does (Redis with REDIS_URL, else a
  memory-mapped file per host); the index is rebuilt by the first suggest
  after a change (two queries: the names counted, then read; 85-155 ms
  for 10,000 products here), the version read before them as every cache
  here does.
- Words are the search parser's (`query.words_of`: runs of letters and
  digits of any script, with their combining marks), lower-cased with
  diacritics removed on both sides (as SQLite's FTS5 tokenizer does), so
  "cafe" suggests "Café" on either database.

It costs each worker about 0.46 KB per name (tracemalloc, the generated
catalog's names: 4.7 MB for 10,000, 23 MB for 50,000, 46 MB for 100,000).
With the index off (`SUGGEST_INDEX_MAX_NAMES=0`), over that many names
(default 50,000: at most ~23 MB per worker), or while Redis is unreachable,
the backend's own `suggest` (SQL) answers.
"""

from __future__ import annotations

import heapq
import threading
import time
import unicodedata
from bisect import bisect_left
from collections import defaultdict
from collections.abc import Iterable

from flask import Flask, current_app, has_app_context
from sqlalchemy import func, select

from app.db import read_connection
from app.models import Product
from app.services import catalog_cache, versions
from app.services.catalog_cache import LocalStore, RedisStore, bump_shared, shared_version
from app.services.search.query import FINAL_SIGMA, SIGMA, words_of

# What a suggestion shows: a product appearing, going, or renamed. Inserts and
# deletes of the table count too (`versions.watch`'s `columns`).
NAME_COLUMNS = {"products": ("name", "deleted_at")}
_AFTER_EVERY_CHARACTER = "\U0010ffff"


def fold(text: str) -> str:
    """Lower-cased, diacritics removed (compatibility decomposition, combining
    marks dropped), the final sigma (U+03C2) as a sigma (U+03C3), as
    `words_of` has it (`ΣΥΣ` was `συς`, which no name started with): how the
    index compares words and names."""
    if text.isascii():
        return text.lower()
    decomposed = unicodedata.normalize("NFKD", text)
    folded = "".join(c for c in decomposed if not unicodedata.combining(c)).lower()
    return folded.replace(FINAL_SIGMA, SIGMA)


def folded_words(text: str) -> tuple[str, ...]:
    """The words of `text` as the index keeps them (a name's and a prefix's)."""
    return words_of(fold(text))


class NameIndex:
    """The live names, ranked, with their words. Immutable once built: a
    lookup reads it without a lock. Compact (4.6 MB for 10,000 names, tracemalloc):
    each word is one string object however many names share it, and a name's
    words are a tuple."""

    # Words starting with one or two given characters are many (every number
    # starting with 1): their names are listed at build time, not merged per
    # lookup.
    SHORT = 2
    # More words than this starting with a longer prefix: walk the names of
    # its first SHORT characters instead of merging that many lists.
    MERGE_AT_MOST = 16

    def __init__(self, names: list[str]):
        self.names = sorted(set(names), key=lambda name: (len(name), name))
        self.folded = [fold(name) for name in self.names]
        self.words: list[tuple[str, ...]] = []
        shared: dict[str, str] = {}
        postings: dict[str, list[int]] = defaultdict(list)
        short: dict[str, list[int]] = defaultdict(list)
        for rank, text in enumerate(self.folded):  # ranks ascending: every list is sorted
            # folded_words(name), as `text` is folded; each word once
            words = tuple(dict.fromkeys(shared.setdefault(w, w) for w in words_of(text)))
            self.words.append(words)
            for word in words:
                postings[word].append(rank)
            for start in {word[:n] for word in words for n in range(1, self.SHORT + 1)}:
                short[start].append(rank)
        self.vocabulary = sorted(postings)
        self.postings = [postings[word] for word in self.vocabulary]
        self.short = dict(short)
        self.text_ranks = sorted(range(len(self.names)), key=self.folded.__getitem__)
        self.texts = [self.folded[rank] for rank in self.text_ranks]

    def suggest(self, prefix: str, limit: int) -> list[str]:
        """Up to `limit` names with every word of `prefix` and a word starting
        with its last one; names starting with the prefix first, then by rank.
        About 3-150 µs on the benchmark's 10,000 names (the database's own
        suggest: about 1.5 ms)."""
        words = folded_words(prefix)
        if not words:
            return []
        last, whole = words[-1], frozenset(words[:-1])

        def matches(rank: int) -> bool:
            found = self.words[rank]
            return all(word in found for word in whole) and any(
                word.startswith(last) for word in found
            )

        start = fold(prefix.strip())
        # A name whose text starts with `start` has the prefix's words as its
        # first ones (the last as a prefix) when `start` begins with a word.
        starters = self._starting(start, None if start.startswith(words[0]) else matches, limit)
        chosen, seen = list(starters), set(starters)
        if len(chosen) < limit:
            for rank in self._candidates(last, whole):
                if rank not in seen and matches(rank):
                    # A candidate may come again (`_candidates`): "Big Lamp
                    # Lampshade" was suggested twice for `lam`, in the place
                    # of another name (found by review).
                    seen.add(rank)
                    chosen.append(rank)
                    if len(chosen) == limit:
                        break
        return [self.names[rank] for rank in chosen]

    def _starting(self, start: str, check, limit: int) -> list[int]:
        """The best `limit` names whose text starts with `start` (and that
        pass `check`, when given)."""
        low = bisect_left(self.texts, start)
        high = bisect_left(self.texts, start + _AFTER_EVERY_CHARACTER, low)
        ranks = self.text_ranks[low:high]
        return heapq.nsmallest(limit, ranks if check is None else filter(check, ranks))

    def _candidates(self, last: str, whole: frozenset[str]) -> Iterable[int]:
        """In rank order, a superset of the names that match: with whole
        words, the names having all of them and a word starting as `last`
        does (set intersections); else the names of the words starting with
        `last` (or with its first characters, when those words are many),
        merged: a name with two such words (`lamp`, `lampshade`) comes twice."""
        prefixed = self.short.get(last[: self.SHORT], [])
        if whole:
            lists = [self._postings(word) for word in whole]
            smallest = min([*lists, prefixed], key=len)
            return sorted(set(smallest).intersection(*lists, prefixed))
        if len(last) <= self.SHORT:
            return prefixed
        low = bisect_left(self.vocabulary, last)
        high = bisect_left(self.vocabulary, last + _AFTER_EVERY_CHARACTER, low)
        if high - low > self.MERGE_AT_MOST:
            return prefixed
        return heapq.merge(*self.postings[low:high])

    def _postings(self, word: str) -> list[int]:
        at = bisect_left(self.vocabulary, word)
        found = at < len(self.vocabulary) and self.vocabulary[at] == word
        return self.postings[at] if found else []


class Suggestions:
    """This process's index, the version it was built under and when.

    `max_age` (seconds, None for no limit): an index older than this is
    built again even at the same version. With Redis a bump can be lost (a
    process that wrote while cut off died before Redis took it); the
    catalog's answers then expire after CATALOG_CACHE_TTL, but suggest was
    built again from this index, kept for ever: a deleted product's name was
    suggested until some other name changed (found by review)."""

    def __init__(
        self, store: LocalStore | RedisStore, max_names: int, max_age: float | None = None
    ):
        self.store, self.max_names, self.max_age = store, max_names, max_age
        # (version, index, time.monotonic() and time.time() before its build)
        self.built: tuple[str, NameIndex | None, float, float] | None = None
        self.lock = threading.Lock()

    def _serves(
        self, built: tuple[str, NameIndex | None, float, float] | None, version: str
    ) -> bool:
        """Whether `built` is the index at `version`, young enough."""
        if built is None or built[0] != version:
            return False
        return self.max_age is None or time.monotonic() - built[2] < self.max_age

    def index(self) -> NameIndex | None:
        """The index at the current names version (built now if it moved, or
        if it is older than `max_age`); None when the store is unreachable or
        the catalog has too many names."""
        version = self.store.version()
        if version is None:
            return None
        built = self.built
        if not self._serves(built, version):
            with self.lock:  # one build per process at a time; the others wait for it
                built = self.built
                if not self._serves(built, version):
                    started = (time.monotonic(), time.time())
                    built = (version, self._build(), *started)
                    self.built = built
        if self.max_age is not None:  # a cached suggest lives no longer than the index
            catalog_cache.built_from(built[3])
        return built[1]

    def _build(self) -> NameIndex | None:
        """The index of the live names, or None when there are more than
        `max_names`: counted first in the database (one row back), so a
        catalog too large for the index sends no names at all."""
        names = (
            select(Product.name)
            .where(Product.deleted_at.is_(None))
            .distinct()
            .limit(self.max_names + 1)
        )
        counted = select(func.count()).select_from(names.subquery())
        if read_connection().scalar(counted) > self.max_names:
            return None
        return NameIndex(read_connection().scalars(names).all())

    def forget(self) -> None:
        self.built = None


def init_suggestions(app: Flask) -> None:
    """The app's suggestion index (none when SUGGEST_INDEX_MAX_NAMES is 0: the
    names version is bumped all the same, for the processes that keep one)."""
    max_names = app.config["SUGGEST_INDEX_MAX_NAMES"]
    store = shared_version(app, "names", app.config["SUGGEST_INDEX_PREFIX"], keeps=bool(max_names))
    # Kept in Redis, the names version may miss a bump for good (`Suggestions`):
    # the index then lives no longer than a cached answer does.
    max_age = app.config["CATALOG_CACHE_TTL"] if isinstance(store, RedisStore) else None
    app.extensions["suggestions"] = Suggestions(store, max_names, max_age) if max_names else None
    versions.watch("names_changed", frozenset(), bump, NAME_COLUMNS)


def bump() -> None:
    """A new names version (after a commit, from `app.services.versions`)."""
    index = current_app.extensions.get("suggestions") if has_app_context() else None
    if index is not None:
        index.forget()
    bump_shared("names")


def current() -> NameIndex | None:
    """The app's index at the current names version, or None (use the database)."""
    index = current_app.extensions.get("suggestions")
    return index.index() if index is not None else None
