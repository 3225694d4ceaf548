"""Review (r3mail) of 948e43d, c47834d, 6d8ce40, 56571de, 0a49bba."""

from __future__ import annotations

import pytest

from app.db import unit_of_work
from app.extensions import db as _db
from app.services import outbox
from app.tasks import runner
from tests.smtp import LOW_STOCK, outbox_rows


def _config_accepts(**env: str) -> bool:
    import os
    import subprocess
    import sys

    result = subprocess.run(
        [sys.executable, "-c", "import config"],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
    )
    return result.returncode == 0


def test_a_finite_but_huge_lease_either_stops_start_up_or_still_sends(app, db, smtp_server):
    """948e43d made config.env_float refuse nan/inf because "`inf`
    overflowed" (the claim's `utcnow() + timedelta(seconds=lease)` in
    app/services/outbox.py). A finite value too large for a datetime
    overflows exactly the same way: OUTBOX_LEASE=1e12 passes every check
    at start-up (finite, more than MAIL_TIMEOUT), then every claim raises
    OverflowError ("date value out of range") and no email ever leaves.
    Expected (as the commit's own test for inf): start-up refuses it naming
    the setting (an upper bound), or the email is still sent."""
    if not _config_accepts(OUTBOX_LEASE="1e12"):
        return  # refused at start-up: fixed
    saved = app.config["OUTBOX_LEASE"]
    app.config["OUTBOX_LEASE"] = 1e12
    try:
        with unit_of_work():
            outbox.queue_email("someone@example.com", "low_stock", LOW_STOCK)
        _db.session.remove()
        try:
            runner.deliver_one()
        except Exception as error:  # noqa: BLE001 - the defect itself
            pytest.fail(f"the worker crashed on OUTBOX_LEASE=1e12: {error!r}")
        _db.session.remove()
        [row] = outbox_rows(db)
        assert row.status == "sent", (row.status, row.last_error)
    finally:
        app.config["OUTBOX_LEASE"] = saved


def test_a_finite_but_huge_retry_backoff_either_stops_start_up_or_schedules_the_retry(app, db):
    """Same class as above for MAIL_RETRY_BACKOFF / MAIL_RETRY_BACKOFF_MAX
    (config.env_float, finite, no upper bound): after a failed send,
    outbox.mark_failed_attempt computes `utcnow() + timedelta(seconds=
    backoff)`, which overflows for 1e12 s. Expected: start-up refuses the
    value, or the failed attempt is recorded (row pending, attempts 1, a
    last_error) rather than the worker crashing."""
    from tests.smtp import MAIL_KEYS, free_port

    env = {"MAIL_RETRY_BACKOFF": "1e12", "MAIL_RETRY_BACKOFF_MAX": "1e12"}
    if not _config_accepts(**env):
        return  # refused at start-up: fixed
    saved = {key: app.config[key] for key in [*MAIL_KEYS, *env]}
    app.config.update(
        MAIL_BACKEND="smtp", MAIL_SERVER="127.0.0.1", MAIL_PORT=free_port(),
        MAIL_RETRY_BACKOFF=1e12, MAIL_RETRY_BACKOFF_MAX=1e12,
    )  # fmt: skip
    try:
        with unit_of_work():
            outbox.queue_email("someone@example.com", "low_stock", LOW_STOCK)
        _db.session.remove()
        try:
            runner.deliver_one()
        except Exception as error:  # noqa: BLE001 - the defect itself
            pytest.fail(f"the worker crashed on MAIL_RETRY_BACKOFF=1e12: {error!r}")
        _db.session.remove()
        [row] = outbox_rows(db)
        assert row.status in ("pending", "failed") and row.attempts == 1, (row.status, row.attempts)
    finally:
        app.config.update(saved)
