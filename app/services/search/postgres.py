"""Search on PostgreSQL: a weighted `tsvector` generated column with a GIN
index, and pg_trgm for spelling-tolerant matching (see the migration
`e19a5f0c3b21`).

`search_vector` weighs the name A, the category B and the description C
(English stemming, ASCII punctuation read as spaces: migration
`f27b3c5d8e12`; accents ignored: `f29a1c3e5b70`); `products_words` lists the
words written in products, without accents, for the last word's prefix
(`f26e1a4b7c90`, `f28c4d6e9f23`, `f29a1c3e5b70`);
`to_tsvector('shop_words', name)` has its own GIN index for
suggestions (no stemming: "a word starting with" is literal; accents
ignored). The trigram retry compares words and text without accents. Every tsquery is
built from the parsed words with `plainto_tsquery` or `to_tsquery` on
letters and digits only (and words of `products_words` with no
punctuation), so user text is never tsquery syntax. A phrase matches within
one field: its words in order, all of one weight (`_in_one_field`).
"""

from __future__ import annotations

import functools
from functools import reduce

from sqlalchemy import (
    Engine,
    Select,
    Text,
    and_,
    bindparam,
    case,
    column,
    event,
    false,
    func,
    literal_column,
    not_,
    or_,
    select,
    table,
    text,
)
from sqlalchemy.dialects.postgresql import TSVECTOR

from app.db import read_connection
from app.models import Product
from app.services.search import (
    SUGGEST_LIMIT,
    TIER_STEP,
    Match,
    distinct_names,
)
from app.services.search.query import FINAL_SIGMA, SIGMA, ParsedQuery, words_of

# Configurations inline, as the indexes spell them: a bound parameter would
# be text (no such function signature) and could not match an index expression.
# `shop_english`: English stemming after `unaccent` (migration f29a1c3e5b70),
# so accents are ignored as in SQLite's index; `shop_words` likewise without
# stemming (the vocabulary, suggestions); `shop_unaccent(text)` is the
# migration's IMMUTABLE `unaccent`.
CONFIG = literal_column("'shop_english'::regconfig")
WORDS_CONFIG = literal_column("'shop_words'::regconfig")
SEARCH_VECTOR = literal_column("products.search_vector", TSVECTOR)
# word_similarity of a misspelt word to the closest part of a name or
# category: 'labtop' to 'Nimbus 14 Laptop' is 0.4, unrelated words stay < 0.2.
# `term <% text` is word_similarity(term, text) >= this (set on every
# connection: `prepare`), served by the trigram index on exactly this text
# (migration f38b4e6a8c12 spells it the same), both without accents, and
# the final sigma (U+03C2) made a sigma (U+03C3) as in every word the query
# sends (PostgreSQL's lower() makes a capital sigma U+03C3, never the
# word-final U+03C2 that Python's writes).
FUZZY_THRESHOLD = 0.3
FUZZY_HAYSTACK = literal_column(
    "shop_unaccent(translate(products.name || ' ' || coalesce(products.category, ''), "
    f"'{FINAL_SIGMA}', '{SIGMA}'))",
    Text,
)
FUZZY_MAX_TERMS = 6


def _once(tsquery):
    """`tsquery` as a scalar subquery: PostgreSQL computes it once per
    statement (an InitPlan), also in a generic plan. psycopg prepares a
    statement run five times on a connection, and after five more the server
    keeps a generic plan, where `to_tsquery(..., $1)` is no constant: it was
    computed again for every matching row, in the recheck and in `ts_rank`
    (q=lamp, 1,241 rows: 3.9 ms against 1.3 ms for the plan of the literal
    query; with the subqueries 1.7 ms, its count included)."""
    return select(tsquery).scalar_subquery()


def _all(queries: list):
    return reduce(func.tsquery_and, queries) if queries else None


def _param(name: str):
    return bindparam(name, type_=Text)


def _excluded(excluded: int):
    """Any of the `excluded` phrases `:q_e0`, `:q_e1`, ... (None: no exclusion).
    Matched as `NOT (search_vector @@ it)`, never as `@@ !!it`: a phrase of
    stop words only (`-the`) is an empty tsquery, which `!!` keeps empty and
    `@@` matches with nothing, so `-the` listed nothing (found by review)."""
    if not excluded:
        return None
    phrases = [func.to_tsquery(CONFIG, _param(f"q_e{i}")) for i in range(excluded)]
    return reduce(func.tsquery_or, phrases)


