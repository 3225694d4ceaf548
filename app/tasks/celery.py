"""Celery on Redis, set up as in Flask's "Background Tasks with Celery": each
task runs in an app context. Workers: `flask worker` (see app/commands.py)."""

from __future__ import annotations

import logging

from celery import Celery, Task, shared_task
from celery.signals import worker_process_init
from flask import Flask

from app.extensions import db
from app.services import outbox
from app.services.background import PERIODIC_JOBS
from app.tasks import runner

log = logging.getLogger(__name__)


def celery_init_app(app: Flask) -> Celery:
    class FlaskTask(Task):
        def __call__(self, *args, **kwargs):
            with app.app_context():
                return self.run(*args, **kwargs)

    celery_app = Celery(app.name, task_cls=FlaskTask)
    schedule = {
        "outbox-sweep": {
            "task": "shop.outbox.sweep",
            "schedule": app.config["OUTBOX_SWEEP_INTERVAL"],
        }
    }
    with app.app_context():
        for job in PERIODIC_JOBS.values():
            if job.interval() > 0:
                schedule[f"periodic-{job.name}"] = {
                    "task": "shop.periodic",
                    "schedule": job.interval(),
                    "args": (job.name,),
                }
    celery_app.config_from_object(
        {
            "broker_url": app.config["REDIS_URL"],
            "task_ignore_result": True,
            "broker_connection_retry_on_startup": True,
            # A web request never waits for a broker that is down: the row is
            # committed, and the sweep enqueues it later.
            "task_publish_retry": False,
            # And a read timeout: a Redis that accepts but never answers (a
            # stopped server, a partition) held the request in kombu's PING
            # after the commit, for ever (found by review).
            "broker_transport_options": {"socket_connect_timeout": 2, "socket_timeout": 3},
            "broker_connection_timeout": 2,
            # One message at a time per worker process: the others stay in
            # Redis for whichever worker is free.
            "worker_prefetch_multiplier": 1,
            "worker_hijack_root_logger": False,
            "beat_schedule": schedule,
            # Every worker may run beat (`flask worker` does): schedules live in
            # memory, and a job runs once per interval (a compare-and-set in the
            # database), however many beats tick.
            "beat_scheduler": "celery.beat:Scheduler",
            **app.config.get("CELERY", {}),
        }
    )
    celery_app.set_default()

    def fresh_connections(**_kwargs) -> None:
        # A forked pool process must not share the parent's database sockets.
        with app.app_context():
            db.engine.dispose(close=False)

    worker_process_init.connect(fresh_connections, weak=False)
    app.extensions["celery"] = celery_app
    return celery_app


@shared_task(name="shop.outbox.deliver", ignore_result=True)
def deliver(message_id: int) -> None:
    """Deliver one outbox row, unless another worker has it or it is done."""
    runner.deliver_one(message_id)


@shared_task(name="shop.outbox.sweep", ignore_result=True)
def sweep() -> None:
    """Enqueue rows whose enqueue was lost (a crash after the commit) and due retries."""
    from flask import current_app

    for message_id in outbox.due_ids(current_app.config["OUTBOX_SWEEP_GRACE"]):
        deliver.delay(message_id)


@shared_task(name="shop.periodic", ignore_result=True)
def periodic(name: str) -> None:
    """Run a registered periodic job (once per interval across all workers)."""
    runner.run_job(name)
