"""Cards from the user's documents: which sentences are worth learning, and the cards made
from them. Runs on a worker thread or the CLI's main thread (it embeds through the engine).

Why one module of ~550 lines: the rules that pick sentences, terms and blanks and the check
that drops cards read the same word lists and patterns; they are changed together when the
method is developed (benchmarks/study_cards.py --develop).

What a 135M model cannot be trusted with is left to structure and embeddings; every card is
extractive, so its answer is a span of the sentence it cites:

1. Sentences: the documents' paragraphs with markup removed (:mod:`assistant.documents.text`);
   a sentence is a candidate when it reads alone (6-45 words, ends like a statement, no code,
   does not start with a pronoun or a connective that needs the sentence before).
2. Worth learning: a definition ("X is a ...", "X means ...", in English, French, German and
   Spanish), a rule ("must", "cannot", "should"...), or a list item; ranked by how central the
   sentence is to its document (cosine of its MiniLM embedding with the document's mean) plus
   those bonuses, near-duplicates left out.
3. The blank or the answer: a key term of the document found in the sentence (terms the
   source marks as code, capitalised or CamelCase names, word pairs the document repeats),
   the highest-scoring one; for a definition, the term it defines.
4. Kinds: a cloze card (the term blanked), a question-answer card for definitions ("What is
   X?" and the definition itself), and a multiple-choice item whose wrong options are the
   document's other key terms nearest to the answer in meaning.
5. The check: a card whose answer is not in its source sentence, whose blank is not a term
   (a stop word, a number, a whole clause), or whose question cannot be answered alone is
   dropped with its reason, never shown (:class:`Proposal` keeps both for measuring).
"""

from __future__ import annotations

import hashlib
import math
import random
import re
import unicodedata
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Callable, Iterable

import numpy as np

from assistant.documents.text import marked_terms, paragraphs, sentences
from assistant.tasks.langdetect import STOPWORDS, detect

KINDS = ("cloze", "qa", "choice")
BLANK = "_____"
#: Sentence length, in words, of a card that reads alone and fits on a card.
MIN_WORDS, MAX_WORDS = 6, 45
#: A card's question keeps at least this many words around the blank: less is a guessing game.
MIN_CONTEXT_WORDS = 5
#: Two sentences this similar (cosine) say the same thing: only the better one is proposed.
DUPLICATE_COSINE = 0.92
#: Longest term that can be a blank or an answer, in words.
MAX_TERM_WORDS = 5
#: Default number of sentences made into cards for each document.
PER_DOCUMENT = 10
#: The same answer is asked at most this often in one document: ten cards on one term teach one thing.
SAME_ANSWER = 2

_QUESTION = {"en": "What is {term}?", "fr": "Qu'est-ce que {term} ?", "de": "Was ist {term}?",
             "es": "¿Qué es {term}?"}
_DEFINITION = {
    "en": re.compile(r"^(?:(?:A|An|The)\s+)?(?P<term>[\w][\w.\- ]{1,60}?)\s+(?:(?:is|are)\s+(?=(?:a|an|the|one)\s)|"
                     r"means\s|refers to\s|denotes\s|is called\s|is defined as\s)(?P<definition>.+)$"),
    "fr": re.compile(r"^(?:(?:Le|La|Les|L'|Un|Une)\s*)?(?P<term>[\w][\w.\-' ]{1,60}?)\s+(?:est|sont|désigne|signifie)\s+"
                     r"(?P<definition>(?:un|une|le|la|les|l'|des)\b.+)$"),
    "de": re.compile(r"^(?:(?:Der|Die|Das|Ein|Eine)\s+)?(?P<term>[\w][\w.\- ]{1,60}?)\s+(?:ist|sind|bezeichnet|bedeutet)\s+"
                     r"(?P<definition>(?:ein|eine|einen|der|die|das|den)\b.+)$"),
    "es": re.compile(r"^(?:(?:El|La|Los|Las|Un|Una)\s+)?(?P<term>[\w][\w.\- ]{1,60}?)\s+(?:es|son|significa|se llama)\s+"
                     r"(?P<definition>(?:un|una|el|la|los|las)\b.+)$"),
}
_RULE = {
    "en": re.compile(r"\b(?:must|must not|should|should not|cannot|can not|may not|is not allowed|are not allowed|"
                     r"is required|are required|requires?|allows?|introduces?|is used to|are used to)\b", re.I),
    "fr": re.compile(r"\b(?:doit|doivent|ne peut|ne peuvent|permet|permettent|est utilisé|sont utilisés)\b", re.I),
    "de": re.compile(r"\b(?:muss|müssen|darf nicht|dürfen nicht|kann nicht|erlaubt|wird verwendet)\b", re.I),
    "es": re.compile(r"\b(?:debe|deben|no puede|no pueden|permite|permiten|se usa|se utiliza)\b", re.I),
}
#: Words that open a clause, not a term: "If a class is a subtype..." defines nothing.
_CLAUSE_OPENERS = {"if", "when", "while", "as", "because", "since", "although", "unless", "whether", "once",
                   "si", "quand", "lorsque", "wenn", "als", "weil", "ob", "cuando", "porque", "aunque"}
