"""What makes the OpenAPI document one a client generator (openapi-typescript,
Postman, Swagger UI's "Try it out") can trust, applied to every schema and
operation in one place, so new endpoints get it without a decorator:

* request components hold only what a client may send (no read-only `id`,
  `created_at`), `minProperties: 1` for changes (`ChangeSchema`), money as a
  number or a numeric string; a schema may be documented as `oneOf` other
  schemas (`OPENAPI_ONE_OF`, e.g. login by email or by username);
* every request component has a schema-level `example` that the server
  accepts: `OPENAPI_EXAMPLE` on the schema, else one built from the fields'
  `metadata={"example": ...}`;
* every operation has an `operationId` (its view's name in camelCase) and
  its responses document the headers the server sends (`X-Request-ID`
  always, `Idempotent-Replayed` with an Idempotency-Key, `Retry-After` on 429).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import marshmallow as ma
from apispec import BasePlugin
from apispec.ext.marshmallow import MarshmallowPlugin

from app.schemas.common import ChangeSchema, ErrorSchema, Money
from app.web.overrides import declared_fields

# 0 to 1,000,000 with at most two decimals, as the number form's bounds; a
# zero may carry a minus sign (`"-0"` is 0.00). The strings `Money` reads
# (schemas.common.MONEY_STRING) within those bounds, no more: the server
# took exponents, signs, leading zeros and spaces the pattern refused.
MONEY_PATTERN = r"^(-?0(\.0{1,2})?|(0|[1-9][0-9]{0,5})(\.[0-9]{1,2})?|1000000(\.00?)?)$"

REQUEST_ID_HEADER = {
    "description": "The request's id (the client's `X-Request-ID` if it sent a valid one); "
    "it is in the server's log line for the request.",
    "schema": {"type": "string"},
}
RETRY_AFTER_HEADER = {
    "description": "Seconds until the limit's window resets.",
    "schema": {"type": "integer", "minimum": 1},
}
REPLAYED_HEADER = {
    "description": "`true` when this is the stored answer to an earlier request with the "
    "same Idempotency-Key (nothing was created again).",
    "schema": {"type": "string", "enum": ["true"]},
}


def error_codes() -> dict[int, set[str]]:
    """Every code the app can answer, by status: each status's default and the
    `code` of every ApiError subclass in the app (new features add theirs)."""
    from app.errors import CODES, ApiError

    found: dict[int, set[str]] = {}
    for status, code in CODES.items():
        found.setdefault(status, set()).add(code)
    todo = list(ApiError.__subclasses__())
    while todo:
        cls = todo.pop()
        todo.extend(cls.__subclasses__())
        if cls.__module__.startswith("app.") and cls.code:
            found.setdefault(cls.status, set()).add(cls.code)
    found[401].add("token_missing")  # from the JWT loaders, which raise no ApiError
    found[401].update({"token_expired", "token_revoked"})
    # gunicorn's own refusals, answered in the envelope by gunicorn.conf.py
    # (`_json_error`), before the app sees the request (found by review).
    found.setdefault(400, set()).add("invalid_request")
    found.setdefault(414, set()).add("uri_too_long")
    found.setdefault(431, set()).add("headers_too_large")
    found.setdefault(417, set()).add("expectation_failed")
    found.setdefault(501, set()).add("not_implemented")
    return found


def error_codes_description() -> str:
    listed = "; ".join(
        f"{status} " + ", ".join(f"`{code}`" for code in sorted(codes))
        for status, codes in sorted(error_codes().items())
    )
    return f"Stable and machine-readable: branch on it, never on `message`. {listed}."


def money_input() -> dict:
    """A request's amount: a JSON number or a numeric string, 0 to 1,000,000."""
    return {
        "anyOf": [
            {"type": "number", "minimum": 0, "maximum": 1_000_000},
            {"type": "string", "pattern": MONEY_PATTERN, "example": "699.99"},
        ],
        "description": "An amount with at most two decimals, as a JSON number or a "
        'numeric string (`699.99` or `"699.99"`).',
    }


def _schema_class(schema) -> type[ma.Schema] | None:
    if isinstance(schema, type) and issubclass(schema, ma.Schema):
        return schema
    if isinstance(schema, ma.Schema):
        return type(schema)
    return None


def is_response_schema(cls: type) -> bool:
    return getattr(cls, "IS_RESPONSE", False)


