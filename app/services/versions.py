"""Which committed transactions changed a cached data set: the one place that
notices writes for the caches that invalidate by version (the catalog cache,
the accounts cache).

Each data set is a `Watch`: its tables (any write to them counts), columns
of other tables it shows (a row added or removed counts, and an update that
sets one of them), tables whose rows' removal changes it (what the database
deletes or recounts with them: an account's reviews), columns whose setting
changes it when a new row there does not (an author's username), and the
`bump` to call. SQLAlchemy session events mark a session whose transaction writes
one of them (an ORM flush, a Core statement or a text() one) and its commit
calls that `bump`; a rollback forgets the mark. A reader takes the version
BEFORE it queries, so what it builds while a write commits is kept under
the old version and never served after it.

A statement may leave a set to its caller: run with the execution option
`unwatched_by` (a tuple of marks), its write does not mark those sets, and
the caller marks the session itself (`mark`) when what it wrote changes
them. Inventory does so for the catalog matches' stock (only a stock that
crosses zero changes them).
"""

from __future__ import annotations

import itertools
import logging
import re
import threading
from collections.abc import Callable
from typing import NamedTuple

from sqlalchemy import Delete, TextClause, TextualSelect, Update, event, inspect
from sqlalchemy.orm import ORMExecuteState, Session


class Watch(NamedTuple):
    mark: str  # the session.info key of a transaction that changed the set
    tables: frozenset[str]  # every write to these changes the set
    columns: dict[str, tuple[str, ...]]  # columns of other tables the set shows (and their rows)
    removals: frozenset[str]  # a row removed from these changes the set
    updates: dict[str, tuple[str, ...]]  # these columns set (no row added) change it
    mentions: re.Pattern  # a text() write naming one of the tables above
    bump: Callable[[], None]  # a new version (an error is logged, never raised)
    last: bool  # bumped after every other set's version (see `watch`)


log = logging.getLogger("shop.cache")
# A text() statement that may write: any of these words anywhere in it (a
# CTE's, `UPDATE OR ABORT`, `UPDATE ONLY`, `REPLACE INTO`, `MERGE`, ...).
# With a watched table named anywhere in it (schema-qualified, quoted, in a
# subquery), its commit bumps: an operator's statement may over-bump, never
# under-bump (the pattern wanted the bare name right after the keyword, and
# `UPDATE public.products` or `UPDATE OR ABORT products` bumped nothing;
# found by review).
RAW_WRITE = re.compile(
    r"\b(?:insert|update|delete|merge|truncate|replace|copy|alter|drop)\b", re.IGNORECASE
)
_watches: list[Watch] = []
_lock = threading.Lock()


def watch(
    mark: str,
    tables: frozenset[str],
    bump: Callable[[], None],
    columns: dict[str, tuple[str, ...]] | None = None,
    *,
    removals: frozenset[str] = frozenset(),
    updates: dict[str, tuple[str, ...]] | None = None,
    last: bool = False,
) -> Watch:
    """Call `bump` after every commit that wrote `tables`, or added or removed
    a row of a table in `columns` or set one of its columns there, or removed
    a row of a table in `removals`, or set a column of `updates` (a row added
    there does not count: a new account shows in no catalog read). Once per
    `mark` per process: the events are the Session class's.

    `last`: a cache of answers built from what other sets' versions guard
    (the catalog cache's answers use the search rankings and the names
    index) is bumped after them, so a reader that sees its new version sees
    theirs too; bumped first, a read between the bumps of one commit built
    its answer from the old ranking and kept it under the new version."""
    global _watches
    columns = columns or {}
    updates = updates or {}
    named = sorted(tables | columns.keys() | removals | updates.keys())
    mentions = re.compile(r"\b(?:" + "|".join(named) + r")\b", re.IGNORECASE)
    with _lock:
        if not _watches:
            event.listen(Session, "before_flush", _before_flush)
            event.listen(Session, "do_orm_execute", _on_execute)
            event.listen(Session, "after_commit", _after_commit)
            event.listen(Session, "after_transaction_end", _after_transaction_end)
        for existing in _watches:
            if existing.mark == mark:
                return existing
        made = Watch(mark, tables, columns, removals, updates, mentions, bump, last)
        # A new list (a commit in another thread may be walking the old one),
        # sorted stably: the `last` ones at the end.
        _watches = sorted([*_watches, made], key=lambda watched: watched.last)
        return made


