"""HTTP caching of public catalog reads: an ETag per (catalog version,
normalised request), `Cache-Control: no-cache` (revalidate every time), a 304
for a matching `If-None-Match` before any work, and the answer's bytes served
from the catalog cache (`app.services.catalog_cache`) until the next write."""

from __future__ import annotations

import hashlib
from functools import wraps
from urllib.parse import urlencode

from flask import current_app, make_response, request

from app.services import catalog_cache

CACHE_CONTROL = "no-cache"  # anyone may store it; everyone revalidates (never stale)


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
    name, a repeated name's values in the order sent (the view reads the
    first, so `?sort=price&sort=-price` is not `?sort=-price&sort=price`)."""
    if not request.query_string:
        return request.path + "?"
    args = [(k, v) for k, v in request.args.items(multi=True) if k in names]
    return request.path + "?" + urlencode(sorted(args, key=lambda arg: arg[0]))


def uncached(view, *args, **kwargs):
    """The view's answer with the catalog cache off or unreachable: no ETag
    (no version to derive it from), but `If-None-Match: *` still matches any
    answer that exists: a 304 where the view answers 200."""
    response = make_response(view(*args, **kwargs))
    if response.status_code == 200 and request.if_none_match.star_tag:
        return current_app.response_class(status=304, headers=[("Cache-Control", CACHE_CONTROL)])
    return response


def catalog_read(view):
    """Serve the view's 200 answers from the catalog cache, with an ETag."""
    names = query_names(view)

    @wraps(view)
    def wrapper(*args, **kwargs):
        cache = catalog_cache.store()
        if cache is None:
            return uncached(view, *args, **kwargs)
        key = hashlib.blake2b(normalised_request(names).encode(), digest_size=16).hexdigest()
        version, body = cache.lookup(key)
        if version is None:  # the cache is unreachable: the database answers
            return uncached(view, *args, **kwargs)
        etag = hashlib.blake2b(f"{version}\0{key}".encode(), digest_size=12).hexdigest()
        headers = [("ETag", f'"{etag}"'), ("Cache-Control", CACHE_CONTROL)]
        # `If-None-Match: *` matches any answer that exists: a 304 only once
        # the view (or the cache) has one, never for a 404 or a 422.
        any_tag = request.if_none_match.star_tag
        if not any_tag and request.if_none_match.contains_weak(etag):
            return current_app.response_class(status=304, headers=headers)
        if body is not None:
            if any_tag:
                return current_app.response_class(status=304, headers=headers)
            return current_app.response_class(
                body, headers=[("Content-Type", "application/json"), *headers]
            )
        response = make_response(view(*args, **kwargs))
        if response.status_code == 200:
            cache.keep(key, version, response.get_data())
            if any_tag:
                return current_app.response_class(status=304, headers=headers)
        response.headers.update(headers)
        return response

    return wrapper
