"""Full-text search, facets and suggestions (API.md, Products), on the suite's
database: SQLite FTS5 by default, PostgreSQL when TEST_DATABASE_URL names one."""

from __future__ import annotations

import random
import unicodedata
from decimal import Decimal

import pytest

from app.services.search import parse
from tests.helpers import IS_POSTGRES, auth

CATALOG = [
    # name, description, category
    ("Red Guitar", "A string instrument", "Music"),
    ("Amp", "Loud enough for any guitar", "Music"),
    ("Wireless Phone Charger", "A charging pad", "Phones"),
    ("Gaming Laptop", "Fast graphics", "Computers"),
    ("Laptop Sleeve", "Protects your laptop", "Accessories"),
    ("Phone Case", "Red silicone", "Phones"),
    ("Case for Tablets", "Fits your phone too", "Accessories"),
    ("Ноутбук Pro", "Русская клавиатура", "Computers"),
]


@pytest.fixture
def catalog(make_product, client, admin_token):
    made = {
        name: make_product(name=name, description=description, category=category)
        for name, description, category in CATALOG
    }
    gone = make_product(name="Deleted Guitar", description="gone", category="Music")
    assert client.delete(f"/api/products/{gone.id}", headers=auth(admin_token)).status_code == 204
    return made


def search(client, q, **params):
    response = client.get("/api/products", query_string={"q": q, **params})
    assert response.status_code == 200, (q, response.get_json())
    return response.get_json()


def names(client, q, **params):
    return {p["name"] for p in search(client, q, **params)["items"]}


@pytest.mark.parametrize(
    "q, expected",
    [
        ("guitar", {"Red Guitar", "Amp"}),  # name or description, never the deleted one
        ("GUITAR", {"Red Guitar", "Amp"}),  # ignoring case
        ("guitars", {"Red Guitar", "Amp"}),  # stemming: the plural finds the singular
        ("phones", {"Wireless Phone Charger", "Phone Case", "Case for Tablets"}),
        ("red guitar", {"Red Guitar"}),  # every word must match (across columns)
        ("lapt", {"Gaming Laptop", "Laptop Sleeve"}),  # the last word as a prefix
        ("gaming lapt", {"Gaming Laptop"}),
        ('"phone case"', {"Phone Case"}),  # a phrase: its words in that order
        ("phone -case", {"Wireless Phone Charger"}),  # -word excludes
        ('case -"phone case"', {"Case for Tablets"}),  # -"phrase" excludes
        ("computers", {"Gaming Laptop", "Ноутбук Pro"}),  # the category matches
        ("silicone", {"Phone Case"}),  # the description matches
        ("ноутбук", {"Ноутбук Pro"}),  # non-Latin scripts
        ("клавиатура", {"Ноутбук Pro"}),
        ("deleted", set()),  # soft-deleted products never match
    ],
)
def test_matching_rules(client, catalog, q, expected):
    assert names(client, q) == expected


@pytest.mark.parametrize(
    "q, expected",
    [
        ("adjustab", {"Adjustable Desk Lamp", "Standing Desk"}),  # stem: adjust
        ("adjusta", {"Adjustable Desk Lamp", "Standing Desk"}),
        ("desk adjustab", {"Adjustable Desk Lamp", "Standing Desk"}),
        ("height adjustab", {"Standing Desk"}),  # in the description
        ("generat", {"Generator", "Standing Desk"}),  # stem: gener (SQLite) or generat
        ("generato", {"Generator", "Standing Desk"}),
        ("runnin", {"Standing Desk"}),  # stem: run
        ("wheels carto", set()),  # "cart" is a word, but no word starts with "carto"
        ("adjustabl -height", {"Adjustable Desk Lamp"}),
    ],
)
def test_the_last_word_matches_words_whose_stem_it_outgrew(client, make_product, q, expected):
    """The last word also matches as a prefix, also when it is longer than
    the stem the index holds (`adjustab` for "Adjustable", indexed as
    `adjust`): it found nothing (found by review)."""
    # Not the fixture's "General": SQLite's Porter stems it as "generator" (gener).
    make_product(name="Adjustable Desk Lamp", description="steel", category="Misc")
    make_product(name="Generator", description="diesel", category="Misc")
    make_product(
        name="Standing Desk",
        description="Adjustable height, quiet generator, running",
        category="Misc",
    )
    make_product(name="Shopping Cart", description="cart on wheels", category="Misc")
    make_product(name="Oak Chair", description="wood", category="Misc")
    assert names(client, q) == expected
    whole = {"adjustab": "adjustable", "generat": "generator", "runnin": "running"}
    if q in whole:  # what the word typed to its end finds
        assert names(client, whole[q]) == expected
    found = search(client, q)
    assert found["total"] == len(expected)
    facets_total = client.get("/api/products/facets", query_string={"q": q}).get_json()["total"]
    assert facets_total == len(expected)


