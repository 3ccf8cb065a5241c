"""Answers the app can stand behind: the sentence of the sources that answers, the check of the
model's wording against it, and the boilerplate passages left out of the sources.

A 135M chat model often contradicts the passage it was given ("introduced by PEP 32" under a
quote saying PEP 484), so the answer shown first is extractive (:func:`choose_answer`): every
sentence of every retrieved passage (markup and code blocks removed,
:mod:`assistant.documents.text`) is scored by

    W_COSINE * cosine(question, sentence)      MiniLM, through the engine's embed path
  + W_OVERLAP * overlap(question, sentence)    weighted share of the question's terms it holds
  + W_PASSAGE * cosine(question, passage)      the passage's own retrieval score
  + W_KIND * kind(question, sentence)          1 when a "how many / when" question meets a
                                               number, a "who" question a name
  - W_FORM * (1 - form(sentence))              it is a question, a line of code, only an
                                               introduction, or from a rejected proposal
  + W_NAMES * names(sentence)                  1 when it holds a term its passage marks as
                                               code (``total=False``) that the question lacks

The question's terms are its content words as Snowball stems (the ``snowballstemmer`` package;
stop words, question words and light verbs such as "say" or "mean" left out) and its numbers;
each weighs by how rare it is among the candidate sentences (a term none of them holds weighs
the most), and a term found only in the heading or title of the sentence's passage counts
:data:`HEADING_CREDIT`.

The best candidate is the answer with its citation, unless the app should say :data:`NOT_FOUND`
rather than guess: the question names something no source holds (a number such as "4.0", a
capitalised name such as "Porto"), the best sentence holds under :data:`MIN_OVERLAP` of the
question's weighted terms, or its score is under :data:`MIN_ANSWER_SCORE`. The weights, the
overlap and the score threshold are chosen on the development part of
``benchmarks/grounded_answers.py`` (its ``--part development`` search).

The model's wording is shown beside that sentence only when :func:`judge_reply` finds that it
agrees: its cosine with the chosen sentence is at least :data:`AGREE_COSINE` and every number
and name it states is in the sources (or the question). Otherwise the screens keep it behind
"Show the model's attempt". The reply never chooses the answer: the sentence is chosen before
the model writes.

:func:`is_boilerplate` tells copyright notices, reference and link lists and acknowledgements
by their structure (the share of lines that are links, URLs, citations or legal wording, and
the section's heading); :func:`drop_boilerplate` leaves them out unless nothing else matched.

Pure functions apart from ``embed`` (which calls the engine): they run where the caller runs,
a worker thread or the CLI's main thread.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Sequence

import numpy as np

from assistant.documents.retrieval import STOPWORDS
from assistant.documents.text import clean_inline

if TYPE_CHECKING:
    from assistant.documents.grounded import Source

#: What the app says when no sentence of the sources answers well enough.
NOT_FOUND = "I couldn't find this in your documents."
#: Weights of the sentence score (see the module docstring); chosen on the development part.
#: The search (benchmarks/grounded_answers.py --part development) takes the most correct answers
#: with at most 10 % wrong; a weight of 0 is a feature that added nothing there.
W_COSINE = 1.0
W_OVERLAP = 0.25
W_PASSAGE = 0.0
W_KIND = 0.0
W_FORM = 0.3
W_NAMES = 0.3
#: Share of a form point taken off a sentence for each way it is not a statement (see form()).
FORM_PENALTY = 0.5
#: A question term found only in the heading or title of a sentence's passage counts this much.
HEADING_CREDIT = 0.5
#: Weighted share of the question's terms under which the best sentence does not answer;
#: chosen on the development part.
MIN_OVERLAP = 0.4
#: Best sentence score under which the app does not know; chosen on the development part.
MIN_ANSWER_SCORE = 0.6
#: Cosine of the model's reply with the chosen sentence from which the reply agrees with it;
#: chosen on the development part (most replies shown that hold an accepted answer, a wrong
#: one shown counting three times against).
AGREE_COSINE = 0.65
#: Sentences shorter than this many words (headings, "Yes.") are not answers.
MIN_WORDS = 3
#: Sentences longer than this many words are cut to their first this-many (a run-on table row).
MAX_WORDS = 80
#: A passage is boilerplate when at least this share of its lines are links, citations or legal wording.
BOILERPLATE_SHARE = 0.5
#: Section headings that name boilerplate whatever their lines hold.
BOILERPLATE_HEADINGS = frozenset({
    "copyright", "references", "reference", "footnotes", "acknowledgements", "acknowledgments", "acknowledgement",
    "links", "useful links", "further reading", "see also", "bibliography", "legal notice", "license", "licence",
    "credits", "resources", "external links"})

_URL = re.compile(r"(?:https?://|www\.)\S+|[\w.+-]+@[\w-]+\.[\w.]+", re.IGNORECASE)
_CITATION_LINE = re.compile(r"^\s*(?:\.\. \[[^\]]+\]|\.\. _[^:]+:|\[\d+\]|\[[A-Za-z][\w-]*\d{2,4}\])")
_LEGAL = re.compile(r"\bcopyright\b|©|\(c\)\s*\d{4}|all rights reserved|public domain|\blicen[cs]e[ds]?\b|"
                    r"\btrademarks?\b|without (?:the )?prior written permission|\bcc0\b|\bcc[- ]by\b",
                    re.IGNORECASE)
_THANKS = re.compile(r"\b(?:thanks? (?:to|go)|grateful|acknowledge)", re.IGNORECASE)
_BULLET = re.compile(r"^\s*(?:[-*+•]|\d+[.)])\s+")
_NUMBER = re.compile(r"\d+(?:[.,:]\d+)*")
#: A number standing on its own ("4.0", "14,500"; not the 3 of "E3").
_FREE_NUMBER = re.compile(r"(?<![\w.,])\d+(?:[.,:]\d+)*(?![\w])")
_WORD = re.compile(r"[A-Za-z][\w'-]*")
_CITATION_MARK = re.compile(r"\s?\[\d+\]")
_DONT_KNOW = re.compile(r"\b(?:do(?:es)? not|don't|doesn't|cannot|can't|no) (?:know|contain|mention|say|"
                        r"information|find|answer)|not (?:mentioned|found|provided|specified)", re.IGNORECASE)
_COUNT_QUESTION = re.compile(r"^\s*(?:how (?:many|much|long|often|far|old|big|heavy)|when|what time|what date|"
                             r"which (?:day|date|year|month)|what (?:year|day|number|percentage))\b", re.IGNORECASE)
_WHO_QUESTION = re.compile(r"^\s*(?:who|whom|whose)\b", re.IGNORECASE)
_QUESTION_WORDS = frozenset("how what which who whom whose when where why much many long often".split())
#: Verbs any question may use that say nothing of its subject.
_LIGHT_WORDS = frozenset("say says said mean means meant use used uses using give gives given get gets make makes "
                         "need needs tell tells called call also each".split())
#: A line of code: an assignment or annotation, a call, a class or def, a comment after code.
_CODE = re.compile(r"^\s*(?:class|def|import|from)\s+\w|^\s*\w+(?:\.\w+)*\s*(?::\s*[\w\[\]\.\"']+\s*)?=\s*\S|"
                   r"\w\([^)]*\)\s*(?:->|:)\s*(?:\w|$)|\S\s+#\s")
_LITERAL_TERM = re.compile(r"``[^`]{2,60}``|:[\w-]+:`[^`]{2,60}`|(?<![`\w])`[^`<]{2,60}`(?![`_])")
_REJECTED = re.compile(r"\b(?:rejected|postponed)\b", re.IGNORECASE)


# ----- boilerplate -----------------------------------------------------------------------------
def is_boilerplate(passage: str, heading: str = "") -> bool:
    """True when a passage is a copyright notice, a reference or link list or acknowledgements:
    its section's last heading names one, or at least :data:`BOILERPLATE_SHARE` of its
    non-heading lines are links/URLs/citations or legal or thanking wording."""
    last = heading.split(">")[-1].strip().strip("`*").lower()
    if last in BOILERPLATE_HEADINGS:
        return True
    lines = [line.strip() for line in passage.splitlines()]
    lines = [line for line in lines if line and not line.startswith("#") and not set(line) <= set("=-~^*+#`'\":._")]
    if not lines:
        return False
    marked = sum(bool(_URL.search(line) or _CITATION_LINE.match(line) or _LEGAL.search(line) or _THANKS.search(line))
                 for line in lines)
    return marked / len(lines) >= BOILERPLATE_SHARE


def drop_boilerplate(items: Sequence, text: Callable = lambda hit: (hit.text, hit.heading)) -> list:
    """``items`` without the boilerplate ones (``text(item)`` gives its passage and heading),
    in order; all of them when every one is boilerplate (then they are the only match)."""
    kept = [item for item in items if not is_boilerplate(*text(item))]
    return kept if kept else list(items)


# ----- words -------------------------------------------------------------------------------------
def _stemmer():
    import snowballstemmer

    return snowballstemmer.stemmer("english")


_STEM = _stemmer()


def content_stems(text: str) -> set[str]:
    """The stems of ``text``'s content words (no stop, question or light words), lower-cased."""
    words = [w.lower() for w in _WORD.findall(text)]
    words = [w for w in words if w not in STOPWORDS and w not in _QUESTION_WORDS and w not in _LIGHT_WORDS
             and len(w) > 1]
    return set(_STEM.stemWords(words))


