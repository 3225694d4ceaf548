"""Configuration classes, read from the environment (and `.env`)."""

from __future__ import annotations

import logging
import math
import os
import re
from datetime import timedelta
from pathlib import Path

from dotenv import load_dotenv

BASE_DIR = Path(__file__).resolve().parent
load_dotenv(BASE_DIR / ".env")

DEV_SECRET = "dev-secret-change-me"  # noqa: S105 - a known placeholder, refused in production
DEV_JWT_SECRET = "dev-jwt-secret-change-me-at-least-32-bytes"  # noqa: S105


TRUE_WORDS, FALSE_WORDS = {"1", "true", "yes", "on"}, {"0", "false", "no", "off"}


def env_bool(name: str, default: bool) -> bool:
    """The switch in `name`, or `default` when it is unset or empty; any word
    but true/false, yes/no, on/off, 1/0 stops start-up naming the variable
    (`RATELIMIT_ENABLED=enabled` read as off and started production without
    rate limits; found by review)."""
    value = os.environ.get(name)
    if value is None or value.strip() == "":
        return default
    word = value.strip().lower()
    if word not in TRUE_WORDS | FALSE_WORDS:
        raise SystemExit(f"{name} must be true or false (yes/no, on/off, 1/0), not {value!r}")
    return word in TRUE_WORDS


# The longest duration a setting in seconds may name: ten years. A time it
# is added to must stay a date (a lease of 1e12 s overflowed every claim,
# a retry backoff of 1e12 s every failed send; found by review).
A_DECADE = 10 * 365 * 86400
INT32_MAX = 2**31 - 1  # the most milliseconds PostgreSQL and SQLite take for a timeout


def env_int(name: str, default: int, minimum: int | None = None, maximum: int | None = None) -> int:
    """The integer in `name`, or `default` when it is unset or empty; a
    malformed one, or one below `minimum` or above `maximum`, stops start-up
    naming the variable (a bare ValueError did not say which of ~30
    settings was wrong; found by review)."""
    value = _env_number(name, default, int)
    if minimum is not None and value < minimum:
        raise SystemExit(f"{name} must be at least {minimum}, not {value}")
    if maximum is not None and value > maximum:
        raise SystemExit(f"{name} must be at most {maximum}, not {value}")
    return value


def env_float(
    name: str,
    default: float,
    minimum: float | None = None,
    above: float | None = None,
    maximum: float | None = A_DECADE,
) -> float:
    """As `env_int`, for seconds and other fractional settings (an empty one
    crashed start-up instead of taking its default); `above`: a bound the
    value must exceed (an interval of 0 s is no interval)."""
    value = _env_number(name, default, float)
    if not math.isfinite(value):  # `nan` passed every bound; `inf` overflowed (found by review)
        raise SystemExit(f"{name} must be a finite number, not {value:g}")
    if minimum is not None and value < minimum:
        raise SystemExit(f"{name} must be at least {minimum:g}, not {value:g}")
    if above is not None and value <= above:
        raise SystemExit(f"{name} must be more than {above:g}, not {value:g}")
    if maximum is not None and value > maximum:
        raise SystemExit(f"{name} must be at most {maximum:g}, not {value:g}")
    return value


def _env_number(name, default, kind):
    value = os.environ.get(name, "").strip()
    if not value:
        return default
    try:
        return kind(value)
    except ValueError:
        raise SystemExit(
            f"configuration refused: {name}={value!r} is not a number"
            + (" (a whole number)" if kind is int else "")
        ) from None


def env_str(name: str, default: str) -> str:
    """The text in `name`, or `default` when it is unset or empty: an empty
    line (`NAME=` in an .env or systemd EnvironmentFile) is how a setting is
    left unset there (read as "", it made every login a 500 with an empty
    SECRET_KEY, and left production without failed-login limits with an
    empty RATELIMIT_LOGIN; found by review)."""
    value = os.environ.get(name, "")
    return value if value.strip() else default