def _in_one_field(words: tuple[str, ...]) -> str:
    """tsquery text for `words` in order within one field (name A, category
    B or description C): the vector numbers each field's words on from the
    last one's, so a phrase as `phraseto_tsquery` makes it ran from the
    end of the name into the category (`"lamp home"` found "Desk Lamp"
    filed under Home; found by review; FTS5 matches a phrase within one
    column). Each alternative's words all carry one weight. Letters and
    digits only (the parser's words): never syntax; stop words count as
    positions, as in `phraseto_tsquery`."""
    return " | ".join(
        "(" + " <-> ".join(f"{word}:{weight}" for word in words) + ")" for weight in "ABC"
    )


def _none_of(excluded):
    return not_(SEARCH_VECTOR.op("@@", is_comparison=True)(_once(excluded)))


# The last word's prefix also matches the stems of the words written in
# products that start with it (migration f26e1a4b7c90): `adjustab:*` misses
# the stem `adjust` of "Adjustable", and found nothing (found by review).
# Only words whose own stem the prefix misses, with no punctuation (so
# tsquery text, never syntax), from the first 64 in order, the 16 shortest
# (a word, not 16 model numbers `dry100`... before `dryer`; found by
# review): ` | word` each
# (`:q_lo`, `:q_hi`: the words starting with the prefix; empty for none).
EXPANSION_CANDIDATES, EXPANSIONS = 64, 16
# No ASCII punctuation (tsquery syntax) or space in an expansion: the words
# come from text whose punctuation was made spaces (migration f28c4d6e9f23);
# checked again here (a `[[:alnum:]]` class is ASCII only under the column's
# "C" collation, and dropped every accented word; found by review).
PUNCTUATION = "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~"
SPACES = " " * len(PUNCTUATION)
WORDS = table("products_words", column("word", Text))


def _words_starting(limit: int, after_prefix: bool = False):
    """The first `limit` listed words starting with the prefix (`:q_lo`,
    `:q_hi`; `after_prefix`: the prefix itself not among them), in order."""
    listed_words = WORDS.c.word
    low = func.shop_unaccent(_param("q_lo"))  # the words are kept without accents
    return (
        select(listed_words)
        .where(listed_words > low if after_prefix else listed_words >= low)
        .where(listed_words < func.shop_unaccent(_param("q_hi")))
        .order_by(listed_words)
        .limit(limit)
    )


def _punctuated(word):
    return func.strpos(func.translate(word, PUNCTUATION, SPACES), " ") != 0


def _listed():
    """Whether the words starting with the prefix are few enough to be
    listed: at most EXPANSIONS besides the prefix itself (none for a prefix
    too short to look up), none of them with punctuation (`unaccent` makes
    the letter U+02BB an ASCII `'`: "hawai'i" is no tsquery word, and
    listed without it `haw` lost "Hawai\u02bbi"; found by review). Then the prefix
    matches as a whole word (its stem) and those words are its expansions,
    instead of `prefix:*`, which the stemmer made `card:*` for `cards` and so
    listed "Wool Cardigan" (and `tables` "Android Tablet"; found by review)."""
    return select(_LISTED.c.listed).scalar_subquery()


def _listed_cte():
    """`_listed`'s value, decided once per statement: a CTE that each use
    reads (PostgreSQL computes a CTE read more than once only once; as a
    subquery in each of the seven places a search names it, it was seven
    pairs of lookups, and a cold q=lamp took 30 % longer)."""
    few = _words_starting(EXPANSIONS + 1, after_prefix=True).subquery("few")
    counted = select(func.count()).select_from(few).scalar_subquery()
    starting = _words_starting(EXPANSIONS + 2).subquery("starting")
    odd = select(starting.c.word).where(_punctuated(starting.c.word)).exists()
    listed = and_(_param("q_lo") != "", counted <= EXPANSIONS, ~odd)
    return select(listed.label("listed")).cte("prefix_listed")


