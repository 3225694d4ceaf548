# ruff: noqa: RUF001, RUF002 - the letters under test
"""Review of product search (round 9): a word with combining marks (Hindi,
Tamil) is one word on SQLite too, never its pieces held apart; fullwidth
letters find what their ASCII letters find on both databases."""

from __future__ import annotations

import pytest
from sqlalchemy import text

from app.extensions import db
from tests.helpers import IS_POSTGRES

# The revision that made the SQLite indexes keep combining marks in their word.
MARKS_REVISION = "f44a9c3e7b52"


def names(client, **params) -> list[str]:
    response = client.get("/api/products", query_string={"per_page": 100, **params})
    assert response.status_code == 200, (params, response.get_json())
    return sorted(item["name"] for item in response.get_json()["items"])


def suggestions(client, q: str) -> list[str]:
    response = client.get("/api/products/suggest", query_string={"q": q})
    assert response.status_code == 200, (q, response.get_json())
    return sorted(response.get_json()["suggestions"])


@pytest.fixture(params=["index", "database"])
def suggest_client(request, client, make_app):
    """The suggestions from the in-memory index, and from the backend's SQL."""
    if request.param == "index":
        return client
    return make_app(overrides={"SUGGEST_INDEX_MAX_NAMES": 0}).test_client()


# --- a word with combining marks is one word ------------------------------------------

HINDI, TAMIL = "हिन्दी पुस्तक", "தமிழ் அகராதி"
# What FTS5's unicode61 made of each word (split at its vowel signs and
# viramas): `हिन्दी` is `ह`, `न`, `द`; `पुस्तक` is `प`, `स`, `तक`; `தமிழ்` is
# `தம`, `ழ`. These products hold those pieces apart, as words of their own.
HINDI_PIECES = "ह न द प स तक"
TAMIL_PIECES = "ழ தம"


@pytest.fixture
def pieces(make_product):
    make_product(name=HINDI, category="Books")
    make_product(name=TAMIL, category="Books")
    make_product(name=HINDI_PIECES, category="Books")
    make_product(name=TAMIL_PIECES, category="Books")


@pytest.mark.parametrize(
    ("q", "expected"),
    [
        ("हिन्दी", [HINDI]),
        ("पुस्तक", [HINDI]),
        ("हिन्दी पुस्तक", [HINDI]),
        ('"हिन्दी पुस्तक"', [HINDI]),
        ("पुस्त", [HINDI]),  # the last word, as a prefix
        ("हिन्द", [HINDI]),
        ("தமிழ்", [TAMIL]),
        ("books -हिन्दी", sorted([TAMIL, HINDI_PIECES, TAMIL_PIECES])),
        ("books -தமிழ்", sorted([HINDI, HINDI_PIECES, TAMIL_PIECES])),
        ("-हिन्दी -தமிழ்", sorted([HINDI_PIECES, TAMIL_PIECES])),
        # A piece is a word of its own only where written so (quoted: as the
        # last word it is a prefix, of `हिन्दी` too).
        ('"ह"', [HINDI_PIECES]),
        ("तक", [HINDI_PIECES]),
        ('"தம"', [TAMIL_PIECES]),
        ("ह", sorted([HINDI, HINDI_PIECES])),
    ],
)
def test_a_word_with_combining_marks_never_matches_its_pieces(client, pieces, q, expected):
    """FTS5's unicode61 split `हिन्दी` at its marks into `ह`, `न` and `द`, and
    the query was split the same way: the product holding those pieces as
    words of their own matched `हिन्दी` too, and an exclusion of `हिन्दी`
    removed it (found by review). PostgreSQL keeps the word whole."""
    assert names(client, q=q) == expected
    facets = client.get("/api/products/facets", query_string={"q": q}).get_json()
    assert facets["total"] == len(expected)


@pytest.mark.parametrize(
    ("prefix", "expected"),
    [("हिन्द", [HINDI]), ("हिन्दी प", [HINDI]), ("தமி", [TAMIL]), ("ह न", [HINDI_PIECES])],
)
def test_suggest_a_word_with_combining_marks_never_its_pieces(
    pieces, suggest_client, prefix, expected
):
    assert suggestions(suggest_client, prefix) == expected


