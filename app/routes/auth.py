"""Accounts and tokens: /api/auth."""

from flask import current_app, g
from flask_jwt_extended import (
    create_access_token,
    create_refresh_token,
    current_user,
    get_jwt,
    jwt_required,
)

from app.errors import InvalidCredentials
from app.extensions import limiter
from app.schemas.common import MessageSchema
from app.schemas.user import (
    AccessTokenSchema,
    LoginSchema,
    LogoutSchema,
    PasswordResetConfirmSchema,
    PasswordResetRequestSchema,
    ProfileUpdateSchema,
    SignupSchema,
    TokensSchema,
    UserSchema,
    VerifyEmailSchema,
)
from app.services import account_tokens
from app.services import auth as accounts
from app.services.revocation import (
    VERSION_CLAIM,
    revoke_encoded,
    revoke_payload,
    revoke_user_tokens,
)
from app.web.blueprint import BEARER, Blueprint, refuse_body
from app.web.limits import (
    exempt_unless_body_names,
    give_back,
    login_account_key,
    note_windows,
    noting_windows,
    reset_address_key,
    token_account_key,
)

blp = Blueprint("auth", __name__, description="Accounts and JWT tokens")


@blp.after_request
def _no_store(response):
    # Tokens and account data: never kept by a browser or a shared cache.
    response.headers["Cache-Control"] = "no-store"
    response.headers["Pragma"] = "no-cache"
    return response


def _tokens(user) -> dict:
    return {
        "access_token": create_access_token(identity=user),
        "refresh_token": create_refresh_token(identity=user),
        "user": user,
    }


def _limit(name: str):
    """A limit read from the config at request time, so it stays configurable."""
    return lambda: current_app.config[name]


@blp.route("/signup", methods=["POST"])
# Reads (is the name taken?), the password's hashing, then the first write:
# on SQLite the write lock is taken there, not held through the hashing
# while every other writer waits (found by review; the unique indexes decide
# a race the reads missed: a 409).
@blp.defer_write_lock
@limiter.limit(_limit("RATELIMIT_SIGNUP"))
@blp.arguments(SignupSchema)
@blp.response(201, TokensSchema)
@blp.alt_response(409, description="Username or email already taken")
def signup(data):
    """Create an account and sign in."""
    user = accounts.sign_up(data["username"], data["email"], data["password"])
    return _tokens(user)


# The budgets of password guesses (RATELIMIT_LOGIN per client, RATELIMIT_LOGIN_ACCOUNT
# per account) are spent when a request arrives and given back by every answer
# but a wrong password (`_give_back_what_did_not_count`, a 429's included): only
# failed guesses count, and no more guesses are checked at once than a budget
# has left.
GUESSES = ("login-failures", "login-account")
# The verification emails' budgets, shared by a resend and an email change.
VERIFY_MAILS = ("verify-mail", "verify-mail-account")
# A reset request's budget per address, whichever clients ask.
RESET_ADDRESS = ("reset-address",)


@blp.after_request
def _give_back_what_did_not_count(response):
    """Budgets spent on arrival that this answer did not use (a 422 and a
    429 included). A 429 never reaches the view's `noting_windows`, yet the
    limits counted before the one it breached spent their budgets
    (Flask-Limiter counts a view's limits by unit: the per-account "per 15
    minutes" before the per-client "per minute"): a 429 kept them, and a
    client past its own budget locked every account it named without one
    password checked (found by review). Noted here, microseconds after they
    were counted. So was a reset request's per-address budget: the address
    is counted before the client's breached limit (declared first, or of a
    shorter unit), and one client past its own budget locked the reset of
    every address it named (found by review)."""
    if response.status_code == 429 and "limit_windows" not in g:
        note_windows(*GUESSES, *VERIFY_MAILS, *RESET_ADDRESS)
    if not g.get("guessed_wrong"):
        give_back(*GUESSES)
    if not g.get("mailed_verification"):
        give_back(*VERIFY_MAILS)
    if response.status_code == 429:
        give_back(*RESET_ADDRESS)  # only a refused request: any other answer spends it
    return response


@blp.route("/login", methods=["POST"])
# Reads (the account, its password's hash) and at most one write, a hash of
# an earlier method made anew, after the hashing: on SQLite the write lock is
# taken only there, where BEGIN IMMEDIATE held it through the password
# hashing and every other writer waited on each login (found by review).
@blp.defer_write_lock
# A breach of any of these answers 429 before the password is checked.
@limiter.limit(_limit("RATELIMIT_LOGIN_ATTEMPTS"), scope="login-attempts")
@limiter.limit(_limit("RATELIMIT_LOGIN"), scope="login-failures")
@limiter.shared_limit(
    _limit("RATELIMIT_LOGIN_ACCOUNT"),
    "login-account",  # shared with PUT /profile's wrong current_password
    key_func=login_account_key,
)
@noting_windows(*GUESSES)
@blp.arguments(LoginSchema)
@blp.response(200, TokensSchema)
@blp.alt_response(401, description="Invalid credentials")
def login(data):
    """Sign in with email or username and password."""
    try:
        user = accounts.authenticate(data["password"], data.get("email"), data.get("username"))
    except InvalidCredentials:
        g.guessed_wrong = True
        raise
    return _tokens(user)


@blp.route("/profile", methods=["GET"])
@blp.private
@blp.response(200, UserSchema)
def get_profile():
    """The signed-in user."""
    return current_user


# Only a change that checks `current_password` (of the email or the
# password) counts: a username change was refused once strangers had spent
# the account's budget with wrong logins (found by review).
_CHECKS_PASSWORD = exempt_unless_body_names("email", "password")


