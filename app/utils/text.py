"""Text helpers: strings no database can hold; bidi controls a string leaves open."""

from __future__ import annotations

import re
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


# Unicode's explicit directional formatting characters (UAX #9, 2.1-2.7).
_EMBEDDINGS = "\u202a\u202b\u202d\u202e"  # LRE, RLE, LRO, RLO: closed by PDF
_ISOLATES = "\u2066\u2067\u2068"  # LRI, RLI, FSI: closed by PDI
_PDF, _PDI = "\u202c", "\u2069"
_ANY_DIRECTIONAL = re.compile("[\u202a-\u202e\u2066-\u2069]")


def close_bidi(text: str) -> str:
    """`text` followed by the PDF and PDI characters that close the
    embeddings, overrides and isolates it leaves open (as UAX #9 X6a-X7
    match them), so that what is written after it is not shown in its
    direction: a name ending in an open right-to-left override reversed
    the rest of its line, digits too. A line break inside `text` is not
    taken to close anything (HTML shows it as `<br>` or a space, within one
    paragraph); a closer with nothing open is ignored by every reader. Text
    that leaves nothing open is returned as it is."""
    if _ANY_DIRECTIONAL.search(text) is None:
        return text
    stack: list[str] = []
    for char in text:
        if char in _EMBEDDINGS:
            stack.append(_PDF)
        elif char in _ISOLATES:
            stack.append(_PDI)
        elif char == _PDF and stack and stack[-1] == _PDF:
            stack.pop()
        elif char == _PDI and _PDI in stack:
            while stack.pop() != _PDI:
                pass
    return text + "".join(reversed(stack))
