"""The documents a deck is made from, read out of the app's store. Worker threads (the store)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Iterable

from assistant.errors import StudyError
from assistant.study.cards import SourceDocument

if TYPE_CHECKING:
    from assistant.store import Store


def documents_from_store(store: "Store", collection_ids: Iterable[int] | None = None,
                         file_ids: Iterable[int] | None = None) -> list[SourceDocument]:
    """The indexed files of the given collections (all when None), or just ``file_ids``, each with
    its chunks in order (the chunk id and the section it belongs to go with every sentence)."""
    sql = ("SELECT f.n, f.path, f.title, c.n, c.text, c.heading, c.page FROM doc_files f "
           "JOIN doc_chunks c ON c.file_n = f.n WHERE f.status = 'indexed'")
    args: list = []
    if file_ids is not None:
        ids = [int(i) for i in file_ids]
        sql += f" AND f.n IN ({','.join('?' * len(ids)) or 'NULL'})"
        args += ids
    elif collection_ids is not None:
        ids = [int(i) for i in collection_ids]
        sql += f" AND f.collection_n IN ({','.join('?' * len(ids)) or 'NULL'})"
        args += ids
    with store.reading() as conn:
        rows = conn.execute(sql + " ORDER BY f.path, c.ordinal", args).fetchall()
    documents: dict[int, SourceDocument] = {}
    for file_n, path, title, chunk_n, text, heading, page in rows:
        document = documents.setdefault(file_n, SourceDocument(path, title or "", []))
        location = f"page {page}" + (f", {heading}" if heading else "") if page else (heading or "(beginning)")
        document.sections.append((text, location, int(chunk_n)))
    if not documents:
        raise StudyError("There is nothing to study yet: the chosen documents have no indexed text. "
                         "Add files on the Documents page first.")
    return list(documents.values())


def propose_for(services, collection_ids: Iterable[int] | None = None, file_ids: Iterable[int] | None = None,
                per_document: int | None = None, cancel=None):
    """Cards proposed from the user's indexed documents, embedded with the documents' own model.
    Worker thread or the CLI's main thread (the engine embeds)."""
    from assistant.study.cards import PER_DOCUMENT, propose

    _documents, retriever = services.documents_core()
    documents = documents_from_store(services.store, collection_ids, file_ids)
    return propose(documents, retriever.embed, per_document or PER_DOCUMENT, cancel)