#: Words that make a sentence lean on the one before it ("This is why...").
_LEANS_ON_CONTEXT = {
    "en": {"it", "it's", "its", "this", "that", "these", "those", "they", "he", "she", "such", "also", "and", "but", "so", "then",
           "otherwise", "here", "there", "thus", "hence", "therefore", "however", "instead", "similarly", "likewise"},
    "fr": {"il", "elle", "ils", "elles", "ce", "cela", "ceci", "ces", "cette", "aussi", "mais", "donc", "ainsi"},
    "de": {"es", "er", "sie", "dies", "diese", "dieser", "dieses", "das", "auch", "aber", "also", "daher"},
    "es": {"esto", "eso", "este", "esta", "estos", "estas", "ello", "también", "pero", "así", "entonces"},
}
#: Phrases that point at the text around a sentence or at an example in it.
_POINTS_BACK = {
    "en": re.compile(r"\b(?:this|these|that) (?:program|example|response|case|code|snippet|section|proposal|"
                     r"way|mind|approach|issue|problem)\b|\b(?:above|below|aforementioned|following|typical example|"
                     r"for example|for instance|in this|these (?:two|three|four) \w+|(?:where|when|if) this|this occurs)\b|^[A-Z][\w ]{0,30}:\s", re.I),
    "fr": re.compile(r"\b(?:ci-dessus|ci-dessous|cet exemple|par exemple)\b", re.I),
    "de": re.compile(r"\b(?:oben|unten|dieses Beispiel|zum Beispiel)\b", re.I),
    "es": re.compile(r"\b(?:arriba|abajo|este ejemplo|por ejemplo)\b", re.I),
}
#: Pointers back anywhere in an English sentence: "these", "those", "this" (but "this PEP", the
#: document itself, is the deck's subject), "previous", a link ("is here"), and example names
#: (a one-letter variable such as "the inner x" or "(y)").
_POINTS_BACK_ANYWHERE = {
    "en": re.compile(r"\b(?:these|those|previous|preceding|earlier|latter|former)\b|\bthis (?!PEP\b|document\b)|"
                     r"\bhere\b|\bthere\b(?!\s+(?:is|are|was|were|must|should|may|can|will|would|might|be|has|have)\b)|"
                     r"\bas usual\b|\b(?:we|as) (?:mentioned|noted|discussed|saw|described|showed)\b|^Thanks\b|\(\w\)|(?<![\w.])(?!a\b|I\b|A\b)[A-Za-z](?![\w.'’])", re.I),
}
#: A pronoun in the opening words ("Since it is...", "To do this, ...", "All other ...") leans on
#: the sentence before, wherever the first word is.
_OPENING_LEANS = {
    "en": re.compile(r"^(?:[\w’']+,?\s+){0,3}(?:it|they|them|its|their|this|such|other)\b", re.I),
}
#: Adjectives that make a term out of any noun ("specific type", "valid type", "outer x"): a
#: blank or an option that opens with one is a phrase of the sentence, not a term to learn.
_GENERIC_MODIFIERS = {
    "en": {"specific", "single", "valid", "invalid", "new", "proposed", "other", "given", "certain", "normal",
           "different", "same", "outer", "inner", "current", "following", "simple", "general", "common",
           "particular", "actual", "original", "existing", "various", "several", "related", "main", "whole",
           "additional", "possible", "separate", "similar", "unactionable", "explicit", "implicit", "name", "term",
           "word", "keyword"},
}
_CODE = re.compile(r"[=<>{}\[\]#|\\@$^~]|->|\w\(|\(\)|::|\.\w+\(|\b\w+_\w+\b")
_WORD = re.compile(r"[^\W_][\w'’.\-]*[^\W_]|[^\W_]", re.UNICODE)
_CAMEL = re.compile(r"\b[A-Z][a-z]+[A-Z]\w*\b|\b[A-Z]{2,}[a-z]\w*\b")


