"""Background work: where outbox rows go after a commit, and who runs
periodic jobs. `BACKGROUND_MODE`:

- `celery` (`auto` with `REDIS_URL`): each commit enqueues its rows on Redis;
  `flask worker` processes deliver them, sweep lost ones and run the jobs.
- `thread` (`auto` without `REDIS_URL`): a thread in each app process does the
  same work after each commit and on a timer (`make run` needs nothing more).
- `off`: rows are only recorded (tests; or web hosts whose workers run elsewhere).
"""

from __future__ import annotations

import importlib
import logging

from flask import Flask, current_app
from flask_sqlalchemy.session import Session
from sqlalchemy import event

from app.services.outbox import AFTER_COMMIT

log = logging.getLogger(__name__)

# Modules that register task handlers and periodic jobs (`app.services.background`);
# imported before a worker builds its schedule. Add yours here.
JOB_MODULES = (
    "app.services.account_tokens",
    "app.services.notifications",
    "app.services.payment_timeouts",
)


def background_mode(app: Flask) -> str:
    mode = app.config["BACKGROUND_MODE"]
    if mode == "auto":
        return "celery" if app.config.get("REDIS_URL") else "thread"
    if mode not in {"celery", "thread", "off"}:
        raise RuntimeError(f"unknown BACKGROUND_MODE {mode!r}: auto, celery, thread or off")
    if mode == "celery" and not app.config.get("REDIS_URL"):
        raise RuntimeError("BACKGROUND_MODE=celery needs REDIS_URL")
    return mode


class CeleryDispatcher:
    def notify(self, ids: list[int]) -> None:
        from app.tasks.celery import deliver

        for message_id in ids:
            try:
                deliver.apply_async((message_id,))
            except Exception as error:  # noqa: BLE001 - the sweep enqueues it later
                log.warning("could not enqueue outbox %s (the sweep will): %s", message_id, error)
                return

    def stop(self, timeout: float = 0) -> None:
        pass


class NoDispatcher:
    def notify(self, ids: list[int]) -> None:
        pass

    def stop(self, timeout: float = 0) -> None:
        pass


def init_background(app: Flask) -> None:
    for module in JOB_MODULES:
        importlib.import_module(module)
    _listen_to_sessions()
    mode = background_mode(app)
    if app.config.get("REDIS_URL"):
        from app.tasks.celery import celery_init_app

        celery_init_app(app)  # also for `flask worker` when web hosts run threads
    if mode == "celery":
        dispatcher = CeleryDispatcher()
    elif mode == "thread":
        from app.tasks.thread import EmbeddedWorker

        dispatcher = EmbeddedWorker(app)
        app.before_request(dispatcher.ensure_started)  # leftovers of a crash, periodic jobs
    else:
        dispatcher = NoDispatcher()
    app.extensions["shop_background"] = dispatcher

    from app.tasks.commands import register_commands

    register_commands(app)


def dispatcher():
    return current_app.extensions["shop_background"]


_listening = False


def _listen_to_sessions() -> None:
    global _listening
    if _listening:
        return
    _listening = True

    @event.listens_for(Session, "after_commit")
    def _after_commit(session) -> None:
        queued = session.info.pop(AFTER_COMMIT, None)
        if queued:
            dispatcher().notify([message_id for message_id, _savepoint in queued])

    @event.listens_for(Session, "after_soft_rollback")
    def _after_rollback(session, previous_transaction) -> None:
        if not previous_transaction.nested:
            session.info.pop(AFTER_COMMIT, None)
            return
        # A savepoint rolled back: the rows queued inside it (or inside a
        # savepoint within it) are gone, and never handed to a worker.
        queued = session.info.get(AFTER_COMMIT)
        if queued:
            queued[:] = [
                (message_id, savepoint)
                for message_id, savepoint in queued
                if not _within(savepoint, previous_transaction)
            ]


def _within(transaction, savepoint) -> bool:
    """Whether `transaction` is `savepoint` or a savepoint inside it."""
    while transaction is not None:
        if transaction is savepoint:
            return True
        transaction = transaction.parent
    return False
