"""Review of orders and inventory under concurrency and odd sequences
(session 15, reviewer: orders6). Each test failed on the code before its fix."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from app.models.product import MAX_STOCK

ROOT = Path(__file__).resolve().parent.parent


def _start_up_error(tmp_path, **env: str) -> str:
    """What `create_app()` printed when it refused these variables ("" if it started)."""
    result = subprocess.run(
        [sys.executable, "-c", "from app import create_app; create_app('development')"],
        env={
            **os.environ,
            "DATABASE_URL": f"sqlite:///{tmp_path / 'start.db'}",
            "BACKGROUND_MODE": "off",
            **env,
        },
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    return "" if result.returncode == 0 else result.stderr


def test_a_default_low_stock_threshold_past_what_a_product_takes_is_refused_at_start_up(
    tmp_path,
):
    """LOW_STOCK_THRESHOLD was read with a minimum and no maximum: a value an
    admin could never give a product (API: 0 to 1,000,000,000) started, and
    then every product created without a threshold got it: past INTEGER, a
    500 on every such POST /api/products on PostgreSQL (SQLite stored it);
    within INTEGER, an answer whose threshold a PUT of the same product
    refuses (422). Start-up now refuses it, naming the variable, as it does
    every other bounded setting."""
    error = _start_up_error(tmp_path, LOW_STOCK_THRESHOLD=str(MAX_STOCK + 1))
    assert "LOW_STOCK_THRESHOLD" in error, error or "started"
    assert _start_up_error(tmp_path, LOW_STOCK_THRESHOLD=str(MAX_STOCK)) == ""
