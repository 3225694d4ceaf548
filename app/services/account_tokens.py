"""Password reset and email verification: single-use tokens, stored only as
a SHA-256, mailed through the outbox. The outbox row keeps the link's seed,
not its token: the worker derives the token when it renders the email
(`token_for`: an HMAC of the seed under SECRET_KEY), so neither table holds
anything that opens an account. (The row kept the whole link before, and a
token read from it reset the password.)

A reset request does no work that depends on the account: it records one
task row, whatever the email, so the answer (202) and its timing say nothing
about which accounts exist; the worker looks the account up and mails the link."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from datetime import timedelta

from flask import current_app
from sqlalchemy import exists, select, update
from sqlalchemy.exc import InvalidRequestError

from app.errors import InvalidAccountToken, UserGone
from app.extensions import db
from app.models import AccountToken, User
from app.models.types import utcnow
from app.services.background import task_handler
from app.services.outbox import queue_email, queue_task
from app.services.passwords import hashing
from app.services.revocation import revoke_user_tokens

RESET = "password_reset"
VERIFY = "verify_email"
MAX_TOKEN_LENGTH = 200


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def token_for(seed: str) -> str:
    """The token a link carries: the seed's HMAC-SHA256 under SECRET_KEY
    (rotating the key voids the links still unsent or unused)."""
    key = current_app.config["SECRET_KEY"].encode()
    digest = hmac.new(key, f"account-token:{seed}".encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def link_for(path: str, seed: str) -> str:
    """The link mailed for a seed (`mail.render` asks, for a `link_seed`)."""
    return _link(path, token_for(seed))


def _issue(user: User, purpose: str, lifetime: int) -> dict[str, str]:
    """A new token's row, and the `link_seed` an email's context carries."""
    seed = secrets.token_urlsafe(24)
    token = token_for(seed)
    db.session.add(
        AccountToken(
            user_id=user.id,
            purpose=purpose,
            token_hash=_hash(token),
            email=user.email,
            expires_at=utcnow() + timedelta(seconds=lifetime),
        )
    )
    path = "reset-password" if purpose == RESET else "verify-email"
    return {"path": path, "seed": seed}


def _void_unused(user_id: int, purpose: str) -> None:
    db.session.execute(
        update(AccountToken)
        .where(
            AccountToken.user_id == user_id,
            AccountToken.purpose == purpose,
            AccountToken.used_at.is_(None),
        )
        .values(used_at=utcnow())
        .execution_options(synchronize_session=False)
    )


def _consume(token: str, purpose: str) -> tuple[AccountToken, User | None]:
    """Mark the token used (a compare-and-set: of two racing uses one wins);
    with it, its user, locked and read fresh. The user's row is locked
    first, as a profile change locks it before voiding the user's links:
    read unlocked, an email change committed between the read and the
    link's write had its new, unmailed address verified (or its password
    reset) by the old address's link (found by review). (SQLite, a reset
    deferring its write lock: the user is read before the lock, and a
    change committed since voided the link, which the guarded UPDATE sees.)"""
    if not token or len(token) > MAX_TOKEN_LENGTH:
        raise InvalidAccountToken()
    token_hash = _hash(token)
    user_id = db.session.scalar(
        select(AccountToken.user_id).where(
            AccountToken.token_hash == token_hash, AccountToken.purpose == purpose
        )
    )
    if user_id is None:
        raise InvalidAccountToken()
    user = db.session.scalar(
        select(User)
        .where(User.id == user_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    now = utcnow()
    record = db.session.scalars(
        update(AccountToken)
        .where(
            AccountToken.token_hash == token_hash,
            AccountToken.purpose == purpose,
            AccountToken.used_at.is_(None),
            AccountToken.expires_at > now,
        )
        .values(used_at=now)
        .returning(AccountToken)
        .execution_options(synchronize_session=False)
    ).one_or_none()
    if record is None:
        raise InvalidAccountToken()
    return record, user


def _usable(token: str, purpose: str) -> bool:
    """Whether the token is one of `purpose`, unused and unexpired now (an
    unlocked read: `_consume` decides)."""
    if not token or len(token) > MAX_TOKEN_LENGTH:
        return False
    return bool(
        db.session.scalar(
            select(
                exists().where(
                    AccountToken.token_hash == _hash(token),
                    AccountToken.purpose == purpose,
                    AccountToken.used_at.is_(None),
                    AccountToken.expires_at > utcnow(),
                )
            )
        )
    )


def _link(path: str, token: str) -> str:
    return f"{current_app.config['FRONTEND_URL']}/{path}?token={token}"


def request_password_reset(email: str) -> None:
    """Record the reset request; the worker mails a link if the account exists."""
    queue_task("auth.password_reset", {"email": email.lower()})


def lifetime_text(seconds: int, largest: int) -> str:
    """How long a mailed link works, in the largest unit up to `largest`
    seconds (an hour, a minute) that says it exactly, or in whole minutes,
    never more than it is: "48 hours", "90 minutes", "45 seconds". Rounded
    to whole hours, EMAIL_VERIFICATION_EXPIRES=1800 promised "1 hours" for a
    link dead after 30 minutes (found by review)."""
    for size, unit in ((3600, "hour"), (60, "minute")):
        if size <= largest and seconds >= size and (seconds % size == 0 or size == 60):
            count = seconds // size
            return f"{count} {unit}" + ("s" if count != 1 else "")
    return f"{seconds} second" + ("s" if seconds != 1 else "")


@task_handler("auth.password_reset")
def send_password_reset(args: dict) -> None:
    # The user row first, as a profile change and a link's use lock it
    # before the user's links: voiding the older link first, the new link's
    # foreign key then waited for a profile change that waited for that
    # link's row, and PostgreSQL aborted one (a 503; found by review).
    user = db.session.scalar(
        select(User).where(User.email == args["email"].lower()).with_for_update(key_share=True)
    )
    if user is None:
        return
    _void_unused(user.id, RESET)  # only the newest link works
    lifetime = current_app.config["PASSWORD_RESET_EXPIRES"]
    queue_email(
        user.email,
        "password_reset",
        {
            "user": {"username": user.username},
            "link_seed": _issue(user, RESET, lifetime),
            "expires": lifetime_text(lifetime, largest=60),
        },
    )


def reset_password(token: str, password: str) -> User:
    """Set a new password with a reset token; every older token of the user
    (reset links and JWTs) stops working. A link mailed to an address the
    account no longer has is void, as a verification link is."""
    # Hashed before `_consume`'s first write takes SQLite's write lock (the
    # view defers it): held through the hash, and the wait for a hashing
    # slot, every other writer waited (found by review). Only for a token
    # that is one now, so a guess costs no hash; `_consume` decides.
    if not _usable(token, RESET):
        raise InvalidAccountToken()
    with hashing():
        new_hash = User.hash_of(password)
    record, user = _consume(token, RESET)
    if user is None or user.email != record.email:
        raise InvalidAccountToken()
    user.password_hash = new_hash
    _void_unused(user.id, RESET)
    revoke_user_tokens(user)
    return user


def send_verification(user: User) -> None:
    """Mail a link proving the user's current email address."""
    lifetime = current_app.config["EMAIL_VERIFICATION_EXPIRES"]
    _void_unused(user.id, VERIFY)
    queue_email(
        user.email,
        "verify_email",
        {
            "user": {"username": user.username},
            "email": user.email,
            "link_seed": _issue(user, VERIFY, lifetime),
            "expires": lifetime_text(lifetime, largest=3600),
        },
    )


def verify_email(token: str) -> User:
    """Mark the address verified, if the token proves the user's current address."""
    record, user = _consume(token, VERIFY)
    if user is None or user.email != record.email:
        raise InvalidAccountToken()
    user.email_verified = True
    return user


def refresh_user(user: User, **lock) -> None:
    """The token's user read again (`lock`: `refresh`'s `with_for_update`),
    or the 401 of a token whose user is gone: an account deleted (in SQL)
    since the token check was a 500 (found by review)."""
    try:
        db.session.refresh(user, **lock)
    except InvalidRequestError:  # "Could not refresh instance": no such row now
        raise UserGone() from None


def resend_verification(user: User) -> None:
    # The user row first, as `send_password_reset` (read fresh: verified meanwhile?).
    refresh_user(user, with_for_update={"key_share": True})
    if not user.email_verified:
        send_verification(user)


def void_reset_links(user: User) -> None:
    """Every unused reset link of the user stops working (a password or
    email change made with the current password)."""
    _void_unused(user.id, RESET)
