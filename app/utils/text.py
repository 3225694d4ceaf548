"""Strings no database can hold."""

from __future__ import annotations

from collections.abc import Iterable

NUL_MESSAGE = "Must not contain the NUL character."
SURROGATE_MESSAGE = "Must be valid Unicode text (no lone surrogate escapes)."


def bad_text(value: str) -> str | None:
    """Why a string cannot be stored or compared (PostgreSQL cannot hold a NUL;
    no database driver or hash can encode a lone surrogate), or None."""
    if "\x00" in value:
        return NUL_MESSAGE
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return SURROGATE_MESSAGE
    return None


def any_bad_text(pairs: Iterable[tuple[str, str]]) -> bool:
    """Whether any name or value of `pairs` (a query string's) is bad text."""
    return any(bad_text(name) or bad_text(value) for name, value in pairs)