def env_hash_method(name: str, default: str) -> str:
    """A Werkzeug password hash method (`env_str`); one Werkzeug cannot hash
    with (a typo such as `scrpyt`) stops start-up naming the variable: it
    started, and every signup, login and password change was a 500 (found by
    review). Tried once, on a one-character password, only when set."""
    value = env_str(name, default)
    if value != default:
        from werkzeug.security import generate_password_hash

        try:
            generate_password_hash("x", method=value)
        except (ValueError, TypeError) as error:
            raise SystemExit(f"{name} is not a Werkzeug hash method: {value!r}") from error
    return value


def env_choice(name: str, default: str, choices) -> str:
    """`env_str`, upper-cased, one of `choices` or start-up stops naming the
    variable (LOG_LEVEL=bogus stopped it with "Unknown level" alone)."""
    value = env_str(name, default).strip().upper()
    if value not in choices:
        raise SystemExit(f"{name} must be one of {', '.join(choices)}, not {value!r}")
    return value


def env_currency(name: str, default: str) -> str:
    """An ISO 4217 code's shape, three letters (upper-cased): any string was
    taken, and orders were placed and paid in "BOGUS" or "" (found by
    review)."""
    value = env_str(name, default).strip().upper()
    if not re.fullmatch(r"[A-Z]{3}", value):
        raise SystemExit(f"{name} must be a three-letter ISO 4217 currency code, not {value!r}")
    return value


def env_limit(name: str, default: str) -> str:
    """A rate limit (`env_str`) as Flask-Limiter reads it (`10 per minute`,
    several joined by `;` or `,`); a malformed one stops start-up naming the
    variable: Flask-Limiter skipped a limit it could not parse on every
    request, logging nothing shown, so `RATELIMIT_LOGIN=10 per minit`
    started production with no limit on password guesses (found by review)."""
    from limits import parse_many

    value = env_str(name, default)
    try:
        parse_many(value)
    except ValueError:
        raise SystemExit(
            f"{name} must be a rate limit such as '10 per minute', not {value!r}"
        ) from None
    return value


def env_word(name: str, default: str, choices) -> str:
    """`env_str`, one of `choices` or start-up stops naming the variable: a
    misspelt BACKGROUND_MODE was a RuntimeError traceback, a misspelt
    MAIL_BACKEND or PAYMENT_PROVIDER started (outside production) and failed
    every email, every payment (found by review)."""
    value = env_str(name, default).strip()
    if value not in choices:
        raise SystemExit(f"{name} must be one of {', '.join(choices)}, not {value!r}")
    return value


def env_url(name: str, default: str, schemes) -> str:
    """`env_str`, a URL of one of `schemes` (a callable for the database's,
    which SQLAlchemy decides) or start-up stops naming the variable:
    `postgres://...` (no SQLAlchemy dialect), `host:6379` for Redis, a
    storage URI with no `://` each stopped it with a traceback, most naming
    no variable (found by review). Only the scheme is ever printed: the URL
    may hold a password."""
    value = env_str(name, default).strip()
    scheme = value.partition("://")[0].lower() if "://" in value else ""
    if value and not (schemes(value) if callable(schemes) else scheme in schemes):
        raise SystemExit(
            f"{name} is not a URL this shop can use (scheme {scheme or 'missing'!r}); "
            "see the README's Configuration"
        )
    return value


def _sqlalchemy_url(value: str) -> bool:
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError, NoSuchModuleError

    try:
        make_url(value).get_dialect()
    except (ArgumentError, NoSuchModuleError, ValueError):
        return False
    return True


