"""The catalog cache: answers of public catalog reads, keyed by the catalog's
version and the normalised request, never stale.

Invalidation is by version, from one place (`app.services.versions`): the
commit of a transaction that wrote a catalog table (an ORM flush or a Core /
text() statement) bumps the version; a rollback does not. A read takes the
version BEFORE it queries, so an answer built while a write commits is stored
under the old version and never served after it.

Stores: Redis when REDIS_URL is set (shared by every process and host), else
process memory with the version in a memory-mapped file in the instance
folder (shared by the processes of one host; delete it only while no server
runs). Redis unreachable: reads go to
the database (a warning, never an error), a failed bump is owed and made
before the app's next Redis command (in order: `RedisStore`), and entries
expire (`CATALOG_CACHE_TTL`) as a last net. An entry in Redis is its
release's only (`release`).
"""

from __future__ import annotations

import functools
import hashlib
import logging
import mmap
import os
import secrets
import threading
import time
from collections import OrderedDict
from pathlib import Path

from flask import Flask, current_app, g, has_app_context

from app.services import versions

log = logging.getLogger("shop.cache")

# Tables whose rows a catalog read shows (products, their reviews and stock).
CATALOG_TABLES = frozenset({"products", "reviews", "stock_movements"})
# Columns of other tables that a catalog read shows (a review names its author).
# Set, or the row removed (its reviews go with it); not a new account: each
# signup had bumped the whole catalog cache (found by review).
CATALOG_UPDATES = {"users": ("username",)}
CATALOG_REMOVALS = frozenset({"users"})
DOWN = object()  # what a Redis command gives while Redis is unreachable


class LocalStore:
    """Answers in this process's memory (least recently used dropped first);
    the version is 8 bytes of a small file every process on the host maps
    into memory (MAP_SHARED), so a bump is seen by all of them at once and
    reading it is a memory read, not a system call (a file read per request
    cost about 10 µs of a 200 µs cache hit)."""

    SIZE = 8

    def __init__(self, version_file: Path, max_entries: int):
        self.path = version_file
        self.max_entries = max_entries
        self.entries: OrderedDict[str, bytes] = OrderedDict()
        self.lock = threading.Lock()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            # A new file starts at a random version, never at one used before
            # (all zeros was the same after every new file: an ETag from
            # before a deleted file matched again).
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
            os.pwrite(fd, secrets.token_bytes(self.SIZE), 0)
        except FileExistsError:
            fd = os.open(self.path, os.O_RDWR)
        try:
            if os.fstat(fd).st_size < self.SIZE:
                # Its creator has not written it yet: zeros until it does (a
                # version change for this process, never a reuse).
                os.ftruncate(fd, self.SIZE)
            self.map = mmap.mmap(fd, self.SIZE, mmap.MAP_SHARED)
        finally:
            os.close(fd)

    def version(self) -> str | None:
        return self.map[: self.SIZE].hex()

    def lookup(self, key: str) -> tuple[str | None, bytes | None]:
        """The current version and the answer kept for `key` at that version."""
        version = self.version()
        return version, self.get(f"{version}:{key}")

    def keep(self, key: str, version: str, value: bytes, born: float | None = None) -> None:
        # No expiry here: a bump on this host is never lost (`born` is for Redis).
        self.set(f"{version}:{key}", value)

    def get(self, key: str) -> bytes | None:
        with self.lock:
            value = self.entries.get(key)
            if value is not None:
                self.entries.move_to_end(key)
            return value

    def set(self, key: str, value: bytes) -> None:
        with self.lock:
            self.entries[key] = value
            while len(self.entries) > self.max_entries:
                self.entries.popitem(last=False)

    def bump(self) -> None:
        # A random token in one aligned 8-byte store: racing bumps leave one of
        # their tokens, never the version a reader saw before either commit.
        self.map[: self.SIZE] = secrets.token_bytes(self.SIZE)
        with self.lock:
            self.entries.clear()