@dataclass
class SourceSentence:
    """A sentence of a document, where it comes from."""

    text: str
    path: str
    location: str  # the section's heading path, or a page
    chunk_id: int | None = None
    item: bool = False  # a list item


@dataclass
class SourceDocument:
    path: str
    title: str
    sections: list  # [(raw text, location, chunk_id or None)]


@dataclass
class Card:
    kind: str  # one of KINDS
    front: str  # the question (with BLANK for a cloze)
    back: str  # the answer, a span of the source sentence
    source: dict  # {"path", "file", "location", "chunk_id", "sentence"}
    language: str
    choices: list = field(default_factory=list)  # options of a multiple-choice item, the answer among them
    reason: str = ""  # why the sentence is worth learning: definition, rule, list item, central
    score: float = 0.0

    def key(self) -> str:
        """A stable id of what the card asks (to skip proposing it twice)."""
        return hashlib.sha1(f"{self.kind}\0{self.front}\0{self.back}".encode()).hexdigest()[:16]


@dataclass
class Proposal:
    kept: list  # Card objects that passed the check, best first
    dropped: list  # (Card, reason) pairs the check removed
    documents: int = 0
    sentences: int = 0  # candidate sentences read


def normalise(text: str) -> str:
    """Case, accents, punctuation and spacing folded away: for comparing spans, not for showing."""
    text = unicodedata.normalize("NFKD", text.casefold())
    text = "".join(c for c in text if not unicodedata.combining(c))
    return " ".join(re.sub(r"[^\w]+", " ", text).split())


def _words(text: str) -> list[str]:
    return _WORD.findall(text)


def language_of(text: str) -> str:
    found = detect(text[:4000])
    return found.language if found.supported and found.language in _QUESTION else "en"


#: Function words the language profiles leave out but a term never starts or ends with.
_MORE_STOP = {"en": {"such", "via", "also", "must", "should", "can", "may", "will", "would", "could", "like", "using",
                     "used", "each", "every", "other", "some", "many", "more", "most", "same", "one", "two", "new",
                     "way", "follow", "follows", "see", "note", "e.g", "i.e", "etc", "whose", "which", "where",
                     "latter", "former", "example", "case", "cannot", "might", "shall", "out", "up", "def", "import",
                     "else", "self", "usability", "exactly"}}


def _stop(language: str) -> frozenset:
    return STOPWORDS.get(language, STOPWORDS["en"]) | frozenset(_MORE_STOP.get(language, ()))


# ----- reading the documents --------------------------------------------------------------------
#: Sections that hold nothing to learn: thanks, references, licences, footnotes.
_BOILERPLATE_SECTION = re.compile(r"\b(?:acknowledge?ments?|thanks|references?|copyright|footnotes?|licen[cs]e|"
                                  r"remerciements|références|danksagung|literatur|agradecimientos|referencias)\b", re.I)