def _web_url(value: str) -> bool:
    from urllib.parse import urlsplit

    parts = urlsplit(value)
    # No query or fragment: the links are this base and a path with its own
    # query (`/reset-password?token=`); `https://x/?a=1` broke every one
    # (found by review).
    # Nothing a mailed link cannot carry as written: a space ended every
    # text part's link there (`https://shop.example.com/my shop`), as do
    # quotes and angle brackets (found by review); `%20` is the way.
    carried = not any(char.isspace() or char in '"<>`\\^{|}' for char in value)
    return (
        parts.scheme.lower() in ("http", "https")
        and bool(parts.hostname)
        and not parts.query
        and not parts.fragment
        and carried
    )


def env_sender(name: str, default: str) -> str:
    """`env_str`, a `From` with an address in it (`Shop <shop@example.com>`
    or the address alone), or start-up stops naming the variable: `Shop`
    alone started, and every email went out with an envelope sender of no
    domain, refused and retried until failed (found by review)."""
    from email.utils import parseaddr

    value = env_str(name, default)
    if "@" not in parseaddr(value)[1]:
        raise SystemExit(
            f"{name} must name an address, such as 'Shop <shop@example.com>', not {value!r}"
        )
    return value


def env_smtp_login(name: str) -> str | None:
    """An SMTP login part, or None when unset: ASCII, as smtplib sends AUTH
    (`str.encode("ascii")`), or start-up stops naming the variable (never
    its value). A non-ASCII one started, and every send failed with a
    UnicodeEncodeError, retried until marked failed (found by review)."""
    value = os.environ.get(name) or None
    if value is not None and not value.isascii():
        raise SystemExit(f"{name} must be ASCII: SMTP AUTH sends it so")
    return value


def _limits_storage_schemes() -> frozenset[str]:
    from limits.storage import SCHEMES

    return frozenset(SCHEMES)


# What PAYMENT_PROVIDER, MAIL_BACKEND and BACKGROUND_MODE may name
# (app.services.payment_providers, app.services.mail, app.tasks).
PAYMENT_PROVIDERS = ("test", "stripe")
MAIL_BACKENDS = ("smtp", "console")
BACKGROUND_MODES = ("auto", "celery", "thread", "off")
REDIS_SCHEMES = ("redis", "rediss", "unix")  # what redis-py connects to


def env_list(name: str, default: str = "") -> list[str]:
    return [item.strip() for item in env_str(name, default).split(",") if item.strip()]


# An origin as a browser sends it (RFC 6454): scheme, host, optional port;
# no path, no wildcard.
ORIGIN = re.compile(r"https?://([A-Za-z0-9-]+(\.[A-Za-z0-9-]+)*|\[[0-9A-Fa-f:.]+\])(:[0-9]{1,5})?")


def env_origins(name: str, default: str = "") -> list[str]:
    """`env_list` of origins, each as a browser's Origin header names it, or
    start-up stops naming the variable: `https://shop.example.com/` (a
    trailing slash) or one without its scheme matched no browser's, and
    every storefront call failed with nothing saying why; `*`, which
    flask-cors reads as a pattern, allowed every origin (found by review)."""
    origins = env_list(name, default)
    for origin in origins:
        if not ORIGIN.fullmatch(origin):
            raise SystemExit(
                f"{name} must list origins such as https://shop.example.com "
                f"(scheme, host, optional port; no path, no wildcard), not {origin!r}"
            )
    return origins