def terms(text: str) -> set[str]:
    """What a question asks about: its content stems and its numbers ("4.0", "24", "E3" is a word)."""
    return content_stems(text) | set(_FREE_NUMBER.findall(text))


def names(question: str) -> set[str]:
    """The terms a question names precisely: its numbers and its capitalised words that do not
    open it, lower-cased ("What time does the museum in Porto open?": porto)."""
    found = set(_FREE_NUMBER.findall(question))
    words = _WORD.findall(question)
    found |= {word.lower() for word in words[1:] if word[0].isupper() and word.lower() not in STOPWORDS}
    return found


def kind_match(question: str, sentence: str) -> float:
    """1 when the sentence has what the question's kind asks for: a number for "how many",
    "when" and the like, a capitalised name (not its first word) for "who"; else 0."""
    if _COUNT_QUESTION.search(question):
        return 1.0 if re.search(r"\d", sentence) else 0.0
    if _WHO_QUESTION.search(question):
        return 1.0 if any(w[0].isupper() for w in _WORD.findall(sentence)[1:]) else 0.0
    return 0.0


def form(sentence: str, heading: str = "") -> float:
    """How much the sentence reads as something a document states, 0 to 1: a question, a line
    of code, a sentence that only introduces what follows (ends with ":") or one from a
    rejected or postponed proposal's section lose :data:`FORM_PENALTY` each."""
    penalty = 0.0
    stripped = sentence.rstrip(" …")
    if stripped.endswith("?"):
        penalty += FORM_PENALTY
    if stripped.endswith(":") and "\n" not in sentence:
        penalty += FORM_PENALTY
    if _CODE.search(sentence):
        penalty += FORM_PENALTY
    if _REJECTED.search(heading):
        penalty += FORM_PENALTY
    return max(0.0, 1.0 - penalty)


