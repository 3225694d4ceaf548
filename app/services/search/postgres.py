"""Search on PostgreSQL: a weighted `tsvector` generated column with a GIN
index, and pg_trgm for spelling-tolerant matching (see the migration
`e19a5f0c3b21`).

`search_vector` weighs the name A, the category B and the description C
(English stemming); `to_tsvector('simple', name)` has its own GIN index for
suggestions (no stemming: "a word starting with" is literal). Every tsquery is
built from the parsed words with `plainto_tsquery`, `phraseto_tsquery` or
`to_tsquery` on letters and digits only, so user text is never tsquery syntax.
"""

from __future__ import annotations

from functools import reduce

from sqlalchemy import TEXT, Engine, Select, event, false, func, literal, literal_column, text
from sqlalchemy.dialects.postgresql import TSVECTOR

from app.extensions import db
from app.services.search import DUPLICATES_SLACK, SUGGEST_LIMIT, Match, distinct, starts_pattern
from app.services.search.query import ParsedQuery, words_of

# Configurations inline, as the indexes spell them: a bound parameter would
# be text (no such function signature) and could not match an index expression.
CONFIG = literal_column("'english'::regconfig")
SEARCH_VECTOR = literal_column("products.search_vector", TSVECTOR)
# word_similarity of a misspelt word to the closest part of a name or
# category: 'labtop' to 'Nimbus 14 Laptop' is 0.4, unrelated words stay < 0.2.
# `term <% text` is word_similarity(term, text) >= this (set on every
# connection: `prepare`), served by the trigram index on exactly this text
# (migration e21c4a6b8d02 spells it the same).
FUZZY_THRESHOLD = 0.3
FUZZY_HAYSTACK = literal_column("(products.name || ' ' || coalesce(products.category, ''))", TEXT)
FUZZY_MAX_TERMS = 6


def _all(queries: list):
    return reduce(func.tsquery_and, queries) if queries else None


def _phrase(words: tuple[str, ...]):
    return func.phraseto_tsquery(CONFIG, " ".join(words))


def _positive(query: ParsedQuery):
    parts = [func.plainto_tsquery(CONFIG, word) for word in query.words]
    parts += [_phrase(phrase) for phrase in query.phrases]
    if query.prefix:
        # Letters and digits only (the parser's words), then the prefix mark.
        parts.append(func.to_tsquery(CONFIG, query.prefix + ":*"))
    return _all(parts)


def _excluded(query: ParsedQuery):
    if not query.excluded:
        return None
    return func.tsquery_not(reduce(func.tsquery_or, [_phrase(term) for term in query.excluded]))


# Typed on every keystroke: plain SQL, no statement to build per request. The
# WHERE spells the partial GIN index's expression and predicate exactly.
SUGGEST = text(
    "SELECT name FROM products WHERE deleted_at IS NULL "
    "AND to_tsvector('simple'::regconfig, name) @@ to_tsquery('simple'::regconfig, :tsquery) "
    "ORDER BY name ILIKE :starts ESCAPE '\\' DESC, length(name), name LIMIT :n"
)


def _set_fuzzy_threshold(dbapi_connection, _record) -> None:
    """`<%`'s threshold for the connection's whole life: committed at once,
    so no later rollback takes it back. (pg_trgm takes the value over when it
    loads: a custom setting may be set before its extension is loaded.)"""
    with dbapi_connection.cursor() as cursor:
        cursor.execute(f"SET pg_trgm.word_similarity_threshold = {FUZZY_THRESHOLD}")
    dbapi_connection.commit()


class PostgresSearch:
    name = "postgresql-tsvector"

    def match(self, query: ParsedQuery) -> Match:
        positive, excluded = _positive(query), _excluded(query)
        tsquery = _all([part for part in (positive, excluded) if part is not None])
        if tsquery is None:
            return Match(lambda stmt: stmt.where(false()), ())

        def apply(stmt: Select) -> Select:
            return stmt.where(SEARCH_VECTOR.op("@@")(tsquery))

        rank = func.ts_rank(SEARCH_VECTOR, positive) if positive is not None else None
        return Match(apply, (rank.desc(),) if rank is not None else ())

    def fuzzy(self, query: ParsedQuery) -> Match | None:
        """Each positive word close to a word of the name or category: `<%`,
        so the trigram index finds the candidates (instead of a
        word_similarity() per live row: ~26 ms on 10,000 products)."""
        # Each term is a trigram lookup and a word_similarity() per candidate:
        # a 200-character query of one-letter words must not cost a hundred.
        terms = query.terms[:FUZZY_MAX_TERMS]
        if not terms:
            return None
        excluded = _excluded(query)

        def apply(stmt: Select) -> Select:
            stmt = stmt.where(*(literal(term).op("<%")(FUZZY_HAYSTACK) for term in terms))
            if excluded is not None:
                stmt = stmt.where(SEARCH_VECTOR.op("@@")(excluded))
            return stmt

        similarities = [func.word_similarity(term, FUZZY_HAYSTACK) for term in terms]
        return Match(apply, (reduce(lambda a, b: a + b, similarities).desc(),))

    def prepare(self, engine: Engine) -> None:
        event.listen(engine, "connect", _set_fuzzy_threshold)

    def suggest(self, prefix: str, limit: int = SUGGEST_LIMIT) -> list[str]:
        words = words_of(prefix)
        if not words:
            return []
        params = {
            # Letters and digits only (the parser's words), joined by tsquery's AND.
            "tsquery": " & ".join([*words[:-1], words[-1] + ":*"]),
            "starts": starts_pattern(prefix),
            "n": limit * DUPLICATES_SLACK,
        }
        return distinct(db.session.scalars(SUGGEST, params), limit)
