"""Keys for the rate limiter beyond the client address."""

from __future__ import annotations

import hashlib

from flask import current_app, request

from app.schemas.user import nfkc, normalize_email


def login_account_key() -> str:
    """The account a login names (its email or username as the schemas normalise
    them), hashed: the limiter's storage never sees an address or a name. Read
    before the body is validated, so anything unreadable shares one key."""
    try:
        data = current_app.json.loads(request.get_data(cache=True))
        if "email" in data:
            name = "email:" + normalize_email(data["email"])
        else:
            name = "username:" + nfkc(data["username"]).lower()
    except Exception:  # noqa: BLE001 - not JSON, not an object, no such field...
        name = "unreadable"
    digest = hashlib.sha256(name.encode("utf-8", "surrogatepass")).hexdigest()[:32]
    return f"login-account:{digest}"