class Config:
    SECRET_KEY = env_str("SECRET_KEY", DEV_SECRET)
    JWT_SECRET_KEY = env_str("JWT_SECRET_KEY", DEV_JWT_SECRET)
    SQLALCHEMY_DATABASE_URI = env_url(
        "DATABASE_URL", f"sqlite:///{BASE_DIR / 'instance' / 'shop.db'}", _sqlalchemy_url
    )
    # Statements are logged without their parameters (password hashes, emails).
    SQLALCHEMY_ENGINE_OPTIONS: dict = {"hide_parameters": True}
    # PostgreSQL: a server that accepts but never answers must not hold a
    # worker thread for minutes (seconds; statement timeout in ms, 0 = none).
    DB_CONNECT_TIMEOUT = env_int("DB_CONNECT_TIMEOUT", 5, minimum=1, maximum=A_DECADE)
    # Both timeouts in ms reach the database as a 32-bit int: a larger one made
    # PostgreSQL refuse every connection (each request a 503), and SQLite
    # read it as 0, no wait for the lock at all (found by review).
    DB_STATEMENT_TIMEOUT_MS = env_int(
        "DB_STATEMENT_TIMEOUT_MS", 30_000, minimum=0, maximum=INT32_MAX
    )
    DB_POOL_TIMEOUT = env_int("DB_POOL_TIMEOUT", 10, minimum=0, maximum=A_DECADE)
    # PostgreSQL: a read request pings a pooled connection only after it sat
    # unused this long (seconds); writes ping every time (app.db).
    DB_PING_IDLE_SECONDS = env_int("DB_PING_IDLE_SECONDS", 10, minimum=0, maximum=A_DECADE)
    SQLITE_BUSY_TIMEOUT_MS = env_int("SQLITE_BUSY_TIMEOUT_MS", 30_000, minimum=0, maximum=INT32_MAX)

    JWT_ACCESS_TOKEN_EXPIRES = timedelta(
        seconds=env_int("JWT_ACCESS_TOKEN_EXPIRES", 3600, minimum=1, maximum=A_DECADE)
    )
    JWT_REFRESH_TOKEN_EXPIRES = timedelta(
        seconds=env_int("JWT_REFRESH_TOKEN_EXPIRES", 30 * 86400, minimum=1, maximum=A_DECADE)
    )
    JWT_ALGORITHM = "HS256"
    JWT_DECODE_ALGORITHMS = ["HS256"]
    JWT_TOKEN_LOCATION = ["headers"]
    PASSWORD_HASH_METHOD = env_hash_method("PASSWORD_HASH_METHOD", "scrypt")
    PASSWORD_HASH_CONCURRENCY = env_int("PASSWORD_HASH_CONCURRENCY", 2, minimum=1)
    PASSWORD_HASH_WAIT = env_float("PASSWORD_HASH_WAIT", 5, minimum=0)

    REDIS_URL = env_url("REDIS_URL", "", REDIS_SCHEMES) or None
    CORS_ORIGINS = env_origins("CORS_ORIGINS")  # production: only what is configured
    MAX_CONTENT_LENGTH = env_int("MAX_CONTENT_LENGTH", 1024 * 1024, minimum=1024)

    RATELIMIT_ENABLED = env_bool("RATELIMIT_ENABLED", True)
    # Counters must be shared by every process: Redis when REDIS_URL is set.
    RATELIMIT_STORAGE_URI = (
        env_url("RATELIMIT_STORAGE_URI", "", _limits_storage_schemes()) or REDIS_URL or "memory://"
    )
    RATELIMIT_KEY_PREFIX = env_str("RATELIMIT_KEY_PREFIX", "shop")
    RATELIMIT_DEFAULT = env_limit("RATELIMIT_DEFAULT", "300 per minute")
    RATELIMIT_LOGIN = env_limit("RATELIMIT_LOGIN", "10 per minute")
    # Every login attempt per client, and failed logins per account from any
    # client (an attacker rotating addresses still meets the second).
    RATELIMIT_LOGIN_ATTEMPTS = env_limit("RATELIMIT_LOGIN_ATTEMPTS", "30 per minute")
    RATELIMIT_LOGIN_ACCOUNT = env_limit("RATELIMIT_LOGIN_ACCOUNT", "10 per 15 minutes")
    # Production refuses per-process counters (memory://) unless this is set:
    # with several workers each would allow the whole limit.
    RATELIMIT_ALLOW_MEMORY_STORAGE = env_bool("RATELIMIT_ALLOW_MEMORY_STORAGE", False)
    RATELIMIT_SIGNUP = env_limit("RATELIMIT_SIGNUP", "20 per hour")
    # Redis down: limits fall back to per-process counters (a warning is
    # logged) and come back to Redis when it answers again; never a 500.
    RATELIMIT_IN_MEMORY_FALLBACK_ENABLED = True
    RATELIMIT_IN_MEMORY_FALLBACK = env_limit("RATELIMIT_IN_MEMORY_FALLBACK", "300 per minute")
    RATELIMIT_SWALLOW_ERRORS = True
    RATELIMIT_STORAGE_OPTIONS = {"socket_connect_timeout": 1, "socket_timeout": 1}
    RATELIMIT_PASSWORD_RESET = env_limit("RATELIMIT_PASSWORD_RESET", "10 per hour")
    # Verification emails sent again, per client and per account (as resets).
    RATELIMIT_VERIFY_RESEND = env_limit("RATELIMIT_VERIFY_RESEND", RATELIMIT_PASSWORD_RESET)
    TRUST_PROXY = env_int("TRUST_PROXY", 0, minimum=0)

    IDEMPOTENCY_TTL = timedelta(hours=24)
    IDEMPOTENCY_ABANDONED_AFTER = timedelta(
        seconds=env_int("IDEMPOTENCY_ABANDONED_AFTER", 60, minimum=1, maximum=A_DECADE)
    )

    LOG_LEVEL = env_choice("LOG_LEVEL", "INFO", logging.getLevelNamesMapping())

    # Public catalog reads cached until the next catalog write (app/services/catalog_cache.py):
    # in Redis when REDIS_URL is set, else in each process (version shared through a file).
    CATALOG_CACHE = env_bool("CATALOG_CACHE", True)
    # Seconds; a net, not the invalidation. Redis takes no expiry of 0 (every
    # entry was refused and the cache reported unreachable; found by review).
    CATALOG_CACHE_TTL = env_int("CATALOG_CACHE_TTL", 300, minimum=1, maximum=A_DECADE)
    # Per process. The *_MAX_ENTRIES and SUGGEST_INDEX_MAX_NAMES are at least
    # 0 (off): -1 ("no limit" in many tools) emptied a cache while it was
    # over its size, and every catalog read that kept an answer was a 500;
    # -2 names made the index's count `LIMIT -1` (found by review).
    CATALOG_CACHE_MAX_ENTRIES = env_int("CATALOG_CACHE_MAX_ENTRIES", 2048, minimum=0)
    CATALOG_CACHE_PREFIX = env_str("CATALOG_CACHE_PREFIX", "shop:catalog")
    # A search's relevance page kept until a product's text changes, not only
    # until the catalog does (app/services/search/rankings.py); 0 turns it off.
    SEARCH_RANKINGS_MAX_ENTRIES = env_int("SEARCH_RANKINGS_MAX_ENTRIES", 2048, minimum=0)
    SEARCH_RANKINGS_PREFIX = env_str("SEARCH_RANKINGS_PREFIX", "shop:rankings")
    # A list's total and the facets kept until which products match a filter
    # changes (app/services/matches.py), not each checkout; 0 turns it off.
    CATALOG_MATCHES_MAX_ENTRIES = env_int("CATALOG_MATCHES_MAX_ENTRIES", 2048, minimum=0)
    CATALOG_MATCHES_PREFIX = env_str("CATALOG_MATCHES_PREFIX", "shop:matches")

    # A read request's token user kept per token until an account changes
    # (app/services/account_cache.py); 0 turns it off.
    ACCOUNT_CACHE_MAX_ENTRIES = env_int("ACCOUNT_CACHE_MAX_ENTRIES", 1024, minimum=0)
    # ... and for at most this many seconds: an account changed in SQL (an
    # operator's demotion or delete) commits nothing the app notices.
    ACCOUNT_CACHE_TTL = env_float("ACCOUNT_CACHE_TTL", 5, minimum=0)
    ACCOUNT_CACHE_PREFIX = env_str("ACCOUNT_CACHE_PREFIX", "shop:accounts")

    # Suggestions answered from an in-memory index of the live names, rebuilt
    # after a name changes (app/services/search/suggestions.py); 0 turns it
    # off, and a catalog with more distinct names than this asks the database.
    SUGGEST_INDEX_MAX_NAMES = env_int("SUGGEST_INDEX_MAX_NAMES", 50_000, minimum=0)
    SUGGEST_INDEX_PREFIX = env_str("SUGGEST_INDEX_PREFIX", "shop:names")

    # Payments: `test` (no network, Stripe's test payment method names) or `stripe`.
    SHOP_CURRENCY = env_currency("SHOP_CURRENCY", "USD")
    PAYMENT_PROVIDER = env_str("PAYMENT_PROVIDER", "test").strip().lower()
    if PAYMENT_PROVIDER not in PAYMENT_PROVIDERS:
        raise SystemExit(
            f"PAYMENT_PROVIDER must be one of {', '.join(PAYMENT_PROVIDERS)}, "
            f"not {PAYMENT_PROVIDER!r}"
        )
    STRIPE_SECRET_KEY = env_str("STRIPE_SECRET_KEY", "")
    STRIPE_WEBHOOK_SECRET = env_str("STRIPE_WEBHOOK_SECRET", "")
    STRIPE_WEBHOOK_TOLERANCE = env_int("STRIPE_WEBHOOK_TOLERANCE", 300, minimum=1, maximum=A_DECADE)
    # Seconds a pending, unpaid order keeps its stock; 0 turns the sweep off.
    ORDER_PAYMENT_TIMEOUT = env_int("ORDER_PAYMENT_TIMEOUT", 1800, minimum=0, maximum=A_DECADE)
    # How often the worker looks for them; 0 turns the job off (the CLI still works).
    ORDER_PAYMENT_SWEEP_INTERVAL = env_int(
        "ORDER_PAYMENT_SWEEP_INTERVAL", 60, minimum=0, maximum=A_DECADE
    )
    # Email and background work (app/tasks, app/services/outbox.py).
    SHOP_NAME = env_str("SHOP_NAME", "Shop")
    # http(s) with a host: `shop.example.com` alone started, and every link
    # mailed was one no mail reader opens (found by review).
    FRONTEND_URL = env_url("FRONTEND_URL", "http://localhost:3000", _web_url).rstrip("/")
    PASSWORD_RESET_EXPIRES = env_int("PASSWORD_RESET_EXPIRES", 3600, minimum=1, maximum=A_DECADE)
    EMAIL_VERIFICATION_EXPIRES = env_int(
        "EMAIL_VERIFICATION_EXPIRES", 48 * 3600, minimum=1, maximum=A_DECADE
    )
    MAIL_BACKEND = env_word("MAIL_BACKEND", "console", MAIL_BACKENDS)
    MAIL_SERVER = env_str("MAIL_SERVER", "localhost")
    MAIL_PORT = env_int("MAIL_PORT", 25, minimum=1, maximum=65535)
    MAIL_USERNAME = env_smtp_login("MAIL_USERNAME")
    MAIL_PASSWORD = env_smtp_login("MAIL_PASSWORD")
    MAIL_USE_TLS = env_bool("MAIL_USE_TLS", False)
    MAIL_USE_SSL = env_bool("MAIL_USE_SSL", False)
    if MAIL_USE_TLS and MAIL_USE_SSL:
        # STARTTLS inside a TLS connection: every email failed (found by review).
        raise SystemExit("MAIL_USE_TLS (STARTTLS, port 587) and MAIL_USE_SSL (port 465): set one")
    # At least 1 s: smtplib refuses 0 ("no timeout" in many tools) and every
    # email failed after its retries, nothing at start-up saying why (found
    # by review).
    MAIL_TIMEOUT = env_int("MAIL_TIMEOUT", 10, minimum=1, maximum=A_DECADE)
    MAIL_DEFAULT_SENDER = env_sender("MAIL_DEFAULT_SENDER", "Shop <no-reply@localhost>")
    MAIL_MAX_ATTEMPTS = env_int(
        "MAIL_MAX_ATTEMPTS", 5, minimum=1, maximum=100
    )  # 2**1024 s: no float
    # Seconds before the first retry; each further retry waits twice as long.
    MAIL_RETRY_BACKOFF = env_float("MAIL_RETRY_BACKOFF", 30, minimum=0)
    MAIL_RETRY_BACKOFF_MAX = env_float("MAIL_RETRY_BACKOFF_MAX", 3600, minimum=0)
    # `auto`: Celery workers when REDIS_URL is set, else a thread in each app
    # process; `celery`; `thread`; `off` (only record: workers elsewhere, or tests).
    BACKGROUND_MODE = env_word("BACKGROUND_MODE", "auto", BACKGROUND_MODES)
    # A claimed message is another worker's to retry after this long (a worker
    # killed mid-delivery); more than MAIL_TIMEOUT, or a send has no time for
    # one read (0 made every send's deadline its claim: DeadlinePassed until
    # failed; found by review).
    OUTBOX_LEASE = env_float("OUTBOX_LEASE", 120)
    if OUTBOX_LEASE <= MAIL_TIMEOUT:
        raise SystemExit(
            f"OUTBOX_LEASE must be more than MAIL_TIMEOUT ({MAIL_TIMEOUT}), not {OUTBOX_LEASE:g}"
        )
    # How often workers look for messages whose enqueue was lost, and retries due.
    OUTBOX_SWEEP_INTERVAL = env_float("OUTBOX_SWEEP_INTERVAL", 15, above=0)
    # A message younger than this is left to the enqueue made at its commit.
    OUTBOX_SWEEP_GRACE = env_float("OUTBOX_SWEEP_GRACE", 10, minimum=0)
    # A new product's low_stock_threshold when its creator gives none: at most
    # what an admin may give one (app.models.product.MAX_STOCK).
    LOW_STOCK_THRESHOLD = env_int("LOW_STOCK_THRESHOLD", 5, minimum=0, maximum=1_000_000_000)