@pytest.mark.parametrize(
    "description, typed",
    [
        ("Hiking boots", ["hik", "hiki", "hikin", "hiking"]),  # Porter: hike
        ("Dining table", ["dini", "dinin"]),  # dine
        ("Built for durability", ["durabi", "durabil", "durabilit"]),  # Porter: durabl
        ("Height Stand/Detachable frame", ["detacha", "detachable"]),  # next to a /
        ("Sturdy.Collapsible legs", ["collapsi"]),
        ("Mail info@removable.com", ["removab"]),
        ("Décorations de Noël", ["décorati"]),  # accented, past its stem
        ("Naïvely simple", ["naïvel"]),
    ],
)
def test_the_prefix_reaches_every_word_it_starts(client, make_product, description, typed):
    """Also where the stem is no prefix of the word (hiking -> hike), next to
    punctuation, and with accents (each found nothing on one database; found
    by review)."""
    product = make_product(name="Thing", description=description, category="Misc")
    make_product(name="Oak Chair", description="wood", category="Misc")
    assert [q for q in typed if names(client, q) != {"Thing"}] == [], product.id


@pytest.mark.parametrize(
    "q, expected",
    [
        ("creme", {"Crème Brûlée Torch"}),  # typed without the accents
        ("CRÈME brulee", {"Crème Brûlée Torch"}),
        ("brûlée", {"Crème Brûlée Torch"}),
        ('"creme brulee"', {"Crème Brûlée Torch"}),  # a phrase
        ("torch brul", {"Crème Brûlée Torch"}),  # the prefix
        ("decorati", {"Crème Brûlée Torch"}),  # a prefix past the stem (decor)
        ("noel naive", {"Crème Brûlée Torch"}),  # in the description
        ("torch -creme", set()),  # an exclusion
        ("café", {"Cafe Table"}),  # typed with an accent the name lacks
        ("cafe", {"Cafe Table"}),
    ],
)
def test_accents_are_ignored_on_either_database(client, make_product, q, expected):
    """`cafe` finds "Café" and `café` finds "Cafe", as suggestions already
    did: SQLite's index folded accents, PostgreSQL's did not."""
    make_product(
        name="Crème Brûlée Torch", description="Décorations de Noël, naïve", category="Misc"
    )
    make_product(name="Cafe Table", description="oak", category="Misc")
    make_product(name="Oak Chair", description="wood", category="Misc")
    assert names(client, q) == expected


@pytest.mark.parametrize(
    "name, typed",
    [
        ("Game Player", "play"),  # FTS5 stems the typed prefix: play* -> plai*
        ("Garden Sprayer", "spray"),
        ("Wireless Keyboard", "key"),
        ("Buying Guide", "buyin"),  # Porter: bui
        ("Icing Spatula", "icin"),  # Porter: ic
        ("Anti-Aging Serum", "agin"),  # Porter: ag
    ],
)
def test_a_prefix_finds_what_its_whole_word_finds(client, make_product, name, typed):
    """Also where the engine stems the typed prefix itself (found by review)."""
    make_product(name=name, description="sturdy", category="Misc")
    make_product(name="Oak Chair", description="wood", category="Misc")
    word = next(w for w in name.lower().replace("-", " ").split() if w.startswith(typed))
    assert names(client, word) == {name}
    assert names(client, typed) == {name}


@pytest.mark.parametrize(
    "q, expected",
    [
        ("cards", {"Gift Cards", "Card Holder", "Cardsharp Deck"}),  # not "Cardigan"
        ("tables", {"Oak Table"}),  # not "Tablet"
        ("gift cards", {"Gift Cards"}),
        ("cardi", {"Wool Cardigan"}),
        ("card", {"Gift Cards", "Card Holder", "Cardsharp Deck", "Wool Cardigan"}),
        ("tabl", {"Oak Table", "Android Tablet"}),
        ("ca", {"Gift Cards", "Card Holder", "Cardsharp Deck", "Wool Cardigan"}),
    ],
)
def test_the_prefix_is_the_word_typed_not_its_stem(client, make_product, q, expected):
    """The last word matches the words that start with it as typed, and
    itself as a whole word: `cards` was the prefix of its stem (`card*`) and
    listed "Wool Cardigan", `tables` (`tabl*`) "Android Tablet", on both
    databases (found by review)."""
    for name in (
        "Gift Cards",
        "Card Holder",
        "Cardsharp Deck",
        "Wool Cardigan",
        "Oak Table",
        "Android Tablet",
    ):
        make_product(name=name, description="boxed", category="Misc")
    found = search(client, q, per_page=100)
    assert {p["name"] for p in found["items"]} == expected
    assert found["total"] == len(expected)
    facets_total = client.get("/api/products/facets", query_string={"q": q}).get_json()["total"]
    assert facets_total == len(expected)


def test_a_prefix_with_many_words_still_reaches_them_all(client, make_product):
    """Past the 16 words a prefix can list, it matches as a prefix (of its
    stem) again: every word it starts is still found."""
    for n in range(20):
        make_product(name=f"Cardholder{n:02d}", description="boxed", category="Misc")
    make_product(name="Gift Cards", description="boxed", category="Misc")
    assert search(client, "card", per_page=100)["total"] == 21
    assert search(client, "cardh", per_page=100)["total"] == 20


