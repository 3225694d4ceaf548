"""JWT wiring: identity, user lookup, revocation checks, JSON 401s, and the
`auth_required` / `admin_required` guards (which decode a token once per
process, not four times per request: `VerifiedTokens`)."""

from __future__ import annotations

import re
import threading
import time
from collections import OrderedDict
from datetime import UTC, datetime, timedelta
from functools import wraps

from flask import Flask, current_app, g, request
from flask_jwt_extended import current_user, get_jwt, get_jwt_header, verify_jwt_in_request
from flask_jwt_extended.exceptions import JWTDecodeError

from app.errors import Forbidden, UserGone, error_response
from app.extensions import db, jwt
from app.models import User
from app.models.types import INTEGER_MAX
from app.services import account_cache
from app.services.revocation import (
    VERSION_CLAIM,
    init_revocations,
    issued_before_revoke_all,
    revocable,
)
from app.web.overrides import use_verified_jwt

CANONICAL_ID = re.compile(r"[1-9][0-9]{0,9}", re.ASCII)
CLOCK_SLACK = 30  # seconds
ACCOUNT_CLAIM = "acc"  # the account's creation, in microseconds since the epoch
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# "Bearer <header>.<payload>.<signature>" and nothing else: the token the
# library itself would take from the header (anything else goes to it).
BEARER_TOKEN = re.compile(r"Bearer ([A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+)", re.ASCII)


def _user_id(payload: dict) -> int | None:
    """The user id a token names, written as we write it ('2', never ' 2' or
    '02') and within the column's range; else None."""
    sub = payload.get("sub")
    if not isinstance(sub, str) or not CANONICAL_ID.fullmatch(sub):
        return None
    user_id = int(sub)
    return user_id if user_id <= INTEGER_MAX else None


TOKEN_TYPES = ("access", "refresh")


def _check_claims(payload: dict) -> None:
    """Every token we accept expires, names a user canonically, has an id
    logout can revoke and is of a type we issue: a token without `exp` would
    never stop working, one without `jti` (or with an `exp` past any date)
    was accepted and its logout a 500, and one without `type` was taken
    as an access token (found by review)."""
    if (
        not revocable(payload)
        or not isinstance(payload.get("iat"), (int, float))
        or payload.get("type") not in TOKEN_TYPES
        or _user_id(payload) is None
    ):
        raise JWTDecodeError("token without exp, iat, jti, a known type or a canonical sub")


def _account_stamp(user: User) -> int:
    """The account's creation time in whole microseconds (exact: no float)."""
    return (user.created_at - EPOCH) // timedelta(microseconds=1)


def _issued_to(user: User | None, payload: dict) -> User | None:
    """The user, if the token was issued to this account. An id can name
    another account later (SQLite reuses the highest id after a delete): a
    token carries its account's creation stamp and names no other. A token
    from before the stamp (none issued now) is held to having been issued
    after the account was made, the slack covering `iat`'s whole seconds and
    clocks of hosts a little apart."""
    if user is None:
        return None
    stamp = payload.get(ACCOUNT_CLAIM)
    if stamp is not None:
        return user if stamp == _account_stamp(user) else None
    if payload["iat"] + CLOCK_SLACK <= user.created_at.timestamp():
        return None
    return user


def _unauthorized(code: str, message: str):
    return error_response(401, message, code=code, headers={"WWW-Authenticate": "Bearer"})


def _missing_or_malformed(reason: str):
    """Flask-JWT-Extended's reason names the library's view of the request; the
    client gets the project's words (and `token_missing` only if none was sent)."""
    if reason.startswith("Missing") and reason.endswith("Header"):  # no header at all
        return _unauthorized("token_missing", "Authentication required: send 'Bearer <token>'")
    return _unauthorized("token_invalid", "Malformed Authorization header: use 'Bearer <token>'")


def _invalid(reason: str):
    if "refresh" in reason.lower():  # a token of the wrong type for the route
        wanted = "an access" if "non-refresh" in reason.lower() else "a refresh"
        return _unauthorized("token_invalid", f"This route needs {wanted} token")
    return _unauthorized("token_invalid", "Invalid token")


