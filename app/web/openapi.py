"""What the OpenAPI document says about errors and money, in one place.

Every operation gets the error responses it can give from what it is, not from
a decorator per view: a JSON body brings 400/413/415/422, a bearer token 401,
the admin role 403, a path id 404, and the rate limiter 429 everywhere. Each
one is the error envelope (`ErrorSchema`)."""

from __future__ import annotations

import copy
import functools
import unicodedata
from http import HTTPStatus
from typing import Any

from marshmallow import fields, missing, validate

from app.schemas.common import Money, NoControl, NonBlank
from app.schemas.inventory import NonZero
from app.web.overrides import declared_fields

API_DESCRIPTION = """The shop's JSON API: catalog, reviews, cart, orders and accounts.

* **Auth**: private operations (the lock icon) need `Authorization: Bearer <access_token>`.
  Get a token from `POST /api/auth/login` (or `signup`), then press **Authorize**.
* **Errors**: every error is `{"code": "...", "message": "...", "errors": {field: [messages]},
  "details": {...}}` (the `Error` schema): branch on the stable `code`, show `message`;
  `errors` only for validation, `details` for `out_of_stock`, `insufficient_stock`,
  `invalid_transition` and `duplicate`. Any operation may also answer 500
  `{"code": "internal_error", ...}`.
* **Money** is a JSON number with at most two decimals; inputs also take a numeric string.
* **Lists** answer `{items, page, per_page, total, pages}`.
* **Input**: a JSON body is UTF-8 and names each key once (a repeated key is a 422);
  so does a query: a parameter given twice is a 422 naming it (none takes several
  values); unknown ones are ignored, repeated or not. An integer in a query is
  written plainly: `1`, not `+1`, `01` or ` 1` (a 422).
"""

# flask-smorest's settings: the document's metadata, where it is served, and
# the bearer scheme `Blueprint.private` refers to. `Api.init_app` puts them in
# the app's config unless the config (e.g. instance/config.py) sets them.
SETTINGS: dict[str, Any] = {
    "API_TITLE": "Shop API",
    "API_VERSION": "1.0.0",
    "OPENAPI_VERSION": "3.0.3",
    "OPENAPI_URL_PREFIX": "/api",
    "OPENAPI_JSON_PATH": "openapi.json",
    "API_SPEC_OPTIONS": {
        "info": {"description": API_DESCRIPTION},
        "components": {
            "securitySchemes": {
                "bearerAuth": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}
            }
        },
        "servers": [
            {"url": "/", "description": "The server that serves this document"},
            {"url": "http://localhost:5000", "description": "Local development (make run)"},
        ],
    },
}

ERROR_DESCRIPTIONS: dict[int, str] = {
    400: "The body is not valid JSON.",
    401: "Missing, malformed, expired, tampered or revoked token.",
    403: "Authenticated, but the action needs an admin or is not the caller's to take.",
    404: "No such resource (or it belongs to another user).",
    405: "Method not allowed on this path.",
    409: "Conflict with the current state.",
    413: "Request body larger than the configured limit (1 MiB by default).",
    415: "A body sent with a content type other than application/json, or not in UTF-8.",
    422: "Validation failed: `errors` maps each offending field (or `_schema`) to messages.",
    429: "Rate limit exceeded.",
    500: "Unexpected error.",
    503: "Service unavailable.",
}

BODY_ERRORS = (400, 413, 415, 422)

IDEMPOTENCY_KEY_PARAMETER = {
    "in": "header",
    "name": "Idempotency-Key",
    "required": False,
    # app.web.idempotency.KEY_PATTERN, anchored (tests/test_openapi_contract.py)
    "schema": {
        "type": "string",
        "minLength": 1,
        "maxLength": 255,
        "pattern": r"^[\x21-\x7e]([\x20-\x7e]*[\x21-\x7e])?$",
    },
    "description": (
        "A retry with the same key by the same user gets the first answer back (same status "
        "and body, with `Idempotent-Replayed: true`) and creates nothing; the same key with a "
        "different body is a 422, and while the first request still runs a 409."
    ),
}


def _class_ranges(codes: list[int]) -> str:
    """`codes` (ascending, BMP) as the inside of a regex character class."""
    ranges, start = [], codes[0]
    for previous, code in zip(codes, [*codes[1:], None], strict=True):
        if code != previous + 1:
            ranges.append(f"\\u{start:04x}" + (f"-\\u{previous:04x}" if previous > start else ""))
            start = code
    return "".join(ranges)


@functools.cache
def _blank_ranges() -> str:
    return _class_ranges([code for code in range(0x10000) if not NonBlank.visible(chr(code))])


