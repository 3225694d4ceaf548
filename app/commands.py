"""`flask create-admin` and `flask seed`."""

from __future__ import annotations

import functools
import random
from collections.abc import Callable
from datetime import timedelta
from decimal import Decimal
from typing import Any

import click
from flask import Flask, current_app
from marshmallow import ValidationError
from sqlalchemy import func, insert, select
from sqlalchemy.exc import DBAPIError, OperationalError

from app.db import unit_of_work, vacuum_analyze
from app.errors import ApiError
from app.extensions import db
from app.models import Product
from app.models.types import utcnow
from app.schemas.user import SignupSchema
from app.services import auth as accounts
from app.services.demo import seed_demo_reviews
from app.services.health import schema_problem
from app.services.inventory import record_opening_balances

IMG = "https://picsum.photos/seed/{}/600/400"
UNDEFINED_TABLE = "42P01"  # PostgreSQL's SQLSTATE for a relation that does not exist
DEMO_CATALOG = [
    # name, category, price, stock, description
    (
        "Aurora Wireless Headphones",
        "Audio",
        "199.99",
        25,
        "Over-ear, noise cancelling, 30 h battery.",
    ),
    ("Pulse Bluetooth Speaker", "Audio", "79.50", 40, "Waterproof speaker with 12 h of play."),
    ("Studio Monitor Earbuds", "Audio", "129.00", 0, "In-ear monitors with detachable cable."),
    ("Nimbus 14 Laptop", "Computers", "1299.00", 8, "14-inch, 16 GB RAM, 512 GB SSD."),
    (
        "Vertex Mechanical Keyboard",
        "Computers",
        "89.99",
        60,
        "Hot-swappable switches, RGB backlight.",
    ),
    ("Glide Wireless Mouse", "Computers", "34.90", 120, "Silent clicks, USB-C charging."),
    ('Orbit 27" 4K Monitor', "Computers", "399.00", 15, "IPS panel, 60 Hz, USB-C power delivery."),
    ("Lumen Smartphone X", "Phones", "699.99", 30, "6.1-inch OLED, 128 GB."),
    ("Lumen Smartphone X Max", "Phones", "899.99", 12, "6.7-inch OLED, 256 GB."),
    ("Armor Phone Case", "Phones", "19.99", 300, "Shock-absorbing case with raised edges."),
    ("Trail Running Shoes", "Sports", "119.95", 45, "Lightweight with a grippy outsole."),
    ("Yoga Mat Pro", "Sports", "39.00", 80, "6 mm, non-slip, with carry strap."),
    ("Adjustable Dumbbells", "Sports", "249.00", 5, "2-24 kg per dumbbell, quick dial."),
    ("Cast Iron Skillet", "Kitchen", "44.99", 70, "Pre-seasoned 26 cm skillet."),
    ("Pour-Over Coffee Set", "Kitchen", "54.00", 35, "Dripper, carafe and 100 filters."),
    ("Chef's Knife 20 cm", "Kitchen", "89.00", 22, "German steel, full tang."),
    ("Organic Cotton T-Shirt", "Clothing", "24.00", 200, "Unisex, regular fit."),
    ("Merino Wool Sweater", "Clothing", "98.00", 18, "Fine-knit, crew neck."),
    ("Waterproof Shell Jacket", "Clothing", "179.00", 9, "Breathable 3-layer shell."),
    ("The Pragmatic Shopkeeper", "Books", "29.99", 50, "A field guide to running a small shop."),
    ("Cooking for Engineers", "Books", "34.50", 27, "Recipes as dependency graphs."),
    ("LED Desk Lamp", "Home", "49.90", 55, "Dimmable, with a wireless charging base."),
    ("Linen Bed Sheets", "Home", "119.00", 14, "Stonewashed linen, queen size."),
    ("Ceramic Plant Pot", "Home", "15.75", 90, "Matte glaze, with drainage tray."),
]
CATEGORIES = sorted({row[1] for row in DEMO_CATALOG})
ADJECTIVES = ["Classic", "Deluxe", "Compact", "Eco", "Ultra", "Smart", "Vintage", "Pro"]
NOUNS = ["Widget", "Gadget", "Bottle", "Backpack", "Charger", "Notebook", "Lamp", "Chair"]


