"""HTTP caching of public catalog reads: the answer's bytes served from the
catalog cache (`app.services.catalog_cache`, keyed by the catalog version and
the normalised request) until the next write, an ETag that is a hash of
those bytes, `Cache-Control: no-cache` (revalidate every time) and a 304 for
a matching `If-None-Match` (from the kept answer: no work).

The ETag names the bytes, not the version they were kept under: an answer
built again at the same version with other bytes (a bump Redis never took,
whose entry expired; rows a migration wrote; a release that shows a product
otherwise) gets a new ETag, where one derived from the version answered the
client's old copy with a 304 (found by review)."""

from __future__ import annotations

import hashlib
from functools import wraps
from urllib.parse import urlencode

from flask import current_app, make_response, request

from app.services import catalog_cache
from app.utils.text import any_bad_text

CACHE_CONTROL = "no-cache"  # anyone may store it; everyone revalidates (never stale)
ETAG_DIGITS = 24  # a kept entry is the ETag's hex digits, "\n", the answer


def etag_of(body: bytes) -> str:
    return hashlib.blake2b(body, digest_size=ETAG_DIGITS // 2).hexdigest()


def _validated(body: bytes | None, etag: str, response=None):
    """The 200 (`response`, or one of `body`) with its validators, or the 304
    that replaces it when `If-None-Match` names `etag` or is `*` (any answer
    that exists)."""
    headers = [("ETag", f'"{etag}"'), ("Cache-Control", CACHE_CONTROL)]
    condition = request.if_none_match
    if condition.star_tag or condition.contains_weak(etag):
        return current_app.response_class(status=304, headers=headers)
    if response is None:
        response = current_app.response_class(body, content_type="application/json")
    response.headers.extend(headers)
    return response


def query_names(view) -> frozenset[str]:
    """The query arguments the view's schema reads (others are ignored, so
    they must not make a new entry: `?_=<random>` is not a cache-buster)."""
    names = set()
    for parameter in getattr(view, "_apidoc", {}).get("arguments", {}).get("parameters", []):
        if parameter.get("in") == "query":
            schema = parameter["schema"]
            schema = schema() if isinstance(schema, type) else schema
            names |= {field.data_key or name for name, field in schema.load_fields.items()}
    return frozenset(names)


def normalised_request(names: frozenset[str]) -> str:
    """The path and the arguments the view reads, in one canonical order: by
    name, a repeated name's values in the order sent (a repeated argument is
    the view's 422, never kept: its key only has to differ from any 200's)."""
    if not request.query_string:
        return request.path + "?"
    args = [(k, v) for k, v in request.args.items(multi=True) if k in names]
    return request.path + "?" + urlencode(sorted(args, key=lambda arg: arg[0]))


def uncached(view, *args, **kwargs):
    """The view's answer with the catalog cache off or unreachable: built
    every time, with its ETag all the same."""
    response = make_response(view(*args, **kwargs))
    if response.status_code != 200:
        return response
    body = response.get_data()
    return _validated(body, etag_of(body), response)


def catalog_read(view):
    """Serve the view's 200 answers from the catalog cache, with an ETag."""
    names = query_names(view)

    @wraps(view)
    def wrapper(*args, **kwargs):
        cache = catalog_cache.store()
        if cache is None:
            return uncached(view, *args, **kwargs)
        if any_bad_text(request.args.items(multi=True)):  # the view's 422, whatever is kept
            return view(*args, **kwargs)
        key = hashlib.blake2b(normalised_request(names).encode(), digest_size=16).hexdigest()
        version, entry = cache.lookup(key)
        if version is None:  # the cache is unreachable: the database answers
            return uncached(view, *args, **kwargs)
        if entry is not None:
            return _validated(entry[ETAG_DIGITS + 1 :], entry[:ETAG_DIGITS].decode())
        # A 304 only once the view has an answer: never for a 404 or a 422.
        started = catalog_cache.start_building()
        response = make_response(view(*args, **kwargs))
        if response.status_code != 200:
            return response
        body = response.get_data()
        etag = etag_of(body)
        # No longer than what it was built from (`RedisStore.keep`).
        cache.keep(key, version, etag.encode() + b"\n" + body, catalog_cache.born(started))
        return _validated(body, etag, response)

    return wrapper
