"""Search ignores accents on either database: the words typed, the index, the
prefix's vocabulary, the spelling-tolerant retry and the database's
suggestions (each of these differed on one database; found by review)."""

from __future__ import annotations

from pathlib import Path

import pytest
from alembic.script import ScriptDirectory
from flask_migrate import downgrade, upgrade
from sqlalchemy import text

from tests.helpers import IS_POSTGRES, scalar
from tests.test_search import names

CREME = "Crème Brûlée Torch"


@pytest.mark.parametrize(
    "q, expected",
    [
        ("thé", {"Thé Vert", "Thermos Flask"}),  # the prefix: thé... (thermos)
        ("tea -thé", {"Green Tea Bags"}),
        ('"thé vert"', {"Thé Vert"}),
    ],
)
def test_an_accented_word_is_no_stop_word_without_its_accent(client, make_product, q, expected):
    """`thé` is not the English stop word `the`: PostgreSQL's index dropped it
    once its accent was gone."""
    make_product(name="Thé Vert", description="loose leaf", category="Tea")
    make_product(name="Thermos Flask", description="keeps it hot", category="Kitchen")
    make_product(name="Green Tea Bags", description="box of 20", category="Tea")
    assert names(client, q) == expected


@pytest.mark.parametrize("q", ["cafe2000", "café2000", "cafe", "café"])
def test_accents_are_ignored_in_words_with_digits(client, make_product, q):
    make_product(name="Café2000 Grinder", description="burr", category="Misc")
    make_product(name="Cafe2000 Mug", description="ceramic", category="Misc")
    make_product(name="Oak Chair", description="wood", category="Misc")
    assert names(client, q) == {"Café2000 Grinder", "Cafe2000 Mug"}


@pytest.mark.parametrize(
    "q, expected",
    [
        ("cre\u0300me", {CREME}),
        ("cre\u0300me brule\u0301e", {CREME}),
        ('"cre\u0300me brule\u0301e"', {CREME}),
        ("torch -cre\u0300me", set()),
        ("brule\u0301", {CREME}),  # the prefix
    ],
)
def test_a_query_with_combining_accents_is_the_composed_query(client, make_product, q, expected):
    """An accent typed as a combining mark (NFD) is part of its letter: the
    query `cre` + U+0300 + `me` was the words `cre` and `me`."""
    make_product(name=CREME, description="for desserts", category="Kitchen")
    make_product(name="Crepe Pan", description="Crêpes", category="Kitchen")
    make_product(name="Oak Chair", description="wood", category="Misc")
    assert names(client, q) == expected


def test_a_product_named_with_combining_accents_is_found_either_way(client, make_product):
    make_product(name="Cre\u0300me Jar", description="glass", category="Kitchen")
    make_product(name="Oak Chair", description="wood", category="Misc")
    for q in ("creme", "crème", "cre\u0300me", "crem"):
        assert names(client, q) == {"Cre\u0300me Jar"}, q


@pytest.mark.skipif(not IS_POSTGRES, reason="the spelling-tolerant retry is PostgreSQL's")
@pytest.mark.parametrize(
    "q, expected",
    [
        ("brullee", {CREME, "Creme Brulee Spoon"}),
        ("patte", {"Pâté Tin", "Pate Knife"}),
    ],
)
def test_the_spelling_tolerant_retry_ignores_accents(client, make_product, q, expected):
    """A typo of a word written with accents: 'brullee' to 'Brûlée' was a
    word_similarity of 0.25, under the threshold (0.67 without accents)."""
    make_product(name=CREME, description="x", category="Misc")
    make_product(name="Creme Brulee Spoon", description="x", category="Misc")
    make_product(name="Pâté Tin", description="x", category="Misc")
    make_product(name="Pate Knife", description="x", category="Misc")
    assert names(client, q) == expected


@pytest.mark.parametrize(
    "name, q",
    [
        ("Straße Sign", "strasse"),
        ("Æther Lamp", "aether"),
        ("Œuvre Book", "oeuvre"),
        ("ﬁlm Camera", "film"),  # the fi ligature
        ("Øresund Map", "oresund"),
        ("Ελληνικά άλφα", "αλφα"),  # Greek tonos
        ("ёлка Tree", "елка"),  # Cyrillic diaeresis
    ],
)
def test_letters_beyond_latin_diacritics_fold_on_postgresql_only(client, make_product, name, q):
    """As the README says: PostgreSQL's unaccent also folds ß, æ, œ, ø,
    ligatures and Greek or Cyrillic marks; SQLite's tokenizer takes
    diacritics off Latin letters only and matches these as written."""
    make_product(name=name, description="x", category="Misc")
    make_product(name="Oak Chair", description="wood", category="Misc")
    assert names(client, q) == ({name} if IS_POSTGRES else set())
    as_written = name.split()[0].lower()
    assert names(client, as_written) == {name}


