from __future__ import annotations

import re
import unicodedata

import idna
import marshmallow as ma
from marshmallow import ValidationError, fields, validate, validates_schema

from app.models.user import LONGEST_PASSWORD, normalise_password
from app.schemas.common import ChangeSchema


class NormalisedMatch(validate.Validator):
    """A pattern the whole value must match once normalised (`Username` reads
    NFKC first: a fullwidth alice is `alice`). Not a `Regexp`, so the
    document publishes no `pattern`: one on the raw input refused what the
    server takes (found by review); the field's description says the rule.
    `fullmatch` keeps Python's `$` from accepting a trailing newline."""

    def __init__(self, pattern: str, error: str):
        self.compiled = re.compile(pattern)
        self.error = error

    def __call__(self, value: str) -> str:
        if self.compiled.fullmatch(value) is None:
            raise ValidationError(self.error)
        return value


USERNAME_RULE = NormalisedMatch(
    r"[A-Za-z0-9_.\-]{3,80}",
    error="3-80 characters: letters, digits, '_', '.' or '-'.",
)
USERNAME_DESCRIPTION = (
    "3-80 characters once NFKC-normalised (fullwidth letters read as ASCII): "
    "letters, digits, `_`, `.` or `-`."
)
PASSWORD_RULE = validate.Length(8, LONGEST_PASSWORD)
PASSWORD_DESCRIPTION = (
    f"8-{LONGEST_PASSWORD} characters once NFC-normalised (an accent typed as a combining "
    "mark and typed precomposed are one password, one character)."
)
TYPED_PASSWORD_DESCRIPTION = (
    f"At most {LONGEST_PASSWORD} characters as typed or once NFC-normalised; "
    "either form of an accented letter."
)


class Password(fields.String):
    """A new password (signup, change, reset), NFC-normalised
    (`models.user.normalise_password`) before `PASSWORD_RULE` counts its
    characters: what is hashed is what is counted (as typed, four "é"s
    each typed as e and a combining accent were 8 characters, a password
    hashed from 4)."""

    def _deserialize(self, value, attr, data, **kwargs):
        return normalise_password(super()._deserialize(value, attr, data, **kwargs))


class TypedPasswordLength(validate.Validator):
    """A password given to be checked (a login's, a `current_password`),
    kept as typed: `User.password_form` checks its NFC form and, for a hash
    made before passwords were normalised, the form typed. Refused only if
    no account can have it: longer than LONGEST_PASSWORD characters both as
    typed and once normalised."""

    error = f"Longer than maximum length {LONGEST_PASSWORD}."

    def __call__(self, value: str) -> str:
        if len(value) > LONGEST_PASSWORD and len(normalise_password(value)) > LONGEST_PASSWORD:
            raise ValidationError(self.error)
        return value


def typed_password(**kwargs) -> fields.String:
    return fields.String(
        validate=TypedPasswordLength(),
        metadata={"description": TYPED_PASSWORD_DESCRIPTION},
        **kwargs,
    )


def nfkc(value: str) -> str:
    return unicodedata.normalize("NFKC", value)


UNMAILABLE = frozenset({"Cc", "Zl", "Zp"})  # controls, line and paragraph separators
# An RFC 2047 encoded word (`=?utf-8?q?...?=`): `=` and `?` are atext, but an
# email header parser decodes one, so `=?utf-8?q?victim=40gmail.com=2c?=x@...`
# was delivered to two other mailboxes, and `=?utf-8?q?bob?=@example.com` to
# bob@example.com's (found by review). No real mailbox is spelt so.
ENCODED_WORD = re.compile(r"=\?.*\?=", re.DOTALL)


# The longest address SMTP carries (RFC 5321: 64 + 1 + 255) and the longest
# label DNS holds: anything longer is refused by length, never decoded.
LONGEST_EMAIL, LONGEST_LABEL = 320, 63
# Past this, no input normalises to an address short enough (NFKC composes
# at most a few characters into one), and normalising it is never worth
# its time (a megabyte of characters NFKC expands took 0.6 s, twice per
# login; found by review).
LONGEST_INPUT = 8 * LONGEST_EMAIL