# A storefront in development runs on one of these (create-react-app, Next.js,
# Vite); they are allowed unless CORS_ORIGINS says otherwise.
DEV_ORIGINS = ",".join(
    f"http://{host}:{port}" for port in (3000, 5173) for host in ("localhost", "127.0.0.1")
)


class DevelopmentConfig(Config):
    DEBUG = False  # the debugger stays off unless FLASK_DEBUG=1 asks for it
    CORS_ORIGINS = env_origins("CORS_ORIGINS", DEV_ORIGINS)


class TestingConfig(Config):
    TESTING = True
    SQLALCHEMY_DATABASE_URI = os.environ.get("TEST_DATABASE_URL") or env_str(
        "DATABASE_URL", "sqlite:///" + str(BASE_DIR / "instance" / "test.db")
    )
    # A cheap hash keeps the suite fast; production uses scrypt.
    PASSWORD_HASH_METHOD = "pbkdf2:sha256:1000"  # noqa: S105 - a method name
    RATELIMIT_ENABLED = env_bool("RATELIMIT_ENABLED", False)
    CORS_ORIGINS = env_origins("CORS_ORIGINS", DEV_ORIGINS)
    # Tests deliver on purpose (the `deliver_outbox` fixture, or servers started
    # with BACKGROUND_MODE=thread/celery), so nothing runs behind their back.
    BACKGROUND_MODE = env_str("BACKGROUND_MODE", "off")


