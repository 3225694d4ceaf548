"""A SQLite database that refuses writes - its disk full, its file read-only -
is a 503 with a JSON body, never a 500, and nothing of the request stays
(session 15's faults review left both as 500s). Real SQLite errors: the
page limit of the connection (`PRAGMA max_page_count`) is how SQLite reports
a full disk (SQLITE_FULL), and a read-only open (`mode=ro`) refuses a write
as a read-only file or mount does (SQLITE_READONLY)."""

from __future__ import annotations

import pytest
from sqlalchemy import event, text

from app.extensions import db
from tests.helpers import DATABASE_URL, IS_POSTGRES

pytestmark = pytest.mark.skipif(IS_POSTGRES, reason="SQLite's own write refusals")

NEW_PRODUCT = {
    "name": "Refused Lamp",
    "description": "x" * 5_000,  # most of a page: the write must grow the file
    "price": "10.00",
    "stock": 3,
    "category": "lighting",
}


def _count(table: str) -> int:
    with db.engine.connect() as conn:
        return conn.execute(text(f"SELECT count(*) FROM {table}")).scalar_one()  # noqa: S608


def _assert_refused(response) -> None:
    assert response.status_code == 503, response.get_data(as_text=True)
    body = response.get_json()
    assert body["code"] == "unavailable", body
    assert "try again" in body["message"], body
    assert "Traceback" not in response.get_data(as_text=True)
    assert response.headers["Retry-After"]


def test_a_full_disk_is_a_503_and_writes_nothing(app, make_app, admin_token):
    full = make_app(overrides={"SQLALCHEMY_DATABASE_URI": DATABASE_URL, "CATALOG_CACHE": False})
    limited = {"on": False}
    with full.app_context():
        engine = db.engine

        @event.listens_for(engine, "connect")
        def _no_room(dbapi_connection, _record):
            if limited["on"]:
                pages = dbapi_connection.execute("PRAGMA page_count").fetchone()[0]
                dbapi_connection.execute(f"PRAGMA max_page_count = {pages}")

        engine.dispose()
        # No free pages left by earlier tests' deletes: a write must grow the file.
        raw = engine.raw_connection()
        try:
            raw.driver_connection.execute("VACUUM")
            assert raw.driver_connection.execute("PRAGMA freelist_count").fetchone()[0] == 0
        finally:
            raw.close()
        limited["on"] = True
        engine.dispose()
    before = _count("products")
    headers = {"Authorization": f"Bearer {admin_token}"}
    client = full.test_client()
    _assert_refused(client.post("/api/products", json=NEW_PRODUCT, headers=headers))
    assert _count("products") == before
    # Room again: the same request succeeds.
    limited["on"] = False
    with full.app_context():
        db.engine.dispose()
    response = client.post("/api/products", json=NEW_PRODUCT, headers=headers)
    assert response.status_code == 201, response.get_json()
    assert _count("products") == before + 1


def test_a_read_only_database_file_is_a_503_and_reads_still_answer(
    app, make_app, admin_token, make_product
):
    make_product(name="Readable Lamp")
    path = DATABASE_URL.removeprefix("sqlite:///")
    read_only = make_app(
        overrides={
            "SQLALCHEMY_DATABASE_URI": f"sqlite:///file:{path}?mode=ro&uri=true",
            "CATALOG_CACHE": False,
        }
    )
    client = read_only.test_client()
    response = client.get("/api/products", query_string={"q": "readable"})
    assert response.status_code == 200, response.get_json()
    assert [item["name"] for item in response.get_json()["items"]] == ["Readable Lamp"]
    headers = {"Authorization": f"Bearer {admin_token}"}
    before = _count("products")
    _assert_refused(client.post("/api/products", json=NEW_PRODUCT, headers=headers))
    assert _count("products") == before
