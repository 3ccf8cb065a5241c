"""Chat with documents: retrieved passages in the prompt, within a visible token budget.

Threading: :meth:`GroundedChat.ask` blocks on the engine and the store, so it runs on a
worker thread (GUI) or the CLI's main thread. The answer carries its numbered sources
(file, page or section, passage, chunk id) for the window to show under the reply, each
openable through ``Documents.chunk(chunk_id)``.

"Answer only from my documents": the model is told to answer from the sources alone and to
say it does not know otherwise; and when retrieval finds nothing relevant enough (best
cosine under :data:`MIN_RELEVANCE` and no keyword match in the top results) the answer is
:data:`DONT_KNOW` without calling the model at all, since a small model would make one up.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from typing import Callable

from assistant.retrieval import Hit, Retriever, Scope

DONT_KNOW = "I don't know from your documents."
#: Cosine similarity under which a passage is taken as unrelated to the question. MiniLM
#: gives ~0.1-0.25 for unrelated English pairs and 0.4+ for passages that answer a question.
MIN_RELEVANCE = 0.30
#: Passages retrieved before the budget decides how many fit.
TOP_K = 6

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
class Prepared:
    messages: list[dict]
    sources: list[Source]
    budget: dict  # {"used": tokens of passages in the prompt, "total": tokens allowed for them}
    refuse: bool  # only-documents and nothing relevant: answer DONT_KNOW without the model


@dataclass
class GroundedAnswer:
    text: str
    sources: list[Source]
    budget: dict
    used_model: bool
    metrics: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)


def _source(number: int, hit: Hit) -> Source:
    return Source(number=number, chunk_id=hit.chunk_id, file_id=hit.file_id, path=hit.path, title=hit.title,
                  location=hit.location(), page=hit.page, heading=hit.heading, passage=hit.text, score=hit.score,
                  relevance=hit.dense_score)


def is_relevant(hit: Hit) -> bool:
    return (hit.dense_score is not None and hit.dense_score >= MIN_RELEVANCE) or (
        hit.bm25_rank is not None and hit.bm25_rank <= 3 and hit.dense_rank is not None and hit.dense_rank <= 10)


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
        """Retrieve and fit passages into the budget; nothing is sent to the model yet."""
        hits = self.retriever.search(question, k=k, scope=scope)
        if only_documents:
            hits = [h for h in hits if is_relevant(h)]
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
        content = system + "\n\nSources:\n\n" + ("\n\n".join(blocks) if blocks else "(none found)")
        messages = [{"role": "system", "content": content}, {"role": "user", "content": question}]
        return Prepared(messages, sources, {"used": used, "total": total}, refuse)

    def ask(self, question: str, scope: Scope | None = None, only_documents: bool = False,
            budget_tokens: int | None = None, on_text: Callable[[str], None] | None = None,
            sampling: dict | None = None) -> GroundedAnswer:
        prepared = self.prepare(question, scope, only_documents, budget_tokens)
        if prepared.refuse:
            if on_text is not None:
                on_text(DONT_KNOW)
            return GroundedAnswer(DONT_KNOW, [], prepared.budget, used_model=False)
        params = {"temperature": 0.2, "max_tokens": self.reply_tokens, **(sampling or {})}
        done = self.engine.chat(self.model_path, prepared.messages, params).stream(on_text)
        text = done["result"]["text"].strip()
        return GroundedAnswer(text, prepared.sources, prepared.budget, used_model=True, metrics=done.get("metrics", {}))


def format_sources(sources: list[Source], passage_chars: int = 160) -> str:
    """The "Sources" block shown under a reply in the terminal."""
    lines = []
    for source in sources:
        passage = " ".join(source.passage.split())
        if len(passage) > passage_chars:
            passage = passage[: passage_chars - 1] + "…"
        lines.append(f"{source.label()} (chunk {source.chunk_id})\n    {passage}")
    return "\n".join(lines)
