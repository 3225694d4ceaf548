"""Stored emails whose domain is written in IDNA's ASCII labels (`xn--...`)
rewritten in the letters they stand for, as the app now normalises every
email it is given (`bob@xn--exmple-cua.com` is `bob@exämple.com`): lookups by
either spelling find the account. A row whose rewritten address another
account already holds is left as it is (two accounts cannot be merged here;
each still logs in with the spelling it was stored under).

Revision ID: f30d5e7a9b14
Revises: f29a1c3e5b70
"""

from __future__ import annotations

import unicodedata

import sqlalchemy as sa
from alembic import op

revision = "f30d5e7a9b14"
down_revision = "f29a1c3e5b70"
branch_labels = None
depends_on = None


def _nfkc(value: str) -> str:
    return unicodedata.normalize("NFKC", value)


def _unicode_label(label: str) -> str:
    # IDNA's ToUnicode (Punycode and the round trip back): nothing a
    # database cannot hold, nothing ToASCII would not give this label.
    if not label.startswith("xn--") or not label.isascii() or len(label) > 63:
        return label
    try:
        letters = label.encode("ascii").decode("idna")
    except UnicodeError:
        return label
    return letters if letters and letters != label else label


def _normalized(email: str) -> str:
    local, at, domain = email.rpartition("@")
    if not at or "xn--" not in domain or len(email) > 320:
        return email
    domain = ".".join(map(_unicode_label, domain.split(".")))
    return _nfkc(_nfkc(local + at + domain).lower())


def upgrade() -> None:
    if op.get_context().as_sql:
        # Offline SQL (`flask db upgrade --sql`) cannot read the rows: the
        # rewrite is Python's (Punycode). Stored xn-- spellings stay, each
        # account still found by the spelling it was stored under.
        op.execute("-- f30d5e7a9b14: xn-- email domains are rewritten online only")
        return
    connection = op.get_bind()
    users = sa.table("users", sa.column("id", sa.Integer), sa.column("email", sa.String))
    rows = connection.execute(
        sa.select(users.c.id, users.c.email).where(users.c.email.like("%xn--%"))
    ).all()
    for user_id, email in rows:
        rewritten = _normalized(email)
        if rewritten == email:
            continue
        holder = sa.select(users.c.id).where(users.c.email == rewritten)
        if connection.execute(holder).first() is None:
            connection.execute(
                users.update().where(users.c.id == user_id).values(email=rewritten)
            )


def downgrade() -> None:
    # Both spellings name one mailbox: nothing to put back.
    pass