# RFC 5322's dot-atom: a quoted local part holding one is the same mailbox
# without its quotes (`"bob"@example.com` is bob@example.com).
DOT_ATOM = re.compile(r'[^\s"(),:;<>@\[\\\].]+(?:\.[^\s"(),:;<>@\[\\\].]+)*')
QUOTED_PAIR = re.compile(r"\\(.)")
# The characters NFKC makes an `@` (it, the fullwidth and the small one): the
# address splits at its last one whether or not it is normalised yet.
AT_SIGN = re.compile("[@\ufe6b\uff20]")
# The dots IDNA splits a domain at (full stop, ideographic, fullwidth, halfwidth).
DOTS = re.compile("[.\u3002\uff0e\uff61]")


def normalize_email(value: str) -> str:
    """NFKC, lower-cased, a quoted local part that needs no quotes without
    them, and an internationalised domain (non-ASCII, or `xn--` labels) as
    UTS 46 maps it and IDNA 2008 reads it, in letters (`domain_letters`):
    `bob@xn--exmple-cua.com` is `bob@exämple.com`, and a soft hyphen or
    other invisible character in the domain, which IDNA drops on the way to
    DNS, is dropped here too: one mailbox, one account (found by review).
    UTS 46 maps the domain as given, not as NFKC and `str.lower` left it:
    they read Greek sigma otherwise (`str.lower` makes a capital sigma
    before a digit, a hyphen or the end the final sigma U+03C2, NFKC makes
    the lunate sigma U+03F2 one; UTS 46 makes both the sigma U+03C3), so a
    domain typed in capitals was stored as another domain (found by review)."""
    if len(value) > LONGEST_INPUT:  # too long however it normalises: refused by length
        return value
    email = nfkc(nfkc(value).lower())
    local, at, domain = email.rpartition("@")
    if not at or len(email) > LONGEST_EMAIL:
        return email
    if len(local) > 2 and local[0] == local[-1] == '"':
        unquoted = QUOTED_PAIR.sub(r"\1", local[1:-1])
        if DOT_ATOM.fullmatch(unquoted):
            local = unquoted
    if not domain.isascii() or "xn--" in domain:
        # As given; then as NFKC reads it, as before, for a domain UTS 46
        # refuses as given but not once NFKC has spelt it out (`⒈` is `1.`).
        domain = domain_letters(AT_SIGN.split(value)[-1]) or domain_letters(domain) or domain
    return nfkc(nfkc(local + at + domain).lower())


def domain_letters(domain: str) -> str | None:
    """The domain in letters, as UTS 46 maps it (case, invisible characters)
    and IDNA 2008 decodes it (`xn--strae-oqa.de` is `straße.de`, a domain
    of its own, not `strasse.de`, as IDNA 2003 made it); None when IDNA
    2008 takes no such domain (no mail reaches it)."""
    if any(len(label) > LONGEST_LABEL for label in DOTS.split(domain)):
        return None
    try:
        return idna.decode(domain, uts46=True)
    except (idna.IDNAError, UnicodeError, ValueError):
        return None


class Username(fields.String):
    """NFKC-normalised before it is validated or compared (fullwidth 'alice' is alice)."""

    def _deserialize(self, value, attr, data, **kwargs) -> str:
        value = super()._deserialize(value, attr, data, **kwargs)
        return value if len(value) > LONGEST_INPUT else nfkc(value)  # too long: refused


class EmailAddress(fields.Email):
    """NFKC-normalised and lower-cased (as stored) before the length and format
    are checked: lower-casing can lengthen it ('İ' becomes two characters).
    No control or line-separator character, not even in a quoted local part
    (marshmallow lets them through there): no email header can carry one, so
    every email to the account would fail. No RFC 2047 encoded word: a mail
    reader decodes it into another address."""

    def _deserialize(self, value, attr, data, **kwargs) -> str:
        email = normalize_email(super()._deserialize(value, attr, data, **kwargs))
        if any(unicodedata.category(char) in UNMAILABLE for char in email):
            raise ValidationError("Must not contain control characters.")
        if ENCODED_WORD.search(email):
            raise ValidationError("Must not contain an encoded word (=?...?=).")
        # Letters IDNA 2008 takes no domain of (a zero width joiner, ...): no
        # mail reaches it. (An ASCII `xn--` label that is no Punycode stays
        # as written, as DNS would carry it.)
        domain = email.rpartition("@")[2]
        if not domain.isascii() and domain_letters(domain) is None:
            raise ValidationError("Not a valid email address.")
        return email


