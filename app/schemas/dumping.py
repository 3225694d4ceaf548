"""What Marshmallow's fields do when they dump, as plain functions, for the
precompiled dumps of the hot private reads (`dump_cart`, `dump_order`): the
same value for the same input, None staying None. Each dump function is held
equal to its schema's `dump()` by tests/test_private_dumps.py."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from marshmallow.utils import ensure_text_type

from app.schemas.common import dump_money


def integer(value: Any) -> int | None:
    """`fields.Integer`."""
    return None if value is None else int(value)


def string(value: Any) -> str | None:
    """`fields.String`."""
    return None if value is None else ensure_text_type(value)


money = dump_money  # `app.schemas.common.Money`: one definition of how money is rendered


def iso_datetime(value: datetime | None) -> str | None:
    """`fields.DateTime()` (ISO 8601)."""
    return None if value is None else value.isoformat()
