"""Cards from the user's documents: which sentences are worth learning, and the cards made
from them. Runs on a worker thread or the CLI's main thread (it embeds through the engine).

Why one module of ~800 lines: the rules that pick sentences, terms and blanks and the check
that drops cards read the same word lists and patterns; they are changed together when the
method is developed (benchmarks/study_cards.py --develop).

What a 135M model cannot be trusted with is left to structure and embeddings; every card is
extractive, so its answer is a span of the sentence it cites:

1. Sentences: the documents' paragraphs with markup removed (:mod:`assistant.documents.text`);
   a sentence is a candidate when it reads alone: 6-45 words, a whole statement with balanced
   brackets, no code, reST leftover or link; it does not open with a pronoun or a connective
   that continues the text before ("This...", "Another...", "Finally, ...", "In fact, ..."),
   and points nowhere around it ("above", "for that argument", "such syntax", "the deprecated
   functionality", "use cases 1 and 2", "the second alternative", "instead"); it names none of
   the names the document's examples make up (defined in its code, ``class Employee``, or
   placeholders such as ``foo``, ``MyType``), which a card alone does not show.
2. Worth learning: a definition ("X is a ...", "X means ...", in English, French, German and
   Spanish), a rule ("must", "cannot", "should"...), or a list item; ranked by how central the
   sentence is to its document (cosine of its MiniLM embedding with the document's mean) plus
   those bonuses, less for a sentence from a section that argues, rejects or recounts
   (rationale, rejected ideas, history...) or one in the first person or hypothetical ("we
   could", "would be"); near-duplicates left out.
3. The blank or the answer: the document's key terms (terms the source marks as code,
   CamelCase names, capitalised names too in a document that marks few terms, word pairs the
   document repeats), grown over the pair the term continues into ("Type variable" + "tuples"; backwards
   only where the longer phrase recurs). Of the terms in the sentence, best weighted first
   (for a definition, the term it defines first), the first whose blank passes the check's
   rules, preferring one that does not follow a modifier of its own term ("static _____").
4. Kinds: a cloze card (the term blanked), a question-answer card for definitions ("What is
   X?" and the definition itself), and a multiple-choice item whose wrong options are of the
   answer's kind: for a phrase, the document's phrases with the same head word and a modifier
   its headings name ("return type" for "argument type"); for a name, other names it marks as
   code, near the answer in meaning, in the answer's form (capital, plural).
5. The check: a card whose answer is not in its source sentence, whose blank is not a term
   (a stop word, a number, a whole clause, a common word), leaves too few words around it, or
   is part of a longer term (glued to a word, a version after it, a noun after it: a word the
   document uses after an article, or followed by an auxiliary, "_____ tuples can") is dropped
   with its reason, never shown (:class:`Proposal` keeps both for measuring).
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

from assistant.documents.text import clean_inline, marked_terms, paragraphs, sentences
from assistant.tasks.langdetect import STOPWORDS, detect

KINDS = ("cloze", "qa", "choice")
BLANK = "_____"
#: Sentence length, in words, of a card that reads alone and fits on a card.
MIN_WORDS, MAX_WORDS = 6, 45
#: A card's question keeps at least this many words around the blank: less is a guessing game.
MIN_CONTEXT_WORDS = 5
#: ... of which at least this many are not function words: "_____ is used in these cases" fits anything.
MIN_CONTENT_WORDS = 3
#: Two sentences this similar (cosine) say the same thing: only the better one is proposed.
DUPLICATE_COSINE = 0.92
#: Longest term that can be a blank or an answer, in words.
MAX_TERM_WORDS = 5
#: Default number of sentences made into cards for each document.
PER_DOCUMENT = 14
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
           "otherwise", "here", "there", "thus", "hence", "therefore", "however", "instead", "similarly", "likewise",
           # Connectives that continue a list or an argument: "Another proposal...", "Finally, ..."
           "another", "additionally", "first", "firstly", "second", "secondly", "third", "thirdly", "finally", "lastly",
           "moreover", "furthermore", "again", "still", "rather", "indeed", "ideally", "next", "conversely",
           "consequently", "accordingly", "nevertheless", "nonetheless", "alternatively", "unfortunately", "luckily",
           "fortunately", "clearly", "obviously", "now"},
    "fr": {"il", "elle", "ils", "elles", "ce", "cela", "ceci", "ces", "cette", "aussi", "mais", "donc", "ainsi"},
    "de": {"es", "er", "sie", "dies", "diese", "dieser", "dieses", "das", "auch", "aber", "also", "daher"},
    "es": {"esto", "eso", "este", "esta", "estos", "estas", "ello", "también", "pero", "así", "entonces"},
}
#: Phrases that point at the text around a sentence or at an example in it.
_POINTS_BACK = {
    "en": re.compile(r"\b(?:this|these|that) (?:program|example|response|case|code|snippet|section|proposal|"
                     r"way|mind|approach|issue|problem)\b|\b(?:above|below|aforementioned|following|typical example|"
                     r"for example|for instance|in this|these (?:two|three|four) \w+|(?:where|when|if) this|this occurs)\b|^[A-Z][\w ]{0,30}:\s|"
                     r"^(?:in fact|in other words|in addition|as such|as a result|for this reason|on the other hand|"
                     r"to this end|of course|in particular|in that case|at the same time|in short|in summary|"
                     r"in contrast|by contrast|even so|that said|put simply)\b", re.I),
    "fr": re.compile(r"\b(?:ci-dessus|ci-dessous|cet exemple|par exemple)\b", re.I),
    "de": re.compile(r"\b(?:oben|unten|dieses Beispiel|zum Beispiel)\b", re.I),
    "es": re.compile(r"\b(?:arriba|abajo|este ejemplo|por ejemplo)\b", re.I),
}
#: Pointers back anywhere in an English sentence: "these", "those", "this" (but "this PEP", the
#: document itself, is the deck's subject), "previous", a link ("is here"), and example names
#: (a one-letter variable such as "the inner x" or "(y)"); "that" or "such" as a determiner ("for
#: that argument", "such syntax"), "the deprecated functionality", a trailing "though" or "either".
_POINTS_BACK_ANYWHERE = {
    "en": re.compile("|".join((
        r"\b(?:these|those|previous|preceding|earlier|latter|former)\b|\bthis\b(?!\s+(?:PEP|document)\b)",
        r"\bhere\b|\bthere\b(?!\s+(?:is|are|was|were|must|should|may|can|will|would|might|be|has|have)\b)",
        r"\bas usual\b|\bnewly\b|\b(?:early|earlier|later|first|previous) (?:versions?|drafts?|revisions?) of\b",
        r"\b(?:we|as) (?:mentioned|noted|discussed|saw|described|showed)\b|^Thanks\b|\(\w\)",
        r"\b(?:for|of|in|to|on|with|by|from|at|into|about|under) that (?!is\b|are\b|was\b|were\b)[a-z]+\b",
        r"\bsuch (?!as\b|that\b)[a-z]+\b|\bthe (?:deprecated|described|mentioned|suggested|aforementioned) \w+",
        r", though\b|\bin question\b|\binstead\b(?!\s+of\b)|\beither\s*[.!]$",
        r"\bthe (?:first|second|third|fourth|last|next|other) (?:alternative|option|approach|case|proposal|way|one|"
        r"solution|form|variant|point|idea)s?\b",
        r"\b(?:use cases?|cases?|options?|steps?|items?|points?|examples?|rules?|figures?|tables?|sections?|"
        r"listings?)\s+\d+\b",
        r"(?<![\w.])(?!a\b|I\b|A\b)[A-Za-z](?![\w.'’])",
    )), re.I),
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
#: Code, or reST markup the parser left (a reference ``above_``, a substitution ``|name|``).
_CODE = re.compile(r"[=<>{}\[\]#|\\@$^~]|->|\w\(|\(\)|::|\.\w+\(|\b\w+_\w+\b|\w_(?!\w)|https?:|www\.")
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
                     "else", "self", "usability", "exactly",
                     # prepositions, conjunctions and adverbs the short profile lacks
                     "between", "across", "within", "without", "among", "through", "throughout", "during", "before",
                     "after", "above", "below", "onto", "upon", "against", "along", "around", "behind", "beyond",
                     "despite", "except", "inside", "outside", "over", "under", "toward", "towards", "per", "versus",
                     "until", "unless", "since", "because", "although", "though", "while", "whether", "both", "either",
                     "neither", "nor", "only", "even", "still", "yet", "already", "always", "never", "often",
                     "sometimes", "usually", "instead", "rather", "much", "few", "own", "itself", "themselves",
                     "whatever", "being", "having", "done", "doing", "get", "gets", "got", "make", "makes", "made",
                     "let", "lets", "thus", "hence", "therefore", "however", "so", "too", "anything", "something",
                     "nothing", "everything", "now", "again", "further", "once", "first", "last", "well", "almost",
                     "allows", "allow", "given", "able", "unlike", "otherwise", "possible", "currently"}}


def _stop(language: str) -> frozenset:
    return STOPWORDS.get(language, STOPWORDS["en"]) | frozenset(_MORE_STOP.get(language, ()))


# ----- reading the documents --------------------------------------------------------------------
#: Sections that argue, reject, recount or plan rather than settle: their sentences rank lower.
_ASIDE_SECTION = re.compile(r"\b(?:rejected|alternatives?|discussion|open issues?|history|historical|deferred|"
                            r"backwards? compatibility|implementation|how to teach|future|faq|rationale|motivation)\b", re.I)
#: A sentence in the first person or hypothetical ("we could", "would be") argues, it does not state.
_OPINION = {"en": re.compile(r"\b(?:we|our|us|would|could|might|ideally|perhaps|maybe|probably|arguably)\b|(?-i:\bI\b)",
                             re.I)}
#: Sections that hold nothing to learn: thanks, references, licences, footnotes.
_BOILERPLATE_SECTION = re.compile(r"\b(?:acknowledge?ments?|thanks|endorsements?|references?|copyright|footnotes?|licen[cs]e|"
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
    if sentence[-1:] not in ".!" or sentence[:1].islower() or sentence[:1] in "([{\"'" or \
            sentence.count("(") != sentence.count(")"):
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
#: A document that marks at least this many terms as code or roles names its terms that way.
MARKED_DOCUMENT = 5


_DEFINED_IN_CODE = re.compile(r"^[ \t]*(?:(?:async\s+)?def|class)\s+([A-Za-z_]\w*)|"
                              r"^[ \t]+([A-Za-z_]\w*)\s*(?::[^=\n]{1,60})?=(?!=)", re.M)
#: Names examples are made of, wherever they are defined.
_PLACEHOLDER = re.compile(r"^(?:foo|bar|baz|qux|quux|spam|eggs|ham|My[A-Z_]\w*|my_\w+)$")


def example_names(document_text: str, headings: Iterable[str]) -> frozenset:
    """Names the document's examples make up: defined in its code (``class Employee``, ``def
    concat``, ``UserId = ...``) or placeholders (``foo``, ``MyType``), and never in a heading or
    a builtin. A card on one asks about an example, which the card alone does not show."""
    import builtins

    named_in_headings = " ".join(headings)
    found = set()
    for match in _DEFINED_IN_CODE.finditer(document_text):
        name = match.group(1) or match.group(2)
        if len(name) > 1 and not hasattr(builtins, name) and not re.search(r"(?<![\w])" + re.escape(name) + r"(?![\w])",
                                                                           named_in_headings):
            found.add(name)
    found.update(m for m in set(re.findall(r"[A-Za-z_]\w*", document_text)) if _PLACEHOLDER.match(m))
    return frozenset(found)


def document_nouns(sentence_texts: list[str]) -> frozenset:
    """Words the document uses as nouns: those it writes after an article or a determiner ("a
    tuple", "the checkers"), folded and singular. Without a tagger, this tells the noun in
    "_____ tuples can..." (the blank is a modifier of a longer term) from the verb in
    "_____ proposes..." (the blank is the subject)."""
    found = set()
    for sentence in sentence_texts:
        for match in re.finditer(r"\b(?:a|an|the|each|every|these|those|its|their)\s+"
                                 r"([^\W\d_][\w-]*)", sentence, re.I):
            found.add(_singular(match.group(1).casefold()))
    return frozenset(found)


def _singular(word: str) -> str:
    for ending, replacement in (("ies", "y"), ("sses", "ss"), ("xes", "x"), ("ches", "ch"), ("shes", "sh")):
        if word.endswith(ending):
            return word[: -len(ending)] + replacement
    return word[:-1] if word.endswith("s") and not word.endswith("ss") else word


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

    marked = marked_terms(document_text)
    for term in marked:
        words = term.split()
        if re.fullmatch(r"[\w.\- ]+", term) and not term.isdigit() and not any(w.casefold() in stop for w in words):
            weights[term] = 1.5
    # A document that marks its terms as code names its subject's terms that way: a capitalised
    # word it never marks is a proper name there ("Python", "Scala") or a sentence's opening word
    # after a colon ("Class", "Number"), not a term to learn.
    names_marked = len(marked) >= MARKED_DOCUMENT
    for sentence in sentence_texts:
        words = _words(sentence)
        for i, word in enumerate(words):
            if i > 0 and (_CAMEL.fullmatch(word) or (word[:1].isupper() and word.casefold() not in stop and len(word) > 3
                                                     and not names_marked)):
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


_AUXILIARY = {"en": {"can", "cannot", "may", "must", "should", "will", "would", "could", "might", "shall", "are", "were",
                     "have", "do", "don't", "need", "allow", "provide", "become"}}


def _part_of_longer_term(front: str, language: str, nouns: frozenset = frozenset()) -> bool:
    """Whether the blank is glued to the words around it ("typing._____", "_____ module",
    "Python _____", "_____ 3.8"): the term the sentence uses is longer than the blank, so the
    card asks for a fragment. ``nouns``: the document's nouns (:func:`document_nouns`)."""
    at = front.find(BLANK)
    if at < 0:
        return False
    before, after = front[:at], front[at + len(BLANK):]
    if re.search(r"[\w.]$", before) or re.match(r"[\w]|\.\w", after):
        return True
    if re.match(r"\s+\d", after):  # "_____ 3.8": a version of the blanked name
        return True
    following = re.match(r"\s+([^\W\d_][\w’'-]*)(?:\s+([\w’']+))?", after)
    if following is None:
        return False
    word, then = following.group(1), (following.group(2) or "").casefold()
    if not word.islower() or word.casefold() in _stop(language):
        return False
    # A lowercase noun right after the blank makes it a modifier ("the _____ module"); a verb
    # ("_____ proposes", "_____ have") does not. A word not ending in "s" is taken for a noun;
    # one ending in "s" is a noun when the document uses it after an article or when an
    # auxiliary follows it ("_____ tuples can"), else a verb.
    if not word.endswith("s"):
        return True
    return _singular(word.casefold()) in nouns or then in _AUXILIARY.get(language, ())


def _whole_term(answer: str, text: str, terms: dict[str, float], corpus: str = "",
                nouns: frozenset | None = None) -> str:
    """``answer`` grown over the next words of ``text`` while its last word and the next one are a
    pair the document repeats: "Type variable" in "Type variable tuples can..." is part of the
    term "Type variable tuples", and a card blanking the first two words asks for a fragment
    (with ``nouns``, only over a word the document uses as a noun).
    Likewise over the words before it when the longer phrase recurs in ``corpus`` (the document's
    sentences, folded): "type checkers" in "runtime type checkers", not "declare type hints"."""
    folded = {t.casefold() for t in terms}
    match = _find(answer, text)
    while match is not None and len(answer.split()) < MAX_TERM_WORDS:
        following = re.match(r"\s+([^\W\d_][\w’'-]*)", text[match.end():])
        if following is None or f"{answer.split()[-1]} {following.group(1)}".casefold() not in folded or \
                nouns is not None and _singular(following.group(1).casefold()) not in nouns:
            break  # a pair the document repeats, grown only over a noun: not "typing module provides"
        answer = text[match.start(): match.end() + following.end()]
        match = _find(answer, text)
    while match is not None and len(answer.split()) < MAX_TERM_WORDS:
        preceding = re.search(r"([^\W\d_][\w’'-]*)\s+$", text[: match.start()])
        if preceding is None or f"{preceding.group(1)} {answer.split()[0]}".casefold() not in folded or \
                corpus.count(f"{preceding.group(1)} {answer}".casefold()) < 2:
            break
        answer = text[preceding.start(): match.end()]
        match = _find(answer, text)
    return answer


# ----- making cards ----------------------------------------------------------------------------
def _blanked(answer: str, text: str, terms: dict[str, float], corpus: str = "",
             nouns: frozenset | None = None) -> tuple[str, str]:
    """The answer as the sentence writes it (grown to the whole term) and the sentence with it blanked."""
    answer = _whole_term(answer, text, terms, corpus, nouns)
    match = _find(answer, text)
    if match is None:
        return answer, text
    return match.group(0), text[: match.start()] + BLANK + text[match.end():]


def _after_modifier(answer: str, front: str, terms: dict[str, float]) -> bool:
    """Whether the blank follows a word that, with the answer's first word, is a pair the document
    repeats ("static _____" for "type checking", "Variadic _____" for "type arguments"): the
    card then asks for the rest of a longer term."""
    before = re.search(r"([^\W\d_][\w’'-]*)\s+$", front[: front.find(BLANK)])
    if before is None or before.group(1).casefold().endswith("ing"):
        return False
    pair = f"{before.group(1)} {answer.split()[0]}".casefold()
    return any(t.casefold() == pair for t in terms)


def _blank_problem(answer: str, front: str, language: str, nouns: frozenset) -> str | None:
    """Why ``answer`` blanked in ``front`` would make a poor card (the check's rules on blanks,
    with the document's nouns), or None."""
    return _meaningful(answer, language) or _context_problem(front, language) or \
        ("the answer shows elsewhere in the question" if _find(answer, front.replace(BLANK, " ")) else None) or \
        ("the blank is part of a longer term" if _part_of_longer_term(front, language, nouns) else None)


def _cards_for(sentence: SourceSentence, language: str, terms: dict[str, float], reason: str, score: float,
               vectors: dict[str, np.ndarray], strong: dict[str, float], nouns: frozenset = frozenset(),
               marked: frozenset = frozenset(), corpus: str = "", headings: str = "") -> list[Card]:
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
    options: list[str] = []
    if definition is not None:
        subject = definition.group("term").strip()
        if _meaningful(subject, language) is None:
            options.append(subject)
    for term in present:
        # "Type" in "Type checkers": blank the whole term the sentence uses.
        span = _find(term, text).span()
        for other in sorted(present, key=len, reverse=True):
            found = _find(other, text)
            if found and found.start() <= span[0] and found.end() >= span[1] and len(other) > len(term):
                term = other
                break
        if term not in options:
            options.append(term)
    if not options:
        return [Card("cloze", text, "", source, language, reason=reason or "central", score=score)]
    # The best-weighted term whose blank makes a good card; when none does, the first, which the
    # check then drops with its reason.
    blanks = [_blanked(term, text, terms, corpus, nouns or None) for term in options[:6]]
    good = [(a, f) for a, f in blanks if _blank_problem(a, f, language, nouns) is None]
    # Of those, one that does not follow a modifier ("static _____", "Variadic _____") asks for the
    # whole term rather than the rest of it.
    answer, front = next((b for b in good if not _after_modifier(*b, terms)), good[0] if good else blanks[0])
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
    # Multiple choice: the document's other terms of the same kind, nearest to the answer in meaning.
    picked = _wrong_options(answer, text, terms, vectors, strong, marked, language, headings)
    if len(picked) == 3:
        options = [answer] + picked
        random.Random(normalise(front)).shuffle(options)
        cards.append(Card("choice", front, answer, source, language, choices=options,
                          reason=reason or "central", score=score))
    return cards


def _plural(word: str) -> str:
    if re.search(r"[^aeiou]y$", word):
        return word[:-1] + "ies"
    return word + ("es" if re.search(r"(?:s|x|ch|sh)$", word) else "s")


def _as_answer_is_written(option: str, answer: str) -> str:
    """A phrase option in the answer's form, so that neither a capital nor a plural gives the
    answer away: "type alias" beside "Type variables" is shown "Type aliases"."""
    words = option.split()
    head = _singular(words[-1].casefold())
    plural = _singular(answer.split()[-1].casefold()) != answer.split()[-1].casefold()
    words[-1] = _plural(head) if plural else head
    if answer[:1].isupper() and answer[1:2].islower():
        words[0] = words[0][:1].upper() + words[0][1:]
    return " ".join(words)


def _wrong_options(answer: str, text: str, terms: dict[str, float], vectors: dict[str, np.ndarray],
                   strong: dict[str, float], marked: frozenset, language: str, headings: str = "") -> list[str]:
    """Three wrong options of the answer's kind, or fewer when the document has not got them.
    A phrase ("argument type") gets phrases of the document with the same head word and another
    modifier ("return type", "union type"): the learner must know which one the sentence says.
    A name (``Final``, ``typing.TypeVar``, PEP 484) gets other names the document marks as code,
    of the same form, in a band of meaning near it (:data:`CHOICE_COSINE`)."""
    key = next((t for t in vectors if t.casefold() == answer.casefold()), None)
    if key is None:
        return []
    phrase = " " in answer and not _is_code_like(answer) and not re.match(r"^PEP \d+$", answer)

    def usable(t: str) -> bool:
        return (t in vectors and t.casefold() != answer.casefold() and len(t) >= 4 and strong.get(t, 0.0) >= STRONG_TERM
                and _find(t, text) is None and _meaningful(t, language) is None)

    if phrase:
        # The modifier names one of the document's subjects (it is in a heading): "variadic type"
        # beside "tuple type", not "inferred type" or "individual type".
        head = _singular(answer.split()[-1].casefold())
        modifiers = {w.casefold() for w in answer.split()[:-1]}
        others = [t for t in terms if usable(t) and " " in t and len(t.split()) == len(answer.split())
                  and not _is_code_like(t) and _singular(t.split()[-1].casefold()) == head
                  and not {w.casefold() for w in t.split()[:-1]} & modifiers
                  and all(re.search(r"(?<![\w])" + re.escape(w.casefold()), headings) for w in t.split()[:-1])
                  and CHOICE_COSINE[0] <= float(vectors[t] @ vectors[key]) <= CHOICE_COSINE[1]]
    else:
        stems = _stems(answer)
        others = [t for t in terms if usable(t) and (t in marked or _CAMEL.fullmatch(t) or re.match(r"^PEP \d+$", t))
                  and _same_kind(t, answer) and _is_code_like(t) == _is_code_like(answer) and not _stems(t) & stems
                  and CHOICE_COSINE[0] <= float(vectors[t] @ vectors[key]) <= CHOICE_COSINE[1]]
    others.sort(key=lambda t: -float(vectors[t] @ vectors[key]))
    picked: list[str] = []
    for other in others:  # wrong options that do not repeat each other
        shown = _as_answer_is_written(other, answer) if phrase else other
        if phrase and normalise(shown) not in {normalise(p) for p in picked}:
            picked.append(shown)
        elif not phrase and not any(_stems(other) & _stems(p) for p in picked):
            picked.append(shown)
        if len(picked) == 3:
            break
    return picked


def _context_problem(front: str, language: str) -> str | None:
    """Why the words around a blank are too few to answer it ("_____ have a wide range of uses"), or None."""
    around = _words(front.replace(BLANK, " "))
    content = [w for w in around if w.casefold() not in _stop(language) and not w.isdigit()]
    if len(around) < MIN_CONTEXT_WORDS or len(content) < MIN_CONTENT_WORDS:
        return "too little is left around the blank to answer it"
    return None


def check(card: Card, nouns: frozenset = frozenset()) -> str | None:
    """None when ``card`` can be shown, else the reason it is dropped. ``nouns``: the document's
    nouns (:func:`document_nouns`), to tell a blank that modifies a noun from one that is a subject."""
    sentence = card.source.get("sentence", "")
    if not card.back or normalise(card.back) not in normalise(sentence):
        return "the answer is not in the source sentence"
    if card.kind in ("cloze", "choice"):
        why = _meaningful(card.back, card.language)
        if why:
            return why
        why = _context_problem(card.front, card.language)
        if why:
            return why
        if BLANK not in card.front:
            return "the answer was not blanked"
        if _find(card.back, card.front.replace(BLANK, " ")) is not None:
            return "the answer shows elsewhere in the question"
        if _part_of_longer_term(card.front, card.language, nouns):
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
        examples = example_names(text, {loc for _raw, loc, _chunk in document.sections})
        mentions_example = re.compile(r"(?<![\w.])(?:" + "|".join(map(re.escape, sorted(examples, key=len, reverse=True)))
                                      + r")(?![\w])") if examples else None
        candidates = []
        for sentence in all_sentences:
            why = reads_alone(sentence.text, language)
            if why is None and not (mentions_example and mentions_example.search(sentence.text)):
                candidates.append(sentence)
        n_sentences += len(candidates)
        if not candidates:
            continue
        terms, base_weights = key_terms(text, [s.text for s in all_sentences], language)
        terms = {t: w for t, w in terms.items() if t not in examples}
        nouns = document_nouns([s.text for s in all_sentences])
        marked = frozenset(marked_terms(text))
        corpus = "\n".join(s.text for s in all_sentences).casefold()
        headings = clean_inline(" ".join({loc for _raw, loc, _chunk in document.sections})).casefold()
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
            bonus += 0.05 if has_term else -0.2
            # What the document settles is worth more than what it argues, rejects or recounts.
            if _ASIDE_SECTION.search(sentence.location):
                bonus -= 0.1
            if _OPINION.get(language) is not None and _OPINION[language].search(sentence.text):
                bonus -= 0.1
            scored.append((float(central[i]) + bonus, i, reason))
        scored.sort(reverse=True)
        chosen: list[int] = []
        answers: Counter = Counter()
        made = 0
        for score, i, reason in scored:
            if made >= per_document:
                break
            if any(float(vectors_list[i] @ vectors_list[j]) >= DUPLICATE_COSINE for j in chosen):
                continue
            cards = _cards_for(candidates[i], language, terms, reason, round(score, 4), term_vectors, base_weights,
                               nouns, marked, corpus, headings)
            answer = normalise(cards[0].back) if cards and cards[0].back else ""
            if answer and answers[answer] >= SAME_ANSWER:
                continue
            answers[answer] += 1
            chosen.append(i)
            good = False
            for card in cards:
                why = check(card, nouns)
                if why is None:
                    kept.append(card)
                    good = good or card.kind == "cloze" or card.kind == "qa"
                else:
                    dropped.append((card, why))
            made += 1 if good else 0
    kept.sort(key=lambda c: -c.score)
    return Proposal(kept, dropped, n_documents, n_sentences)