_LISTED = _listed_cte()


def _expansions(suffix: str):
    """`' | word<suffix>'` for each word the prefix should also match, or ''."""
    candidates = _words_starting(EXPANSION_CANDIDATES, after_prefix=True).subquery("candidates")
    word = candidates.c.word
    missed = ~func.to_tsvector(CONFIG, word).op("@@", is_comparison=True)(
        func.to_tsquery(CONFIG, _param("q_prefix"))
    )
    chosen = (
        select(word)
        .where(~_punctuated(word), or_(_listed(), missed))
        .order_by(func.length(word), word)  # model numbers (dry100, ...) after the words
        .limit(EXPANSIONS)
        .subquery("chosen")
    )
    listed = select(func.string_agg(literal_column("' | '") + chosen.c.word + suffix, ""))
    return func.coalesce(listed.scalar_subquery(), "")


def _tsquery_with_expansions(name: str, suffix: str):
    """`to_tsquery` of the text `:name` with the prefix's expansions added;
    the prefix as a whole word where its words are listed (`_listed`: its
    `:*` made `:`; no word has a `:` or `*`)."""
    text_ = case((_listed(), func.replace(_param(name), ":*", ":")), else_=_param(name))
    return func.to_tsquery(CONFIG, text_ + _expansions(suffix))


def _prefix_tsquery():
    """The last word's tsquery (`_tsquery_with_expansions`); when it matches
    as a prefix, also as the prefix typed, unstemmed and never a stop word
    (`shop_words`): `off:*` is an empty tsquery in English, so `off` found
    only its 16 listed words and missed "Offshore" (found by review)."""
    stemmed = _tsquery_with_expansions("q_prefix", "")
    typed = func.to_tsquery(WORDS_CONFIG, _param("q_prefix"))
    return case((_listed(), stemmed), else_=func.tsquery_or(stemmed, typed))


def _any_in(weight: str):
    """Whether any positive word matches in the part weighted `weight`
    (`:q_A`, `:q_B`: each word `word:A`, the prefix `word:*A`, joined by |)."""
    return SEARCH_VECTOR.op("@@", is_comparison=True)(
        _once(_tsquery_with_expansions(f"q_{weight}", f":{weight}"))
    )


# Relevance puts a match in the name (weight A) above one in the category (B),
# above one in the description only, whatever ts_rank says: it ranked `desk
# lamp` in a description above `lamp` in a name (found by review). ts_rank
# orders each tier (below 1, far below TIER_STEP).
_TIER = case((_any_in("A"), 0), (_any_in("B"), 1), else_=2)


def _typed_prefix_in(weight: str):
    """Whether the prefix as typed, unstemmed (`_prefix_tsquery`'s other
    half), matches in the part weighted `weight` (`:q_typed_A`, `:q_typed_B`:
    `prefix:*A`): a name found only that way ("Ponytail" for `pony`, whose
    stem is `poni`) ranked in the description tier, below a category match
    (found by review). Only where the prefix is not listed."""
    typed = func.to_tsquery(WORDS_CONFIG, _param(f"q_typed_{weight}"))
    return and_(~_listed(), SEARCH_VECTOR.op("@@", is_comparison=True)(_once(typed)))


# With a prefix: `_TIER`, where the typed prefix counts as well.
_TIER_WITH_PREFIX = case(
    (or_(_any_in("A"), _typed_prefix_in("A")), 0),
    (or_(_any_in("B"), _typed_prefix_in("B")), 1),
    else_=2,
)


def _weighted(query: ParsedQuery, weight: str) -> str:
    """`_any_in`'s tsquery text: letters and digits only, never syntax."""
    terms = [*query.words, *(word for phrase in query.phrases for word in phrase)]
    parts = [f"{term}:{weight}" for term in dict.fromkeys(terms)]
    if query.prefix:
        parts.append(f"{query.prefix}:*{weight}")
    return " | ".join(parts)


