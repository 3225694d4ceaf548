"""Schemathesis against the live API, the way CI runs it: `.venv/bin/python .ci/fuzz.py`.

Makes a fresh PostgreSQL database (dropped at the end), migrates it, loads the
demo catalog, makes an admin and a user with a cart and an order each, serves
the app with gunicorn (testing config: rate limits off, so 429s hide nothing),
and fuzzes every operation of /api/openapi.json with a
fixed seed, once with the admin's token and once with the user's. Refresh gets
its own pass with a refresh token, and logout and logout-all run last, each in
a pass of its own on a token of its own user, since they revoke the token they
are called with (in the role passes logout-all revoked the role's token after
~130 of ~5,000 requests, and every authenticated operation after it was fuzzed
as a 401 only). After each role pass its token must still work and no answer
may be `token_revoked`; each of the other passes must get a 2xx from its
POST at least once (a pass that only ever sees 401s tests nothing).

Checks: not_a_server_error, status_code_conformance, content_type_conformance,
response_schema_conformance. Any failure fails the run.

Environment: FUZZ_ADMIN_DSN (default postgresql://postgres@127.0.0.1:5432/test,
the database used to create and drop the fresh one), FUZZ_MAX_EXAMPLES (default 100),
FUZZ_SEED (default 20261124), FUZZ_KEEP_DB=1 to keep the database for a look,
FUZZ_DB_PREFIX (default shop_fuzz) to name it.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import psycopg  # noqa: E402 - after the path, like the rest

from tests.live import gunicorn  # noqa: E402

BIN = Path(sys.executable).parent
ADMIN_DSN = os.environ.get("FUZZ_ADMIN_DSN", "postgresql://postgres@127.0.0.1:5432/test")
MAX_EXAMPLES = os.environ.get("FUZZ_MAX_EXAMPLES", "100")
SEED = os.environ.get("FUZZ_SEED", "20261124")
CHECKS = (
    "not_a_server_error,status_code_conformance,content_type_conformance,"
    "response_schema_conformance"
)
PASSWORD = "fuzz-password-1"
REPORTS = ROOT / "instance" / "schemathesis"
LOGOUT = "/api/auth/logout"
LOGOUT_ALL = "/api/auth/logout-all"
REFRESH = "/api/auth/refresh"
# Logout and logout-all revoke the token they are called with (logout-all
# every token of its user); refresh takes a refresh token, not an access one.
OWN_PASS = (LOGOUT, LOGOUT_ALL, REFRESH)
ACCESS_TOKEN_OPERATIONS = tuple(arg for path in OWN_PASS for arg in ("--exclude-path", path))
# A pass of one operation has no links to follow: no stateful phase
# (schemathesis counts "every link excluded by the filters" as an error).
ALONE = ("--phases", "examples,coverage,fuzzing")


def admin_sql(statement: str) -> None:
    with psycopg.connect(ADMIN_DSN, autocommit=True) as conn:
        conn.execute(statement)


def flask(database_url: str, *args: str) -> None:
    env = {**os.environ, "FLASK_CONFIG": "testing", "TEST_DATABASE_URL": database_url}
    env["DATABASE_URL"] = database_url
    subprocess.run([str(BIN / "flask"), "--app", "app:create_app", *args], check=True, env=env)


def login(server, email: str, kind: str = "access_token") -> str:
    status, body = server.request("POST", "/api/auth/login", {"email": email, "password": PASSWORD})
    assert status == 200, (status, body)
    return body[kind]


def shopper(server, token: str) -> None:
    """A cart line and a placed order, so ids 1, 2... name real rows too."""
    for product_id in (1, 2):  # the demo catalog: product 3 is out of stock
        status, body = server.request(
            "POST", "/api/cart", {"product_id": product_id, "quantity": 1}, token
        )
        assert status == 201, (status, body)
    status, body = server.request("POST", "/api/orders", {"shipping_address": "1 Fuzz St"}, token)
    assert status == 201, (status, body)
    status, body = server.request("POST", "/api/cart", {"product_id": 4}, token)
    assert status == 201, (status, body)


def schemathesis(server, label: str, token: str, *filters: str) -> dict:
    """One schemathesis run; its reports go to instance/schemathesis/."""
    REPORTS.mkdir(parents=True, exist_ok=True)
    json_report, har_report = REPORTS / f"{label}.json", REPORTS / f"{label}.har"
    cmd = [
        str(BIN / "schemathesis"),
        "run",
        f"{server.url}/api/openapi.json",
        "--checks",
        CHECKS,
        "--seed",
        SEED,
        "--max-examples",
        MAX_EXAMPLES,
        "--workers",
        "1",
        "--generation-database",
        "none",
        "--generation-with-security-parameters",
        "false",
        "--header",
        f"Authorization: Bearer {token}",
        "--request-timeout",
        "30",
        "--report",
        "json,har",
        "--report-json-path",
        str(json_report),
        "--report-har-path",
        str(har_report),
        "--no-color",
        *filters,
    ]
    print(f"\n---- schemathesis: {label} ----", flush=True)
    # Its caches (.hypothesis/, .schemathesis/) go to a scratch folder, not the repo.
    with tempfile.TemporaryDirectory(prefix="shop-fuzz-") as scratch:
        code = subprocess.run(cmd, cwd=scratch, check=False).returncode
    return {"label": label, "code": code, **counts(json_report, har_report)}


def still_signed_in(server, run: dict, token: str) -> dict:
    """A role pass fuzzes the authenticated operations only while its token
    works: the token must still read the profile afterwards, and no answer
    of the pass may be `token_revoked`."""
    status, _body = server.request("GET", "/api/auth/profile", token=token)
    try:
        entries = json.loads((REPORTS / f"{run['label']}.har").read_text())["log"]["entries"]
        revoked = sum(
            '"token_revoked"' in e["response"]["content"].get("text", "") for e in entries
        )
    except (OSError, ValueError, KeyError):
        revoked = "?"
    if status != 200 or revoked != 0:
        print(
            f"{run['label']}: its token was revoked during the pass (profile {status}, "
            f"{revoked} token_revoked answers)",
            flush=True,
        )
        run["code"] = run["code"] or 1
    run["revoked"] = revoked
    return run


def answered(run: dict, path: str) -> dict:
    """A pass of one operation (a POST) must have had it succeed at least once
    (an OPTIONS answer, 200 for CORS, does not count)."""
    try:
        entries = json.loads((REPORTS / f"{run['label']}.har").read_text())["log"]["entries"]
        ok = sum(
            entry["request"]["method"] == "POST"
            and entry["request"]["url"].split("?")[0].endswith(path)
            and 200 <= entry["response"]["status"] < 300
            for entry in entries
        )
    except (OSError, ValueError, KeyError):
        ok = 0
    if not ok:
        print(f"{run['label']}: {path} never answered 2xx in its pass", flush=True)
        run["code"] = run["code"] or 1
    return run


def counts(json_report: Path, har_report: Path) -> dict:
    try:
        cases = json.loads(json_report.read_text())["test_cases"]["generated"]
        requests = len(json.loads(har_report.read_text())["log"]["entries"])
    except (OSError, ValueError, KeyError):
        return {"cases": "?", "requests": "?"}
    return {"cases": cases, "requests": requests}


def main() -> int:
    name = f"{os.environ.get('FUZZ_DB_PREFIX', 'shop_fuzz')}_{os.getpid()}_{int(time.time())}"
    database_url = re.sub(r"/[^/]*$", f"/{name}", ADMIN_DSN).replace(
        "postgresql://", "postgresql+psycopg://", 1
    )
    admin_sql(f'CREATE DATABASE "{name}"')
    try:
        flask(database_url, "db", "upgrade")
        flask(database_url, "seed")
        flask(
            database_url,
            "create-admin",
            "--username",
            "fuzzadmin",
            "--email",
            "fuzzadmin@example.com",
            "--password",
            PASSWORD,
        )
        with gunicorn(database_url, workers=2, threads=4) as server:
            for username in ("fuzzuser", "fuzzlogout", "fuzzlogoutall"):
                status, body = server.request(
                    "POST",
                    "/api/auth/signup",
                    {
                        "username": username,
                        "email": f"{username}@example.com",
                        "password": PASSWORD,
                    },
                )
                assert status == 201, (status, body)
            admin = login(server, "fuzzadmin@example.com")
            user = login(server, "fuzzuser@example.com")
            shopper(server, admin)
            shopper(server, user)
            runs = [
                still_signed_in(
                    server, schemathesis(server, "admin", admin, *ACCESS_TOKEN_OPERATIONS), admin
                ),
                still_signed_in(
                    server, schemathesis(server, "user", user, *ACCESS_TOKEN_OPERATIONS), user
                ),
                answered(
                    schemathesis(
                        server,
                        "refresh",
                        login(server, "fuzzuser@example.com", "refresh_token"),
                        *ALONE,
                        "--include-path",
                        REFRESH,
                    ),
                    REFRESH,
                ),
                answered(
                    schemathesis(
                        server,
                        "logout",
                        login(server, "fuzzlogout@example.com"),
                        *ALONE,
                        "--include-path",
                        LOGOUT,
                    ),
                    LOGOUT,
                ),
                answered(
                    schemathesis(
                        server,
                        "logout-all",
                        login(server, "fuzzlogoutall@example.com"),
                        *ALONE,
                        "--include-path",
                        LOGOUT_ALL,
                    ),
                    LOGOUT_ALL,
                ),
            ]
    finally:
        if os.environ.get("FUZZ_KEEP_DB") != "1":
            admin_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    print("\n==== schemathesis summary ====")
    for run in runs:
        print(
            f"{run['label']:>8}: exit {run['code']}, {run['cases']} test cases, "
            f"{run['requests']} requests"
        )
    total = sum(run["requests"] for run in runs if isinstance(run["requests"], int))
    print(f"   total: {total} requests; reports in {REPORTS.relative_to(ROOT)}/")
    return 0 if all(run["code"] == 0 for run in runs) else 1


if __name__ == "__main__":
    sys.exit(main())