@pytest.mark.parametrize(
    "q, expected",
    [
        ('"lamp home"', {"Lamp Home Kit"}),  # not the name's end and the category
        ('"home lamps"', {"Lamp Home Kit"}),  # not the category and the description
        ('"lamp the home"', {"Lamp Home Kit"}),  # stop words are positions on PostgreSQL
        ('"desk lamp"', {"Desk Lamp"}),  # within the name
        ('"lamps for reading"', {"Desk Lamp"}),  # within the description
        ("lamp home", {"Desk Lamp", "Lamp Home Kit"}),  # as words, anywhere
    ],
)
def test_a_phrase_stays_within_one_field(client, make_product, q, expected):
    """A phrase matches within the name, the category or the description:
    on PostgreSQL `"lamp home"` also found "Desk Lamp" filed under "Home",
    the vector's fields being numbered on from one another (found by review;
    FTS5 matches a phrase within one column). (A phrase found nowhere is
    retried spelling-tolerantly on PostgreSQL, word by word: "Lamp Home Kit"
    keeps the phrase found.)"""
    make_product(name="Desk Lamp", description="Lamps for reading", category="Home")
    make_product(
        name="Lamp Home Kit", description="Home lamps: the lamp the home needs", category="Misc"
    )
    make_product(name="Oak Chair", description="wood", category="Misc")
    assert names(client, q) == expected


def test_the_prefix_reaches_only_words_live_products_hold(client, make_product, admin_token):
    """A word of a renamed or deleted product is no longer the prefix's to
    reach: on PostgreSQL the vocabulary kept every word ever written, so
    `generato` still reached "generators" and, through its stem, found
    "generate" in a live product (found by review)."""
    renamed = make_product(name="Generators", description="diesel", category="Misc")
    gone = make_product(name="Operators", description="manual", category="Misc")
    make_product(name="Power Unit", description="made to generate power", category="Misc")
    make_product(name="Control Panel", description="easy to operate", category="Misc")
    assert names(client, "generato") == {"Generators", "Power Unit"}
    assert names(client, "operato") == {"Operators", "Control Panel"}
    headers = auth(admin_token)
    response = client.put(f"/api/products/{renamed.id}", json={"name": "Engine"}, headers=headers)
    assert response.status_code == 200, response.get_json()
    response = client.put(
        f"/api/products/{renamed.id}", json={"description": "petrol"}, headers=headers
    )
    assert response.status_code == 200, response.get_json()
    assert client.delete(f"/api/products/{gone.id}", headers=headers).status_code == 204
    assert names(client, "generato") == set()
    assert names(client, "operato") == set()
    assert names(client, "generat") == {"Power Unit"}
    assert names(client, "operat") == {"Control Panel"}


@pytest.mark.skipif(not IS_POSTGRES, reason="SQLite's vocabulary is FTS5's own")
def test_the_vocabulary_counts_the_live_products_of_each_word(
    db, make_product, admin_token, client
):
    """After inserts, edits, soft and hard deletes (one statement of many
    rows too), each word counts the live products that hold it, against a
    count made here from the products themselves."""
    from sqlalchemy import text

    headers = auth(admin_token)
    made = [
        make_product(name=f"Lamp {n}", description=f"desk lamp{n % 3}", category=f"C{n % 2}")
        for n in range(6)
    ]
    client.put(f"/api/products/{made[0].id}", json={"name": "Chair 0"}, headers=headers)
    client.put(f"/api/products/{made[1].id}", json={"category": None}, headers=headers)
    client.delete(f"/api/products/{made[2].id}", headers=headers)
    db.session.execute(text("DELETE FROM products WHERE id = :id"), {"id": made[3].id})
    db.session.execute(
        text("UPDATE products SET description = 'oak desk' WHERE id > :id"), {"id": made[3].id}
    )
    db.session.commit()
    kept = dict(db.session.execute(text("SELECT word, products FROM products_words")).all())
    counted = dict(
        db.session.execute(
            text(
                "SELECT word, count(*) FROM products, unnest(tsvector_to_array(to_tsvector("
                "'shop_words', translate(name || ' ' || coalesce(category, '') || ' ' || "
                "coalesce(description, ''), '-', ' ')))) AS word "
                "WHERE deleted_at IS NULL GROUP BY word"
            )
        ).all()
    )
    assert kept == counted
    assert "chair" in kept and "lamp2" not in kept


def test_the_prefix_reaches_a_word_past_many_model_numbers(client, make_product):
    """At most 16 words are added, the shortest first: 16 model numbers
    (dry100, ...) crowded out "dryer" (found by review)."""
    make_product(name="Dry Bag", description="sturdy", category="Misc")
    make_product(name="Hair Dryer", description="sturdy", category="Misc")
    for n in range(16):
        make_product(name=f"Model DRY{100 + n}", description="sturdy", category="Misc")
    assert "Hair Dryer" in names(client, "dryer", per_page=100)
    assert "Hair Dryer" in names(client, "dry", per_page=100)


def test_a_word_of_a_phrase_in_the_name_ranks_as_a_name_match(client, make_product):
    """Any of the words, also of a phrase, in the name: a name match (SQLite
    checked the whole phrase; found by review)."""
    named = make_product(name="Lamp", description="A small desk lamp", category="Misc")
    described = make_product(
        name="Reading Light", description="desk lamp, the desk lamp for desks", category="Misc"
    )
    assert [p["id"] for p in search(client, '"desk lamp"')["items"]] == [named.id, described.id]