@functools.lru_cache(maxsize=128)
def _match(words: int, phrases: int, excluded: int, prefix: bool) -> Match:
    """The match of every query with this many words, phrases and exclusions
    (and a prefix or not), built once; `_values` gives its parameters."""
    parts = [func.plainto_tsquery(CONFIG, _param(f"q_w{i}")) for i in range(words)]
    parts += [func.to_tsquery(CONFIG, _param(f"q_p{i}")) for i in range(phrases)]
    if prefix:
        parts.append(_prefix_tsquery())
    positive, negative = _all(parts), _excluded(excluded)
    shape = ("tsvector", words, phrases, excluded, prefix)
    if positive is None and negative is None:
        return Match(shape, lambda stmt: stmt.where(false()), ())
    if positive is None:  # only exclusions: no rank
        matches = _none_of(negative)
        return Match(shape, lambda stmt: stmt.where(matches), ())
    tsquery = (
        positive if negative is None else func.tsquery_and(positive, func.tsquery_not(negative))
    )
    matches = SEARCH_VECTOR.op("@@")(_once(tsquery))
    tier = _TIER_WITH_PREFIX if prefix else _TIER
    score = tier * TIER_STEP - func.ts_rank(SEARCH_VECTOR, _once(positive))
    top, count = _top(matches, score)
    return Match(shape, lambda stmt: stmt.where(matches), (score.asc(),), top=top, count=count)


def _top(matches, score) -> tuple[Select, Select]:
    """`Match.top` and `Match.count` from one pass over the matches: their ids
    and ranks, kept once (a CTE read twice is materialized), sorted for the
    page and counted; only the page's 20 products are then read whole. It
    was two scans of every match, one of them sorting whole rows (q=lamp,
    1,241 matches: 2.8 -> 1.8 ms, EXPLAIN ANALYZE, generic plan)."""
    hits = (
        select(Product.id.label("id"), score.label("score"))  # best first: ascending
        .where(Product.deleted_at.is_(None), matches)
        .cte("hits")
    )
    top = (
        select(hits.c.id, hits.c.score)
        .order_by(hits.c.score.asc(), hits.c.id.asc())
        .limit(bindparam("limit"))
        .offset(bindparam("offset"))
    )
    return top, select(func.count()).select_from(hits)


@functools.lru_cache(maxsize=64)
def _fuzzy(terms: int, excluded: int) -> Match:
    """Each of `terms` words close to a word of the name or category, built
    once per number of terms and exclusions."""
    words = [func.shop_unaccent(_param(f"q_t{i}")) for i in range(terms)]  # as the haystack
    # A stop word (`the`, `for`) is no word of the search, here as in the
    # match: asked to be close to a word of the name, it made `the labtop`
    # find nothing where `labtop` finds laptops (found by review). Its
    # condition is the first other word's (NULL, no row, when every word is
    # one), so each stays `constant <% haystack`, served by the index. Each
    # decided once per statement (`_once`): in a generic plan a CASE of
    # parameters is no constant, and was evaluated for every candidate row
    # (`to_tsvector`, not `plainto_tsquery`: no NOTICE for a stop word).
    kept = [
        _once(func.length(func.to_tsvector(CONFIG, _param(f"q_t{i}"))) > 0) for i in range(terms)
    ]
    first = case(*zip(kept, words, strict=True))
    conditions = [
        _once(case((keep, word), else_=first)) for keep, word in zip(kept, words, strict=True)
    ]
    negative = _excluded(excluded)

    def apply(stmt: Select) -> Select:
        stmt = stmt.where(*(word.op("<%")(FUZZY_HAYSTACK) for word in conditions))
        if negative is not None:
            stmt = stmt.where(_none_of(negative))
        return stmt

    similarities = [
        case((keep, func.word_similarity(word, FUZZY_HAYSTACK)), else_=0)
        for keep, word in zip(kept, conditions, strict=True)
    ]
    order = (reduce(lambda a, b: a + b, similarities).desc(),)
    return Match(("trigram", terms, excluded), apply, order)


