"""A cap on concurrent password hashing, per process."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

from flask import Flask, current_app

from app.errors import ServerBusy


def init_password_hashing(app: Flask) -> None:
    """Per process, at most PASSWORD_HASH_CONCURRENCY password hashes at once."""
    app.extensions["shop_hash_slots"] = threading.BoundedSemaphore(
        app.config["PASSWORD_HASH_CONCURRENCY"]
    )


@contextmanager
def hashing() -> Iterator[None]:
    """A slot for one password hash (scrypt: ~100 ms of CPU). A login flood then
    occupies only that many threads per process - the others keep serving the
    catalog - and a request that cannot get a slot within PASSWORD_HASH_WAIT
    seconds is a 503 instead of a thread held in a queue."""
    slots = current_app.extensions["shop_hash_slots"]
    if not slots.acquire(timeout=current_app.config["PASSWORD_HASH_WAIT"]):
        raise ServerBusy("Too many sign-ins at once; try again in a moment")
    try:
        yield
    finally:
        slots.release()