@functools.cache
def visible_character() -> str:
    """A pattern found in a value that `NonBlank` accepts: one character
    outside the set it counts as blank (whitespace and format characters),
    that set spelled out as ranges of the Basic Multilingual Plane. `\\S` let
    a name of zero-width spaces through, which the server refuses (found by
    review); ECMA-262's and Python's whitespace differ too (U+0085, U+001C-1F).
    A value of astral format characters only (U+E0001, ...) still matches in
    an engine that reads it as surrogates: the server's 422 is the last word."""
    return "[^" + _blank_ranges() + "]"


# Unicode's control characters (category Cc: U+0000-001F, U+007F-009F), all
# in the Basic Multilingual Plane.
CONTROLS = tuple(code for code in range(0x10000) if unicodedata.category(chr(code)) == "Cc")


def nonblank2properties(self, field, ret: dict, **kwargs: Any) -> dict:
    """apispec attribute function: the text rules of a request field in its
    `pattern`. `NonBlank`: it holds a visible character (`visible_character`,
    found anywhere). `NoControl`: no control character but those it allows
    (a description's tabs and line breaks), the whole value anchored; with
    `NonBlank` too, one pattern says both. The document took a review title
    with a bell or a product name with a tab, which the server refuses with
    a 422 (found by review). An answer's field keeps `NonBlank`'s pattern
    only: it holds what is stored, rows older than a rule included."""
    validators = getattr(field, "validators", ())
    non_blank = any(isinstance(validator, NonBlank) for validator in validators)
    no_control = [v for v in validators if isinstance(v, NoControl)]
    if not no_control or field.dump_only or getattr(field.parent, "IS_RESPONSE", False):
        return {"pattern": visible_character()} if non_blank else {}
    allowed = set(no_control[0].allowed)
    refused = _class_ranges([code for code in CONTROLS if chr(code) not in allowed])
    if not non_blank:
        return {"pattern": f"^[^{refused}]*$"}
    return {"pattern": f"^[^{refused}]*[^{_blank_ranges()}{refused}][^{refused}]*$"}


def email2properties(self, field, ret: dict, **kwargs: Any) -> dict:
    """apispec attribute function: an email input takes what RFC 6531 does
    (`bob@straße.de`, `josé@example.com`), JSON Schema's `idn-email`; its
    `email` is ASCII only, and clients validating it refused addresses the
    API accepts (found by review)."""
    return {"format": "idn-email"} if isinstance(field, fields.Email) else {}


# What `fields.URL(schemes={"http", "https"})` and `NoUnsafeUrlCharacters`
# (app.schemas.product) refuse for certain: another scheme (the scheme is read
# ignoring case), a space, a control or a character RFC 3986 never allows.
HTTP_URL_PATTERN = r'^[Hh][Tt][Tt][Pp][Ss]?://[^\x00-\x20"<>\\^`{|}\x7f-\x9f]+$'


def url2properties(self, field, ret: dict, **kwargs: Any) -> dict:
    """apispec attribute function: an http(s) URL input has a pattern. Its
    `format: url` is no JSON Schema format, which validators ignore: a client
    validating the document took `""`, `ftp://...` and `javascript:...` as an
    `image_url`, which the server refuses (found by review)."""
    if not isinstance(field, fields.URL) or field.dump_only:
        return {}
    if getattr(field.parent, "IS_RESPONSE", False):
        return {}  # an answer holds what is stored, rows older than a rule included
    schemes = [getattr(v, "schemes", None) for v in field.validators if isinstance(v, validate.URL)]
    if not schemes or not all(found and found <= {"http", "https"} for found in schemes):
        return {}
    return {"pattern": HTTP_URL_PATTERN}


def nonzero2properties(self, field, ret: dict, **kwargs: Any) -> dict:
    """apispec attribute function: a `NonZero` integer is not 0 (a stock
    adjustment's `delta`: the document took `{"delta": 0}`, the server's 422;
    found by review)."""
    validators = getattr(field, "validators", ())
    if not any(isinstance(validator, NonZero) for validator in validators):
        return {}
    return {"not": {"enum": [0]}}