class VerifiedTokens:
    """Access tokens Flask-JWT-Extended has verified in full (signature,
    expiry, type, our claims), by their exact string, least recently used
    dropped first. Its `verify_jwt_in_request` parses a token four times
    (claims and header unverified, then verified, then the header again) and
    checks the HMAC: ~90 µs a request, for the same answer on every request
    of a client's session. A token found here skips only that: its expiry is
    checked again on each use, and revocation and the user are read from the
    database on every request, as before. A tampered token is another string,
    so it is never found; an entry is valid only under the key that verified it."""

    def __init__(self, size: int) -> None:
        self._size = size
        self._tokens: OrderedDict[str, tuple[str, dict, dict]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, token: str, key: str) -> tuple[dict, dict] | None:
        """Copies of the token's header and claims, if verified under `key`
        and not expired now (PyJWT's test, with the configured leeway)."""
        with self._lock:
            found = self._tokens.get(token)
            if found is not None:
                self._tokens.move_to_end(token)
        if found is None or found[0] != key:
            return None
        _key, header, claims = found
        leeway = current_app.config["JWT_DECODE_LEEWAY"]
        if isinstance(leeway, timedelta):
            leeway = leeway.total_seconds()
        if int(claims["exp"]) <= time.time() - leeway:
            return None
        return dict(header), dict(claims)

    def add(self, token: str, key: str, header: dict, claims: dict) -> None:
        with self._lock:
            self._tokens[token] = (key, dict(header), dict(claims))
            self._tokens.move_to_end(token)
            while len(self._tokens) > self._size:
                self._tokens.popitem(last=False)


def _verify_access_token() -> None:
    """`verify_jwt_in_request()` for an access token in the Authorization
    header, taking the decoding from `VerifiedTokens` when it can. A header in
    any other shape, a new token and an expired one go through the library,
    with its checks and errors; only a token it accepted is remembered."""
    tokens = current_app.extensions["shop_verified_tokens"]
    match = BEARER_TOKEN.fullmatch(request.headers.get("Authorization", ""))
    key = current_app.config["JWT_SECRET_KEY"]
    verified = tokens.get(match[1], key) if match and tokens else None
    if verified is None:
        verify_jwt_in_request()
        if match and tokens:
            tokens.add(match[1], key, get_jwt_header(), get_jwt())
        return
    use_verified_jwt(*verified)


def init_jwt(app: Flask) -> None:
    jwt.init_app(app)
    init_revocations(app)
    account_cache.init_account_cache(app)
    # Off unless tokens come in the Authorization header only, as configured here.
    simple = app.config["JWT_TOKEN_LOCATION"] == ["headers"] and app.config["JWT_SECRET_KEY"]
    size = app.config.get("JWT_VERIFIED_TOKENS", 1024)
    app.extensions["shop_verified_tokens"] = VerifiedTokens(size) if simple and size else None

    @jwt.user_identity_loader
    def _identity(user: User) -> str:
        return str(user.id)

    @jwt.additional_claims_loader
    def _claims(user: User) -> dict:
        claims = {VERSION_CLAIM: getattr(user, "token_version", None) or 0}
        if getattr(user, "created_at", None) is not None:
            claims[ACCOUNT_CLAIM] = _account_stamp(user)
        return claims

    # Flask-JWT-Extended asks "revoked?" and then "which user?". Each store
    # answers both at once - with revocations in the database, in one query (the
    # profile of the authenticated reads showed the second round trip); the user
    # found is kept for the lookup that follows in the same request.
    @jwt.token_in_blocklist_loader
    def _is_revoked(_header: dict, payload: dict) -> bool:
        _check_claims(payload)  # the first callback Flask-JWT-Extended makes
        user_id = _user_id(payload)
        g.jwt_user = None
        user, revoked = account_cache.user_and_revoked(user_id, payload["jti"])
        g.jwt_user = (user_id, user)
        return revoked or issued_before_revoke_all(user, payload)

    @jwt.user_lookup_loader
    def _lookup(_header: dict, payload: dict) -> User | None:
        user_id = _user_id(payload)
        if user_id is None:
            return None
        found = g.pop("jwt_user", None)
        if found is not None and found[0] == user_id:
            return _issued_to(found[1], payload)
        return _issued_to(db.session.get(User, user_id), payload)

    jwt.user_lookup_error_loader(lambda _h, _p: _unauthorized(UserGone.code, UserGone.MESSAGE))
    jwt.revoked_token_loader(
        lambda _h, _p: _unauthorized("token_revoked", "Token has been revoked")
    )
    jwt.expired_token_loader(lambda _h, _p: _unauthorized("token_expired", "Token has expired"))
    jwt.invalid_token_loader(_invalid)
    jwt.unauthorized_loader(_missing_or_malformed)
    jwt.needs_fresh_token_loader(
        lambda _h, _p: _unauthorized("token_invalid", "A fresh token is required")
    )
    jwt.token_verification_failed_loader(
        lambda _h, _p: _unauthorized("token_invalid", "Invalid token")
    )


def auth_required(fn):
    """Require a valid, unrevoked access token of an existing user."""

    @wraps(fn)
    def wrapper(*args, **kwargs):
        _verify_access_token()
        return fn(*args, **kwargs)

    return wrapper


def admin_required(fn):
    """Require an access token of a user who is an admin now (per the database)."""

    @wraps(fn)
    def wrapper(*args, **kwargs):
        _verify_access_token()
        if not current_user.is_admin:
            raise Forbidden("Admin privileges required")
        return fn(*args, **kwargs)

    return wrapper