@pytest.mark.skipif(IS_POSTGRES, reason="PostgreSQL has a spelling-tolerant retry to decide on")
def test_a_filtered_search_that_finds_nothing_is_one_statement_on_sqlite(
    client, make_product, count_queries
):
    """No check for a retry SQLite does not have (it cost a statement)."""
    for n in range(5):
        make_product(name=f"Lamp {n}", category="Home", stock=0)
    for path in (
        "/api/products?q=lamp&category=Office",
        "/api/products?q=lamp&in_stock=true",
        "/api/products/facets?q=lamp&in_stock=true",
    ):
        with count_queries() as q:
            assert client.get(path).status_code == 200
        assert q.count == 1, (path, q.statements)


def test_a_prefix_that_outgrew_a_stem_in_the_name_ranks_as_a_name_match(client, make_product):
    named = make_product(name="Adjustable Lamp", description="steel", category="Misc")
    described = make_product(
        name="Bulb", description="adjustable adjustable adjustable", category="Misc"
    )
    for n in range(5):
        make_product(name=f"Chair {n}", description="oak", category="Misc")
    assert [p["id"] for p in search(client, "adjustab")["items"]] == [named.id, described.id]


@pytest.mark.parametrize("q", ["2.5", "v1.2", "3.5mm", "3.5MM jack", "2.4GHz", "usb-c", '"2.5 m"'])
def test_words_are_split_as_written_whatever_the_punctuation(client, make_product, q):
    """Words are runs of letters and digits on both sides: PostgreSQL's parser
    indexed `2.5`, `v1.2` and `3.5` of "3.5mm" whole, and the query's words
    (`2` and `5`) found nothing (found by review)."""
    cable = make_product(
        name="USB-C Cable", description="Length 2.5 m, firmware v1.2, 3.5mm jack, 2.4GHz"
    )
    make_product(name="Oak Chair", description="Length 1 m, 5 legs")
    assert [p["id"] for p in search(client, q)["items"]] == [cable.id]


def test_a_query_with_only_exclusions_lists_everything_else(client, catalog):
    assert names(client, "-phone -guitar") == {
        "Gaming Laptop",
        "Laptop Sleeve",
        "Ноутбук Pro",
    }


def test_excluding_a_stop_word(client, catalog):
    """PostgreSQL ignores English stop words, so `-for` excludes nothing (it
    listed nothing: an empty tsquery negated matched no row; found by
    review); SQLite matches them like any word."""
    everything = {name for name, _, _ in CATALOG}
    with_for = {"Amp", "Case for Tablets"}
    expected = everything if IS_POSTGRES else everything - with_for
    assert names(client, "-for", per_page=100) == expected
    assert names(client, 'phone -for -"for the"') == (
        {"Wireless Phone Charger", "Phone Case", "Case for Tablets"}
        if IS_POSTGRES
        else {"Wireless Phone Charger", "Phone Case"}
    )
    if IS_POSTGRES:  # the spelling-tolerant retry keeps its exclusions too
        assert names(client, "labtop -the") == {"Gaming Laptop", "Laptop Sleeve"}
        assert names(client, "labtop -sleeve -the") == {"Gaming Laptop"}


@pytest.mark.skipif(not IS_POSTGRES, reason="trigram fallback is PostgreSQL's")
def test_misspelt_words_fall_back_to_trigram_similarity(client, catalog):
    assert names(client, "labtop") == {"Gaming Laptop", "Laptop Sleeve"}
    assert names(client, "gaming labtop") == {"Gaming Laptop"}
    assert names(client, "guitarr -amp") == {"Red Guitar"}
    assert names(client, "xqzvwk") == set()


def test_only_words_that_match_nothing_are_retried_fuzzily(client, make_product, admin_token):
    """The spelling-tolerant retry is for words that match no live product,
    not for filters that leave none: `q=lamp&category=Office` listed "Clamp"
    (and the facets changed their category counts with the category chosen)
    while `q=lamp` listed no Office product (found by review)."""
    lamp = make_product(name="Desk Lamp", category="Home", stock=0)
    make_product(name="Floor Lamp", category="Home", stock=0)
    make_product(name="Bulb", description="fits any lamp", category="Home", stock=0)
    make_product(name="Clamp", category="Office", stock=5)
    make_product(name="Laptop Stand", category="Office", stock=5)
    assert search(client, "lamp", category="Home")["total"] == 3
    for filters in ({"category": "Office"}, {"in_stock": "true"}, {"min_price": "10000"}):
        assert search(client, "lamp", **filters)["total"] == 0, filters
    home = [{"value": "Home", "count": 3}]
    assert facets(client, q="lamp")["categories"] == home
    office = facets(client, q="lamp", category="Office")
    assert (office["categories"], office["total"]) == (home, 0)
    sold_out = facets(client, q="lamp", in_stock="true")
    assert (sold_out["categories"], sold_out["total"]) == ([], 0)
    # Words that match nothing are still retried, filters or not.
    expected = {"Laptop Stand"} if IS_POSTGRES else set()
    assert names(client, "labtop", category="Office") == expected
    assert names(client, "labtop", in_stock="true") == expected
    assert facets(client, q="labtop", category="Office")["total"] == len(expected)
    assert lamp.id in {p["id"] for p in search(client, "lamp")["items"]}


