"""The passages a reply was given, as a chat screen shows them and as a reply keeps them.

A reply keeps its sources in ``Message.documents`` as ``"chunk:<id>"`` (numbered as they were in
its prompt) and the sentence quoted from them as ``"quote:<n>:<sentence>"``, so they show again
when the conversation is reopened. The quote is the extractive answer the screens show first
(:mod:`assistant.documents.answers`); whether the model's wording agrees with it is kept in the
reply's metrics under :data:`MODEL_AGREES` and put on the quoted source as ``"agrees"``.
Runs on worker threads or the CLI's main thread (the store).
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from assistant.errors import DocumentsError
from assistant.wording import counted

if TYPE_CHECKING:
    from assistant.app import Services

#: Prefix of a passage id in ``Message.documents``.
CHUNK_REF = "chunk:"
QUOTE_REF = "quote:"
#: The reply's metrics key that says whether its wording agrees with the quoted sentence.
MODEL_AGREES = "model_agrees"


def collection_label(collection: dict) -> str:
    """A collection as the lists show it: its name and how many files it holds."""
    return f"{collection['name']} ({counted(int(collection['files']), 'file')})"


def document_collections(services: "Services") -> list[dict]:
    """The collections a chat can attach: id, name, files, chunks."""
    from assistant.documents.collections import Documents

    return Documents(services.store, None).collections()


def shown_passage(text: str) -> str:
    """A passage as the screens and the CLI show it: reST/Markdown markup cleaned
    (:func:`assistant.documents.text.readable`); its own text when nothing readable is left
    (a passage that is all code)."""
    from assistant.documents.text import readable

    return readable(text) or text


def source_dict(number: int, chunk: dict) -> dict:
    """One source as the screens show it, from a stored chunk (markup cleaned for display)."""
    from assistant.documents.text import clean_inline

    page, heading = chunk.get("page"), clean_inline(chunk.get("heading") or "")
    location = f"page {page}" + (f", {heading}" if heading else "") if page else (heading or "(beginning)")
    return {"number": number, "chunk_id": int(chunk["id"]), "path": chunk["path"], "file": os.path.basename(chunk["path"]),
            "location": location, "passage": shown_passage(chunk["text"])}


def prepared_sources(prepared) -> list[dict]:
    """The sources of a :class:`~assistant.documents.grounded.Prepared` turn, the quote on its source."""
    from assistant.documents.text import clean_inline

    sources = [{"number": s.number, "chunk_id": s.chunk_id, "path": s.path, "file": os.path.basename(s.path),
                "location": clean_inline(s.location), "passage": shown_passage(s.passage)} for s in prepared.sources]
    # The sentence that most likely answers, shown above the reply (see assistant/documents/grounded.py).
    if prepared.quote is not None:
        sources[prepared.quote.number - 1]["quote"] = prepared.quote.text
    return sources


def stored_sources(services: "Services", refs: list, metrics: dict | None = None) -> list[dict]:
    """The sources of a stored reply, numbered as they were in its prompt; passages since
    removed from the index are left out. ``metrics``: the reply's, for the agreement verdict."""
    from assistant.documents.collections import Documents

    documents = Documents(services.store, None)
    found = []
    quotes: dict[int, str] = {}
    for number, ref in enumerate(refs or [], start=1):
        text = str(ref)
        if text.startswith(CHUNK_REF) and text[len(CHUNK_REF):].isdigit():
            chunk = documents.chunk(int(text[len(CHUNK_REF):]))
            if chunk is not None:
                found.append(source_dict(number, chunk))
        elif text.startswith(QUOTE_REF):
            quoted_number, _, sentence = text[len(QUOTE_REF):].partition(":")
            if quoted_number.isdigit():
                quotes[int(quoted_number)] = sentence
    for source in found:
        if source["number"] in quotes:
            source["quote"] = quotes[source["number"]]
            source["agrees"] = bool((metrics or {}).get(MODEL_AGREES, False))
    return found


def with_verdict(sources, agrees: bool) -> list[dict]:
    """Copies of ``sources`` with the model's agreement put on the quoted one."""
    return [{**source, "agrees": bool(agrees)} if source.get("quote") else dict(source) for source in sources]


def shown_answer(sources) -> dict | None:
    """What the screens show first for a reply from documents (None when it had no sources):
    ``found`` (a sentence answers), ``text`` (that sentence, or the not-found line), its
    ``number``, ``chunk_id``, ``file`` and ``location``; ``checked`` (the reply was judged yet)
    and ``agrees`` (its wording may be shown beside the answer)."""
    from assistant.documents.answers import NOT_FOUND

    sources = list(sources or [])
    if not sources:
        return None
    quoted = next((source for source in sources if source.get("quote")), None)
    if quoted is None:
        return {"found": False, "text": NOT_FOUND, "checked": True, "agrees": False}
    return {"found": True, "text": quoted["quote"], "number": quoted["number"], "chunk_id": quoted["chunk_id"],
            "file": quoted["file"], "location": quoted["location"], "checked": "agrees" in quoted,
            "agrees": bool(quoted.get("agrees"))}


def source_refs(sources: list[dict]) -> list[str]:
    """What a reply keeps of its sources; the quote goes last so the chunk refs keep the numbers
    they had in the prompt."""
    refs = [f"{CHUNK_REF}{source['chunk_id']}" for source in sources]
    refs += [f"{QUOTE_REF}{source['number']}:{source['quote']}" for source in sources if source.get("quote")]
    return refs


def open_source(services: "Services", chunk_id: int) -> dict:
    """One passage with its file and place, for the source viewer."""
    from assistant.documents.collections import Documents

    chunk = Documents(services.store, None).chunk(int(chunk_id))
    if chunk is None:
        raise DocumentsError("This passage is no longer in your documents (the file was removed or re-indexed).")
    return source_dict(0, chunk)