class EmailLookup(fields.String):
    """An email to look an account up by, normalised as `EmailAddress` stores it."""

    def _deserialize(self, value, attr, data, **kwargs) -> str:
        return normalize_email(super()._deserialize(value, attr, data, **kwargs))


class UserSchema(ma.Schema):
    id = fields.Integer(dump_only=True, metadata={"example": 1})
    username = fields.String(dump_only=True, metadata={"example": "alice"})
    email = fields.String(dump_only=True, metadata={"example": "alice@example.com"})
    is_admin = fields.Boolean(dump_only=True)
    email_verified = fields.Boolean(dump_only=True)
    created_at = fields.DateTime(dump_only=True)


EXAMPLE_PASSWORD = "correct-horse-9"  # noqa: S105 - a documentation example


class SignupSchema(ma.Schema):
    username = Username(
        required=True,
        validate=USERNAME_RULE,
        metadata={"example": "alice", "description": USERNAME_DESCRIPTION},
    )
    email = EmailAddress(
        required=True, validate=validate.Length(max=254), metadata={"example": "alice@example.com"}
    )
    password = Password(
        required=True,
        load_only=True,
        validate=PASSWORD_RULE,
        metadata={"example": EXAMPLE_PASSWORD, "description": PASSWORD_DESCRIPTION},
    )


class LoginByEmailSchema(ma.Schema):
    """Sign in with the email address."""

    email = fields.String(required=True, validate=validate.Length(max=254))
    password = typed_password(required=True)
    OPENAPI_EXAMPLE = {"email": "alice@example.com", "password": EXAMPLE_PASSWORD}


class LoginByUsernameSchema(ma.Schema):
    """Sign in with the username."""

    username = fields.String(required=True, validate=validate.Length(max=80))
    password = typed_password(required=True)
    OPENAPI_EXAMPLE = {"username": "alice", "password": EXAMPLE_PASSWORD}


class LoginSchema(ma.Schema):
    """`password` and exactly one of `email` or `username`."""

    email = EmailLookup(validate=validate.Length(max=254))
    username = Username(validate=validate.Length(max=80))
    password = typed_password(required=True, load_only=True)
    # The document shows the two accepted shapes (see app.web.openapi_contract).
    OPENAPI_ONE_OF = (LoginByEmailSchema, LoginByUsernameSchema)

    @validates_schema
    def one_identifier(self, data, **kwargs):
        if ("email" in data) == ("username" in data):
            raise ValidationError("Give exactly one of 'email' or 'username'.", "_schema")


class ProfileUpdateSchema(ChangeSchema):
    """Any of username, email, password; current_password to change the last two."""

    OPENAPI_EXAMPLE = {"username": "alice_w"}
    NOT_CHANGES = ("current_password",)

    username = Username(validate=USERNAME_RULE, metadata={"description": USERNAME_DESCRIPTION})
    email = EmailAddress(validate=validate.Length(max=254))
    password = Password(
        load_only=True, validate=PASSWORD_RULE, metadata={"description": PASSWORD_DESCRIPTION}
    )
    current_password = typed_password(load_only=True)

    @validates_schema
    def needs_current_password(self, data, **kwargs):
        if ("email" in data or "password" in data) and "current_password" not in data:
            raise ValidationError("Required to change email or password.", "current_password")


class TokensSchema(ma.Schema):
    access_token = fields.String()
    refresh_token = fields.String()
    user = fields.Nested(UserSchema)


class AccessTokenSchema(ma.Schema):
    access_token = fields.String()


class LogoutSchema(ma.Schema):
    refresh_token = fields.String(
        validate=validate.Length(max=4096),
        metadata={"description": "Also revoke this refresh token."},
    )


# Password reset and email verification (issue 16)
TOKEN_RULE = validate.Length(1, 200)


class PasswordResetRequestSchema(ma.Schema):
    email = EmailAddress(required=True, validate=validate.Length(max=254))


class PasswordResetConfirmSchema(ma.Schema):
    token = fields.String(required=True, load_only=True, validate=TOKEN_RULE)
    password = Password(
        required=True,
        load_only=True,
        validate=PASSWORD_RULE,
        metadata={"description": PASSWORD_DESCRIPTION},
    )


class VerifyEmailSchema(ma.Schema):
    token = fields.String(required=True, load_only=True, validate=TOKEN_RULE)