def facets(client, **params):
    response = client.get("/api/products/facets", query_string=params)
    assert response.status_code == 200, (params, response.get_json())
    return response.get_json()


@pytest.mark.skipif(IS_POSTGRES, reason="SQLite has no spelling-tolerant matching")
def test_misspelt_words_find_nothing_on_sqlite(client, catalog):
    assert names(client, "labtop") == set()


def test_relevance_ranks_name_above_description(client, make_product):
    both = make_product(name="Floor Lamp", description="A lamp for the floor", category="Home")
    name = make_product(name="Desk Lamp", description="Bright", category="Home")
    description = make_product(name="Bulb", description="Fits any lamp", category="Home")
    twin = make_product(name="Desk Lamp", description="Bright", category="Home")
    for n in range(8):  # lamps stay a minority, as in a real catalog (bm25's idf)
        make_product(name=f"Chair {n}", description="Oak", category="Home")
    found = [p["id"] for p in search(client, "lamp")["items"]]
    assert set(found[:3]) == {both.id, name.id, twin.id}  # a name match first
    assert found[3] == description.id  # then description-only
    assert found.index(twin.id) == found.index(name.id) + 1  # equal scores: by id
    assert [p["id"] for p in search(client, "lamp", sort="relevance")["items"]] == found
    # Pages never overlap under relevance either.
    pages = [search(client, "lamp", per_page=1, page=n)["items"][0]["id"] for n in (1, 2, 3, 4)]
    assert pages == found
    # Another sort still applies to the matches.
    newest = search(client, "lamp", sort="-created_at")["items"]
    assert [p["id"] for p in newest] == sorted(found, reverse=True)


def ids(client, q, **params):
    return [p["id"] for p in search(client, q, per_page=100, **params)["items"]]


def test_a_name_match_ranks_first_whatever_the_engine_scores(client, make_product):
    """A match in the name above one in the category, above one in the
    description only: bm25 let a description repeating the word beat a long
    name with it once, and both engines ranked `desk lamp` in a description
    above `lamp` in a name (found by review)."""
    for n in range(20):
        make_product(name=f"Chair{n}", description=" ".join(["oak wood table"] * 10))
    long_name = make_product(
        name="Deluxe " + " ".join(f"w{n}" for n in range(30)) + " lamp", description="oak"
    )
    repeated = make_product(name="Bulb", description="lamp lamp lamp lamp lamp lamp")
    in_category = make_product(name="Shade", description="oak", category="Lamp parts")
    assert ids(client, "lamp") == [long_name.id, in_category.id, repeated.id]
    assert ids(client, "lam") == [long_name.id, in_category.id, repeated.id]  # the prefix too
    assert ids(client, "lamp", sort="relevance", in_stock="true") == ids(client, "lamp")
    pages = [search(client, "lamp", per_page=1, page=n)["items"][0]["id"] for n in (1, 2, 3)]
    assert pages == ids(client, "lamp")

    named = make_product(
        name="Reading Light", description="A " + " ".join(["sturdy"] * 30) + " base for any desk"
    )
    both_in_description = make_product(name="Bulb Two", description="desk reading light")
    assert ids(client, "desk light") == [named.id, both_in_description.id]
    assert ids(client, '"reading light" desk') == [named.id, both_in_description.id]


def test_relevance_needs_a_search(client):
    response = client.get("/api/products?sort=relevance")
    assert response.status_code == 422
    assert "sort" in response.get_json()["errors"]


HOSTILE = [
    "",
    '"',
    '""',
    '"unbalanced phrase',
    'unbalanced phrase"',
    "'",
    "''; DROP TABLE products; --",
    "*",
    "lamp*",
    "*lamp",
    ":",
    "name:lamp",
    "description : lamp",
    "^lamp",
    "lamp^2",
    "NEAR(lamp desk)",
    "NEAR/2",
    "lamp OR desk",
    "lamp AND",
    "AND OR NOT",
    "NOT lamp",
    "(",
    ")",
    "((lamp)",
    "lamp)",
    "-",
    "--",
    "- -lamp",
    '-""',
    "+lamp +desk",
    "lamp & desk | !chair",
    "lamp:* <-> desk",
    "!!lamp",
    "\\",
    '\\"',
    "%",
    "_",
    "{lamp}",
    "[lamp]",
    "lamp~2",
    "😀",
    "🔦 lamp 💡",
    "ランプ",
    "مصباح",
    "лампа",
    "x²",
    "½",
    "a" * 200,
    "lamp " * 40,
    " ".join(f"w{n}" for n in range(70))[:200],  # many distinct words: bounded work
    '"' * 200,
    "-" * 200,
    "\t\n",
    " ",
    "é́́́",
    "\u200b",
    "lamp\u202e",
]