@blp.route("/profile", methods=["PUT"])
# Reads (the token's user, the current password's check), the new
# password's hashing, then the first write (`accounts._lock_for_change`): on
# SQLite the write lock is taken there, not held through both hashes while
# every other writer waits (found by review).
@blp.defer_write_lock
@blp.private
# A wrong `current_password` is a failed login: it spends the client's and
# the account's budgets (RATELIMIT_LOGIN, RATELIMIT_LOGIN_ACCOUNT, the
# latter shared with the login's), and past them the change is a 429 before
# the password is checked; an access token alone allowed 300 guesses a
# minute (found by review).
@limiter.limit(_limit("RATELIMIT_LOGIN"), scope="login-failures", exempt_when=_CHECKS_PASSWORD)
# (A shared limit: Flask-Limiter keeps a plain one per endpoint, so the two
# routes had each a budget of their own; found by review.)
@limiter.shared_limit(
    _limit("RATELIMIT_LOGIN_ACCOUNT"),
    "login-account",
    key_func=token_account_key,
    exempt_when=_CHECKS_PASSWORD,
)
# An email change mails the new address a verification link: the resend's
# budgets, per client and per account (a change back and forth mailed a
# stranger at every other request; found by review), spent only by a change
# that mails.
@limiter.shared_limit(
    _limit("RATELIMIT_VERIFY_RESEND"),
    "verify-mail",
    exempt_when=exempt_unless_body_names("email"),
)
@limiter.shared_limit(
    _limit("RATELIMIT_VERIFY_RESEND"),
    "verify-mail-account",
    key_func=token_account_key,
    exempt_when=exempt_unless_body_names("email"),
)
@noting_windows(*GUESSES, *VERIFY_MAILS)
@blp.arguments(ProfileUpdateSchema)
@blp.response(200, UserSchema)
@blp.alt_response(409, description="Username or email already taken")
def update_profile(data):
    """Change username, email or password (the last two need current_password)."""
    email = current_user.email
    try:
        user = accounts.update_profile(current_user, data, get_jwt().get(VERSION_CLAIM, 0))
    except accounts.WrongPassword:
        g.guessed_wrong = True
        raise
    g.mailed_verification = user.email != email
    return user


@blp.route("/refresh", methods=["POST"])
@jwt_required(refresh=True)
@refuse_body
@blp.doc(security=BEARER)
@blp.response(200, AccessTokenSchema)
def refresh():
    """A new access token, with the refresh token as the bearer."""
    accounts.lock_token_user(current_user, get_jwt().get(VERSION_CLAIM, 0))
    return {"access_token": create_access_token(identity=current_user)}


@blp.route("/logout-all", methods=["POST"])
@blp.private
@blp.response(200, MessageSchema)
def logout_all():
    """Revoke every token of the caller, on every device (this one included)."""
    revoke_user_tokens(current_user)
    return {"message": "Logged out everywhere"}


@blp.route("/logout", methods=["POST"])
@blp.private
@blp.arguments(LogoutSchema, required=False)
@blp.response(200, MessageSchema)
def logout(data):
    """Revoke the access token used (and the refresh token given in the body)."""
    accounts.lock_token_user(current_user)
    revoke_payload(get_jwt())
    if data.get("refresh_token"):
        revoke_encoded(data["refresh_token"], "refresh", get_jwt().get("sub"))
    return {"message": "Logged out"}


# --- password reset and email verification ---------------------------------------


@blp.route("/password-reset", methods=["POST"])
# Per client, and per address whichever clients ask (found by review); a
# 429 gives back the address's spend (`_give_back_what_did_not_count`).
@limiter.limit(_limit("RATELIMIT_PASSWORD_RESET"))
@limiter.limit(
    _limit("RATELIMIT_PASSWORD_RESET"), key_func=reset_address_key, scope="reset-address"
)
@blp.arguments(PasswordResetRequestSchema)
@blp.response(202, MessageSchema)
def request_password_reset(data):
    """Email a password reset link, if an account has this email (202 either way)."""
    account_tokens.request_password_reset(data["email"])
    return {"message": "If an account has this email, a reset link is on its way"}


@blp.route("/password-reset/confirm", methods=["POST"])
# The new password is hashed before the first write (`reset_password`): on
# SQLite the write lock is taken there (found by review).
@blp.defer_write_lock
@blp.arguments(PasswordResetConfirmSchema)
@blp.response(200, MessageSchema)
@blp.alt_response(400, description="Unknown, used or expired token (token_invalid)")
def confirm_password_reset(data):
    """Set a new password with a reset token; every older session ends."""
    account_tokens.reset_password(data["token"], data["password"])
    return {"message": "Password changed; sign in with the new password"}


@blp.route("/verify-email", methods=["POST"])
@blp.arguments(VerifyEmailSchema)
@blp.response(200, UserSchema)
@blp.alt_response(400, description="Unknown, used or expired token (token_invalid)")
def verify_email(data):
    """Confirm the email address with the token from the verification email."""
    user = account_tokens.verify_email(data["token"])
    return user


@blp.route("/verify-email/resend", methods=["POST"])
@blp.private
# It mails whatever address the profile holds: limited as the reset request
# is, per client and per account (found by review), with the budgets an
# email change spends.
@limiter.shared_limit(_limit("RATELIMIT_VERIFY_RESEND"), "verify-mail")
@limiter.shared_limit(
    _limit("RATELIMIT_VERIFY_RESEND"), "verify-mail-account", key_func=token_account_key
)
@blp.response(202, MessageSchema)
def resend_verification():
    """Email a new verification link (nothing when the address is verified)."""
    g.mailed_verification = True  # counted either way, as the answer is one
    account_tokens.resend_verification(current_user)
    return {"message": "If your email is not verified yet, a new link is on its way"}