def _demo_rows(threshold: int) -> list[dict]:
    now = utcnow()
    return [
        {
            "name": name,
            "category": category,
            "price": Decimal(price),
            "stock": stock,
            "description": description,
            "image_url": IMG.format(i),
            "low_stock_threshold": threshold,
            "created_at": now - timedelta(minutes=len(DEMO_CATALOG) - i),
            "updated_at": now,
        }
        for i, (name, category, price, stock, description) in enumerate(DEMO_CATALOG)
    ]


def _generated_rows(count: int, start: int, threshold: int) -> list[dict]:
    rng = random.Random(start)
    now = utcnow()
    rows = []
    for n in range(start, start + count):
        rows.append(
            {
                "name": f"{rng.choice(ADJECTIVES)} {rng.choice(NOUNS)} {n}",
                "category": rng.choice(CATEGORIES),
                "price": Decimal(rng.randint(99, 99_999)) / 100,
                "stock": rng.choice([0, 3, 10, 25, 100, 500]),
                "description": f"Generated product number {n} for load tests.",
                "image_url": IMG.format(f"gen{n}"),
                "low_stock_threshold": threshold,
                "created_at": now - timedelta(seconds=count - (n - start)),
                "updated_at": now,
            }
        )
    return rows


def needs_tables(command: Callable[..., Any]) -> Callable[..., Any]:
    """A command run on a database with no tables yet (before `flask db
    upgrade`: a newcomer's step skipped, a new DATABASE_URL) says so in one
    line instead of a SQL traceback (found by review); so does one whose
    database cannot be reached (a wrong host, port, user or password in
    DATABASE_URL, the server down): 150 lines of traceback ended in the
    driver's one line that mattered (found by review)."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except DBAPIError as error:
            orig = error.orig
            missing = getattr(orig, "sqlstate", None) == UNDEFINED_TABLE or (
                "no such table" in str(orig)
            )
            if missing:
                raise click.ClickException(
                    "the database has no tables yet: run `flask db upgrade` first"
                ) from None
            # A statement the database refused on a live connection: a column
            # or table the code has and an older revision lacks (this release's
            # `flask db upgrade` not run) was a traceback on PostgreSQL and "did
            # not answer" on SQLite (found by review).
            problem = None
            if error.statement is not None and not error.connection_invalidated:
                db.session.rollback()
                problem = schema_problem()
            if problem:
                raise click.ClickException(problem) from None
            if error.connection_invalidated or isinstance(error, OperationalError):
                # The driver's words name the host, port and user, never the
                # password (nor does SQLAlchemy's URL, which is not printed).
                reason = " ".join(str(orig).split())
                raise click.ClickException(
                    f"the database (DATABASE_URL) did not answer: {reason}"
                ) from None
            raise

    return wrapper


def _invalid(messages: Any) -> str:
    """`invalid input: --email: Not a valid email address.`: the option at
    fault named, not a bare list of messages (`invalid input: ['3-80
    characters: ...']` left the operator to guess which; found by review)."""
    if not isinstance(messages, dict):
        return f"invalid input: {messages}"
    return "invalid input: " + "; ".join(
        f"--{name}: " + " ".join(problems if isinstance(problems, list) else [str(problems)])
        for name, problems in messages.items()
    )


def register_commands(app: Flask) -> None:
    @app.cli.command("cancel-expired-orders")
    @needs_tables
    def cancel_expired_orders() -> None:
        """Cancel pending orders left unpaid past ORDER_PAYMENT_TIMEOUT; restock them."""
        from app.services.payment_timeouts import cancel_expired_orders as sweep

        with unit_of_work():
            cancelled = sweep()
        click.echo(f"Cancelled {len(cancelled)} unpaid order(s).")

    @app.cli.command("create-admin")
    @click.option("--username", required=True)
    @click.option("--email", required=True)
    @click.option("--password", required=True)
    @needs_tables
    @unit_of_work()
    def create_admin(username: str, email: str, password: str) -> None:
        """Create an admin, or promote the user with this username or email
        (given that account's own password)."""
        for name, value in (("username", username), ("email", email), ("password", password)):
            try:
                value.encode("utf-8")
            except UnicodeEncodeError:  # a byte the terminal's encoding did not decode
                raise click.ClickException(f"--{name} is not valid UTF-8") from None
        # Looked up as signup stores them (NFKC, an email's xn-- labels read
        # as letters): the raw spelling missed the account (found by review).
        fields = SignupSchema().fields
        try:
            username = fields["username"].deserialize(username)
        except ValidationError as err:
            raise click.ClickException(_invalid({"username": err.messages})) from None
        try:
            email = fields["email"].deserialize(email)
        except ValidationError as err:
            raise click.ClickException(_invalid({"email": err.messages})) from None
        by_name, by_email = accounts.find_by_username(username), accounts.find_by_email(email)
        if by_name is not None and by_email is not None and by_name.id != by_email.id:
            raise click.ClickException(
                f"the username names account {by_name.id} and the email account {by_email.id}: "
                "nothing changed"
            )
        existing = by_name or by_email
        if existing is not None:
            # Promoting whichever account the name or email named made an
            # admin of anyone who signed up first with the name (or the
            # unverified email) the operator meant to use; --password was
            # ignored (found by review). The account's own password proves
            # it is the operator's.
            if not existing.check_password(password):
                raise click.ClickException(
                    f"account {existing.username!r} (id {existing.id}) exists and --password is "
                    "not its password: nothing changed (promote an account with its own password)"
                )
            existing.is_admin = True
            click.echo(f"Promoted {existing.username} (id {existing.id}) to admin.")
            return
        try:
            data = SignupSchema().load({"username": username, "email": email, "password": password})
            user = accounts.create_user(**data, is_admin=True)
        except ValidationError as err:
            raise click.ClickException(_invalid(err.messages)) from None
        except ApiError as err:
            raise click.ClickException(err.message) from None
        click.echo(f"Created admin {user.username} (id {user.id}).")

    @app.cli.command("seed")
    @click.option(
        "--products",
        "count",
        type=click.IntRange(min=1, max=1_000_000),
        default=None,
        help="Add this many generated products (at most 1,000,000) instead of the demo catalog.",
    )
    @needs_tables
    def seed(count: int | None) -> None:
        """Load the demo catalog when the catalog is empty, or add N generated products."""
        existing = db.session.scalar(select(func.count()).select_from(Product))
        # As a product created through the API gets it (the column's default
        # is only the shipped value; found by review).
        threshold = current_app.config["LOW_STOCK_THRESHOLD"]
        if count is None:
            if existing:
                click.echo(f"Catalog already has {existing} products; nothing to seed.")
                return
            rows = _demo_rows(threshold)
        else:
            rows = _generated_rows(count, existing + 1, threshold)
        with unit_of_work():
            # One multi-row INSERT per 2,000 products (9 values each, under
            # SQLite's 32,766 parameters): PostgreSQL's live-count trigger runs
            # once per statement, where a bulk executemany ran it per row and
            # left 10,000 dead versions of its one row behind.
            for offset in range(0, len(rows), 2000):
                db.session.execute(insert(Product).values(rows[offset : offset + 2000]))
            record_opening_balances()
            reviews = 0 if count is not None else seed_demo_reviews()
        # Fresh planner statistics, and the new rows out of the trigram indexes'
        # pending list, so the indexes serve the very next query: before
        # autovacuum's turn the planner took 10,000 fresh rows for 8.
        vacuum_analyze("products", "products_live_count")
        click.echo(f"Added {len(rows)} products" + (f" and {reviews} reviews." if reviews else "."))
