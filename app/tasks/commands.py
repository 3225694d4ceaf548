"""`flask worker` and `flask mail ...`."""

from __future__ import annotations

import click
from flask import Flask, current_app
from flask.cli import AppGroup

from app.commands import needs_tables
from app.db import unit_of_work
from app.models.types import INTEGER_MAX
from app.services import outbox
from app.tasks import runner

mail_cli = AppGroup("mail", help="The email outbox: failed messages, retries, delivery.")


# Numbers up to INTEGER_MAX (the outbox id column's): a larger one was sent
# to the database as it was, a DataError traceback (found by review).
@mail_cli.command("failed")
@click.option("--limit", type=click.IntRange(1, INTEGER_MAX), default=100, show_default=True)
@needs_tables
def failed(limit: int) -> None:
    """List messages that failed MAIL_MAX_ATTEMPTS times, with the last error."""
    messages = outbox.failed_messages(limit)
    if not messages:
        click.echo("No failed messages.")
        return
    for message in messages:
        click.echo(
            f"{message.id}\t{message.kind}\t{message.topic}\t{message.recipient or '-'}\t"
            f"{message.attempts} attempts\t{message.created_at.isoformat()}\t{message.last_error}"
        )


@mail_cli.command("retry")
@click.argument("ids", nargs=-1, type=click.IntRange(1, INTEGER_MAX))
@click.option("--all", "retry_all", is_flag=True, help="Retry every failed message.")
@needs_tables
def retry(ids: tuple[int, ...], retry_all: bool) -> None:
    """Queue failed messages again (these IDS, or --all) with fresh attempts."""
    if not ids and not retry_all:
        raise click.UsageError("give message ids, or --all")
    if ids and retry_all:
        # The ids were retried and --all ignored, the exit 0 saying nothing
        # of the other failed messages left as they were (found by review).
        raise click.UsageError("give message ids or --all, not both")
    with unit_of_work():
        chosen = outbox.retry_failed(list(ids) or None)
    click.echo(f"Queued {len(chosen)} message(s) again: {', '.join(map(str, chosen)) or '-'}.")


@mail_cli.command("deliver")
@needs_tables
def deliver() -> None:
    """Deliver every due message now, in this process (then exit)."""
    count = runner.drain()
    click.echo(f"Processed {count} message(s). Now: {outbox.counts()}.")


def register_commands(app: Flask) -> None:
    app.cli.add_command(mail_cli)

    @app.cli.command(
        "worker", context_settings={"ignore_unknown_options": True, "allow_extra_args": True}
    )
    @click.option("--beat/--no-beat", default=True, help="Also tick the periodic jobs.")
    @click.argument("celery_args", nargs=-1, type=click.UNPROCESSED)
    def worker(beat: bool, celery_args: tuple[str, ...]) -> None:
        """Run a Celery worker on REDIS_URL (extra arguments go to `celery worker`)."""
        celery_app = current_app.extensions.get("celery")
        if celery_app is None:
            raise click.ClickException("REDIS_URL is not set: workers take their work from Redis")
        argv = ["worker", "--loglevel", current_app.config["LOG_LEVEL"]]
        if beat:
            argv += ["--beat"]
        celery_app.worker_main([*argv, *celery_args])
