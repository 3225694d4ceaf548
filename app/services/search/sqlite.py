"""Search on SQLite: FTS5 tables kept by triggers (see the migration
`e19a5f0c3b21`).

`products_fts` indexes name, description and category of the live products
with the porter stemmer; `products_names` indexes names without stemming (with
prefix indexes) for suggestions, where "a word starting with" must be exact.
Both are external-content tables over `products`: rowid = product id.
"""

from __future__ import annotations

from sqlalchemy import (
    Engine,
    Integer,
    bindparam,
    case,
    column,
    false,
    func,
    literal_column,
    select,
    table,
    text,
)

from app.db import read_connection
from app.models import Product
from app.services.search import (
    SUGGEST_LIMIT,
    TIER_STEP,
    Match,
    distinct_names,
    starts_pattern,
)
from app.services.search.query import ParsedQuery, words_of

# bm25 weights per column (name, description, category), within a tier.
BM25 = "bm25(products_fts, 10.0, 1.0, 4.0)"


def quote(words: tuple[str, ...] | str) -> str:
    """An FTS5 string: any text inside double quotes is a word or phrase,
    never syntax (a double quote inside is doubled)."""
    joined = words if isinstance(words, str) else " ".join(words)
    return '"' + joined.replace('"', '""') + '"'


def fts_expression(query: ParsedQuery) -> str | None:
    """The positive terms as an FTS5 expression (every term must match)."""
    parts = [quote(word) for word in query.words]
    parts += [quote(phrase) for phrase in query.phrases]
    if query.prefix:
        parts.append(quote(query.prefix) + "*")
    return " AND ".join(parts) or None


def any_term(query: ParsedQuery, column: str) -> str:
    """An FTS5 expression matching any positive word of `query` in `column`."""
    terms = [*query.words, *(word for phrase in query.phrases for word in phrase)]
    parts = [quote(term) for term in dict.fromkeys(terms)]
    if query.prefix:
        parts.append(quote(query.prefix) + "*")
    return f"{column} : ({' OR '.join(parts)})"


# Relevance puts a match in the name above one in the category, above one in
# the description only, whatever bm25 says: its length normalisation and
# term-frequency saturation let "lamp lamp lamp" in a description beat a
# long name with "lamp" once (found by review). The tier is the first of
# name, category that any positive word matches (each a set of rowids, read
# once per statement); bm25 orders each tier.
_IN_NAME = text("SELECT rowid FROM products_fts(:q_name)").columns(column("rowid", Integer))
_IN_CATEGORY = text("SELECT rowid FROM products_fts(:q_category)").columns(column("rowid", Integer))
_TIER = case(
    (column("rowid").in_(_IN_NAME), 0),
    (column("rowid").in_(_IN_CATEGORY), 1),
    else_=2,
)
_SCORE = _TIER * TIER_STEP + literal_column(BM25)


def _hits(*scores):
    """The live products the FTS5 expression `:q_fts` matches (rowid = id)."""
    return (
        select(column("rowid").label("id"), *scores)
        .select_from(table("products_fts"))
        .where(text("products_fts MATCH :q_fts"))
    )


# Every query is one of three shapes, built once; `:q_fts` is the expression.
NOTHING = Match(("fts5", "nothing"), lambda stmt: stmt.where(false()), ())
HITS = _hits(_SCORE.label("score")).subquery("hits")
# The best page from FTS5 alone (it indexes exactly the live products): bm25
# for every match is the one cost left; before, all 1,241 products matching
# "lamp" were read and sorted for a page of 20 (1.40 -> 0.82 ms of SQL).
_TOP_SCORE = _SCORE.label("score")
TOP = (
    _hits(_TOP_SCORE)
    .order_by(_TOP_SCORE.asc(), column("rowid").asc())
    .limit(bindparam("limit"))
    .offset(bindparam("offset"))
)
RANKED = Match(
    ("fts5", "ranked"),
    lambda stmt: stmt.join(HITS, HITS.c.id == Product.id),
    (HITS.c.score.asc(),),
    top=TOP,
    count=select(func.count()).select_from(_hits().subquery()),
)
ALL_BUT = Match(("fts5", "all but"), lambda stmt: stmt.where(Product.id.not_in(_hits())), ())


# Typed on every keystroke: plain SQL, no statement to build per request.
# (SQLite's LIKE ignores ASCII case.)
_SUGGEST_FROM = (
    "FROM products_names JOIN products AS p ON p.id = products_names.rowid "
    "WHERE products_names MATCH :fts AND p.deleted_at IS NULL "
)
_SUGGEST_ORDER = "ORDER BY p.name LIKE :starts ESCAPE '\\' DESC, length(p.name), p.name LIMIT :n"
SUGGEST = text("SELECT p.name " + _SUGGEST_FROM + _SUGGEST_ORDER)
SUGGEST_GROUPED = text("SELECT p.name " + _SUGGEST_FROM + "GROUP BY p.name " + _SUGGEST_ORDER)


class SqliteSearch:
    name = "sqlite-fts5"

    def match(self, query: ParsedQuery) -> Match:
        positive = fts_expression(query)
        excluded = " OR ".join(quote(term) for term in query.excluded) or None
        if positive is None and excluded is None:
            return NOTHING
        if positive is None:
            return ALL_BUT.given(q_fts=excluded)
        if excluded:
            positive = f"({positive}) NOT ({excluded})"
        return RANKED.given(
            q_fts=positive,
            q_name=any_term(query, "name"),
            q_category=any_term(query, "category"),
        )

    def fuzzy(self, query: ParsedQuery) -> Match | None:
        return None

    def prepare(self, engine: Engine) -> None:
        pass

    def suggest(self, prefix: str, limit: int = SUGGEST_LIMIT) -> list[str]:
        words = words_of(prefix)
        if not words:
            return []
        expression = " ".join([*map(quote, words[:-1]), quote(words[-1]) + "*"])
        params = {"fts": expression, "starts": starts_pattern(prefix)}
        return distinct_names(read_connection(), SUGGEST, SUGGEST_GROUPED, params, limit)
