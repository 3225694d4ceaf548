"""Accounts: sign-up, credentials, profile changes."""

from __future__ import annotations

from functools import cache

from flask import current_app
from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm.attributes import set_committed_value
from sqlalchemy.orm.exc import StaleDataError
from werkzeug.security import check_password_hash, generate_password_hash

from app.errors import Duplicate, InvalidCredentials, TokenRevoked, UserGone, ValidationFailed
from app.extensions import db
from app.models import User
from app.models.user import normalise_password, password_forms
from app.services.account_tokens import refresh_user, send_verification, void_reset_links
from app.services.cart import ensure_cart
from app.services.passwords import hashing
from app.services.revocation import revoke_user_tokens

BAD_CREDENTIALS = "Invalid credentials"


class WrongPassword(ValidationFailed):
    """A profile change's `current_password` is not the account's (a 422 like
    any invalid field; the route counts it as a failed login)."""


@cache
def _dummy_hash(method: str) -> str:
    return generate_password_hash("not-a-real-password", method=method)


def _named(email: str | None = None, username: str | None = None):
    """The condition for the account an email (else a username) names."""
    if email is not None:
        return User.email == email.lower()
    return func.lower(User.username) == (username or "").lower()


def find_by_username(username: str) -> User | None:
    return db.session.scalar(select(User).where(_named(username=username)))


def find_by_email(email: str) -> User | None:
    return db.session.scalar(select(User).where(_named(email=email)))


def account_key(
    email: str | None = None, username: str | None = None, user_id: int | None = None
) -> str | None:
    """The account an email (else a username, else an id) names, as its id
    and creation time (SQLite hands a deleted account's id out again), or None."""
    where = User.id == user_id if user_id is not None else _named(email, username)
    found = db.session.execute(select(User.id, User.created_at).where(where)).first()
    return None if found is None else f"{found.id}@{found.created_at.isoformat()}"


def _ensure_unique(username: str | None, email: str | None, exclude_id: int | None = None):
    if username is not None:
        other = find_by_username(username)
        if other is not None and other.id != exclude_id:
            raise Duplicate("username", "Username already taken")
    if email is not None:
        other = find_by_email(email)
        if other is not None and other.id != exclude_id:
            raise Duplicate("email", "Email already registered")


USERNAME_INDEX = "uq_users_username_lower"


def _duplicate_field(error: IntegrityError) -> str:
    """The field whose unique index refused the row: PostgreSQL names the
    constraint apart from its message (which quotes the duplicate value, so
    a username "email.fan" or an email "uq_users_username_lower@..." must
    not be read there); SQLite's message names only the index or column."""
    constraint = getattr(getattr(error.orig, "diag", None), "constraint_name", None)
    if constraint is not None:
        return "username" if constraint == USERNAME_INDEX else "email"
    return "email" if "users.email" in str(error.orig) else "username"


def _flush_unique() -> None:
    # The unique indexes decide races the checks above cannot see.
    try:
        db.session.flush()
    except IntegrityError as error:
        raise Duplicate(_duplicate_field(error), "Username or email already taken") from None
    except StaleDataError:  # a profile change's UPDATE found no row: deleted since the token check
        raise UserGone() from None


def create_user(username: str, email: str, password: str, is_admin: bool = False) -> User:
    """Create a user and their cart (not committed)."""
    _ensure_unique(username, email)
    user = User(username=username, email=email.lower(), is_admin=is_admin)
    with hashing():
        user.set_password(password)
    db.session.add(user)
    _flush_unique()
    ensure_cart(user)
    return user


def sign_up(username: str, email: str, password: str) -> User:
    """Create a user (with their cart) and mail them an email verification link."""
    user = create_user(username, email, password)
    send_verification(user)
    return user