# The secrets .env.example ships: published, so never real ones.
PLACEHOLDER_SECRETS = frozenset(
    {"", DEV_SECRET, DEV_JWT_SECRET, "change-me", "change-me-to-32-or-more-random-bytes"}
)
MIN_SECRET_BYTES = 32  # an HS256 key of 256 bits (RFC 7518 3.2)


class ProductionConfig(Config):
    DEBUG = False  # pinned: FLASK_DEBUG is refused below, never obeyed
    SQLALCHEMY_DATABASE_URI = env_str("DATABASE_URL", "")
    SQLALCHEMY_ENGINE_OPTIONS = {
        "hide_parameters": True,
        "pool_size": env_int("DB_POOL_SIZE", 10, minimum=1),
        "max_overflow": env_int("DB_MAX_OVERFLOW", 10, minimum=0),
    }

    @classmethod
    def check(cls, config: dict) -> None:
        """Refuse to start unsafely: weak or published secrets, no database, no
        shared rate-limit storage, a mail backend or payment provider nobody
        chose, the debugger on."""
        problems = []
        # Missing, a published placeholder (.env.example's: anyone could sign
        # an admin's token), or shorter than 32 bytes (found by review).
        for name in ("SECRET_KEY", "JWT_SECRET_KEY"):
            secret = config.get(name) or ""
            if secret in PLACEHOLDER_SECRETS or len(secret.encode()) < MIN_SECRET_BYTES:
                problems.append(f"{name} (32 or more random bytes)")
        if not os.environ.get("DATABASE_URL"):
            problems.append("DATABASE_URL")
        if (
            config.get("RATELIMIT_ENABLED")
            and str(config.get("RATELIMIT_STORAGE_URI", "")).startswith("memory://")
            and not config.get("RATELIMIT_ALLOW_MEMORY_STORAGE")
        ):
            problems.append(
                "REDIS_URL or RATELIMIT_STORAGE_URI (memory:// counts per process; "
                "RATELIMIT_ALLOW_MEMORY_STORAGE=1 accepts that)"
            )
        if config.get("MAIL_BACKEND") == "console" and os.environ.get("MAIL_BACKEND") != "console":
            # The development default sends nothing and logs every email,
            # password-reset links included: only when asked for by name.
            problems.append("MAIL_BACKEND (smtp; MAIL_BACKEND=console keeps emails in the log)")
        from flask.helpers import get_debug_flag  # Flask's own reading: all but 0/false/no

        if get_debug_flag():
            # `flask run` would start Werkzeug's debugger: code execution for
            # whoever reaches an error.
            problems.append("FLASK_DEBUG (unset it: never debug in production)")
        provider = config.get("PAYMENT_PROVIDER", "test")
        named = env_str("PAYMENT_PROVIDER", "").strip().lower()
        if provider == "test" and named != "test":
            # The default takes no money: a shop started without naming a
            # provider marked orders paid for a test card (found by review).
            problems.append("PAYMENT_PROVIDER (stripe; PAYMENT_PROVIDER=test takes no money)")
        if provider not in PAYMENT_PROVIDERS:
            # A misspelt one passed, and every payment was a 500 (found by review).
            problems.append(f"PAYMENT_PROVIDER (one of {', '.join(PAYMENT_PROVIDERS)})")
        if config.get("MAIL_BACKEND") not in MAIL_BACKENDS:
            problems.append(f"MAIL_BACKEND (one of {', '.join(MAIL_BACKENDS)})")
        if provider == "stripe" and not (
            config.get("STRIPE_SECRET_KEY") and config.get("STRIPE_WEBHOOK_SECRET")
        ):
            problems.append("STRIPE_SECRET_KEY and STRIPE_WEBHOOK_SECRET")
        if problems:
            raise RuntimeError(
                "production config refused: set a real "
                + ", ".join(problems)
                + " in the environment"
            )


CONFIGS = {
    "development": DevelopmentConfig,
    "testing": TestingConfig,
    "production": ProductionConfig,
}


def unknown_config(name: str) -> str | None:
    """What is wrong with FLASK_CONFIG `name`, or None for a known one (said
    alike by `create_app` and by gunicorn.conf.py's check in the master)."""
    if name in CONFIGS:
        return None
    return f"unknown FLASK_CONFIG {name!r}: use one of {', '.join(CONFIGS)}"
