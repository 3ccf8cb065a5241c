"""Is a typed answer right? Exact, near (spelling, articles, plural) or by meaning. Any thread
that may call the engine (the semantic check embeds both answers with MiniLM).

1. Normalised equality: case, accents, punctuation, hyphens, articles (English, French, German,
   Spanish) and a plural ending folded away: "a variable annotation" = "Variable annotations".
2. Near: the normalised strings differ by a slip (difflib ratio >= :data:`NEAR_RATIO`).
3. By meaning: the cosine of the two MiniLM embeddings reaches :data:`SEMANTIC_THRESHOLD`,
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


@dataclass(frozen=True)
class AnswerCheck:
    right: bool
    how: str  # "exact", "near", "meaning" or "wrong"
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


def check_answer(expected: str, typed: str, embed: Callable[[list[str]], np.ndarray] | None = None,
                 threshold: float = SEMANTIC_THRESHOLD) -> AnswerCheck:
    """Whether ``typed`` answers a card whose answer is ``expected`` (see the module docstring).
    Without ``embed`` only the exact and near checks run."""
    a, b = normalise(expected), normalise(typed)
    if not b:
        return AnswerCheck(False, "wrong", 0.0)
    if a == b or a.replace(" ", "") == b.replace(" ", ""):
        return AnswerCheck(True, "exact", 1.0)
    ratio = difflib.SequenceMatcher(None, a, b).ratio()
    if ratio >= NEAR_RATIO:
        return AnswerCheck(True, "near", round(ratio, 4))
    if embed is None:
        return AnswerCheck(False, "wrong", round(ratio, 4))
    vectors = np.asarray(embed([expected.strip(), typed.strip()]), dtype=np.float32)
    cosine = float(vectors[0] @ vectors[1])
    return AnswerCheck(cosine >= threshold, "meaning" if cosine >= threshold else "wrong", round(cosine, 4))