def authenticate(password: str, email: str | None = None, username: str | None = None) -> User:
    """The user these credentials name, or a 401 that says nothing about which part was wrong."""
    user = find_by_email(email) if email is not None else find_by_username(username or "")
    with hashing():
        if user is None:
            # Spend the same time as a real check so response times reveal
            # nothing (as many hashes as `User.password_form` checks).
            dummy = _dummy_hash(current_app.config["PASSWORD_HASH_METHOD"])
            for form in password_forms(password):
                check_password_hash(dummy, form)
            raise InvalidCredentials(BAD_CREDENTIALS)
        form = user.password_form(password)
        if form is None:
            raise InvalidCredentials(BAD_CREDENTIALS)
        # A hash of an earlier PASSWORD_HASH_METHOD is made anew with the
        # current one at the account's next login: raising the method's cost
        # reached only new passwords, and an old account's faster check told
        # it apart from an unknown one (found by review).
        # Only over the hash it checked: a password change or reset committed
        # while it hashed would have had the old password written back over
        # it (found by review).
        # So is a hash made, before passwords were normalised, from a form
        # other than NFC (it matched the password as typed): made anew from
        # the NFC form, in the login's transaction, so the other form the
        # user may type works from now on.
        current = _dummy_hash(current_app.config["PASSWORD_HASH_METHOD"])
        checked = user.password_hash
        if _method_of(checked) != _method_of(current) or form != normalise_password(password):
            anew = User.hash_of(password)  # not set on `user`: its flush would write it anyway
            written = db.session.execute(
                update(User)
                .where(User.id == user.id, User.password_hash == checked)
                .values(password_hash=anew)
                .execution_options(synchronize_session=False)
            ).rowcount
            if written:
                set_committed_value(user, "password_hash", anew)
    return user


def _method_of(password_hash: str) -> str:
    """A Werkzeug hash's method and parameters (`scrypt:32768:8:1`)."""
    return password_hash.partition("$")[0]


def lock_token_user(user: User, token_version: int | None = None) -> None:
    """The token's user read again, its row locked until the request ends
    (KEY SHARE: a delete in SQL waits for the answer), for a route that
    writes nothing of the account (a refresh, a logout): a 401 `UserGone`
    if the account was deleted since the token check (they answered 200;
    found by review). `token_version`: the caller's token's, a
    `TokenRevoked` if a logout-all or password change committed since (a
    refresh would mint a token of the new version)."""
    refresh_user(user, with_for_update={"key_share": True})
    if token_version is not None and token_version != user.token_version:
        raise TokenRevoked()


def _check_current_password(user: User, password: str, token_version: int | None) -> None:
    """The caller's token still current, and `password` the account's."""
    if token_version is not None and token_version != user.token_version:
        raise TokenRevoked()
    with hashing():
        correct = user.check_password(password)
    if not correct:
        raise WrongPassword(errors={"current_password": ["Incorrect password."]})


def _lock_for_change(user: User) -> None:
    """The user's row locked and read again: on SQLite, this first write of
    a view that defers its write lock takes it (PostgreSQL's row lock is
    held since `refresh(with_for_update=True)`), and whatever committed
    since the unlocked reads (a password change, a logout-all, an email
    change) is what the change now checks and applies to."""
    db.session.execute(
        update(User)
        .where(User.id == user.id)
        .values(token_version=User.token_version)
        .execution_options(synchronize_session=False)
    )
    refresh_user(user)


def update_profile(user: User, data: dict, token_version: int | None = None) -> User:
    """Apply a validated profile change; email and password need the current
    password. `token_version`: the caller's token's (checked again once the
    user's row is locked)."""
    new_hash = None
    if "email" in data or "password" in data:
        # Two changes sent at once with one token and one password: the
        # second waits here for the first's commit, then sees the row it left
        # (its token revoked, its password replaced) instead of both applying.
        refresh_user(user, with_for_update=True)
        _check_current_password(user, data["current_password"], token_version)
        # Hashed before SQLite's write lock is taken (the view defers it, as
        # the signup's and the login's do): held from the token check, every
        # other writer waited out both hashes, and the wait for a hashing
        # slot (found by review).
        checked = user.password_hash
        if "password" in data:
            with hashing():
                new_hash = User.hash_of(data["password"])
        _lock_for_change(user)
        if checked != user.password_hash:  # changed meanwhile (a login's rehash, a reset)
            _check_current_password(user, data["current_password"], token_version)
        elif token_version is not None and token_version != user.token_version:
            raise TokenRevoked()  # a logout-all or password change committed meanwhile
    _ensure_unique(data.get("username"), data.get("email"), exclude_id=user.id)
    if "username" in data:
        user.username = data["username"]
    email_changed = "email" in data and data["email"].lower() != user.email
    if email_changed:
        user.email = data["email"].lower()
        user.email_verified = False
        _flush_unique()
        send_verification(user)
    if new_hash is not None:
        user.password_hash = new_hash
    _flush_unique()
    if "password" in data or email_changed:
        void_reset_links(user)  # a link mailed before the change opens nothing
    if "password" in data:
        revoke_user_tokens(user)
    return user
