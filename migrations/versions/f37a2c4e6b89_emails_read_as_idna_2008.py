"""Stored emails rewritten as the app now reads every email it is given
(app/schemas/user.py `normalize_email`): a quoted local part that needs no
quotes without them (`"bob"@example.com` is `bob@example.com`), and a
non-ASCII or `xn--` domain as IDNA 2008 with UTS 46 reads it (the `idna`
package: `bob@xn--strae-oqa.de` is `bob@straße.de`, a soft hyphen or other
invisible character dropped). Without it such an account no longer found
its own address at login, and a second account could sign up for the same
mailbox (found by review). A row whose rewritten address another account
already holds is left as it is (two accounts for one mailbox cannot be
merged here); its email now reads as the other account's, so it signs in by
its username (a review found the earlier wording promised otherwise). So is
a row whose rewritten address is longer than the column (254): UTS 46 can
lengthen a domain (U+1FB3 is two letters, `αι`), and a longer address
failed the upgrade on PostgreSQL and was stored on SQLite where no lookup
takes it (found by review); that account signs in by its username too.
The links mailed to a rewritten address (`account_tokens.email`, which
verification and reset compare with the account's) are rewritten with it:
they were mailed to that very mailbox and still work (found by review).

Revision ID: f37a2c4e6b89
Revises: f36d1b3c5e78
"""

from __future__ import annotations

import re
import unicodedata

import idna
import sqlalchemy as sa
from alembic import op

revision = "f37a2c4e6b89"
down_revision = "f36d1b3c5e78"
branch_labels = None
depends_on = None

# As app/schemas/user.py spells them at this revision (a migration is a
# frozen snapshot: it never imports the app).
DOT_ATOM = re.compile(r'[^\s"(),:;<>@\[\\\].]+(?:\.[^\s"(),:;<>@\[\\\].]+)*')
QUOTED_PAIR = re.compile(r"\\(.)")
AT_SIGN = re.compile("[@\ufe6b\uff20]")
DOTS = re.compile("[.\u3002\uff0e\uff61]")
LONGEST_EMAIL, LONGEST_LABEL = 320, 63
# users.email and account_tokens.email at this revision (String(254)).
LONGEST_STORED = 254


def _nfkc(value: str) -> str:
    return unicodedata.normalize("NFKC", value)


def _letters(domain: str) -> str | None:
    if any(len(label) > LONGEST_LABEL for label in DOTS.split(domain)):
        return None
    try:
        return idna.decode(domain, uts46=True)
    except (idna.IDNAError, UnicodeError, ValueError):
        return None


def _normalized(value: str) -> str:
    email = _nfkc(_nfkc(value).lower())
    local, at, domain = email.rpartition("@")
    if not at or len(email) > LONGEST_EMAIL:
        return email
    if len(local) > 2 and local[0] == local[-1] == '"':
        unquoted = QUOTED_PAIR.sub(r"\1", local[1:-1])
        if DOT_ATOM.fullmatch(unquoted):
            local = unquoted
    if not domain.isascii() or "xn--" in domain:
        # UTS 46 maps the domain as given (str.lower and NFKC read Greek
        # sigma otherwise), then as NFKC reads it if UTS 46 refuses that.
        domain = _letters(AT_SIGN.split(value)[-1]) or _letters(domain) or domain
    return _nfkc(_nfkc(local + at + domain).lower())


def upgrade() -> None:
    if op.get_context().as_sql:
        # Offline SQL cannot read the rows: the rewrite is Python's.
        op.execute("-- f37a2c4e6b89: stored emails are rewritten online only")
        return
    connection = op.get_bind()
    users = sa.table("users", sa.column("id", sa.Integer), sa.column("email", sa.String))
    tokens = sa.table(
        "account_tokens", sa.column("user_id", sa.Integer), sa.column("email", sa.String)
    )
    # Only what the reading can change: a quoted local part, an xn-- domain,
    # any letter outside ASCII (more bytes than characters).
    if connection.dialect.name == "postgresql":
        wide = sa.func.octet_length(users.c.email) != sa.func.length(users.c.email)
    else:
        wide = sa.func.length(sa.cast(users.c.email, sa.LargeBinary)) != sa.func.length(
            users.c.email
        )
    rows = connection.execute(
        sa.select(users.c.id, users.c.email).where(
            sa.or_(users.c.email.like('"%'), users.c.email.like("%xn--%"), wide)
        )
    ).all()
    for user_id, email in rows:
        rewritten = _normalized(email)
        if rewritten == email or len(rewritten) > LONGEST_STORED:
            continue
        holder = sa.select(users.c.id).where(users.c.email == rewritten)
        if connection.execute(holder).first() is None:
            connection.execute(users.update().where(users.c.id == user_id).values(email=rewritten))
            connection.execute(
                tokens.update()
                .where(tokens.c.user_id == user_id, tokens.c.email == email)
                .values(email=rewritten)
            )


def downgrade() -> None:
    # Both spellings name one mailbox: nothing to put back.
    pass
