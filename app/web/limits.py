"""Keys for the rate limiter beyond the client address."""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Callable
from typing import Any

from flask import current_app, g, request
from flask_jwt_extended import decode_token

from app.extensions import limiter
from app.schemas.user import LONGEST_INPUT, nfkc, normalize_email
from app.services import auth as accounts
from app.utils.text import bad_text

# Longer than any email or username the schemas let in: named by no account.
LONGEST_NAME = 254


def login_account_key() -> str:
    """The account a login names, by its id: the same budget whether the
    login names it by email or by username (each spelling the schemas
    normalise alike). A name no account has is keyed by the name itself (as
    the schemas normalise it). Hashed: the limiter's storage never sees an
    address or a name. Read before the body is validated, so anything
    unreadable shares one key."""
    try:
        data = current_app.json.loads(request.get_data(cache=True))
        if "email" in data:
            email = normalize_email(data["email"])
            name, lookup = "email:" + email, {"email": email}
        else:
            username = data["username"]
            username = (username if len(username) > LONGEST_INPUT else nfkc(username)).lower()
            name, lookup = "username:" + username, {"username": username}
    except Exception:  # noqa: BLE001 - not JSON, not an object, no such field...
        name, lookup = "unreadable", None
    if lookup is not None and len(name) <= LONGEST_NAME + 9 and not bad_text(name):
        found = accounts.account_key(**lookup)
        if found is not None:
            name = f"account:{found}"
    return _hashed("login-account", name)


def token_account_key() -> str:
    """The account the request's bearer token names, as `login_account_key`
    keys it (`login-account:...`): a guess at `current_password` spends the
    budget of that account's failed logins. Read before the token is
    verified: its signature is checked here, not its revocation (a key
    only; the view verifies the token, and only its answer is counted)."""
    name = "unreadable"
    try:
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() == "bearer" and token:
            user_id = int(decode_token(token.strip(), allow_expired=True)["sub"])
            found = accounts.account_key(user_id=user_id)
            if found is not None:
                name = f"account:{found}"
    except Exception:  # noqa: BLE001 - any token that is not one of ours
        name = "unreadable"
    return _hashed("login-account", name)


def reset_address_key() -> str:
    """The address a password reset request names, as the schemas normalise
    it (hashed): a budget per mailbox whatever the client, so requests from
    many addresses cannot flood one account with reset emails (found by
    review). Every address has one, an account's or not: a 429 tells nothing
    about which have accounts."""
    try:
        name = "email:" + normalize_email(
            current_app.json.loads(request.get_data(cache=True))["email"]
        )
    except Exception:  # noqa: BLE001 - not JSON, not an object, no such field...
        name = "unreadable"
    return _hashed("reset-address", name)


def exempt_unless_body_names(*fields: str) -> Callable[[], bool]:
    """An `exempt_when` for a limit that only counts requests whose JSON body
    names one of `fields` (anything unreadable counts)."""

    def exempt() -> bool:
        try:
            body = current_app.json.loads(request.get_data(cache=True))
        except Exception:  # noqa: BLE001 - not JSON: counted
            return False
        return isinstance(body, dict) and not any(field in body for field in fields)

    return exempt


def _spent(scopes: tuple[str, ...]):
    """This request's counted limits of `scopes` (a limit's scope, or the
    part after its endpoint)."""
    for spent in limiter.current_limits:
        scope = spent.request_args[-1]
        if not spent.breached and any(scope == s or scope.endswith(":" + s) for s in scopes):
            yield spent


def noting_windows(*scopes: str) -> Callable:
    """A view decorator, below the limits' own: remembers which window each
    of the request's limits of `scopes` was counted in (its counter's
    expiry), for `give_back`. (The limiter checks a view's limits when the
    view is called, after the blueprint's before-request hooks.)"""

    def decorate(view: Callable) -> Callable:
        @functools.wraps(view)
        def noting(*args: Any, **kwargs: Any) -> Any:
            note_windows(*scopes)
            return view(*args, **kwargs)

        return noting

    return decorate


def note_windows(*scopes: str) -> None:
    """Remember which window each of the request's limits of `scopes` was
    counted in (its counter's expiry), for `give_back`."""
    spent = list(_spent(scopes))
    if not spent:  # nothing counted (limits off, or none of these): no storage to ask
        g.limit_windows = {}
        return
    try:
        storage = limiter.limiter.storage
        g.limit_windows = {s.key: storage.get_expiry(s.key) for s in spent}
    except Exception:  # the storage is down: nothing will be given back
        current_app.logger.warning("could not read a rate limit's window", exc_info=True)


def give_back(*scopes: str) -> None:
    """Take back this request's spend on its limits of `scopes`. For budgets
    that count only some answers, spent when the request arrives by one
    atomic increment and given back by an answer that turned out not to
    count: a budget only tested on arrival and spent after the answer let
    every request sent while others were still running through (eight
    password guesses at once against a budget of 3 were all checked; found
    by review).

    Only into the window it was spent in (`noting_windows`; a fixed window is a
    counter and its expiry): after that window ended, a -1 started the next
    window's counter below 0, a guess more for each request in flight at the
    reset (found by review). Redis tells an expiry in whole seconds: two
    readings of one window are less than a second apart, the next window's
    expiry a whole window later."""
    windows = g.get("limit_windows", {})
    for spent in _spent(scopes):
        counted_in = windows.get(spent.key)
        if counted_in is None:
            continue
        try:
            storage = limiter.limiter.storage
            if abs(storage.get_expiry(spent.key) - counted_in) >= 1:
                continue  # another window by now
            window = spent.limit.get_expiry()
            if storage.incr(spent.key, window, amount=-1) < 0:  # it ended meanwhile
                storage.incr(spent.key, window, amount=1)
        except Exception:  # the storage is down: its fallback counts anew
            current_app.logger.warning("could not give back a rate limit's spend", exc_info=True)


def _hashed(prefix: str, name: str) -> str:
    """Hashed: the limiter's storage never sees an address or a name."""
    digest = hashlib.sha256(name.encode("utf-8", "surrogatepass")).hexdigest()[:32]
    return f"{prefix}:{digest}"