@pytest.mark.parametrize("q", ["ΦΑΚΟΣ", "φακος", "φακοσ", "φακ", "ΦΑΚΟ"])
def test_the_final_sigma_is_a_sigma(client, make_product, q):
    """A word-final sigma (U+03C2) is a sigma (U+03C3) in the query and in the
    index on both databases: Python lower-cases `ΦΑΚΟΣ` with the final one,
    PostgreSQL's lower() without, and kept a written one as it was
    (migration f38b4e6a8c12; found by review)."""
    make_product(name="ΦΑΚΟΣ Lens", description="x", category="Optics")
    make_product(name="Φακος Case", description="x", category="Optics")
    make_product(name="Oak Chair", description="wood", category="Misc")
    assert names(client, q) == {"ΦΑΚΟΣ Lens", "Φακος Case"}


def test_a_prefix_typed_in_capitals_ending_in_sigma(make_app, make_product):
    """`ΣΥΣ` is `συς` to Python's lower(): the in-memory suggestions found no
    word starting with it (and no name starting with it). Found by review.
    The database's suggestions (the index off) put the name starting with it
    first as well."""
    make_product(name="Big ΣΥΣΤΗΜΑ", description="x", category="Audio")
    make_product(name="Συστημα Ηχου", description="x", category="Audio")
    client = make_app().test_client()
    assert names(client, "ΣΥΣ") == {"Big ΣΥΣΤΗΜΑ", "Συστημα Ηχου"}
    for overrides in ({}, {"SUGGEST_INDEX_MAX_NAMES": 0}):
        client = make_app(overrides=overrides).test_client()
        response = client.get("/api/products/suggest", query_string={"q": "ΣΥΣ"})
        assert response.get_json()["suggestions"] == ["Συστημα Ηχου", "Big ΣΥΣΤΗΜΑ"], overrides


@pytest.mark.parametrize("typed", ["ﬁlmmaki", "filmmaki"])
def test_a_prefix_past_its_stem_with_a_ligature(client, make_product, typed):
    """SQLite: the prefix is folded as the tokenizer folds it (NFKD made the
    ligature `fi`, outside the vocabulary's range: `ﬁlmmaki` found nothing)."""
    make_product(name="ﬁlmmaking Kit", description="x", category="Misc")
    make_product(name="Oak Chair", description="wood", category="Misc")
    expected = {"ﬁlmmaking Kit"} if IS_POSTGRES or typed.startswith("ﬁ") else set()
    assert names(client, typed) == expected


def test_database_suggestions_ignore_accents(make_app, make_product):
    """The database's suggestions (the in-memory index off) fold accents too."""
    make_product(name="Café Table")
    make_product(name="Cafe2000 Mug")
    app = make_app(overrides={"SUGGEST_INDEX_MAX_NAMES": 0, "CATALOG_CACHE": False})
    client = app.test_client()
    for q in ("cafe", "café", "cafe\u0301"):
        response = client.get("/api/products/suggest", query_string={"q": q})
        assert sorted(response.get_json()["suggestions"]) == ["Cafe2000 Mug", "Café Table"], q


@pytest.mark.skipif(not IS_POSTGRES, reason="the migration is PostgreSQL's")
def test_the_migration_works_with_unaccent_already_in_another_schema(db, make_product):
    """`CREATE EXTENSION IF NOT EXISTS` leaves an existing one where it is:
    the migration names its dictionary there (it failed: no such dictionary)."""
    make_product(name=CREME)
    db.session.remove()
    downgrade(revision="f28c4d6e9f23")
    with db.engine.begin() as conn:
        conn.execute(text("DROP EXTENSION unaccent"))
        conn.execute(text("CREATE SCHEMA review_ext"))
        conn.execute(text("CREATE EXTENSION unaccent SCHEMA review_ext"))
    try:
        upgrade()
        head = ScriptDirectory(str(Path(__file__).parent.parent / "migrations")).get_current_head()
        assert scalar("SELECT version_num FROM alembic_version") == head
        found = scalar(
            "SELECT count(*) FROM products "
            "WHERE search_vector @@ to_tsquery('shop_english', 'creme')"
        )
        assert found == 1
    finally:  # back to unaccent in public, at the head
        db.session.remove()
        if scalar("SELECT version_num FROM alembic_version") != "f28c4d6e9f23":
            downgrade(revision="f28c4d6e9f23")
        with db.engine.begin() as conn:
            conn.execute(text("DROP EXTENSION unaccent"))
            conn.execute(text("DROP SCHEMA review_ext"))
        upgrade()
