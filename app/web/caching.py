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


def normalised_request() -> str:
    """The path and the query's arguments in one canonical order."""
    return request.path + "?" + urlencode(sorted(request.args.items(multi=True)))


def catalog_read(view):
    """Serve the view's 200 answers from the catalog cache, with an ETag."""

    @wraps(view)
    def wrapper(*args, **kwargs):
        cache = catalog_cache.store()
        version = cache.version() if cache is not None else None
        if version is None:  # cache off or unreachable: the database answers
            return view(*args, **kwargs)
        key = hashlib.blake2b(
            f"{version}\0{normalised_request()}".encode(), digest_size=16
        ).hexdigest()
        etag = key[:24]
        if request.if_none_match.contains_weak(etag):
            response = current_app.response_class(status=304)
        else:
            body = cache.get(key)
            if body is not None:
                response = current_app.response_class(body, mimetype="application/json")
            else:
                response = make_response(view(*args, **kwargs))
                if response.status_code == 200:
                    cache.set(key, response.get_data())
        response.set_etag(etag)
        response.headers["Cache-Control"] = CACHE_CONTROL
        return response

    return wrapper
