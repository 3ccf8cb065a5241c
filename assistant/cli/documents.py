"""`assistant docs add|list|remove|reindex|sync` and `assistant ask "question"`.

Wiring (in assistant/cli/main.py)::

    from assistant.cli.documents import add_documents_commands
    add_documents_commands(sub)          # then args.handler(args, services)

Every handler is ``handler(args, services) -> int`` and runs on the CLI's main thread;
results go to stdout, progress to stderr, and an error the user can cause is one line on
stderr with exit code 2 (:class:`DocumentsError` and :class:`LibraryError` are raised for
cli.py to word; per-file problems are listed and the batch goes on, exit code 1).
"""

from __future__ import annotations

import sys
import threading

from assistant.chat.events import ReplyDone, ReplyFailed, Token, TurnPrepared
from assistant.chat.session import ChatSession
from assistant.documents.collections import DEFAULT_COLLECTION, Documents, DocumentsError, Progress, default_counter, engine_embedder
from assistant.documents.answers import NOT_FOUND
from assistant.documents.grounded import format_quote, format_sources
from assistant.documents.retrieval import Retriever, Scope
from assistant.wording import counted


def add_documents_commands(subparsers) -> None:
    docs = subparsers.add_parser("docs", help="your documents: add, list, remove, re-index")
    commands = docs.add_subparsers(dest="docs_command", metavar="COMMAND")
    commands.required = True

    add = commands.add_parser("add", help="index files and folders (.txt .md .rst .html .pdf .docx); folders are watched")
    add.add_argument("paths", nargs="+", metavar="PATH")
    add.add_argument("--collection", default=DEFAULT_COLLECTION, help="collection to add to (created if new)")
    add.add_argument("--force", action="store_true", help="re-index files even when unchanged")
    add.set_defaults(handler=cmd_docs_add)

    ls = commands.add_parser("list", help="indexed files with their status and chunk counts")
    ls.add_argument("--collection", help="only this collection")
    ls.set_defaults(handler=cmd_docs_list)

    rm = commands.add_parser("remove", help="remove a file, a folder or a collection and every chunk of it")
    rm.add_argument("target", metavar="PATH_OR_COLLECTION")
    rm.add_argument("--collection", help="only within this collection")
    rm.set_defaults(handler=cmd_docs_remove)

    re_ = commands.add_parser("reindex", help="parse, chunk and embed every file again")
    re_.add_argument("--collection", help="only this collection")
    re_.set_defaults(handler=cmd_docs_reindex)

    sync = commands.add_parser("sync", help="re-index changed files in watched folders, drop deleted ones")
    sync.set_defaults(handler=cmd_docs_sync)

    search = commands.add_parser("search", help="show the passages retrieval finds for a query")
    search.add_argument("query")
    search.add_argument("--collection", help="only this collection")
    search.add_argument("--mode", choices=("hybrid", "bm25", "dense"), default="hybrid")
    search.add_argument("-k", type=int, default=5)
    search.set_defaults(handler=cmd_docs_search)

    ask = subparsers.add_parser("ask", help="answer a question from your documents, with sources")
    ask.add_argument("question")
    ask.add_argument("--only-documents", action="store_true",
                     help="answer only from the documents; say so when they do not cover the question")
    ask.add_argument("--collection", help="search this collection only (default: all)")
    ask.add_argument("--budget", type=int, default=None, metavar="TOKENS", help="most prompt tokens for passages")
    ask.add_argument("--show-attempt", action="store_true",
                     help="print the model's reply even when it does not agree with the documents")
    ask.add_argument("--model", help="chat model (default: the one chosen for chat)")
    ask.set_defaults(handler=cmd_ask)


def _documents(services) -> Documents:
    return Documents(services.store, engine_embedder(services), default_counter(services))


def _run(events, quiet: bool = False) -> int:
    """Print a progress line per file and a summary; 1 if any file failed."""
    failed = 0
    last: Progress | None = None
    for event in events:
        last = event
        if event.kind == "error":
            failed += 1
            print(f"  ✗ {event.message}", file=sys.stderr)
        elif event.kind == "indexed" and not quiet:
            print(f"  [{event.index}/{event.total}] {event.path}: {counted(event.chunks, 'passage')}", file=sys.stderr)
        elif event.kind == "removed" and not quiet:
            print(f"  removed {event.path} (no longer on disk)", file=sys.stderr)
        elif event.kind == "cancelled":
            print("  cancelled; files indexed so far are kept", file=sys.stderr)
    totals = last.totals if last else {}
    if totals:
        print(f"{totals.get('indexed', 0)} indexed, {totals.get('unchanged', 0)} unchanged, "
              f"{totals.get('errors', 0)} failed, {counted(totals.get('chunks', 0), 'passage')} added")
    return 1 if failed else 0


def _cancellable(gen_factory):
    cancel = threading.Event()
    try:
        return _run(gen_factory(cancel))
    except KeyboardInterrupt:
        cancel.set()
        print("assistant: cancelled", file=sys.stderr)
        return 130