# ----- the extractive answer -------------------------------------------------------------------
@dataclass
class Candidate:
    """One sentence of the sources, scored against the question."""

    text: str
    source: "Source"
    cosine: float  # MiniLM cosine with the question
    overlap: float  # weighted share of the question's terms it holds (its heading's at half)
    passage: float  # the passage's cosine with the question (0 when unknown)
    kind: float
    form: float = 1.0  # see form()
    missing: bool = False  # the question names a term that no source holds
    names: float = 0.0  # 1 when it holds a term its passage marks as code that the question lacks

    def score(self, weights: Sequence[float] | None = None) -> float:
        """The weighted sum of the module docstring; ``weights`` (W_COSINE, W_OVERLAP,
        W_PASSAGE, W_KIND, W_FORM, W_NAMES), the module's when None."""
        w = tuple(weights) if weights else (W_COSINE, W_OVERLAP, W_PASSAGE, W_KIND, W_FORM, W_NAMES)
        return (w[0] * self.cosine + w[1] * self.overlap + w[2] * self.passage + w[3] * self.kind
                - w[4] * (1.0 - self.form) + w[5] * self.names)


@dataclass
class Answer:
    """The sentence shown as the answer and where it comes from."""

    text: str
    number: int  # the source's [n]
    chunk_id: int
    score: float


def passage_sentences(passage: str) -> list[str]:
    """The sentences of a passage as people read them (markup, code and headings left out),
    each of at least :data:`MIN_WORDS` words, cut at :data:`MAX_WORDS`."""
    from assistant.documents.text import paragraphs, sentences

    out: list[str] = []
    for paragraph in paragraphs(passage):
        for sentence in sentences(paragraph.text):
            words = sentence.split()
            if len(words) >= MIN_WORDS:
                out.append(sentence if len(words) <= MAX_WORDS else " ".join(words[:MAX_WORDS]) + " …")
    return out


def _marked(passage: str) -> set[str]:
    """What a passage marks as code or a role's target (``TypedDict``, ``total=False``,
    :pep:`484`), cleaned and lower-cased, two characters or more."""
    found = {_normal(clean_inline(match.group(0))) for match in _LITERAL_TERM.finditer(passage)}
    return {term for term in found if len(term) >= 2}


def _weights(asked: set[str], pools: list[set[str]]) -> dict[str, float]:
    """Each asked term's weight: rarer among the candidate sentences weighs more (an inverse
    document frequency over them), a term none holds the most."""
    n = len(pools)
    return {term: float(np.log(1.0 + n / (1.0 + sum(term in pool for pool in pools)))) for term in asked}


