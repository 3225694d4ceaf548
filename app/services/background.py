"""What background work exists: task handlers (run from outbox rows) and
periodic jobs. Plain registries; `app.tasks` runs them on Celery workers or
in the embedded thread, each call in its own transaction.

    from app.services.background import periodic, task_handler

    @periodic("orders.payment_timeout", every="ORDER_PAYMENT_SWEEP_INTERVAL")
    def cancel_abandoned_orders() -> None: ...

    @task_handler("auth.password_reset")
    def send_reset_link(args: dict) -> None: ...
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from flask import current_app

TaskHandler = Callable[[dict[str, Any]], None]


@dataclass(frozen=True)
class PeriodicJob:
    name: str
    run: Callable[[], None]
    every: float | str  # seconds, or the name of a config key holding seconds

    def interval(self) -> float:
        """Seconds between runs; 0 or less turns the job off."""
        if isinstance(self.every, str):
            return float(current_app.config[self.every])
        return float(self.every)


TASK_HANDLERS: dict[str, TaskHandler] = {}
PERIODIC_JOBS: dict[str, PeriodicJob] = {}


def task_handler(name: str) -> Callable[[TaskHandler], TaskHandler]:
    """Register `fn(args)` to run for outbox tasks queued as `queue_task(name, args)`.
    It runs in a transaction committed together with the row's completion, so
    its database effects happen once; it is retried with backoff when it raises."""

    def register(fn: TaskHandler) -> TaskHandler:
        TASK_HANDLERS[name] = fn
        return fn

    return register


def periodic(name: str, every: float | str) -> Callable[[Callable[[], None]], Callable[[], None]]:
    """Register `fn()` to run every `every` seconds (or config key), at most once
    per interval across all workers and hosts, in its own transaction. It must
    still be safe if two runs overlap (claim rows, compare-and-set)."""

    def register(fn: Callable[[], None]) -> Callable[[], None]:
        PERIODIC_JOBS[name] = PeriodicJob(name, fn, every)
        return fn

    return register