def document_sentences(document: SourceDocument) -> list[SourceSentence]:
    """Every readable sentence of a document once (overlapping chunks repeat text), boilerplate
    sections left out."""
    seen: set[str] = set()
    out: list[SourceSentence] = []
    for raw, location, chunk_id in document.sections:
        if _BOILERPLATE_SECTION.search(location.rsplit(">", 1)[-1].rsplit("/", 1)[-1]):
            continue
        for paragraph in paragraphs(raw):
            for sentence in sentences(paragraph.text):
                key = normalise(sentence)
                if key and key not in seen:
                    seen.add(key)
                    out.append(SourceSentence(sentence, document.path, location, chunk_id, paragraph.item))
    return out


def reads_alone(sentence: str, language: str) -> str | None:
    """None when ``sentence`` can stand on a card by itself, else why not."""
    words = _words(sentence)
    if not MIN_WORDS <= len(words) <= MAX_WORDS:
        return "too short or too long to stand alone"
    if sentence[-1:] not in ".!" or sentence[:1].islower():
        return "not a whole statement"
    if _CODE.search(sentence):
        return "code or markup left in the sentence"
    letters = sum(c.isalpha() for c in sentence)
    if letters < 0.75 * sum(not c.isspace() for c in sentence):
        return "more symbols than words"
    if words[0].replace("’", "'").casefold() in _LEANS_ON_CONTEXT.get(language, set()) or \
            " ".join(w.casefold() for w in words[1:2]) in ("latter", "former", "above", "following"):
        return "leans on the sentence before it"
    if _POINTS_BACK.get(language, _POINTS_BACK["en"]).search(sentence):
        return "points at text around it"
    anywhere = _POINTS_BACK_ANYWHERE.get(language)
    if anywhere is not None and anywhere.search(sentence):
        return "points at text around it"
    opening = _OPENING_LEANS.get(language)
    if opening is not None and opening.search(sentence):
        return "leans on the sentence before it"
    return None


#: A term's weight from which it is sure enough to be offered as a wrong option: marked by the
#: source, or a name or word pair the document uses at least three times.
STRONG_TERM = 1.5


def key_terms(document_text: str, sentence_texts: list[str], language: str) -> tuple[dict, dict]:
    """The document's terms with a weight (marked as code or a role's target, capitalised or
    CamelCase names used more than once, and word pairs the document repeats), and which of
    them are strong (:data:`STRONG_TERM`)."""
    stop = _stop(language)
    counts: Counter = Counter()
    base: dict[str, float] = {}
    before: dict[str, set] = defaultdict(set)
    after: dict[str, set] = defaultdict(set)
    lowered = [s.casefold() for s in sentence_texts]
    weights: dict[str, float] = {}

    def occurrences(term: str) -> int:
        pattern = re.compile(r"(?<![\w])" + re.escape(term.casefold()) + r"(?![\w])")
        return sum(1 for s in lowered if pattern.search(s))

    for term in marked_terms(document_text):
        words = term.split()
        if re.fullmatch(r"[\w.\- ]+", term) and not term.isdigit() and not any(w.casefold() in stop for w in words):
            weights[term] = 1.5
    for sentence in sentence_texts:
        words = _words(sentence)
        for i, word in enumerate(words):
            if i > 0 and (_CAMEL.fullmatch(word) or (word[:1].isupper() and word.casefold() not in stop and len(word) > 3)):
                counts[word] += 1
        plain = [w.casefold() for w in words]
        for i, (a, b) in enumerate(zip(plain, plain[1:])):
            if a not in stop and b not in stop and len(a) > 2 and len(b) > 2 and not a.isdigit() and not b.isdigit():
                counts[f"{a} {b}"] += 1
                before[f"{a} {b}"].add(plain[i - 1] if i > 0 else "")
                after[f"{a} {b}"].add(plain[i + 2] if i + 2 < len(plain) else "")
    for term, count in counts.items():
        if count >= 2 and term not in weights:
            # A pair always preceded by the same word is a fragment ("hand side" of "left hand side").
            fragment = " " in term and any(len(side[term]) == 1 and next(iter(side[term])) not in ("", *stop)
                                           for side in (before, after))
            if not fragment:
                weights[term] = 0.5 + math.log(count)
    # Keep the terms that really occur in the sentences, weighted by how often.
    out = {}
    for term, weight in weights.items():
        n = occurrences(term)
        if n:
            out[term] = weight * (1.0 + math.log(n))
            base[term] = weight if weight >= STRONG_TERM or n >= 3 else weight
            if n >= 3:
                base[term] = max(weight, STRONG_TERM)
    return out, base


