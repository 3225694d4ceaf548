"""Search on SQLite: FTS5 tables kept by triggers (see the migration
`e19a5f0c3b21`).

`products_fts` indexes name, description and category of the live products
with the porter stemmer; `products_names` indexes names without stemming (with
prefix indexes) for suggestions, where "a word starting with" must be exact;
`products_words` (migration `f26e1a4b7c90`) the words as written (no
stemming, terms only), whose vocabulary extends the last word's prefix.
All are external-content tables over `products`: rowid = product id.
Their tokenizer keeps a word's combining marks in the word (migration
`f44a9c3e7b52`: unicode61 alone split `हिन्दी` into `ह`, `न`, `द`), so its
words are the parser's (`query.words_of`) and a query goes to FTS5 as parsed.
"""

from __future__ import annotations

import unicodedata

from sqlalchemy import (
    Engine,
    bindparam,
    column,
    event,
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
from app.services.search.query import ParsedQuery, is_latin, words_of
from app.services.search.suggestions import fold

# bm25 weights per column (name, description, category), within a tier.
BM25 = "bm25(products_fts, 10.0, 1.0, 4.0)"


def quote(words: tuple[str, ...] | str) -> str:
    """An FTS5 string: any text inside double quotes is a word or phrase,
    never syntax (a double quote inside is doubled)."""
    joined = words if isinstance(words, str) else " ".join(words)
    return '"' + joined.replace('"', '""') + '"'


def _is_fullwidth(char: str) -> bool:
    """A letter of the Halfwidth and Fullwidth Forms block (U+FF00-U+FFEF)."""
    return "\uff00" <= char <= "\uffef"


def _compatible(words: tuple[str, ...]) -> tuple[str, ...]:
    """`words` with their fullwidth (and halfwidth) forms as NFKC writes them
    (a fullwidth letter, U+FF21-U+FF5A, is its ASCII letter), split again
    as the parser splits. Only that block: other compatibility characters
    (the ligature `ﬁ`) the index matches as written, as the search did."""
    if all(word.isascii() for word in words):
        return words
    joined = " ".join(words)
    if not any(map(_is_fullwidth, joined)):
        return words
    plain = "".join(unicodedata.normalize("NFKC", c) if _is_fullwidth(c) else c for c in joined)
    return words_of(plain)


def _either(words: tuple[str, ...]) -> str:
    """`words` (a word or a phrase) as typed, or in their compatibility forms.
    The index keeps a product's text as written, so a fullwidth `LAMP` found
    no "Lamp" (PostgreSQL's `unaccent` folds fullwidth letters in index and
    query alike; found by review); as typed, it still finds a fullwidth
    "LAMP" written so."""
    plain = _compatible(words)
    if plain == words or not plain:
        return quote(words)
    return f"({quote(words)} OR {quote(plain)})"


def _plain_prefix(prefix: str) -> str:
    """The prefix in its compatibility form, where that is one word."""
    plain = _compatible((prefix,))
    return plain[0] if len(plain) == 1 else prefix


def fts_expression(query: ParsedQuery) -> tuple[str, str] | None:
    """The positive terms as an FTS5 expression (every term must match), in
    two parts: the prefix's expansions go between them (`_expanded`). A
    phrase's words are also there one by one, OR'ed (true of every row that
    has the phrase): the relevance tiers (bm25 per column) then see a word of
    the phrase in the name, as PostgreSQL's do (found by review)."""
    parts = [_either((word,)) for word in query.words]
    parts += [_either(phrase) for phrase in query.phrases]
    phrase_words = dict.fromkeys(word for phrase in query.phrases for word in phrase)
    if phrase_words:
        parts.append("(" + " OR ".join(_either((word,)) for word in phrase_words) + ")")
    if query.prefix:  # its `*`, when it needs one, is `_expanded`'s (`_STAR`)
        plain = _plain_prefix(query.prefix)
        # As typed, a prefix of the words written so; then its plain form's.
        typed = "" if plain == query.prefix else quote(query.prefix) + "* OR "
        return " AND ".join([*parts, "(" + typed + quote(plain)]), ")"
    return (" AND ".join(parts), "") if parts else None


# The last word's prefix also matches the words written in products that
# start with it (migration f26e1a4b7c90), each stemmed as the index is:
# `"adjustab"*` misses the stem `adjust` of "Adjustable", and FTS5 stems the
# typed prefix too (`"play"*` looks for `plai`, missing "player"), so both
# found nothing (found by review). The words starting with it, but the
# prefix itself (its own stem is found), shortest first (model numbers
# after the words), at most 16: ` OR "word"` each. `:q_lo`, `:q_hi`: the
# words starting with the prefix (both empty for none).
_EXPANSIONS = (
    "(SELECT group_concat(' OR \"' || term || '\"', '') FROM (SELECT term FROM "
    "(SELECT term FROM products_words_vocab WHERE term > :q_lo AND term < :q_hi LIMIT 256) "
    "ORDER BY length(term), term LIMIT 16))"
)


# The prefix's own `*`: FTS5 stems the typed prefix before it matches it as a
# prefix, so `"cards"*` was `card*` and listed "Wool Cardigan" (and `tables`
# "Android Tablet"; found by review). When the words written in products
# that start with the prefix are few enough to be listed, all 16 or fewer
# of them as `_EXPANSIONS` lists at most (`:q_star` NULL:
# long enough to have a stem of its own), the prefix matches as a whole word
# (its own stem: `cards` finds "Card") and those words are its expansions;
# only past that many does it keep the `*` (`:q_star`: `*` for a prefix too
# short to look up, '' for no prefix).
_STAR = (
    "coalesce(:q_star, CASE WHEN (SELECT count(*) FROM (SELECT 1 FROM products_words_vocab "
    "WHERE term > :q_lo AND term < :q_hi LIMIT 17)) > 16 "
    "THEN '*' ELSE '' END)"
)


def _expanded(name: str) -> str:
    """The expression `:name` . the prefix's `*` . expansions . `:name_end`, as SQL."""
    return f"(:{name} || {_STAR} || coalesce({_EXPANSIONS}, '') || :{name}_end)"


# Letters FTS5 folds to another letter: the long s (U+017F, with a dot
# U+1E9B) to `s`, the micro sign (U+00B5) to Greek mu (U+03BC).
AS_FTS5_FOLDS = str.maketrans({"\u017f": "s", "\u1e9b": "s", "\u00b5": "\u03bc"})


def _folded(word: str) -> str:
    """`word` as unicode61 with remove_diacritics indexes it: lower case,
    diacritics taken off Latin letters only (`ä` is `a`; Greek `ά`, `æ`,
    `ø`, `ß` and the ligature `ﬁ` stay as written: NFKD had made `ﬁ` `fi`,
    outside the vocabulary's range; found by review). Checked against FTS5
    over U+00C0-U+024F and U+1E00-U+1EFF: it differs on 8 rare letters
    (`ǡ`, `ǣ`, `ǽ`, `ǿ` with their capitals; the long s, U+017F and U+1E9B,
    is folded as FTS5 folds it), whose prefixes then match as whole words
    only, finding no word in the vocabulary."""
    kept, base = [], ""
    # Python lower-cases a final sigma (U+03A3) as U+03C2, which FTS5 folds
    # as U+03C3 (`ΠΑΣ` found no word starting with it, and lost its `*`;
    # found by review).
    lowered = word.lower().replace("\u03c2", "\u03c3").translate(AS_FTS5_FOLDS)
    for letter in unicodedata.normalize("NFD", lowered):
        if unicodedata.combining(letter):
            if is_latin(base):
                continue
        else:
            base = letter
        kept.append(letter)
    return unicodedata.normalize("NFC", "".join(kept))


def _expansion_values(query: ParsedQuery) -> dict[str, str | None]:
    prefix = _folded(_plain_prefix(query.prefix)) if query.prefix else ""
    if len(prefix) < 3:  # too short to have outgrown a stem
        return {"q_lo": "", "q_hi": "", "q_star": "*" if prefix else ""}
    # U+10FFFF sorts after any letter: every word that starts with the prefix.
    return {"q_lo": prefix, "q_hi": prefix + "\U0010ffff", "q_star": None}


# Relevance puts a match in the name above one in the category, above one in
# the description only, whatever bm25 says: its length normalisation and
# term-frequency saturation let "lamp lamp lamp" in a description beat a
# long name with "lamp" once (found by review). The tier is the first of
# name, category where any phrase of the query matched: bm25 over that column
# alone is below 0 exactly then (each phrase adds -idf x its frequency term,
# and FTS5 keeps idf above 0); bm25 orders each tier. (Each tier's rowids as
# an FTS5 query of its own, `rowid IN (...)`, cost a cold q=lamp 0.4-1.2 ms
# more; this costs 0.1.)
_TIER = literal_column(
    "CASE WHEN bm25(products_fts, 1.0, 0.0, 0.0) < 0 THEN 0 "
    "WHEN bm25(products_fts, 0.0, 0.0, 1.0) < 0 THEN 1 ELSE 2 END"
)
_SCORE = _TIER * TIER_STEP + literal_column(BM25)


def _hits(*scores):
    """The live products the FTS5 expression `:q_fts` matches (rowid = id)."""
    return (
        select(column("rowid").label("id"), *scores)
        .select_from(table("products_fts"))
        .where(text("products_fts MATCH " + _expanded("q_fts")))
    )


# Every query is one of three shapes, built once; `:q_fts` is the expression.
NOTHING = Match(("fts5", "nothing"), lambda stmt: stmt.where(false()), ())
HITS = _hits(_SCORE.label("score")).subquery("hits")
HIT_IDS = _hits().subquery("hits")  # where nothing is ordered by score
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
    lambda stmt: stmt.join(HIT_IDS, HIT_IDS.c.id == Product.id),
    (HITS.c.score.asc(),),
    top=TOP,
    count=select(func.count()).select_from(_hits().subquery()),
    ranked_apply=lambda stmt: stmt.join(HITS, HITS.c.id == Product.id),
)
ALL_BUT = Match(("fts5", "all but"), lambda stmt: stmt.where(Product.id.not_in(_hits())), ())