def _values(query: ParsedQuery) -> dict[str, str]:
    """The parameters of the query's `_match`: each word, phrase and exclusion
    (letters and digits only, the parser's words) and the prefix with its mark."""
    values = {f"q_w{i}": word for i, word in enumerate(query.words)}
    values |= {f"q_p{i}": _in_one_field(phrase) for i, phrase in enumerate(query.phrases)}
    values |= {f"q_e{i}": _in_one_field(term) for i, term in enumerate(query.excluded)}
    # No prefix, or one too short to outgrow a stem: no expansion (`_TIER`
    # names the expansions' parameters in every ranked query).
    values |= {"q_prefix": "", "q_lo": "", "q_hi": ""}
    if query.prefix:
        values["q_prefix"] = query.prefix + ":*"
        values |= {f"q_typed_{w}": f"{query.prefix}:*{w}" for w in "AB"}
        if len(query.prefix) >= 3:  # shorter is all but never longer than a stem
            # In the column's "C" order, every word starting with the prefix.
            values["q_lo"], values["q_hi"] = query.prefix, query.prefix + "\U0010ffff"
    if query.positive:
        values |= {"q_A": _weighted(query, "A"), "q_B": _weighted(query, "B")}
    return values


# Typed on every keystroke: plain SQL, no statement to build per request. The
# WHERE spells the partial GIN index's expression and predicate exactly; the
# tsquery is computed once (`_once`: also under a generic plan).
# The name's words split at ASCII punctuation, as the search vector and the
# in-memory index split them, a final sigma made a sigma (migration
# f38b4e6a8c12's index expression).
_SUGGEST_FROM = (
    "FROM products WHERE deleted_at IS NULL "
    "AND to_tsvector('shop_words'::regconfig, translate(name, '"
    + PUNCTUATION.replace("'", "''")
    + FINAL_SIGMA
    + "', '"
    + SPACES
    + SIGMA
    + "')) @@ (SELECT to_tsquery('shop_words'::regconfig, :tsquery)) "
)
# "Starts with" compares the name and the prefix without case, accents
# (`shop_unaccent`) or the final sigma, as the in-memory index compares them:
# `cafe` put "Café Table" after "Big Cafe" here, first from the index (found
# by review). An ASCII name (as many bytes as characters) needs no folding
# but lower(); unaccent costs about 2 µs for each other matching name.
# Then by name in code point order, as the index orders them, whatever the
# database's collation (`en_US.UTF-8` put "lamp" before "LAMP"; found by review).
_FOLDED = f"translate(lower(shop_unaccent({{}})), '{FINAL_SIGMA}', '{SIGMA}')"
_SUGGEST_ORDER = (
    "ORDER BY starts_with(CASE WHEN octet_length(name) = length(name) THEN lower(name) "
    f"ELSE {_FOLDED.format('name')} END, (SELECT {_FOLDED.format(':start')})) DESC, "
    'length(name), name COLLATE "C" LIMIT :n'
)
SUGGEST = text("SELECT name " + _SUGGEST_FROM + _SUGGEST_ORDER)
SUGGEST_GROUPED = text("SELECT name " + _SUGGEST_FROM + "GROUP BY name " + _SUGGEST_ORDER)


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
        shape = (len(query.words), len(query.phrases), len(query.excluded), bool(query.prefix))
        return _match(*shape).given(**_values(query))

    def fuzzy(self, query: ParsedQuery) -> Match | None:
        """Each positive word close to a word of the name or category: `<%`,
        so the trigram index finds the candidates (instead of a
        word_similarity() per live row: ~26 ms on 10,000 products)."""
        # Each term is a trigram lookup and a word_similarity() per candidate:
        # a 200-character query of one-letter words must not cost a hundred.
        terms = query.terms[:FUZZY_MAX_TERMS]
        if not terms:
            return None
        values = {f"q_t{i}": term for i, term in enumerate(terms)}
        values |= {f"q_e{i}": _in_one_field(term) for i, term in enumerate(query.excluded)}
        return _fuzzy(len(terms), len(query.excluded)).given(**values)

    def prepare(self, engine: Engine) -> None:
        event.listen(engine, "connect", _set_fuzzy_threshold)

    def suggest(self, prefix: str, limit: int = SUGGEST_LIMIT) -> list[str]:
        words = words_of(prefix)
        if not words:
            return []
        params = {
            # Letters and digits only (the parser's words), joined by tsquery's AND.
            "tsquery": " & ".join([*words[:-1], words[-1] + ":*"]),
            "start": prefix.strip(),
        }
        return distinct_names(read_connection(), SUGGEST, SUGGEST_GROUPED, params, limit)
