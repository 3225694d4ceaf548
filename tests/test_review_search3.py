"""Review (search3): phrases in one field, the prefix_listed CTE, the
unstemmed prefix, SQLite's folding (commits 548a0e6, effe62e)."""

from __future__ import annotations

import pytest

from tests.helpers import IS_POSTGRES
from tests.test_review_search2 import OFF_WORDS


def search(client, q, **params):
    response = client.get("/api/products", query_string={"q": q, "per_page": 100, **params})
    assert response.status_code == 200, (q, response.get_json())
    return response.get_json()


def ordered(client, q, **params):
    return [p["name"] for p in search(client, q, **params)["items"]]


PONY_WORDS = [f"Pony{letter}x" for letter in "abcdefghijklmnop"] + ["Ponytail"]


@pytest.mark.parametrize(
    "q, words, only_unstemmed",
    [
        ("off", OFF_WORDS, "Offshore"),  # `off` is an English stop word: off:* is empty
        pytest.param(  # `pony` stems to poni: poni:* misses ponytail
            "pony",
            PONY_WORDS,
            "Ponytail",
            marks=pytest.mark.skipif(
                not IS_POSTGRES,
                reason="SQLite misses Ponytail altogether (test_a_prefix_past_16_words_...)",
            ),
        ),
    ],
)
@pytest.mark.parametrize("params", [{}, {"sort": "relevance", "in_stock": "true"}])
def test_a_name_matched_by_the_unstemmed_prefix_ranks_above_a_category_match(
    client, make_product, q, words, only_unstemmed, params
):
    """Past 16 words the prefix matches as a prefix, and (548a0e6) also
    unstemmed in `shop_words`, the only way "Offshore Item" / "Ponytail Item"
    is found (the 16 shortest words are the expansions). But the relevance
    tier (`_TIER` -> `_any_in` -> `_tsquery_with_expansions`) only asks the
    stemmed prefix and the expansions whether the name or category matched:
    that name match is put in the description tier, below "Plain Crate",
    which matched only in its category (README: a match in the name above
    one in the category). SQLite's `"off"*` / `"pony"*` sees it in the name."""
    for word in words:
        make_product(name=f"{word} Item", description="boxed", category="Misc")
    make_product(name="Plain Crate", description="boxed", category=words[0])
    found = ordered(client, q, **params)
    assert len(found) == len(words) + 1
    assert found.index(f"{only_unstemmed} Item") < found.index("Plain Crate"), found


@pytest.mark.parametrize(
    "q, name",
    [
        ("µcontr", "µController Board"),  # the micro sign, which FTS5 folds to Greek μ
    ],
)
def test_a_prefix_with_a_letter_fts5_folds_to_another_finds_its_word(client, make_product, q, name):
    """The query's words are lower-cased by Python (`words_of`: Unicode 15),
    the index by FTS5's unicode61 (Unicode 6.1 tables), which keeps these
    capitals as written: the query looks for `ꮳꮃꭹꮿ` where the index holds
    `ᏣᎳᎩᏱ`, and the product is not found by its own name, not even typed
    exactly as stored, on SQLite (PostgreSQL finds each). `_folded` mends the
    final sigma and the long s only (548a0e6); same class of mismatch. The
    micro sign `µ` (U+00B5, `µF`, `µm`): FTS5 indexes it as Greek `μ`
    (U+03BC), `_folded` keeps it, so the vocabulary range from `µcontr` is
    empty, the prefix loses its `*` and only the whole word is found."""
    make_product(name=name, description="woven", category="Misc")
    make_product(name="Oak Chair", description="wood", category="Misc")
    assert ordered(client, q) == [name]