# Typed on every keystroke: plain SQL, no statement to build per request.
# "Starts with" compares the name and the prefix folded as the in-memory
# index folds them (`suggestions.fold`: without case or accents): `cafe`
# put "Café Table" after "Big Cafe" here, first from the index (found by
# review). An ASCII name (as many bytes as characters) needs no folding but
# its case, which LIKE ignores; only the others call `shop_fold` (a Python
# function, registered on every connection by `prepare`).
_SUGGEST_FROM = (
    "FROM products_names JOIN products AS p ON p.id = products_names.rowid "
    "WHERE products_names MATCH :fts AND p.deleted_at IS NULL "
)
_SUGGEST_ORDER = (
    "ORDER BY CASE WHEN length(CAST(p.name AS BLOB)) = length(p.name) THEN p.name "
    "ELSE shop_fold(p.name) END LIKE :starts ESCAPE '\\' DESC, length(p.name), p.name LIMIT :n"
)
SUGGEST = text("SELECT p.name " + _SUGGEST_FROM + _SUGGEST_ORDER)
SUGGEST_GROUPED = text("SELECT p.name " + _SUGGEST_FROM + "GROUP BY p.name " + _SUGGEST_ORDER)


def _register_fold(dbapi_connection, _record) -> None:
    """`shop_fold(text)`: `suggestions.fold`, for the suggestions' order."""
    dbapi_connection.create_function("shop_fold", 1, fold, deterministic=True)


class SqliteSearch:
    name = "sqlite-fts5"

    def match(self, query: ParsedQuery) -> Match:
        positive = fts_expression(query)
        excluded = " OR ".join(_either(term) for term in query.excluded) or None
        if positive is None and excluded is None:
            return NOTHING
        expansions = _expansion_values(query)
        if positive is None:
            return ALL_BUT.given(q_fts=excluded, q_fts_end="", **expansions)
        head, end = positive
        if excluded:
            head, end = "(" + head, f"{end}) NOT ({excluded})"
        return RANKED.given(q_fts=head, q_fts_end=end, **expansions)

    def fuzzy(self, query: ParsedQuery) -> Match | None:
        return None

    def prepare(self, engine: Engine) -> None:
        event.listen(engine, "connect", _register_fold)

    def suggest(self, prefix: str, limit: int = SUGGEST_LIMIT) -> list[str]:
        words = words_of(prefix)
        if not words:
            return []
        expression = " ".join([*map(quote, words[:-1]), quote(words[-1]) + "*"])
        params = {"fts": expression, "starts": starts_pattern(fold(prefix))}
        return distinct_names(read_connection(), SUGGEST, SUGGEST_GROUPED, params, limit)