@pytest.mark.parametrize("q", HOSTILE)
def test_hostile_queries_are_answered(client, make_product, q):
    make_product(name="Desk Lamp", description='lamp: bright (LED) * "quoted"')
    for path in ("/api/products", "/api/products/facets"):
        response = client.get(path, query_string={"q": q})
        assert response.status_code == 200, (path, q, response.get_json())
    assert (
        client.get("/api/products", query_string={"q": q, "sort": "relevance"}).status_code == 200
    )
    response = client.get("/api/products/suggest", query_string={"q": q[:100]})
    assert response.status_code in (200, 422), response.get_json()
    # Some visible character (not only spaces or zero-width ones): a prefix.
    if any(not c.isspace() and unicodedata.category(c) != "Cf" for c in q[:100]):
        assert response.status_code == 200, (q, response.get_json())


def test_hostile_table_is_at_least_30():
    assert len(HOSTILE) >= 30


@pytest.mark.parametrize("q", ["", " ", "!!!", '""', "-"])
def test_a_query_with_no_words_matches_nothing(client, make_product, q):
    """Any string up to 200 characters is a query (API.md): one with no words
    to look for finds nothing, the empty one included, and never everything."""
    make_product(name="Desk Lamp")
    body = client.get("/api/products", query_string={"q": q, "sort": "relevance"}).get_json()
    assert (body["total"], body["items"]) == (0, [])
    facets = client.get("/api/products/facets", query_string={"q": q}).get_json()
    assert (facets["total"], facets["categories"], facets["in_stock"]) == (0, [], 0)
    assert client.get("/api/products").get_json()["total"] == 1


@pytest.mark.parametrize("path", ["/api/products", "/api/products/facets"])
def test_queries_longer_than_200_are_422(client, path):
    assert client.get(path, query_string={"q": "a" * 200}).status_code == 200
    response = client.get(path, query_string={"q": "a" * 201})
    assert response.status_code == 422
    assert "q" in response.get_json()["errors"]


def test_parser_never_passes_syntax_through():
    query = parse('"red guitar" amp* -drum NEAR(x) OR "unbalanced')
    assert query.phrases == (("red", "guitar"), ("unbalanced",)) or query.phrases == (
        ("red", "guitar"),
    )
    assert set(query.words) | {query.prefix} <= {"amp", "near", "x", "or", "unbalanced", None}
    assert query.excluded == (("drum",),)
    for term in (*query.words, *(w for p in query.phrases for w in p)):
        assert term.isalnum()


# --- index freshness ------------------------------------------------------------


def test_index_follows_create_edit_and_delete(client, admin_token):
    headers = auth(admin_token)
    body = {"name": "Quokka Lantern", "price": 10, "stock": 1, "description": "camping light"}
    created = client.post("/api/products", json=body, headers=headers).get_json()
    assert names(client, "quokka") == {"Quokka Lantern"}
    assert names(client, "camping") == {"Quokka Lantern"}
    assert client.get("/api/products/suggest?q=quok").get_json()["suggestions"] == [
        "Quokka Lantern"
    ]

    response = client.put(
        f"/api/products/{created['id']}",
        json={"name": "Wombat Torch", "category": "Outdoor"},
        headers=headers,
    )
    assert response.status_code == 200
    assert names(client, "quokka") == set()
    assert names(client, "wombat") == {"Wombat Torch"}
    assert names(client, "outdoor") == {"Wombat Torch"}
    assert names(client, "camping") == {"Wombat Torch"}
    assert client.get("/api/products/suggest?q=quok").get_json()["suggestions"] == []
    assert client.get("/api/products/suggest?q=wom").get_json()["suggestions"] == ["Wombat Torch"]

    # Stock changes (checkouts, adjustments) leave the index as it was.
    response = client.put(f"/api/products/{created['id']}", json={"stock": 7}, headers=headers)
    assert response.status_code == 200
    assert names(client, "wombat") == {"Wombat Torch"}

    assert client.delete(f"/api/products/{created['id']}", headers=headers).status_code == 204
    assert names(client, "wombat") == set()
    assert client.get("/api/products/suggest?q=wom").get_json()["suggestions"] == []
    facets = client.get("/api/products/facets?q=wombat").get_json()
    assert facets["total"] == 0


def test_rows_deleted_outright_leave_the_index(db, make_product, client):
    from sqlalchemy import text

    product = make_product(name="Ephemeral Kettle")
    db.session.execute(text("DELETE FROM products WHERE id = :id"), {"id": product.id})
    db.session.commit()
    assert names(client, "kettle") == set()
    assert client.get("/api/products/suggest?q=kett").get_json()["suggestions"] == []


# --- facets -----------------------------------------------------------------------


@pytest.fixture
def random_catalog(make_product, client, admin_token):
    rng = random.Random(19)
    rows = []
    for n in range(40):
        row = {
            "name": f"{rng.choice(['Smart', 'Eco', 'Pro'])} {rng.choice(['Lamp', 'Chair'])} {n}",
            "description": rng.choice(["bright light", "oak wood", "steel frame"]),
            "category": rng.choice(["Home", "Office", "Garden", None]),
            "price": Decimal(rng.randint(100, 20_000)) / 100,
            "stock": rng.choice([0, 0, 3, 10]),
        }
        product = make_product(**row)
        rows.append({**row, "id": product.id})
    for row in rows[:5]:  # deleted products count nowhere
        client.delete(f"/api/products/{row['id']}", headers=auth(admin_token))
    return rows[5:]