#: Cosine band of a wrong option with the answer: below, it is off-topic; above, it may mean the same.
CHOICE_COSINE = (0.35, 0.80)


def _stems(term: str) -> set[str]:
    """A term's words, folded and singular: "Literals" and "Literal types" share "literal"."""
    from assistant.study.answers import normalise as fold

    return set(fold(term).split())


def _same_kind(option: str, answer: str) -> bool:
    """A wrong option of the same kind: a PEP for a PEP, a name for a name, a phrase for a phrase."""
    pep = re.compile(r"^PEP \d+$")
    if bool(pep.match(option)) != bool(pep.match(answer)):
        return False
    if _is_code_like(option) and _is_code_like(answer):
        return True

    def kind(term: str) -> tuple:
        return (term[:1].isupper() and len(term.split()) == 1, len(term.split()) > 1)

    return kind(option) == kind(answer)


def _is_code_like(term: str) -> bool:
    return bool(re.search(r"[_.()]", term)) or bool(_CAMEL.fullmatch(term))


def _find(term: str, sentence: str) -> re.Match | None:
    """``term`` in ``sentence`` as a whole word or words, a plural ending allowed."""
    return re.search(r"(?<![\w])" + re.escape(term) + r"(?:e?s)?(?![\w])", sentence, re.I)


def _meaningful(term: str, language: str) -> str | None:
    """None when ``term`` can be a blank or an answer, else why not."""
    words = _words(term)
    if not words or len(term) < 3:
        return "the blank is too short to be a term"
    if len(words) > MAX_TERM_WORDS:
        return "the blank is a clause, not a term"
    if all(w.casefold() in _stop(language) for w in words):
        return "the blank is a stop word"
    if all(w.isdigit() for w in words):
        return "the blank is a number"
    if len(words) > 1 and words[0].casefold() in _GENERIC_MODIFIERS.get(language, ()):
        return "the blank is a phrase of the sentence, not a term"
    if len(words) == 1 and term.islower() and not _is_code_like(term):
        # "type", "typing", "class": a common word of the subject, guessed rather than learnt.
        return "the blank is a common word, not a term"
    return None


def _part_of_longer_term(front: str, language: str) -> bool:
    """Whether the blank is glued to the words around it ("typing._____", "_____ module"): the
    term the sentence uses is longer than the blank, so the card asks for a fragment."""
    at = front.find(BLANK)
    if at < 0:
        return False
    before, after = front[:at], front[at + len(BLANK):]
    if re.search(r"[\w.]$", before) or re.match(r"[\w]|\.\w", after):
        return True
    following = re.match(r"\s+([^\W\d_][\w’'-]*)", after)
    if following is None:
        return False
    word = following.group(1)
    # A lowercase noun right after the blank makes it a modifier ("the _____ module"); a verb
    # ("_____ proposes", "_____ have") does not. Without a tagger, a word ending in "s" or a
    # function word is taken for a verb, so "_____ tuples can" passes: a fragment kept, not a
    # good card lost.
    return word.islower() and word.casefold() not in _stop(language) and not word.endswith("s")


def _whole_term(answer: str, text: str, terms: dict[str, float]) -> str:
    """``answer`` grown over the next words of ``text`` while its last word and the next one are a
    pair the document repeats: "Type variable" in "Type variable tuples can..." is part of the
    term "Type variable tuples", and a card blanking the first two words asks for a fragment."""
    folded = {t.casefold() for t in terms}
    match = _find(answer, text)
    while match is not None and len(answer.split()) < MAX_TERM_WORDS:
        following = re.match(r"\s+([^\W\d_][\w’'-]*)", text[match.end():])
        if following is None or f"{answer.split()[-1]} {following.group(1)}".casefold() not in folded:
            break
        answer = text[match.start(): match.end() + following.end()]
        match = _find(answer, text)
    return answer