@functools.cache
def release() -> bytes:
    """This release of the code: a digest of the app package's Python files.
    An answer kept in Redis is served only by the release that kept it: a
    deploy changes code, not the version, and the next release misread the
    entries of the one before (another format: a body cut by 25 bytes, a
    500 where that cut a letter), as it would serve the JSON of the old
    code's schemas until the next write (found by review)."""
    package = Path(__file__).resolve().parent.parent
    digest = hashlib.blake2b(digest_size=8)
    for path in sorted(package.rglob("*.py")):
        digest.update(path.relative_to(package).as_posix().encode() + b"\0")
        digest.update(path.read_bytes())
    return digest.hexdigest().encode()


def _new_version() -> bytes:
    """A version no store has had: 16 random hex digits, set by each bump
    (an INCR from 0 repeated its numbers after a Redis restart)."""
    return secrets.token_hex(8).encode()


# Replaces a version only if it is still the one read: processes that find the
# same stale version at once agree on one new value.
_REPLACE = "if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('SET', KEYS[1], ARGV[2]) end"


class Outage:
    """When the stores of one app, all on one Redis, may ask it again after
    a command failed. Each store waited out its own timeout: with Redis
    accepting connections but not answering (paused, a partition), a product
    PUT that bumps four versions took 2.0 s and cold reads 0.5-1.0 s about
    every other second (found by review, session 13); now the first timeout
    stands for every store for `retry_after`."""

    __slots__ = ("until",)

    def __init__(self) -> None:
        self.until = 0.0


