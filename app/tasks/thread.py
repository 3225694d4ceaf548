"""The embedded worker: without Redis, each app process delivers its outbox
rows and runs the periodic jobs in one background thread."""

from __future__ import annotations

import atexit
import logging
import os
import threading

from flask import Flask

from app.tasks import runner

log = logging.getLogger(__name__)
BATCH = 100  # rows per round, so periodic jobs and stop() are not starved


class EmbeddedWorker:
    def __init__(self, app: Flask):
        self.app = app
        self.wake = threading.Event()
        self.lock = threading.Lock()
        self.thread: threading.Thread | None = None
        self.pid: int | None = None
        self.stopping = False
        self.next_try: dict[str, float] = {}  # periodic jobs: `runner.run_due_jobs`
        self.at_exit = False

    def ensure_started(self) -> None:
        # Started on first use in each process (gunicorn forks after import).
        if self.thread is not None and self.pid == os.getpid() and self.thread.is_alive():
            return
        with self.lock:
            if self.thread is not None and self.pid == os.getpid() and self.thread.is_alive():
                return
            self.stopping = False
            self.pid = os.getpid()
            self.thread = threading.Thread(target=self._run, name="shop-background", daemon=True)
            self.thread.start()
            if not self.at_exit:
                # Any process that leaves normally (a CLI command whose commit
                # woke the thread, not only a gunicorn worker: `worker_exit`)
                # first lets the thread record the email it is sending; cut
                # off, it left a row sent but unmarked, claimed by a process
                # that was gone (found by review).
                # A send ends by its lease's end (runner.deliver_batch), so
                # that is the longest the process waits (MAIL_TIMEOUT + 5 s
                # was shorter than a slow send, found by review).
                atexit.register(self.stop, float(self.app.config["OUTBOX_LEASE"]))
                self.at_exit = True

    def notify(self, ids: list[int]) -> None:
        self.ensure_started()
        self.wake.set()

    def stop(self, timeout: float = 10) -> None:
        """Let the thread finish the batch it is sending (recorded as sent)
        and end; called when the process leaves (gunicorn's `worker_exit`
        hook). Cut off mid-batch, the daemon thread left emails it had sent
        unmarked, and another process sent them again after the lease."""
        self.stopping = True
        self.wake.set()
        if self.thread is not None and self.thread.is_alive():
            self.thread.join(timeout)
        if self.thread is not None and self.thread.is_alive():
            # Still sending: kept, so a later notify() does not start a second
            # thread beside it (it ends after its batch: `stopping`).
            log.warning("background thread still busy after %.0f s", timeout)
            return
        self.thread = None

    def _run(self) -> None:
        interval = float(self.app.config["OUTBOX_SWEEP_INTERVAL"])
        while not self.stopping:
            self.wake.clear()
            with self.app.app_context():
                try:
                    busy = runner.drain(limit=BATCH, stopping=lambda: self.stopping) == BATCH
                    if not self.stopping:  # no periodic job starts while the process leaves
                        runner.run_due_jobs(self.next_try)
                except Exception:
                    log.exception("background work failed; retrying on the next tick")
                    busy = False
            if not busy:
                self.wake.wait(timeout=interval)