def expected_facets(rows, *, q_words=(), category=None, min_price=None, in_stock=False):
    def passes(row, with_category=True):
        text = f"{row['name']} {row['description']} {row['category'] or ''}".lower()
        return (
            all(word in text.split() for word in q_words)
            and (not with_category or category is None or (row["category"] or "") == category)
            and (min_price is None or row["price"] >= Decimal(min_price))
            and (not in_stock or row["stock"] > 0)
        )

    matching = [row for row in rows if passes(row)]
    counts: dict[str, int] = {}
    for row in rows:
        if passes(row, with_category=False) and row["category"]:
            counts[row["category"]] = counts.get(row["category"], 0) + 1
    prices = [row["price"] for row in matching]
    return {
        "total": len(matching),
        "categories": [
            {"value": value, "count": count}
            for value, count in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
        ],
        "price": {
            "min": min(prices, default=None),
            "max": max(prices, default=None),
        },
        "in_stock": sum(1 for row in matching if row["stock"] > 0),
    }


@pytest.mark.parametrize(
    "params",
    [
        {},
        {"category": "Home"},
        {"q": "lamp"},
        {"q": "lamp", "category": "Office"},
        {"q": "bright", "in_stock": "true"},
        {"min_price": "50.00", "category": "Garden"},
        {"q": "chair oak", "min_price": "20"},
        {"q": "nothingmatchesthis"},
    ],
)
def test_facets_match_independent_counts(client, random_catalog, params):
    response = client.get("/api/products/facets", query_string=params)
    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    expected = expected_facets(
        random_catalog,
        q_words=tuple(params.get("q", "").split()),
        category=params.get("category"),
        min_price=params.get("min_price"),
        in_stock=params.get("in_stock") == "true",
    )
    assert {k: body[k] for k in expected} == expected
    assert [r["min_rating"] for r in body["ratings"]] == [4, 3, 2, 1]
    assert all(0 <= r["count"] <= body["total"] for r in body["ratings"])
    # The facets' total is the list's total for the same filters.
    listed = client.get("/api/products", query_string=params).get_json()
    assert listed["total"] == body["total"]


def test_facets_of_an_empty_catalog(client):
    body = client.get("/api/products/facets").get_json()
    assert body == {
        "total": 0,
        "categories": [],
        "price": {"min": None, "max": None},
        "in_stock": 0,
        "ratings": [{"min_rating": level, "count": 0} for level in (4, 3, 2, 1)],
    }


def test_facets_count_ratings_at_each_level(client, make_product):
    for average in ("4.50", "4.00", "3.99", "2.00", "1.00", None):
        rated = {"rating_average": average, "rating_count": 2, "rating_sum": 6}
        make_product(**(rated if average else {}))
    body = client.get("/api/products/facets").get_json()
    assert body["ratings"] == [
        {"min_rating": 4, "count": 2},
        {"min_rating": 3, "count": 3},
        {"min_rating": 2, "count": 4},
        {"min_rating": 1, "count": 5},
    ]
    body = client.get("/api/products/facets?min_rating=3").get_json()
    assert body["total"] == 3 and body["ratings"][3] == {"min_rating": 1, "count": 3}


@pytest.mark.parametrize(
    "params",
    [
        {"min_price": "x"},
        {"min_price": "5", "max_price": "4"},
        {"q": "a" * 201},
        {"in_stock": "maybe"},
    ],
)
def test_facets_reject_malformed_filters(client, params):
    response = client.get("/api/products/facets", query_string=params)
    assert response.status_code == 422, response.get_json()


# --- suggest ----------------------------------------------------------------------


def suggest(client, q):
    response = client.get("/api/products/suggest", query_string={"q": q})
    assert response.status_code == 200, response.get_json()
    return response.get_json()["suggestions"]


def test_suggest_names_with_a_word_starting_with_q(client, make_product, admin_token):
    for name in ("Desk Lamp", "Lamp", "Lampshade Deluxe", "Floor Lamp XL", "Clamp", "Lantern"):
        make_product(name=name)
    make_product(name="Lamp")  # the same name twice is one suggestion
    gone = make_product(name="Lamp Post")
    client.delete(f"/api/products/{gone.id}", headers=auth(admin_token))
    # Names starting with it first, then shorter names first, then by name.
    assert suggest(client, "lam") == ["Lamp", "Lampshade Deluxe", "Desk Lamp", "Floor Lamp XL"]
    assert suggest(client, "LAMP") == suggest(client, "lam")
    assert suggest(client, "desk la") == ["Desk Lamp"]
    assert suggest(client, "clam") == ["Clamp"]
    assert suggest(client, "amp") == []  # inside a word is not a word start
    assert suggest(client, "zzz") == []
    assert suggest(client, "🔦") == []


def test_suggest_is_literal_not_stemmed(client, make_product):
    make_product(name="Trail Running Shoes")
    assert suggest(client, "runn") == ["Trail Running Shoes"]
    assert suggest(client, "running") == ["Trail Running Shoes"]


def test_suggest_returns_at_most_ten(client, make_product):
    for n in range(15):
        make_product(name=f"Widget {n:02d}")
    assert suggest(client, "wid") == [f"Widget {n:02d}" for n in range(10)]


