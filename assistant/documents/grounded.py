"""Chat with documents: retrieved passages in the prompt, within a visible token budget.

Threading: :meth:`GroundedChat.prepare` blocks on the engine and the store, so it runs on a
worker thread (GUI) or the CLI's main thread. It chooses the numbered sources (file, page or
section, passage, chunk id) and builds the two messages; the reply itself is asked for by
:class:`assistant.chat.session.ChatSession` like every other reply (built through
:func:`assistant.chat.prompt.grounded_chat`, the one place that sets its token budget).

The quote: a 135M chat model often answers wrongly even with the right passage in front of it,
so every answer carries the sentence of the sources chosen by
:func:`assistant.documents.answers.choose_answer` (:class:`Quote`), shown first with its
citation; when no sentence answers well enough there is no quote and the screens say
:data:`~assistant.documents.answers.NOT_FOUND`. The model's reply is checked against that
sentence after it ends (:func:`assistant.documents.answers.judge_reply`, called by the chat
session). Boilerplate passages (copyright, reference and link lists) are left out of the
sources unless they are all that matched. Citation numbers the model invented ([5] with two
sources) are taken out of the reply, and a reply that starts saying the same words over and
over is cut after the first time (:func:`cut_loop`).

"Answer only from my documents": the model is told to answer from the sources alone and to
say it does not know otherwise; and when retrieval finds nothing relevant enough (best
cosine under :data:`MIN_RELEVANCE` and no keyword match in the top results) the answer is
:data:`DONT_KNOW` without calling the model at all, since a small model would make one up.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import Callable

import numpy as np

from assistant.documents.answers import choose_answer, drop_boilerplate
from assistant.documents.retrieval import Hit, Retriever, Scope

DONT_KNOW = "I don't know from your documents."
#: Cosine similarity under which a passage is taken as unrelated to the question. MiniLM
#: gives ~0.1-0.25 for unrelated English pairs and 0.4+ for passages that answer a question.
MIN_RELEVANCE = 0.30
#: Passages retrieved before the budget decides how many fit.
TOP_K = 6
_CITATION = re.compile(r"\s?\[(\d+)\]")
#: A stretch of 12-200 characters said three or more times in a row: a small model's loop.
_LOOP = re.compile(r"(.{12,200}?)\1{2,}", re.DOTALL)

SYSTEM_GROUNDED = (
    "You answer questions using the numbered sources below, taken from the user's own documents. "
    "Cite the sources you use like [1]. If the sources do not contain the answer, say so."
)
SYSTEM_ONLY = (
    "You answer questions using ONLY the numbered sources below, taken from the user's own documents. "
    "Cite the sources you use like [1]. If the sources do not contain the answer, reply exactly: "
    + DONT_KNOW
)


@dataclass
class Source:
    number: int  # [n] in the prompt and the reply
    chunk_id: int
    file_id: int
    path: str
    title: str
    location: str  # "page 3" or "Specification > Totality"
    page: int | None
    heading: str
    passage: str
    score: float
    relevance: float | None  # cosine with the question

    def label(self) -> str:
        return f"[{self.number}] {os.path.basename(self.path)}, {self.location}"


@dataclass
class Quote:
    """The sentence of the sources that answers the question, and where it comes from."""

    text: str
    number: int  # the source's [n]
    chunk_id: int
    relevance: float  # the sentence's score (assistant.documents.answers.Candidate.score)


@dataclass
class Prepared:
    messages: list[dict]
    sources: list[Source]
    budget: dict  # {"used": tokens of passages in the prompt, "total": tokens allowed for them}
    refuse: bool  # only-documents and nothing relevant: answer DONT_KNOW without the model
    quote: Quote | None = None  # the source sentence that answers; None: not found




def _source(number: int, hit: Hit) -> Source:
    return Source(number=number, chunk_id=hit.chunk_id, file_id=hit.file_id, path=hit.path, title=hit.title,
                  location=hit.location(), page=hit.page, heading=hit.heading, passage=hit.text, score=hit.score,
                  relevance=hit.dense_score)


def is_relevant(hit: Hit) -> bool:
    return (hit.dense_score is not None and hit.dense_score >= MIN_RELEVANCE) or (
        hit.bm25_rank is not None and hit.bm25_rank <= 3 and hit.dense_rank is not None and hit.dense_rank <= 10)


def best_quote(question: str, sources: list[Source], embed: Callable[[list[str]], np.ndarray]) -> Quote | None:
    """The sentence of ``sources`` that answers ``question`` (see
    :func:`assistant.documents.answers.choose_answer`), or None when none answers well enough.
    Runs where the caller runs (it calls the engine)."""
    answer = choose_answer(question, sources, embed)
    return Quote(answer.text, answer.number, answer.chunk_id, answer.score) if answer else None


def drop_unknown_citations(text: str, source_count: int) -> str:
    """Remove citation marks such as [5] that name no source (a small model invents them)."""
    return _CITATION.sub(lambda m: m.group(0) if 1 <= int(m.group(1)) <= source_count else "", text)


def cut_loop(text: str) -> str:
    """End a reply where it starts saying the same words over and over (SmolLM2 135M does, at
    low temperature, despite the repeat penalty): the first saying is kept, then "…"."""
    match = _LOOP.search(text)
    if match is None:
        return text
    return (text[: match.start()] + match.group(1)).rstrip() + " …"


def has_loop(text: str) -> bool:
    """True once ``text`` says the same stretch three times in a row (see :func:`cut_loop`)."""
    return _LOOP.search(text) is not None


def tidy_reply(text: str, source_count: int) -> str:
    """A grounded reply as it is kept and shown: a loop cut, invented citations removed."""
    return drop_unknown_citations(cut_loop(text), source_count).strip()


class GroundedChat:
    """Retrieval-augmented answers with the chat model; see the module docstring."""

    def __init__(self, retriever: Retriever, engine, model_path: str, *, context_tokens: int = 2048,
                 reply_tokens: int = 256, count_tokens: Callable[[str], int] | None = None):
        self.retriever = retriever
        self.engine = engine
        self.model_path = str(model_path)
        self.context_tokens = context_tokens  # the chat model's context as the engine runs it
        self.reply_tokens = reply_tokens  # kept free for the answer
        self.count_tokens = count_tokens or (lambda text: len(self.engine.tokenize(self.model_path, text, add_special=False)))

    def prepare(self, question: str, scope: Scope | None = None, only_documents: bool = False,
                budget_tokens: int | None = None, k: int = TOP_K) -> Prepared:
        """Retrieve and fit passages into the budget, and pick the quote; nothing is sent to the
        model yet (the engine embeds, so this runs off the GUI thread)."""
        hits = self.retriever.search(question, k=k, scope=scope)
        if only_documents:
            hits = [h for h in hits if is_relevant(h)]
        hits = drop_boilerplate(hits)
        system = SYSTEM_ONLY if only_documents else SYSTEM_GROUNDED
        overhead = self.count_tokens(system) + self.count_tokens(question) + 48  # chat template markup
        room = max(0, self.context_tokens - self.reply_tokens - overhead)
        total = min(room, budget_tokens) if budget_tokens else room
        sources: list[Source] = []
        blocks: list[str] = []
        used = 0
        for hit in hits:
            source = _source(len(sources) + 1, hit)
            block = f"[{source.number}] {source.title} ({os.path.basename(source.path)}, {source.location})\n{source.passage}"
            cost = self.count_tokens(block) + 2
            if used + cost > total:
                continue  # a shorter passage further down may still fit
            sources.append(source)
            blocks.append(block)
            used += cost
        refuse = only_documents and not sources
        # The instruction is the system message; the passages go right before the question, in
        # the user's message, where a small model attends to them. The chat builds its prompt
        # from these two messages too, so every screen asks the model the same way.
        passages = "\n\n".join(blocks) if blocks else "(none found)"
        messages = [{"role": "system", "content": system},
                    {"role": "user", "content": f"Sources:\n\n{passages}\n\nQuestion: {question}"}]
        quote = best_quote(question, sources, self.retriever.embed) if sources else None
        return Prepared(messages, sources, {"used": used, "total": total}, refuse, quote)


def format_quote(sources: list[dict]) -> str | None:
    """The quote line shown in the terminal: the sentence and the source it comes from (the
    source dicts of a chat turn, see assistant.chat.sources); None when nothing was quoted."""
    source = next((s for s in sources if s.get("quote")), None)
    if source is None:
        return None
    return f"From your documents [{source['number']}] ({source['file']}, {source['location']}): \u201c{source['quote']}\u201d"


def format_sources(sources: list[dict], passage_chars: int = 160) -> str:
    """The "Sources" block shown under a reply in the terminal."""
    lines = []
    for source in sources:
        passage = " ".join(source["passage"].split())
        if len(passage) > passage_chars:
            passage = passage[: passage_chars - 1] + "…"
        lines.append(f"[{source['number']}] {source['file']}, {source['location']} (chunk {source['chunk_id']})\n"
                     f"    {passage}")
    return "\n".join(lines)