def money2properties(self, field, ret: dict, **kwargs: Any) -> dict:
    """apispec attribute function: a `Money` field is a JSON number; in a
    query (a schema marked `IN_QUERY`), text: the string form of a request
    body's amount (`openapi_contract.MONEY_PATTERN`). A query's value is
    text anyway, and `type: number` said nothing of the two decimals, so a
    generator (schemathesis) sent `min_price=0.001`, valid by the document,
    and got a 422 (found by review); `multipleOf: 0.01` is no exact check
    for a validator computing in binary floating point (0.07 / 0.01)."""
    if not isinstance(field, Money):
        return {}
    if getattr(field.parent, "IN_QUERY", False):
        from app.web.openapi_contract import MONEY_PATTERN

        return {
            "type": "string",
            "pattern": MONEY_PATTERN,
            "description": field.metadata.get(
                "description",
                "An amount from 0 to 1000000 with at most two decimals, in plain "
                "decimal notation (`19.99`; not `1e2`, `+5` or `05`).",
            ),
        }
    # A request's amount has the field's bounds; an answer's may be a sum
    # of them (a cart's total): no maximum there.
    bounds = {"minimum": 0}
    if not getattr(field.parent, "IS_RESPONSE", False) and not field.dump_only:
        bounds["maximum"] = float(field.maximum) if field.maximum % 1 else int(field.maximum)
    return {
        "type": "number",
        **bounds,
        "description": field.metadata.get(
            "description",
            "An exact amount with at most two decimals.",
        ),
    }


IF_NONE_MATCH = {
    "in": "header",
    "name": "If-None-Match",
    "required": False,
    "schema": {"type": "string"},
    "description": "The ETag of a copy the client holds: a 304 with no body if it is "
    "still the current answer",
}


def standard_error_responses(
    doc: dict, doc_info: dict, *, api, method: str = "get", **kwargs: Any
) -> dict:
    """flask-smorest doc callback: add the errors this operation can give and put
    the error envelope on every error response documented without a body.
    Every operation: a body that is not JSON (415, even on a GET) and a
    database or password hashing too busy to wait for (503); every one but
    those exempt from rate limits (`Blueprint.unlimited`): 429."""
    responses = doc.setdefault("responses", {})
    present = {int(code) for code in responses if str(code).isdigit()}
    access = doc_info.get("access")  # set by Blueprint.private
    secured = bool(access) or bool(doc_info.get("manual_doc", {}).get("security"))

    wanted = {415, 503}
    if doc_info.get("rate_limited", True):
        wanted.add(429)
    if "requestBody" in doc or "requestBody" in doc_info.get("manual_doc", {}):
        wanted.update(BODY_ERRORS)  # a body parsed by a schema, or documented (the webhook)
    elif method.lower() not in ("get", "head"):
        wanted.update(BODY_ERRORS)  # a write that takes no body refuses one (422, 400, 413)
    if secured:
        wanted.add(401)
    if access == "admin":
        wanted.add(403)
    if doc_info.get("has_path_args"):  # set by Blueprint.register_views_in_doc
        wanted.add(404)
    for code in wanted - present:
        responses[code] = HTTPStatus(code).name  # a lazy component, see extensions.Api
    if 304 in present:
        # The header that asks for the 304: without it a generated client had
        # no typed way to send it, nor Swagger UI (found by review).
        doc.setdefault("parameters", []).append(IF_NONE_MATCH)

    for code, response in responses.items():
        if (
            str(code).isdigit()
            and int(code) >= 400
            and isinstance(response, dict)
            and "content" not in response
        ):
            response["content"] = {api.DEFAULT_RESPONSE_CONTENT_TYPE: {"schema": api.ERROR_SCHEMA}}
    doc["responses"] = dict(sorted(responses.items(), key=lambda item: str(item[0])))
    return doc


_RESPONSE_SCHEMAS: dict[type, type] = {}


def response_schema(schema):
    """`schema` as a response: every field it dumps is always in the answer, so
    the document lists them all as required (a client's generated types need
    no "maybe missing" checks). A subclass with the same fields, marked
    required (nested schemas too), named `<Name>Response`; dumping is
    unchanged. Request schemas keep their own, looser `required`."""
    cls = schema if isinstance(schema, type) else type(schema)
    if cls not in _RESPONSE_SCHEMAS:
        fields = {
            name: _required_copy(field)
            for name, field in declared_fields(cls).items()
            if not field.load_only
        }
        name = cls.__name__.removesuffix("Schema") + "ResponseSchema"
        _RESPONSE_SCHEMAS[cls] = type(name, (cls,), {**fields, "IS_RESPONSE": True})
    return _RESPONSE_SCHEMAS[cls]


def _required_copy(field):
    field = copy.copy(field)
    field.required, field.load_default = True, missing
    if "response_maximum" in field.metadata:
        # What an answer may hold past what a request may set (a product's
        # stock after a cancel: a document whose maximum was the request's
        # declared real answers impossible; found by review).
        top = field.metadata["response_maximum"]
        field.validators = [
            validate.Range(v.min, top) if isinstance(v, validate.Range) else v
            for v in field.validators
        ]
    if isinstance(field, fields.Nested) and isinstance(field.nested, type):
        field.nested = response_schema(field.nested)
    if isinstance(field, fields.List):
        field.inner = _required_copy(field.inner)
    return field