def _shows(watched: Watch, session: Session, obj) -> bool:
    """Whether flushing `obj` changes what the watched set shows."""
    table = getattr(obj, "__tablename__", None)
    if table in watched.removals and obj in session.deleted:
        return True
    if table in watched.updates and obj in session.dirty:
        state = inspect(obj)
        if any(state.attrs[name].history.has_changes() for name in watched.updates[table]):
            return True
    if table in watched.tables:
        return obj not in session.dirty or session.is_modified(obj)
    if table in watched.columns:
        if obj in session.new or obj in session.deleted:
            return True
        state = inspect(obj)
        return any(state.attrs[name].history.has_changes() for name in watched.columns[table])
    return False


def _sets(statement, columns: tuple[str, ...]) -> bool:
    """Whether a Core INSERT, UPDATE or DELETE may change `columns`: an
    INSERT or DELETE adds or removes rows; an UPDATE whose `.values()` name
    none of them does not (values given only as parameters, or a SQLAlchemy
    whose Update keeps them elsewhere: assume it does)."""
    if not isinstance(statement, Update):
        return True
    values = getattr(statement, "_values", None)
    if not values:
        return True
    return any(getattr(key, "key", key) in columns for key in values)


def _before_flush(session: Session, _context, _instances) -> None:
    for watched in _watches:
        if any(
            _shows(watched, session, obj)
            for obj in itertools.chain(session.new, session.deleted, session.dirty)
        ):
            session.info[watched.mark] = True


def mark(session: Session, name: str) -> None:
    """The session's transaction changed the set watched as `name`: its commit
    bumps that set's version (for a write run with `unwatched_by`)."""
    session.info[name] = True


def _raw_write(statement) -> str | None:
    """The SQL of a text() statement that may write, else None. Also one
    given result columns (`.columns()`: a TextualSelect, which SQLAlchemy
    counts as a SELECT), as an `UPDATE ... RETURNING` is."""
    if isinstance(statement, TextualSelect):
        statement = statement.element
    if isinstance(statement, TextClause) and RAW_WRITE.search(statement.text):
        return statement.text
    return None


def _on_execute(state: ORMExecuteState) -> None:
    statement = state.statement
    raw = _raw_write(statement)
    if raw is None and state.is_select:
        return
    name = getattr(getattr(statement, "table", None), "name", None)
    left_to_caller = state.execution_options.get("unwatched_by", ())
    for watched in _watches:
        if watched.mark in left_to_caller:
            continue
        if (
            name in watched.tables
            or (name in watched.columns and _sets(statement, watched.columns[name]))
            or (name in watched.removals and isinstance(statement, Delete))
            or (
                name in watched.updates
                and isinstance(statement, Update)
                and _sets(statement, watched.updates[name])
            )
            or (raw is not None and watched.mentions.search(raw))
        ):
            state.session.info[watched.mark] = True


def _after_commit(session: Session) -> None:
    for watched in _watches:
        if session.info.pop(watched.mark, False):
            try:  # a committed write must not fail because a cache does
                watched.bump()
            except Exception:
                log.exception("%s: version bump failed", watched.mark)


def bump_all() -> None:
    """A new version of every watched set: for rows written behind the
    session's back (the test suite's cleanup, a restore)."""
    for watched in _watches:
        watched.bump()


def _after_transaction_end(session: Session, transaction) -> None:
    if transaction.parent is None:  # the outermost: committed (bumped) or rolled back
        for watched in _watches:
            session.info.pop(watched.mark, None)