def example_for(cls: type[ma.Schema]) -> dict | None:
    """The schema's own example, else its loadable fields' examples."""
    if "OPENAPI_EXAMPLE" in vars(cls):  # not inherited: an update is not a create
        return cls.OPENAPI_EXAMPLE
    example = {
        name: field.metadata["example"]
        for name, field in declared_fields(cls).items()
        if not field.dump_only and "example" in field.metadata
    }
    if issubclass(cls, ChangeSchema) and example:
        first = next(iter(example))  # a change names one field, not a whole object
        return {first: example[first]}
    return example or None


class ContractPlugin(BasePlugin):
    """apispec plugin: runs after the Marshmallow plugin on each schema component."""

    def init_spec(self, spec):
        super().init_spec(spec)
        self.spec = spec

    def _converter(self):
        plugin = next(p for p in self.spec.plugins if isinstance(p, MarshmallowPlugin))
        return plugin.converter

    def schema_helper(self, name, definition, schema=None, **kwargs) -> dict | None:
        cls = _schema_class(schema)
        if cls is ErrorSchema:
            definition["properties"]["code"]["description"] = error_codes_description()
            return None
        if cls is None or is_response_schema(cls):
            return None
        one_of = getattr(cls, "OPENAPI_ONE_OF", None)
        if one_of:
            converter = self._converter()
            description = definition.get("description")
            definition.clear()
            extra: dict[str, Any] = {
                "oneOf": [converter.resolve_nested_schema(member) for member in one_of]
            }
            if description:
                extra["description"] = description
            example = example_for(cls) or example_for(one_of[0])
            if example is not None:
                extra["example"] = example
            return extra
        properties = definition.get("properties", {})
        for field_name, field in declared_fields(cls).items():
            key = field.data_key or field_name
            if field.dump_only:
                properties.pop(key, None)
            elif isinstance(field, Money) and key in properties:
                properties[key] = {**money_input(), **_keep(properties[key])}
        if "required" in definition:
            definition["required"] = [r for r in definition["required"] if r in properties]
            if not definition["required"]:
                del definition["required"]
        extra = {}
        if issubclass(cls, ChangeSchema):
            extra["minProperties"] = 1
        example = example_for(cls)
        if example is None:
            example = _example_from_json_schema(definition, change=issubclass(cls, ChangeSchema))
        if example is not None:
            extra["example"] = example
        return extra

    def operation_helper(self, path=None, operations=None, **kwargs) -> None:
        """Each request body's example also on its media type, where Postman's
        converter and Swagger UI look first (else they build one from every
        property's example, which for a change means every field)."""
        for operation in (operations or {}).values():
            content = operation.get("requestBody", {}).get("content", {})
            for media in content.values():
                ref = media.get("schema")
                name = ref.get("$ref", "").rsplit("/", 1)[-1] if isinstance(ref, dict) else ref
                component = self.spec.components.schemas.get(name) if name else None
                if component and "example" in component:
                    media.setdefault("example", component["example"])


def _example_from_json_schema(definition: dict, *, change: bool) -> dict | None:
    """A valid body for a schema whose fields give no example: its required
    properties (a change: its first one) with values that meet their types and
    bounds. Better examples come from `metadata={"example": ...}`."""
    properties = definition.get("properties", {})
    names = list(properties)[:1] if change else definition.get("required", [])
    values = {name: _value(properties[name]) for name in names if name in properties}
    if any(value is _NO_VALUE for value in values.values()) or (change and not values):
        return None
    return values  # {} when nothing is required: a valid body


_NO_VALUE = object()
_FORMATS = {
    "email": "alice@example.com",
    "idn-email": "alice@example.com",
    "url": "https://example.com/",
    "uri": "https://example.com/",
    "date-time": "2026-11-24T17:05:00+00:00",
    "date": "2026-11-24",
}


def _value(prop: dict):
    if "example" in prop:
        return prop["example"]
    if "enum" in prop:
        return prop["enum"][0]
    for key in ("anyOf", "oneOf"):
        if key in prop:
            return _value(prop[key][0])
    kind = prop.get("type")
    if kind == "string":
        if prop.get("format") in _FORMATS:
            return _FORMATS[prop["format"]]
        if "pattern" in prop:
            return _NO_VALUE
        return "x" * max(prop.get("minLength", 1), 1)
    if kind in ("integer", "number"):
        low = prop.get("minimum", 1)
        return max(low, min(1, prop.get("maximum", 1)))
    if kind == "boolean":
        return True
    if kind == "array":
        return []
    return _NO_VALUE