class RedisStore:
    """Answers and the version in Redis, shared by every instance.

    A bump Redis does not take (unreachable, or a blip between two bumps of
    one commit) is owed: the app makes it before its next command to Redis
    from any of its stores (`version_store` gives them one list). Owed bumps are made in order, the
    `last` stores' (the catalog cache, whose answers are built from what the
    others guard) after the rest, also within one commit: a catalog bump
    made while the text version's is still owed would let another instance
    keep the old ranking under the new catalog version. Until then, other
    instances may serve what they kept before the write, for at most `ttl`."""

    _owed_lock = threading.Lock()

    def __init__(
        self,
        url: str,
        prefix: str,
        ttl: int,
        retry_after: float = 1.0,
        *,
        last: bool = False,
        owed: list[RedisStore] | None = None,
        outage: Outage | None = None,
    ):
        import redis

        self.redis = redis.Redis.from_url(
            url, socket_timeout=0.5, socket_connect_timeout=0.5, redis_connect_func=self._connected
        )
        self.errors = redis.RedisError
        # The run of the Redis server this store's connections reach: every
        # version set carries it (`_tagged`), and one set in another run is
        # stale (`_read`). Empty where the server will not say (INFO refused).
        self.run = b""
        self.version_key, self.prefix, self.ttl = f"{prefix}:version", prefix, ttl
        self.retry_after, self.last = retry_after, last
        # Shared by the stores of one app (`version_store`), as `owed` is.
        self.outage = Outage() if outage is None else outage
        # The bumps owed, shared by the stores of one app (`version_store`),
        # and how many bumps were asked of this store (`_settle`).
        self.owed: list[RedisStore] = [] if owed is None else owed
        self.bumps = 0

    @property
    def down_until(self) -> float:
        """Until when (time.monotonic) no command is sent: 0.0 while Redis answers."""
        return self.outage.until

    @down_until.setter
    def down_until(self, until: float) -> None:
        self.outage.until = until

    @property
    def must_bump(self) -> bool:
        return self in self.owed

    def _connected(self, connection) -> None:
        """Each new connection (so also the first command after a restart,
        whose old connections are gone) learns the server's run id, which
        Redis draws anew at every start. A server restarted from a snapshot
        (RDB, or an AOF) hands back an old version with the answers kept
        under it, and a token revoked since was accepted again on reads
        (found by review); its versions carry the run that set them, so the
        new run replaces them."""
        connection.on_connect()
        try:
            connection.send_command("INFO", "server")
            info = connection.read_response()
        except self.errors:  # INFO renamed away: versions as before, untagged
            self.run = b""
            return
        text = info.decode() if isinstance(info, bytes) else str(info)
        run = next((line[7:].strip() for line in text.splitlines() if line[:7] == "run_id:"), "")
        self.run = run[:16].encode()

    def _tagged(self) -> bytes:
        """A new version, tagged with the server's run (`_connected`)."""
        return self.run + b"." + _new_version() if self.run else _new_version()

    def _stale(self, version: bytes) -> bool:
        return bool(self.run) and not version.startswith(self.run + b".")

    def _settle(self) -> None:
        """Make the bumps owed to this Redis, in order (an error leaves the
        rest owed). The lock guards the list, never a wait on Redis: held
        across the SET, a background retry during a partition made every
        write's bump wait for its timeout (found by review). Two settlers may
        both set the head's version: one bump more, never one less, and in
        order (a store owed anew goes back into its place)."""
        while True:
            with self._owed_lock:
                if not self.owed:
                    return
                store = self.owed[0]
                asked = store.bumps
            store.redis.set(store.version_key, store._tagged())
            with self._owed_lock:
                # Settled only if no bump was asked of it meanwhile: one asked
                # while the SET was on its way (its commit maybe after the
                # SET) was dropped with it (found by review); it is set again.
                if self.owed and self.owed[0] is store and store.bumps == asked:
                    self.owed.pop(0)

    def _call(self, fn, *args):
        """Run one Redis command, after the bumps owed to it; DOWN while
        Redis is unreachable."""
        if self.down_until and time.monotonic() < self.down_until:
            return DOWN
        try:
            if self.owed:
                self._settle()
            result = fn(*args)
        except self.errors as exc:
            if not self.down_until:
                log.warning("%s unavailable, reading from the database: %s", self.prefix, exc)
            self.down_until = time.monotonic() + self.retry_after
            return DOWN
        self.down_until = 0.0
        return result

    def _read(self, *keys: str) -> list:
        """The version and `keys` (MGET). A missing version - a new Redis, or
        one restarted without its data, or that evicted the key - starts at a
        random value (SET NX: racing processes agree), never at one used
        before: a counter from "0" handed out its old numbers again after a
        restart, and what processes and clients held under them (a revoked
        token's user in the accounts cache, an ETag) was current again."""
        found = self.redis.mget(self.version_key, *keys)
        if found[0] is None:
            self.redis.set(self.version_key, self._tagged(), nx=True)
            found = self.redis.mget(self.version_key, *keys)
        elif self._stale(found[0]):  # set in an earlier run of the server
            self.redis.eval(_REPLACE, 1, self.version_key, found[0], self._tagged())
            found = self.redis.mget(self.version_key, *keys)
        return found

    def version(self) -> str | None:
        found = self._call(self._read)
        return None if found is DOWN or found[0] is None else found[0].decode()

    def lookup(self, key: str) -> tuple[str | None, bytes | None]:
        """The current version and the answer kept for `key` at that version,
        in one round trip (MGET): an entry holds its version before its bytes,
        and one kept at an older version is a miss (the next keep replaces it,
        so a request has one entry, not one per version)."""
        found = self._call(self._read, f"{self.prefix}:{key}")
        if found is DOWN or found[0] is None:
            return None, None
        version = found[0].decode()
        entry, head = found[1], self._head(version)
        return version, entry[len(head) :] if entry and entry.startswith(head) else None

    def keep(self, key: str, version: str, value: bytes, born: float | None = None) -> None:
        """Keep `value` for `ttl` seconds from `born` (time.time(); now if
        None): an answer built from another kept answer (`built_from`) lives
        no longer than that one, so what a lost bump leaves stale is gone
        `ttl` after the write, not a `ttl` per level of answers built from
        answers (found by review). Times kept by one host are read by others:
        their clocks are assumed to agree (NTP) to well within `ttl`."""
        ttl_ms = self.ttl * 1000
        if born is not None:
            ttl_ms -= int((time.time() - born) * 1000)
            if ttl_ms <= 0:
                return
        entry = self._head(version) + value
        self._call(functools.partial(self.redis.set, f"{self.prefix}:{key}", entry, px=ttl_ms))

    @staticmethod
    def _head(version: str) -> bytes:
        """An entry's start: the version it was kept at and the release that
        kept it (`release`): another release's entry is a miss, either way."""
        return version.encode() + b"@" + release() + b"\n"

    def bump(self) -> None:
        """Owe a bump, then settle what is owed (this one included), in order.
        What Redis did not take is tried again in the background until it
        does: owed only until this process's next command, a logout made
        while Redis was unreachable was accepted again by other instances
        once Redis came back, as long as this process stayed idle (found by
        review)."""
        with self._owed_lock:
            self.bumps += 1  # `_settle` settles only the bumps asked before its SET
            if self not in self.owed:
                self.owed.append(self)
                self.owed.sort(key=lambda store: store.last)  # stable
        self._call(lambda: None)
        if self.owed:
            self._retry_owed()

    RETRY_OWED_EVERY = 0.25  # seconds between the background tries

    def _retry_owed(self) -> None:
        with self._owed_lock:
            retrying = _RETRYING.get(id(self.owed))
            if retrying is not None and retrying.is_alive():
                return
            thread = threading.Thread(
                target=self._settle_later, name="shop-owed-bumps", daemon=True
            )
            _RETRYING[id(self.owed)] = thread
        thread.start()

    def _settle_later(self) -> None:
        # Straight to Redis, not through `_call`: requests keep skipping it
        # for `retry_after` after a failure, and only this thread waits on it.
        while True:
            time.sleep(self.RETRY_OWED_EVERY)
            try:
                self._settle()
            except self.errors:
                continue
            # Redis took them: it answers again. Left marked down, the next
            # commit's bump was owed to this thread (0.25 s late) for the rest
            # of `retry_after`, and other instances served the answer from
            # before it meanwhile (found by review).
            self.down_until = 0.0
            with self._owed_lock:  # decided under the lock `_retry_owed` takes
                if not self.owed:
                    _RETRYING.pop(id(self.owed), None)
                    return


