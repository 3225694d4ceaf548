"""The user's search string, parsed into terms no search engine can misread.

Words are runs of letters and digits (any script) with the combining marks
within and after them (vowel signs, viramas); everything else separates
them, so operators, quotes, `*`, `:`, `^`, parentheses and emoji never reach
an engine as syntax. Each backend builds its own query from these tokens and
quotes every one of them.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

# Letters and digits of any script; `_` separates words as in the engines'
# own tokenizers (FTS5 unicode61, PostgreSQL's parser).
WORD = re.compile(r"[^\W_]+")
# The word-final sigma and the sigma: one letter in every word (`words_of`).
FINAL_SIGMA, SIGMA = "\u03c2", "\u03c3"


@dataclass(frozen=True)
class ParsedQuery:
    """`words` must all match, and `prefix` (the last word typed, when it is
    a bare word) as a prefix; each of `phrases` matches its words in order;
    none of `excluded` (each a word or a phrase, as a tuple of words) may."""

    words: tuple[str, ...] = ()
    phrases: tuple[tuple[str, ...], ...] = ()
    excluded: tuple[tuple[str, ...], ...] = ()
    prefix: str | None = None

    @property
    def positive(self) -> bool:
        return bool(self.words or self.phrases or self.prefix)

    @property
    def terms(self) -> tuple[str, ...]:
        """Every positive word, phrases' words included (for fuzzy matching)."""
        found = [*self.words, *(w for phrase in self.phrases for w in phrase)]
        if self.prefix:
            found.append(self.prefix)
        return tuple(dict.fromkeys(found))


def words_of(text: str) -> tuple[str, ...]:
    """The words of `text`, lower-cased. Composed first (NFC): an accent typed
    as a combining mark (`e` + U+0300, as some keyboards and copies send it)
    is part of its letter, not a separator (`crème` was `cre` and `me`;
    found by review). The word-final sigma (U+03C2) is a sigma (U+03C3), as
    both engines index it: Python lower-cases `ΦΑΚΟΣ` as `φακος`,
    PostgreSQL's lower() as `φακοσ` (its index makes a written U+03C2 U+03C3
    too, migration f38b4e6a8c12; FTS5 folds it so), so PostgreSQL found no
    word typed in capitals with a final sigma (found by review)."""
    if text.isascii():
        found = WORD.findall(text)
    else:
        if not unicodedata.is_normalized("NFC", text):
            text = unicodedata.normalize("NFC", text)
        text = _without_latin_marks(text)
        found = _with_marks(text) if any(map(is_mark, text)) else WORD.findall(text)
    return tuple(word.lower().replace(FINAL_SIGMA, SIGMA) for word in found)


def is_mark(char: str) -> bool:
    """A combining mark (Unicode category M: a vowel sign, a virama, a nukta)."""
    return unicodedata.category(char)[0] == "M"


def _with_marks(text: str) -> list[str]:
    """Runs of letters and digits with the marks within and after them: a
    vowel sign or a virama is part of its word, not a separator. WORD alone
    split `पुस्तक` into `प`, `स` and `तक`, which PostgreSQL (whose parser
    keeps the word whole) never matched: no Hindi or Tamil word was found
    (found by review). SQLite's FTS5 tables keep the marks in their word
    too (migration f44a9c3e7b52)."""
    words, word = [], []
    for char in text:
        if char.isalnum() or (word and is_mark(char)):
            word.append(char)
        elif word:
            words.append("".join(word))
            word = []
    if word:
        words.append("".join(word))
    return words


def is_latin(letter: str) -> bool:
    """A Latin letter (Basic Latin to IPA Extensions, Latin Extended Additional)."""
    return letter < "\u0250" or "\u1e00" <= letter <= "\u1eff"


def _without_latin_marks(text: str) -> str:
    """`text` without the combining marks left on a Latin letter once
    composed: those with no composed form, as `i` + U+0307 (what Python's
    and JavaScript's lower() make of the Turkish `İ`), split the word at the
    mark (`İstanbul` lower-cased was `i` and `stanbul`; found by review).
    Both engines index Latin letters without accents; other scripts' marks
    (Indic vowel signs) stay."""
    if not any(unicodedata.combining(char) for char in text):
        return text
    kept, base = [], ""
    for char in text:
        if not unicodedata.combining(char):
            base = char
        elif is_latin(base):
            continue
        kept.append(char)
    return "".join(kept)


def _terms(text: str):
    """(negated, quoted, words) for each whitespace-separated term or quoted
    phrase; an unbalanced quote runs to the end of the text."""
    i, n = 0, len(text)
    while i < n:
        if text[i].isspace():
            i += 1
            continue
        negated = text[i] == "-" and i + 1 < n and not text[i + 1].isspace()
        i += negated
        if text[i] == '"':
            end = text.find('"', i + 1)
            end = n if end < 0 else end
            yield negated, True, words_of(text[i + 1 : end])
        else:
            end = i
            while end < n and not text[end].isspace() and text[end] != '"':
                end += 1
            yield negated, False, words_of(text[i:end])
            end -= 1
        i = end + 1


def parse(text: str) -> ParsedQuery:
    """Split `text` into words, "quoted phrases" and -exclusions. A term with
    no letters or digits is dropped; `foo-bar` is the two words foo and bar."""
    words: list[str] = []
    phrases: list[tuple[str, ...]] = []
    excluded: list[tuple[str, ...]] = []
    prefix_allowed = False
    for negated, quoted, term in _terms(text):
        if not term:
            continue
        if negated:
            excluded.append(term)
        elif quoted and len(term) > 1:
            phrases.append(term)
            prefix_allowed = False
        else:
            words.extend(term)
            prefix_allowed = not quoted
    prefix = words.pop() if words and prefix_allowed else None
    # An earlier word equal to the prefix stays: it must match as a whole
    # word, which the prefix alone does not ask (`lamp desk lamp` listed "Desk
    # Lampshade"; found by review).
    words = list(dict.fromkeys(words))
    return ParsedQuery(tuple(words), tuple(phrases), tuple(excluded), prefix)