def cmd_docs_add(args, services) -> int:
    documents = _documents(services)
    return _cancellable(lambda cancel: documents.add_paths(args.paths, args.collection, cancel, force=args.force))


def cmd_docs_list(args, services) -> int:
    documents = Documents(services.store, embed=lambda texts: None, counter=default_counter(services))  # type: ignore[arg-type]
    items = documents.list(args.collection)
    if not items:
        print("No documents yet; add some with `assistant docs add PATH`.")
        return 0
    rows = [("COLLECTION", "STATUS", "CHUNKS", "TITLE", "PATH")]
    for item in items:
        rows.append((item["collection"], item["status"], str(item["chunks"]), (item["title"] or "")[:40], item["path"]))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    for row in rows:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths)) + "  " + row[-1])
    for item in items:
        if item["error"]:
            print(f"  ✗ {item['error']}")
    watched = documents.watched()
    if watched:
        print("\nWatched folders: " + ", ".join(f"{p} ({c})" for c, p in watched))
    return 0


def cmd_docs_remove(args, services) -> int:
    documents = Documents(services.store, embed=lambda texts: None, counter=default_counter(services))  # type: ignore[arg-type]
    n = documents.remove(args.target, args.collection)
    print(f"Removed {n} file{'s' if n != 1 else ''} and all their passages.")
    return 0


def cmd_docs_reindex(args, services) -> int:
    documents = _documents(services)
    if args.collection:
        documents.collection_id(args.collection)  # unknown name: one clear error
    return _cancellable(lambda cancel: documents.reindex(args.collection, cancel))


def cmd_docs_sync(args, services) -> int:
    documents = _documents(services)
    return _cancellable(lambda cancel: documents.sync(cancel))


def _scope(documents: Documents, collection: str | None) -> Scope | None:
    return Scope(collections=[documents.collection_id(collection)]) if collection else None


def cmd_docs_search(args, services) -> int:
    embed = engine_embedder(services)
    documents = Documents(services.store, embed, default_counter(services))
    retriever = Retriever(services.store, embed)
    hits = retriever.search(args.query, k=args.k, scope=_scope(documents, args.collection), mode=args.mode)
    if not hits:
        print("Nothing found.")
    for n, hit in enumerate(hits, 1):
        passage = " ".join(hit.text.split())
        print(f"[{n}] {hit.path} — {hit.location()} (chunk {hit.chunk_id}, score {hit.score:.4f})\n    {passage[:200]}")
    return 0


def cmd_ask(args, services) -> int:
    """One question answered from the documents, through the chat's own session (nothing stored).

    The answer printed first is the sentence of the sources that answers (or "I couldn't find
    this"), then the model's reply when the session found that it agrees with that sentence;
    otherwise the reply is left out unless ``--show-attempt`` (assistant/documents/answers.py)."""
    documents, _retriever = services.documents_core()
    scope = _scope(documents, args.collection)
    if documents.stats()["chunks"] == 0:
        raise DocumentsError("No documents are indexed yet; add some with `assistant docs add PATH`.")
    model = services.library.get(args.model) if args.model else services.library.for_task("chat")
    session = ChatSession(services, persist=False, model_id=model.id,
                          documents={"collections": scope.collections if scope else None,
                                     "only": bool(args.only_documents)},
                          budget_tokens=args.budget)
    prepared: TurnPrepared | None = None
    done: ReplyDone | None = None
    used_model = True
    try:
        for event in session.turn(args.question):
            if isinstance(event, TurnPrepared):
                prepared = event
                used_model = not event.refused
                if event.sources:
                    print(format_quote(list(event.sources)) or NOT_FOUND, flush=True)
            elif isinstance(event, Token) and not (prepared and prepared.sources):
                sys.stdout.write(event.text)  # the refusal, said without the model
                sys.stdout.flush()
            elif isinstance(event, ReplyDone):
                done = event
            elif isinstance(event, ReplyFailed):
                print()
                if event.kind != "cancelled":
                    raise DocumentsError(event.text)
    except KeyboardInterrupt:
        print("\nassistant: stopped", file=sys.stderr)
        return 130
    sources = list(done.sources if done else prepared.sources if prepared else [])
    if done is not None and sources:
        quoted = next((source for source in sources if source.get("quote")), None)
        reply = done.message.text.strip()
        if quoted is not None and quoted.get("agrees"):
            print(f"\nThe model's answer: {reply}")
        elif args.show_attempt and reply:
            print(f"\nThe model's attempt (it does not agree with your documents): {reply}")
        elif reply:
            print("\n(The model's attempt is hidden: it does not agree with your documents; "
                  "--show-attempt prints it.)", file=sys.stderr)
    else:
        print()
    if sources:
        print("\nSources:\n" + format_sources(sources))
    budget = prepared.budget if prepared and prepared.budget else {"used": 0, "total": 0}
    print(f"\n(passages used {budget['used']} of {budget['total']} prompt tokens"
          + ("" if used_model else "; nothing relevant was found, so the model was not asked") + ")",
          file=sys.stderr)
    return 0