# The background settler of each list of owed bumps (`RedisStore._retry_owed`).
_RETRYING: dict[int, threading.Thread] = {}


def init_catalog_cache(app: Flask) -> None:
    """Pick the app's store and make sure commits that change the catalog bump
    it (also with the cache off here: `shared_version`)."""
    keeps = app.config["CATALOG_CACHE"]
    store = shared_version(
        app,
        "catalog",
        app.config["CATALOG_CACHE_PREFIX"],
        keeps=keeps,
        ttl=app.config["CATALOG_CACHE_TTL"],
        max_entries=app.config["CATALOG_CACHE_MAX_ENTRIES"],
        last=True,
    )
    app.extensions["catalog_cache"] = store if keeps else None
    release()  # read once, at start, not by a request
    # Its answers are built from the search rankings and the names index: its
    # version moves after theirs in every commit.
    versions.watch(
        "catalog_changed",
        CATALOG_TABLES,
        bump,
        removals=CATALOG_REMOVALS,
        updates=CATALOG_UPDATES,
        last=True,
    )


def version_store(
    app: Flask, prefix: str, name: str, *, ttl: int = 0, max_entries: int = 0, last: bool = False
) -> LocalStore | RedisStore:
    """The store of a version (and, with `max_entries` or a `ttl`, of the
    answers kept under it) where every cache here keeps it: Redis under
    `prefix` when REDIS_URL is set, else the host's memory-mapped file
    `<name>-version-<database digest>.bin` in the instance folder."""
    if app.config.get("REDIS_URL"):
        owed = app.extensions.setdefault("redis_owed_bumps", [])
        outage = app.extensions.setdefault("redis_outage", Outage())
        return RedisStore(
            app.config["REDIS_URL"], prefix, ttl=ttl, last=last, owed=owed, outage=outage
        )
    digest = hashlib.sha256(app.config["SQLALCHEMY_DATABASE_URI"].encode()).hexdigest()[:16]
    return LocalStore(Path(app.instance_path) / f"{name}-version-{digest}.bin", max_entries)