# ----- making cards ----------------------------------------------------------------------------
def _cards_for(sentence: SourceSentence, language: str, terms: dict[str, float], reason: str, score: float,
               vectors: dict[str, np.ndarray], strong: dict[str, float]) -> list[Card]:
    text = sentence.text
    source = {"path": sentence.path, "file": sentence.path.rsplit("/", 1)[-1], "location": sentence.location,
              "chunk_id": sentence.chunk_id, "sentence": text}
    cards: list[Card] = []
    definition = _DEFINITION[language].match(text)
    present = sorted((t for t in terms if _find(t, text)), key=lambda t: (-terms[t], -len(t)))
    answer = None
    if definition is not None and _words(definition.group("term"))[0].casefold() in _CLAUSE_OPENERS:
        definition = None
    if definition is not None:
        # A definition defines a term: "A typical example is..." defines nothing.
        subject = definition.group("term").strip()
        known = any(t.casefold() == subject.casefold() for t in terms)
        named = len(subject.split()) == 1 and (subject[:1].isupper() or _CAMEL.fullmatch(subject) is not None)
        # A short subject is the term the sentence defines, even when the document names it once.
        if not (known or named or len(subject.split()) <= 2) or len(subject.split()) > 3:
            definition = None
    if definition is not None:
        subject = definition.group("term").strip()
        answer = subject if _meaningful(subject, language) is None else None
    if answer is None and present:
        answer = present[0]
        # "Type" in "Type checkers": blank the whole term the sentence uses.
        span = _find(answer, text).span()
        for other in sorted(present, key=len, reverse=True):
            found = _find(other, text)
            if found and found.start() <= span[0] and found.end() >= span[1] and len(other) > len(answer):
                answer = other
                break
    if answer is None:
        return [Card("cloze", text, "", source, language, reason=reason or "central", score=score)]
    answer = _whole_term(answer, text, terms)
    match = _find(answer, text)
    if match is not None:
        answer = match.group(0)  # as the sentence writes it
        front = text[: match.start()] + BLANK + text[match.end():]
    else:
        front = text
    cards.append(Card("cloze", front, answer, source, language, reason=reason or "central", score=score))
    example_like = definition is not None and re.match(r"(?:one|an?|the) (?:example|case|instance|way)\b",
                                                        definition.group("definition"), re.I)
    known_term = any(t.casefold() == answer.casefold() and strong.get(t, 0.0) >= STRONG_TERM and " " in t
                     for t in terms) or answer in strong and _is_code_like(answer) or \
        (definition is not None and not answer[:1].isupper() and 1 <= len(answer.split()) <= 2)
    if definition is not None and definition.group("term").strip() == answer and not example_like and known_term:
        back = definition.group("definition").rstrip(" .!")
        # "Type comments" opens the sentence; the question asks about "type comments".
        shown = answer[0].lower() + answer[1:] if answer[:1].isupper() and answer[1:2].islower() \
            and any(t == answer.lower() for t in terms) else answer
        cards.append(Card("qa", _QUESTION[language].format(term=shown), back, source, language,
                          reason="definition", score=score))
    # Multiple choice: the document's other terms nearest to the answer in meaning.
    key = next((t for t in vectors if t.casefold() == answer.casefold()), None)
    if key is not None:
        code_like = _is_code_like(answer)
        stems = _stems(answer)
        others = [t for t in terms if t in vectors and t.casefold() != answer.casefold() and len(t) >= 4
                  and strong.get(t, 0.0) >= STRONG_TERM and _same_kind(t, answer)
                  and _is_code_like(t) == code_like and not _stems(t) & stems and _find(t, text) is None
                  and _meaningful(t, language) is None
                  and CHOICE_COSINE[0] <= float(vectors[t] @ vectors[key]) <= CHOICE_COSINE[1]]
        others.sort(key=lambda t: -float(vectors[t] @ vectors[key]))
        picked: list[str] = []
        for other in others:  # wrong options that do not repeat each other's words
            if not any(_stems(other) & _stems(p) for p in picked):
                picked.append(other)
            if len(picked) == 3:
                break
        if len(picked) == 3:
            options = [answer] + picked
            random.Random(normalise(front)).shuffle(options)
            cards.append(Card("choice", front, answer, source, language, choices=options,
                              reason=reason or "central", score=score))
    return cards


