"""The accounts cache: a read request's token user without a query.

Every authenticated request asks the database for the token's user and
whether the token is revoked (`DatabaseRevocations.user_and_revoked`): one
round trip, a third of a cart read on PostgreSQL. For a read request (GET,
HEAD) that answer is kept in this process, per token (its `jti`), under the
accounts version: the version moves on every commit that writes `users` or
`revoked_tokens` (registration, profile or role change, password change,
logout, revoke-all, ...), noticed where the catalog's writes are noticed
(`app.services.versions`). So a logout, a revoked account or a demotion is
refused on the very next request anywhere, as before; only repeated reads
with an unchanged account skip the query. A kept user is read again after
ACCOUNT_CACHE_TTL seconds all the same: an operator demotes or deletes an
account in SQL (no API does), which no commit of the app's reports.

The version lives where the catalog's does: Redis when REDIS_URL is set (a
GET, shared by every host; Redis down: the database answers), else a
memory-mapped file in the instance folder (shared by the processes of one
host). Write requests always read the user in their own transaction.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict

from flask import Flask, current_app, has_app_context
from sqlalchemy.orm import make_transient_to_detached
from sqlalchemy.orm.attributes import set_committed_value

from app.db import in_read_request
from app.models import User
from app.services import versions
from app.services.catalog_cache import LocalStore, RedisStore, bump_shared, shared_version
from app.services.revocation import revocations

ACCOUNT_TABLES = frozenset({"users", "revoked_tokens"})


class AccountCache:
    """Token users by `jti` in this process (least recently used dropped
    first), each valid at the version it was read under, for `ttl` seconds."""

    def __init__(self, store: LocalStore | RedisStore, size: int, ttl: float) -> None:
        self.store = store
        self.size = size
        self.ttl = ttl
        # jti -> ((version, monotonic time) read at, user id, user)
        self.users: OrderedDict[str, tuple[tuple[str, float], int, User]] = OrderedDict()
        self.lock = threading.Lock()

    def get(self, version: str, jti: str, user_id: int) -> User | None:
        """The kept user, if read for this token at `version`: a detached
        copy, shared by every read request of that token (see `_detached_copy`)."""
        with self.lock:
            found = self.users.get(jti)
            if found is not None:
                self.users.move_to_end(jti)
        if found is None:
            return None
        (kept_version, kept_at), kept_id, user = found
        if kept_version != version or kept_id != user_id or time.monotonic() - kept_at > self.ttl:
            return None
        return user

    def keep(self, version: str, jti: str, user: User) -> None:
        copy = _detached_copy(user)
        with self.lock:
            self.users[jti] = ((version, time.monotonic()), user.id, copy)
            self.users.move_to_end(jti)
            while len(self.users) > self.size:
                self.users.popitem(last=False)

    def forget(self) -> None:
        with self.lock:
            self.users.clear()


def _detached_copy(user: User) -> User:
    """The user's column values in a new instance that belongs to no session,
    and never joins one: read requests are handed this very object, its
    columns loaded, nothing else to load, nothing written through it (a read
    view uses the user's id and role). Merging it into each request's
    session was 7 % of a cart or order read (0.69 -> 0.64 ms in-process)."""
    copy = User.__mapper__.class_manager.new_instance()
    for attribute in User.__mapper__.column_attrs:
        set_committed_value(copy, attribute.key, getattr(user, attribute.key))
    make_transient_to_detached(copy)
    return copy


def init_account_cache(app: Flask) -> None:
    """The app's cache (none when ACCOUNT_CACHE_MAX_ENTRIES is 0: the version
    is bumped all the same, for the processes that keep users)."""
    size = app.config["ACCOUNT_CACHE_MAX_ENTRIES"]
    store = shared_version(app, "accounts", app.config["ACCOUNT_CACHE_PREFIX"], keeps=bool(size))
    ttl = app.config["ACCOUNT_CACHE_TTL"]
    app.extensions["account_cache"] = AccountCache(store, size, ttl) if size else None
    versions.watch("accounts_changed", ACCOUNT_TABLES, bump)


def bump() -> None:
    """A new accounts version: every kept user is out (called after a commit
    by `app.services.versions`, which logs its errors)."""
    cache = current_app.extensions.get("account_cache") if has_app_context() else None
    if cache is not None:
        cache.forget()  # this process's copies go first, even if the store fails
    bump_shared("accounts")


def user_and_revoked(user_id: int, jti: str) -> tuple[User | None, bool]:
    """The token's user and whether the token is revoked: from the cache for a
    read request whose token and account have not changed since this process
    last read them, else from the database (and kept, for a read)."""
    cache = current_app.extensions.get("account_cache") if in_read_request() else None
    version = cache.store.version() if cache is not None else None
    if version is None:  # a write, the cache off, or Redis unreachable
        return revocations().user_and_revoked(user_id, jti)
    kept = cache.get(version, jti, user_id)
    if kept is not None:
        return kept, False
    user, revoked = revocations().user_and_revoked(user_id, jti)
    if user is not None and not revoked:
        cache.keep(version, jti, user)
    return user, revoked