class KeptUnderVersion:
    """Answers that the catalog cache's are built from, kept under a version
    of their own, which only the commits that change them move (a
    `versions.watch` set: `mark`, on `columns`): the search rankings, the
    match answers. The app's store is `app.extensions[extension]`, where the
    catalog cache keeps its own (Redis or this process), none when the
    catalog cache is off or `<config>_MAX_ENTRIES` is 0 (the version is
    bumped all the same: `shared_version`); its keys in Redis start with
    `<config>_PREFIX`. Bumped before the catalog cache's version
    (which is `last`)."""

    def __init__(
        self,
        extension: str,
        mark: str,
        columns: dict[str, tuple[str, ...]],
        config: str,
        version_file: str,
        removals: frozenset[str] = frozenset(),
    ):
        self.extension, self.mark, self.columns = extension, mark, columns
        self.config, self.version_file, self.removals = config, version_file, removals

    def init_app(self, app: Flask) -> None:
        max_entries = app.config[f"{self.config}_MAX_ENTRIES"]
        keeps = bool(app.config["CATALOG_CACHE"] and max_entries)
        kept_in = shared_version(
            app,
            self.version_file,
            app.config[f"{self.config}_PREFIX"],
            keeps=keeps,
            ttl=app.config["CATALOG_CACHE_TTL"],
            max_entries=max_entries,
        )
        app.extensions[self.extension] = kept_in if keeps else None
        versions.watch(self.mark, frozenset(), self.bump, self.columns, removals=self.removals)

    def store(self) -> LocalStore | RedisStore | None:
        return current_app.extensions.get(self.extension)

    def bump(self) -> None:
        """A new version (after a commit, from `app.services.versions`)."""
        bump_shared(self.version_file)


# app.extensions key: every shared version's store, by name, kept or not.
SHARED_VERSIONS = "shared_versions"


def shared_version(
    app: Flask,
    name: str,
    prefix: str,
    *,
    keeps: bool,
    ttl: int = 0,
    max_entries: int = 0,
    last: bool = False,
) -> LocalStore | RedisStore:
    """The store of the version `name` (`version_store`), which this process
    bumps after every commit that changes its set (`bump_shared`) whether or
    not it `keeps` answers under it itself: other processes on the host (the
    version file) or behind the same Redis may, and a process with its cache
    off (a worker, a cron job) that never bumped left their answers stale."""
    store = version_store(
        app, prefix, name, ttl=ttl, max_entries=max_entries if keeps else 0, last=last
    )
    app.extensions.setdefault(SHARED_VERSIONS, {})[name] = store
    return store


def bump_shared(name: str) -> None:
    """A new version `name` (after a commit, from `app.services.versions`)."""
    if has_app_context():
        store = current_app.extensions.get(SHARED_VERSIONS, {}).get(name)
        if store is not None:
            store.bump()


# flask.g key: the time (time.time()) the oldest kept answer that the answers
# being built in this request use was built at (`built_from`, `born`).
OLDEST_SOURCE = "catalog_oldest_source"


def built_from(built_at: float) -> None:
    """What is being built uses an answer kept since `built_at` (time.time()
    at the start of its build): what this request keeps lives no longer."""
    if has_app_context():
        oldest = g.get(OLDEST_SOURCE)
        if oldest is None or built_at < oldest:
            setattr(g, OLDEST_SOURCE, built_at)


def start_building() -> float:
    """The start (time.time()) of a new answer built from nothing kept yet."""
    if has_app_context():
        setattr(g, OLDEST_SOURCE, None)
    return time.time()


def born(started: float) -> float:
    """How old an answer whose build started at `started` (time.time()) is:
    as old as the oldest kept answer it was built from (`built_from`)."""
    oldest = g.get(OLDEST_SOURCE) if has_app_context() else None
    return started if oldest is None else min(started, oldest)


def store() -> LocalStore | RedisStore | None:
    """The current app's store, or None when the cache is off."""
    return current_app.extensions.get("catalog_cache")


def bump() -> None:
    """A new catalog version: every cached answer is out. After a commit,
    `app.services.versions` calls it and logs (never raises) its errors."""
    bump_shared("catalog")
