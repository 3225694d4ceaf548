"""Review of search, facets and suggest for consistency and freshness
(API.md, Products): each test fails on the current code because of a
defect, on the database named in its docstring."""

from __future__ import annotations


def test_suggestions_from_the_database_split_words_as_the_index_does(make_product, make_app):
    """API.md: suggest answers names "with a word starting with q"; README:
    without the in-memory index (`SUGGEST_INDEX_MAX_NAMES=0`, a catalog over
    that many names, or Redis unreachable) one indexed query answers the
    same. Words are runs of letters and digits (README, Search). On
    PostgreSQL that query matches `to_tsvector('shop_words', name)`, whose
    parser keeps "Example.com", "1.2.3", "Model/X2" and "3.5mm" whole (a
    host, a version, a file path, a float) - the search's own vector turns
    ASCII punctuation into spaces first (migration f27b3c5d8e12), this one
    does not - so `com`, `2` and `x2` suggest nothing and `mm` suggests
    "3.5mm Cable", where the index (and SQLite's query) answer otherwise."""
    for name in ("Example.com Gift Card", "Ver 1.2.3 Router", "Model/X2 Lamp", "3.5mm Cable"):
        make_product(name=name, description="Boxed", category="Misc")
    without_index = make_app(overrides={"SUGGEST_INDEX_MAX_NAMES": 0}).test_client()

    def suggested(q: str) -> list[str]:
        response = without_index.get("/api/products/suggest", query_string={"q": q})
        assert response.status_code == 200, response.get_json()
        return response.get_json()["suggestions"]

    assert [suggested(q) for q in ("com", "x2", "5mm", "mm")] == [
        ["Example.com Gift Card"],
        ["Model/X2 Lamp"],
        ["3.5mm Cable"],
        [],
    ]
    assert "Ver 1.2.3 Router" in suggested("2")
