"""Is a typed answer right? Exact, near (spelling, articles, plural) or by meaning. Any thread
that may call the engine (the semantic check embeds both answers with MiniLM).

1. Normalised equality: case, accents, punctuation, hyphens, articles (English, French, German,
   Spanish) and a plural ending folded away: "a variable annotation" = "Variable annotations".
2. Near: the normalised strings differ by a slip (difflib ratio >= :data:`NEAR_RATIO`).
3. Short forms: an abbreviation or acronym made of the answer's words in order ("stdlib" for
   "the standard library", "UN" for "United Nations"), or the answer without the word that
   only names its category ("Final" for "the Final qualifier", "stubs" for "stub files").
4. By meaning: the cosine of the two MiniLM embeddings reaches :data:`SEMANTIC_THRESHOLD`,
   a threshold chosen on the development half of a labelled set of answer pairs
   (benchmarks/data/study_answer_pairs.json, benchmarks/study_cards.py) and checked on the other.
"""

from __future__ import annotations

import difflib
import re
import unicodedata
from dataclasses import dataclass
from typing import Callable

import numpy as np

#: Ratio of difflib's SequenceMatcher from which two normalised answers are one with a slip.
NEAR_RATIO = 0.85
#: Cosine (MiniLM) from which a typed answer means the expected one: chosen on the development
#: half of benchmarks/data/study_answer_pairs.json by benchmarks/study_cards.py.
SEMANTIC_THRESHOLD = 0.78

_ARTICLES = {"a", "an", "the", "le", "la", "les", "l", "un", "une", "des", "du", "de", "der", "die", "das", "den",
             "dem", "des", "ein", "eine", "einen", "einem", "einer", "el", "los", "las", "unos", "unas"}


#: Words that name what kind of thing a term is, not which one: dropping one keeps the answer.
CATEGORY_WORDS = {"qualifier", "module", "modules", "class", "classes", "function", "functions", "type", "types",
                  "keyword", "keywords", "decorator", "decorators", "operator", "operators", "statement",
                  "statements", "file", "files", "method", "methods", "attribute", "attributes", "package",
                  "packages", "object", "objects", "value", "values", "syntax", "library", "libraries"}


@dataclass(frozen=True)
class AnswerCheck:
    right: bool
    how: str  # "exact", "near", "short form", "meaning" or "wrong"
    score: float  # 1.0 for exact; the ratio or the cosine otherwise


def _fold(text: str) -> str:
    text = unicodedata.normalize("NFKD", text.casefold())
    text = "".join(c for c in text if not unicodedata.combining(c))
    return " ".join(re.sub(r"[\W_]+", " ", text).split())


def _singular(word: str) -> str:
    if len(word) > 4 and word.endswith("ies"):
        return word[:-3] + "y"
    if len(word) > 3 and word.endswith("es") and word[-3] in "sxz":
        return word[:-2]
    if len(word) > 3 and word.endswith("s") and not word.endswith("ss"):
        return word[:-1]
    return word


def normalise(answer: str) -> str:
    """The answer as compared: folded, articles dropped, each word singular."""
    words = [w for w in _fold(answer).split() if w not in _ARTICLES]
    return " ".join(_singular(w) for w in words)


def _abbreviates(short: str, words: list[str]) -> bool:
    """Whether ``short`` (one token) is made of a piece of each of ``words`` in order, each piece
    starting with its word's first letter and taking the rest of its letters in order: "stdlib"
    of "standard library", "un" of "united nations"."""
    def fits(rest: str, index: int) -> bool:
        if index == len(words):
            return not rest
        word = words[index]
        if not rest or rest[0] != word[0]:
            return False
        # Try every length of this word's piece: its letters must appear in the word in order.
        position = 1
        for end in range(1, len(rest) + 1):
            if end > 1:
                found = word.find(rest[end - 1], position)
                if found < 0:
                    break
                position = found + 1
            if fits(rest[end:], index + 1):
                return True
        return False

    return len(words) >= 2 and 2 <= len(short) and fits(short, 0)


def _short_form(expected: str, typed: str) -> bool:
    """A short form of ``expected`` (both normalised): an abbreviation or acronym of its words,
    or its words without one that only names a category (:data:`CATEGORY_WORDS`)."""
    words, typed_words = expected.split(), typed.split()
    if len(typed_words) == 1 and _abbreviates(typed_words[0], words):
        return True
    kept = [w for w in words if w not in CATEGORY_WORDS and _singular(w) not in CATEGORY_WORDS]
    return bool(kept) and len(kept) < len(words) and kept == typed_words


def check_answer(expected: str, typed: str, embed: Callable[[list[str]], np.ndarray] | None = None,
                 threshold: float = SEMANTIC_THRESHOLD) -> AnswerCheck:
    """Whether ``typed`` answers a card whose answer is ``expected`` (see the module docstring).
    Without ``embed`` only the exact and near checks run."""
    # An answer made only of words that are articles elsewhere ("UN" is French "un") is kept as written.
    a, b = normalise(expected) or _fold(expected), normalise(typed) or _fold(typed)
    if not b:
        return AnswerCheck(False, "wrong", 0.0)
    if a == b or a.replace(" ", "") == b.replace(" ", ""):
        return AnswerCheck(True, "exact", 1.0)
    ratio = difflib.SequenceMatcher(None, a, b).ratio()
    if ratio >= NEAR_RATIO:
        return AnswerCheck(True, "near", round(ratio, 4))
    if _short_form(a, b):
        return AnswerCheck(True, "short form", 1.0)
    if embed is None:
        return AnswerCheck(False, "wrong", round(ratio, 4))
    vectors = np.asarray(embed([expected.strip(), typed.strip()]), dtype=np.float32)
    cosine = float(vectors[0] @ vectors[1])
    return AnswerCheck(cosine >= threshold, "meaning" if cosine >= threshold else "wrong", round(cosine, 4))