def _keep(prop: dict) -> dict:
    """What of apispec's property survives the money rewrite (not its number type)."""
    return {k: v for k, v in prop.items() if k in ("nullable", "default", "example")}


# What a created resource's answer feeds into (OpenAPI links): the id in the
# 201's body is the path parameter of these operations. Client generators
# and Swagger UI show them; Schemathesis's stateful phase follows them, so
# the ids it sends to an item, order or review are ones that exist.
class Link(NamedTuple):
    parameter: str  # the targets' path parameter
    value: str  # where in the 201's body its value is
    targets: tuple[str, ...]  # operationIds
    description: str


LINKS: dict[str, Link] = {
    "createProduct": Link(
        "product_id",
        "$response.body#/id",
        (
            *("getProduct", "updateProduct", "deleteProduct", "adjustStock"),
            *("stockMovements", "listReviews", "createReview"),
        ),
        "The created product's id.",
    ),
    "addItem": Link(
        "item_id",
        "$response.body#/items/0/id",
        ("updateItem", "removeItem"),
        "The id of the cart's first line. Lines are in the order they were added, "
        "so this is the line just added only in a cart that was empty.",
    ),
    "placeOrder": Link(
        "order_id",
        "$response.body#/id",
        ("getOrder", "updateOrder", "cancelOrder", "payOrder"),
        "The placed order's id.",
    ),
    "createReview": Link(
        "review_id",
        "$response.body#/id",
        ("updateReview", "deleteReview"),
        "The created review's id.",
    ),
    "signup": Link(
        "user_id", "$response.body#/user/id", ("userOrders",), "The new user's id (admins only)."
    ),
}


def _links(operation_id: str) -> dict[str, dict]:
    link = LINKS[operation_id]
    return {
        target[:1].upper() + target[1:]: {
            "operationId": target,
            "parameters": {link.parameter: link.value},
            "description": link.description,
        }
        for target in link.targets
    }


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


def operation_extras(doc: dict, doc_info: dict, *, spec, **kwargs: Any) -> dict:
    """flask-smorest doc callback: operationId and response headers."""
    endpoint = doc_info.get("endpoint")
    if endpoint:
        taken = spec.__dict__.setdefault("_shop_operation_ids", set())
        operation_id = _camel(endpoint)
        if operation_id in taken:  # the same view name in two blueprints
            operation_id = _camel(f"{doc_info['blueprint']}_{endpoint}")
        taken.add(operation_id)
        doc["operationId"] = operation_id
        responses = doc.get("responses", {})
        created = responses.get(201, responses.get("201"))
        if operation_id in LINKS and isinstance(created, dict):
            created["links"] = _links(operation_id)
    manual = doc_info.get("manual_doc", {})
    idempotent = any(
        isinstance(p, dict) and p.get("name") == "Idempotency-Key"
        for p in manual.get("parameters", [])
    )
    for code, response in doc.get("responses", {}).items():
        if not isinstance(response, dict):
            continue  # a shared component: headers are set on the component
        headers = response.setdefault("headers", {})
        headers.setdefault("X-Request-ID", REQUEST_ID_HEADER)
        if idempotent:
            headers.setdefault("Idempotent-Replayed", REPLAYED_HEADER)
        if str(code) == "429":
            headers.setdefault("Retry-After", RETRY_AFTER_HEADER)
    return doc


# Every 503 in the error envelope says when to retry (app.errors: a busy or
# unreachable database, a read-only one, every password-hashing slot taken);
# README promises it, the document named it on 429s only (found by review).
UNAVAILABLE_RETRY_AFTER_HEADER = {
    "description": "Seconds to wait before retrying (1 when busy, 30 when the database "
    "takes no writes, 5 from the health check when it cannot be reached).",
    "schema": {"type": "integer", "minimum": 1},
}


# A 415 for a compressed body names the one coding the API reads (RFC 7694).
ACCEPT_ENCODING_HEADER = {
    "description": "`identity` when the body's Content-Encoding was refused: "
    "bodies are sent uncompressed.",
    "schema": {"type": "string", "enum": ["identity"]},
}


def error_component_headers(status: int) -> dict:
    headers = {"X-Request-ID": REQUEST_ID_HEADER}
    if status == 415:
        headers["Accept-Encoding"] = ACCEPT_ENCODING_HEADER
    if status == 429:
        headers["Retry-After"] = RETRY_AFTER_HEADER
    if status == 503:
        headers["Retry-After"] = UNAVAILABLE_RETRY_AFTER_HEADER
    return headers