@pytest.mark.parametrize("q", [None, "", "   ", "x" * 101])
def test_suggest_validates_q(client, q):
    params = {} if q is None else {"q": q}
    response = client.get("/api/products/suggest", query_string=params)
    assert response.status_code == 422
    assert "q" in response.get_json()["errors"]


# --- query budgets --------------------------------------------------------------------


def test_query_budgets(client, make_product, count_queries):
    for n in range(30):
        make_product(name=f"Lamp {n}", category=f"Cat {n % 7}")
    budgets = [
        ("/api/products?q=lamp", 1),
        ("/api/products?q=lamp%20-chair&per_page=100", 1),
        ("/api/products/facets?q=lamp", 1),
        ("/api/products/facets?q=lamp&category=cat%203&in_stock=true", 1),
        ("/api/products/facets", 1),
        ("/api/products/suggest?q=la", 2),  # the name index built: names counted, read
        ("/api/products/suggest?q=lam", 0),  # then from memory
    ]
    if IS_POSTGRES:  # no match (an empty first page), then the spelling-tolerant retry
        budgets += [("/api/products?q=lampp", 2), ("/api/products/facets?q=lampp", 2)]
    for path, budget in budgets:
        with count_queries() as q:
            assert client.get(path).status_code == 200
        assert q.count == budget, (path, q.statements)


@pytest.mark.skipif(not IS_POSTGRES, reason="pg_trgm is PostgreSQL's")
def test_every_connection_matches_misspellings_at_the_fuzzy_threshold(db):
    """`<%` (served by the trigram index) uses the connection's threshold:
    set on connect, and kept after a rollback."""
    from sqlalchemy import text

    from app.services.search.postgres import FUZZY_THRESHOLD

    db.session.rollback()
    show = text("SHOW pg_trgm.word_similarity_threshold")
    assert float(db.session.scalar(show)) == FUZZY_THRESHOLD
    db.session.rollback()
    assert float(db.session.scalar(show)) == FUZZY_THRESHOLD


def test_queries_of_one_shape_share_their_statements(client, make_product):
    """A backend gives equal Matches (with their own values) for queries of
    the same shape, so the list's and the facets' statements are built once
    per shape and set of filters, and run with each query's values."""
    from app.services import catalog, facets, search

    def built():
        return catalog.search_listing.cache_info().currsize, facets.grouped.cache_info().currsize

    make_product(name="Smart Lamp", category="Home")
    make_product(name="Smart Chair", category="Office")
    engine = search.backend()
    lamp, chair = (engine.match(search.parse(q)) for q in ("smart lam", "smart cha"))
    assert lamp == chair and hash(lamp) == hash(chair) and lamp.params != chair.params
    assert engine.match(search.parse("-smart")) != lamp  # another shape
    for q, found in (("smart lam", "Smart Lamp"), ("smart cha", "Smart Chair")):
        before = built()
        page = client.get("/api/products", query_string={"q": q, "in_stock": "true"}).get_json()
        counts = client.get("/api/products/facets", query_string={"q": q}).get_json()
        assert [p["name"] for p in page["items"]] == [found] and counts["total"] == 1
    assert built() == before  # the second query of the shape built nothing new


def test_a_page_ranked_by_the_index_alone_equals_the_general_statement(
    client, db, make_product, admin_token
):
    """With no filter and sort=relevance, a backend may rank and page from its
    matches alone (`Match.top`): every page and the total are what the
    general statement (every match joined to products, then sorted) gives."""
    from app.services import catalog as catalog_service
    from app.services import catalog_cache
    from app.services import search as engine

    rng = random.Random(7)
    words = ["lamp", "lamps", "desk lamp", "lampshade", "table"]
    for n in range(23):
        name = f"{rng.choice(words).title()} {n}"
        description = " ".join(
            rng.choice([*words, "oak", "steel"]) for _ in range(rng.randint(1, 6))
        )
        make_product(name=name, description=description, category=rng.choice(["Lamps", "Desks"]))
    gone = make_product(name="Lamp gone", description="lamp lamp", category="Lamps")
    assert client.delete(f"/api/products/{gone.id}", headers=auth(admin_token)).status_code == 204
    for q in ["lamp", "lamp -desk", '"desk lamp"', "lam", "table lamp"]:
        match = engine.backend().match(engine.parse(q))
        general = catalog_service.listing(
            catalog_service._sorted(
                match.ranked(catalog_service.active_products()), "relevance", match
            )
        )
        connection = db.session.connection()
        expected_ids = [
            row.id
            for row in connection.execute(general.page, {**match.params, "limit": 100, "offset": 0})
        ]
        expected_total = connection.execute(general.count, dict(match.params)).scalar_one()
        db.session.rollback()
        got, page = [], 1
        while True:
            catalog_cache.bump()
            body = search(client, q, per_page=4, page=page)
            assert body["total"] == expected_total, q
            got += [item["id"] for item in body["items"]]
            if page >= body["pages"]:
                break
            page += 1
        assert got == expected_ids, q
        assert gone.id not in got
    assert search(client, "lamp", per_page=4, page=99)["items"] == []