@pytest.mark.skipif(IS_POSTGRES, reason="the revision rebuilds SQLite's FTS5 tables only")
def test_the_migration_indexes_existing_rows_anew_and_its_downgrade_as_before(
    app, client, make_product
):
    """Rows written before the upgrade are indexed with their marks kept
    (each table's words), deleted ones not; the downgrade gives back the
    pieces as unicode61 splits them without the marks."""
    from flask_migrate import downgrade, upgrade

    def vocabulary(table: str) -> set[str]:
        return set(db.session.execute(text(f"SELECT term FROM {table}")).scalars())  # noqa: S608

    def names_terms() -> set[str]:
        rows = db.session.execute(
            text("SELECT rowid FROM products_names WHERE products_names MATCH :q"),
            {"q": '"हिन्दी"'},
        )
        return set(rows.scalars())

    db.session.remove()
    try:
        downgrade(revision=f"{MARKS_REVISION}-1")
        db.session.remove()
        assert "हिन्दी" not in vocabulary("products_fts_vocab")
        hindi = make_product(name=HINDI, description="किताब", category="Books")
        make_product(name=HINDI_PIECES)
        gone = make_product(name="தமிழ் Gone")
        db.session.execute(
            text("UPDATE products SET deleted_at = '2026-01-01' WHERE id = :i"), {"i": gone.id}
        )
        db.session.commit()
        assert {"ह", "न", "द", "तक"} <= vocabulary("products_words_vocab")
        db.session.remove()
    finally:
        upgrade()
    db.session.remove()
    for table in ("products_fts_vocab", "products_words_vocab"):
        words = vocabulary(table)
        assert {"हिन्दी", "पुस्तक", "किताब"} <= words, table
        assert "தமிழ்" not in words, table  # the deleted product's
    assert names_terms() == {hindi.id}
    assert names(client, q="हिन्दी") == [HINDI]
    assert names(client, q="किताब") == [HINDI]
    assert names(client, q="தமிழ்") == []
    db.session.remove()
    try:
        downgrade(revision=f"{MARKS_REVISION}-1")
        db.session.remove()
        assert "हिन्दी" not in vocabulary("products_fts_vocab")
        assert {"ह", "न", "द", "तक"} <= vocabulary("products_fts_vocab")
        db.session.remove()
    finally:
        upgrade()
    db.session.remove()
    assert names(client, q="हिन्दी") == [HINDI]


# --- fullwidth letters ----------------------------------------------------------------


@pytest.fixture
def fullwidth(make_product):
    make_product(name="Desk Lamp", description="A steel lamp", category="Lighting")
    make_product(name="Floor Light", category="Lighting")
    make_product(name="ＵＳＢ Ｃａｂｌｅ", category="Cables")  # written in fullwidth letters


@pytest.mark.parametrize(
    ("q", "expected"),
    [
        ("ＬＡＭＰ", ["Desk Lamp"]),
        ("ｌａｍｐ", ["Desk Lamp"]),
        ("ＬＡＭ", ["Desk Lamp"]),  # the last word, as a prefix
        ("ｓｔｅｅｌ ｌａ", ["Desk Lamp"]),
        ('"ＤＥＳＫ ＬＡＭＰ"', ["Desk Lamp"]),
        ("ｌｉｇｈｔｉｎｇ -ＬＡＭＰ", ["Floor Light"]),
        ("ＵＳＢ", ["ＵＳＢ Ｃａｂｌｅ"]),  # as written: still found
        ("ＵＳ", ["ＵＳＢ Ｃａｂｌｅ"]),
        ("-ＵＳＢ", ["Desk Lamp", "Floor Light"]),
    ],
)
def test_fullwidth_letters_find_what_their_letters_find(client, fullwidth, q, expected):
    """PostgreSQL's `unaccent` folds fullwidth letters in the index and the
    query; SQLite's index keeps text as written, and `ＬＡＭＰ` found no "Lamp"
    there (found by review)."""
    assert names(client, q=q) == expected
    facets = client.get("/api/products/facets", query_string={"q": q}).get_json()
    assert facets["total"] == len(expected)