def check(card: Card) -> str | None:
    """None when ``card`` can be shown, else the reason it is dropped."""
    sentence = card.source.get("sentence", "")
    if not card.back or normalise(card.back) not in normalise(sentence):
        return "the answer is not in the source sentence"
    if card.kind in ("cloze", "choice"):
        why = _meaningful(card.back, card.language)
        if why:
            return why
        if len(_words(card.front.replace(BLANK, " "))) < MIN_CONTEXT_WORDS:
            return "too little is left around the blank to answer it"
        if BLANK not in card.front:
            return "the answer was not blanked"
        if _find(card.back, card.front.replace(BLANK, " ")) is not None:
            return "the answer shows elsewhere in the question"
        if _part_of_longer_term(card.front, card.language):
            return "the blank is part of a longer term"
    if card.kind == "qa" and len(_words(card.back)) < 3:
        return "the definition is too short to be an answer"
    if card.kind == "choice" and (len(card.choices) < 4 or card.back not in card.choices):
        return "not enough plausible wrong options"
    return None


def propose(documents: Iterable[SourceDocument], embed: Callable[[list[str]], np.ndarray],
            per_document: int = PER_DOCUMENT, cancel=None) -> Proposal:
    """Cards for each document, best first, checked (see the module docstring)."""
    kept: list[Card] = []
    dropped: list[tuple[Card, str]] = []
    n_documents = n_sentences = 0
    for document in documents:
        if cancel is not None and cancel.is_set():
            break
        n_documents += 1
        all_sentences = document_sentences(document)
        text = "\n".join(raw for raw, _loc, _chunk in document.sections)
        language = language_of(" ".join(s.text for s in all_sentences[:200]) or text)
        candidates = []
        for sentence in all_sentences:
            why = reads_alone(sentence.text, language)
            if why is None:
                candidates.append(sentence)
        n_sentences += len(candidates)
        if not candidates:
            continue
        terms, base_weights = key_terms(text, [s.text for s in all_sentences], language)
        vectors_list = np.asarray(embed([s.text for s in candidates]), dtype=np.float32)
        centroid = vectors_list.mean(axis=0)
        centroid /= np.linalg.norm(centroid) or 1.0
        central = vectors_list @ centroid
        term_names = list(terms)[:200]
        term_vectors = dict(zip(term_names, np.asarray(embed(term_names), dtype=np.float32))) if term_names else {}
        scored = []
        for i, sentence in enumerate(candidates):
            reason = ""
            bonus = 0.0
            if _DEFINITION[language].match(sentence.text):
                reason, bonus = "definition", 0.25
            elif _RULE[language].search(sentence.text):
                reason, bonus = "rule", 0.1
            elif sentence.item:
                reason, bonus = "list item", 0.05
            has_term = any(_find(t, sentence.text) for t in terms)
            scored.append((float(central[i]) + bonus + (0.05 if has_term else -0.2), i, reason))
        scored.sort(reverse=True)
        chosen: list[int] = []
        answers: Counter = Counter()
        made = 0
        for score, i, reason in scored:
            if made >= per_document:
                break
            if any(float(vectors_list[i] @ vectors_list[j]) >= DUPLICATE_COSINE for j in chosen):
                continue
            cards = _cards_for(candidates[i], language, terms, reason, round(score, 4), term_vectors, base_weights)
            answer = normalise(cards[0].back) if cards and cards[0].back else ""
            if answer and answers[answer] >= SAME_ANSWER:
                continue
            answers[answer] += 1
            chosen.append(i)
            good = False
            for card in cards:
                why = check(card)
                if why is None:
                    kept.append(card)
                    good = good or card.kind == "cloze" or card.kind == "qa"
                else:
                    dropped.append((card, why))
            made += 1 if good else 0
    kept.sort(key=lambda c: -c.score)
    return Proposal(kept, dropped, n_documents, n_sentences)