def candidates(question: str, sources: Sequence["Source"], embed: Callable[[list[str]], np.ndarray]) -> list[Candidate]:
    """Every sentence of ``sources`` (each once, from the best-ranked source that has it) with
    its features; one embedding batch for the question and the sentences."""
    owners: list = []
    texts: list[str] = []
    seen: set[str] = set()
    for source in sources:
        for sentence in passage_sentences(source.passage):
            if sentence not in seen:
                seen.add(sentence)
                owners.append(source)
                texts.append(sentence)
    if not texts:
        return []
    asked = terms(question)
    held = [terms(text) for text in texts]
    headings = {id(source): terms(f"{source.title} {source.heading}") for source in sources}
    weights = _weights(asked, held)
    total = sum(weights.values())
    everywhere = " ".join(_normal(f"{s.title} {s.heading} {s.passage}") for s in sources)
    everywhere_terms = set().union(*held, *headings.values(), terms(everywhere))
    missing = any(term not in everywhere_terms and term not in everywhere for term in names(question))

    def covered(pool: set[str], heading: set[str]) -> float:
        if not total:
            return 0.0
        return sum(w * (1.0 if t in pool else HEADING_CREDIT if t in heading else 0.0)
                   for t, w in weights.items()) / total

    question_text = _normal(question)
    marked = {id(source): [term for term in _marked(source.passage) if term not in question_text]
              for source in sources}

    def names_term(text: str, owner) -> float:
        plain = f" {_normal(text)} "
        return 1.0 if any(re.search(rf"(?<!\w){re.escape(term)}(?!\w)", plain) for term in marked[id(owner)]) else 0.0

    vectors = np.asarray(embed([question] + texts), dtype=np.float32)
    cosines = vectors[1:] @ vectors[0]
    return [Candidate(text, owner, float(cos), covered(pool, headings[id(owner)]), float(owner.relevance or 0.0),
                      kind_match(question, text), form(text, owner.heading), missing, names_term(text, owner))
            for text, owner, cos, pool in zip(texts, owners, cosines, held)]


def best_answer(found: Sequence[Candidate], weights=None, threshold: float | None = None,
                min_overlap: float | None = None) -> Answer | None:
    """The best-scoring candidate as an :class:`Answer`, or None (the app does not know): when
    the question names a term no source holds, when the best one holds under
    :data:`MIN_OVERLAP` of the question's terms, or when its score is under the threshold."""
    if not found:
        return None
    best = max(found, key=lambda c: c.score(weights))
    score = best.score(weights)
    if best.missing or best.overlap < (MIN_OVERLAP if min_overlap is None else min_overlap):
        return None
    if score < (MIN_ANSWER_SCORE if threshold is None else threshold):
        return None
    return Answer(best.text, best.source.number, best.source.chunk_id, round(score, 4))


def choose_answer(question: str, sources: Sequence["Source"], embed: Callable[[list[str]], np.ndarray]) -> Answer | None:
    """The sentence of ``sources`` that answers ``question``, or None: the app does not know."""
    return best_answer(candidates(question, sources, embed))


# ----- the model's wording -----------------------------------------------------------------------
@dataclass
class Verdict:
    """Whether the model's reply agrees with the extractive answer, and why not."""

    agrees: bool
    cosine: float | None  # of the reply with the answer sentence; None when not compared
    unsupported: tuple[str, ...] = ()  # numbers and names of the reply found nowhere in the sources
    reason: str = ""


def _normal(text: str) -> str:
    return " ".join(re.sub(r"[`*_\\]", " ", text).lower().split())


def unsupported_facts(reply: str, known: str) -> list[str]:
    """Numbers and names (capitalised words not opening a sentence) of ``reply`` that ``known``
    (the sources and the question) does not hold."""
    haystack = _normal(known)
    digits = set(re.findall(r"\d+", haystack))
    missing: list[str] = []
    for number in _NUMBER.findall(reply):
        if number not in haystack and not all(part in digits for part in re.findall(r"\d+", number)):
            missing.append(number)
    for sentence in re.split(r"(?<=[.!?:;])\s+|\n", reply):
        words = _WORD.findall(sentence)
        for word in words[1:]:
            if word[0].isupper() and word.lower() not in haystack and word not in missing:
                missing.append(word)
    return missing


def judge_reply(reply: str, answer: str | None, known: str, embed: Callable[[list[str]], np.ndarray],
                threshold: float | None = None) -> Verdict:
    """Does the model's ``reply`` agree with the extractive ``answer`` (None: the app found none)?
    ``known`` is the text of the sources and the question. One embedding call."""
    text = _CITATION_MARK.sub("", reply).strip()
    if answer is None:
        return Verdict(False, None, (), "no answer in the sources to agree with")
    if not text or _DONT_KNOW.search(text):
        return Verdict(False, None, (), "the model did not answer")
    missing = tuple(unsupported_facts(text, known))
    vectors = np.asarray(embed([text, answer]), dtype=np.float32)
    cosine = float(vectors[0] @ vectors[1])
    limit = AGREE_COSINE if threshold is None else threshold
    if missing:
        return Verdict(False, round(cosine, 4), missing, "it names what the sources do not: " + ", ".join(missing))
    if cosine < limit:
        return Verdict(False, round(cosine, 4), (), "it says something else than the source")
    return Verdict(True, round(cosine, 4))
