"""URL converters for the API's routes."""

from __future__ import annotations

from werkzeug.exceptions import NotFound
from werkzeug.routing import IntegerConverter

from app.models.types import INTEGER_MAX


class IdConverter(IntegerConverter):
    """`<int:...>` in our routes: an id, documented as 1 to the INTEGER maximum.
    Any other number names no row: a 404 here, instead of a query that
    PostgreSQL refuses (a 500 for ids past INTEGER). Not a ValidationError,
    which would make werkzeug answer 405 when the path has other methods."""

    def __init__(self, map, *args, **kwargs):
        super().__init__(map, *args, **kwargs)
        self.min, self.max = 1, INTEGER_MAX  # flask-smorest documents these bounds

    def to_python(self, value: str) -> int:
        if not value.isascii():  # werkzeug's \d+ and int() read any script's digits
            raise NotFound()
        # More digits than the maximum has name no row; int() refuses past
        # 4,300 digits with a ValueError, which routing let through: a 500
        # (found by review).
        digits = value.lstrip("0") or "0"
        if len(digits) > len(str(self.max)):
            raise NotFound()
        number = int(digits)
        if not self.min <= number <= self.max:
            raise NotFound()
        return number
