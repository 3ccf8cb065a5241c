"""Search, export and import of the conversation history (backups of the whole database are
the store's: :mod:`assistant.backups`).

Threading: :class:`History` methods run on the caller's thread and use the store's lock
(one short read or one write transaction each), so the store stays the single owner of all
writes. The GUI calls them from worker threads, never the GUI thread; the CLI from its main
thread.

Search
    FTS5 (``unicode61``, ``remove_diacritics 2``) over every message and every title,
    ranked by ``bm25`` (among the newest 2,000 matches, which bounds the cost of a word
    found in nearly every message), with ``snippet()`` highlights. User text never reaches FTS5 as
    syntax: each word becomes a quoted term (all must match), ``"a phrase"`` stays a
    phrase, and a trailing ``*`` makes a prefix (``transl*``). Filters: conversation, role,
    model, date range; the trash is left out. Of a regenerated reply only the chosen variant
    is found: a hit opens the conversation at the text it shows, and the other variants are one
    click away under it.

Export format (``schema_version`` 1), documented in ``docs/history-export-schema.md``::

    {
      "format": "local-assistant-history",     # identifies the file
      "schema_version": 1,                     # bumped on any incompatible change
      "exported_at": "2025-01-31T12:00:00Z",   # informational
      "conversations": [
        {
          "id": "3f2a...", "title": "...",
          "created_at": 1738324800.25,          # seconds since the epoch, UTC
          "last_activity_at": 1738324900.5,
          "pinned": false, "archived": false,
          "deleted_at": null,                   # a number while in the trash
          "settings": {"SamplingParams": {...}},# per-conversation settings, key -> JSON value
          "messages": [
            {"id": "9c1e...", "role": "user" | "assistant" | "system", "text": "...",
             "model": "smollm2-..." | null, "sampling": {...}, "metrics": {...},
             "status": "complete" | "interrupted" | "streaming",
             "created_at": 1738324801.0, "updated_at": 1738324801.0,
             "documents": ["doc-id", ...], "adapter": "adapter-id" | null,
             "variant_of": "9c1e..." | null,     # a regenerated reply: the first reply of its variants
             "chosen": true,                      # the variant shown and sent on (true without variants)
             "reasoning": "..."}                  # a reasoning model's thinking ("" if none; optional)
          ]
        }
      ]
    }

Import reads only this format, validates the whole file (size cap first) before touching
the database, then adds everything in one transaction. Conversations and messages whose
``id`` is already present are skipped and reported, never overwritten; new messages of a
conversation already present are added to it.

Why one module of ~700 lines: search, export and import share the message columns, the
validation of untrusted export files and one History object over the store; apart they
would import each other.
"""

from __future__ import annotations

import json
import math
import os
import re
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable, Iterator

from assistant.errors import HistoryError
from assistant.vault.cipher import dbapi
from assistant.wording import metrics_line
from engine.atomic import WriteFailedError, atomic_write
from assistant.history.conversations import (
    MAX_TITLE_CHARS,
    MESSAGE_READ_COLUMNS,
    ROLES,
    STATUSES,
    Conversation,
    conversation_from_row,
    Message,
    message_from_row,
    to_json,
)
from assistant.store import Store, conversation_scope

EXPORT_FORMAT = "local-assistant-history"
EXPORT_SCHEMA_VERSION = 1
#: Import refuses larger files before reading them: parsing JSON takes several times the
#: file's size in memory, and no real history comes close (200,000 messages ~ 100 MB).
DEFAULT_MAX_IMPORT_BYTES = 256 * 1024 * 1024
#: Search results per query unless asked otherwise, and the most one query may ask for.
DEFAULT_SEARCH_LIMIT = 20
MAX_SEARCH_LIMIT = 1000
#: More words than this is not a search but a pasted paragraph; FTS5 would still cope, the
#: user would not get useful ranking.
MAX_QUERY_TERMS = 64
#: Markers around highlighted words in :attr:`SearchHit.snippet` (private-use characters,
#: which never occur in real text); render with :meth:`SearchHit.highlighted`.
HIGHLIGHT_START = "\ue000"
HIGHLIGHT_END = "\ue001"
ELLIPSIS = "…"
#: bm25 ranks at most this many matching messages, the newest: exact whenever a query
#: matches fewer (any word in under 1% of 200,000 messages), and a bound on the cost of one
#: that matches nearly everything; then the best of the newest 2,000 matches are shown.
#: Measured on 200,000 messages: the most common word costs ~20 ms instead of ~360 ms.
RANK_WINDOW = 2000
#: Tokens of context around the matches in a message snippet.
SNIPPET_TOKENS = 16



# ===== search ==========================================================================
_QUERY_PART = re.compile(r'"([^"]*)"(\*?)|([^\s"]+)')
# unicode61 indexes letters and numbers; a term with neither would be an empty phrase.
_HAS_WORD = re.compile(r"[^\W_]")


def fts_query(text: str) -> str:
    """Turn what the user typed into a safe FTS5 query (every term quoted, all required).

    ``"exact phrase"`` stays a phrase, ``word*`` and ``"phrase"*`` are prefixes; FTS5
    operators (AND, OR, NOT, NEAR, ``:``, ``^``, parentheses) are searched for as words.
    """
    if not isinstance(text, str):
        raise HistoryError("The search must be text.")
    # FTS5 reads the query as a C string: a NUL would end it inside a quoted term. It is a
    # separator to the tokenizer anyway.
    text = text.replace("\x00", " ")
    terms: list[str] = []
    for match in _QUERY_PART.finditer(text):
        if match.group(1) is not None:
            body, prefix = match.group(1), match.group(2)
        else:
            word = match.group(3)
            prefix = "*" if word.endswith("*") else ""
            body = word.rstrip("*").replace("*", " ").strip()  # a * inside a word is not an operator
        if not _HAS_WORD.search(body):
            continue
        terms.append('"' + body.replace('"', '""') + '"' + prefix)
    if not terms:
        raise HistoryError("Type at least one word to search for.")
    if len(terms) > MAX_QUERY_TERMS:
        raise HistoryError(f"A search can have at most {MAX_QUERY_TERMS} words; this one has {len(terms)}.")
    return " ".join(terms)


@dataclass(frozen=True)
class SearchHit:
    kind: str  # "message" (a message's text matched) or "title" (a conversation's title)
    conversation_id: str
    conversation_title: str
    message_id: str | None  # None for a title hit
    role: str | None
    model: str | None
    created_at: float  # the message's time, or the conversation's last activity for a title hit
    snippet: str  # matched words between HIGHLIGHT_START and HIGHLIGHT_END
    score: float  # bm25: lower is better

    def highlighted(self, start: str = "[", end: str = "]") -> str:
        """The snippet with the highlight markers replaced (``<b>``/``</b>``, ANSI bold...)."""
        return self.snippet.replace(HIGHLIGHT_START, start).replace(HIGHLIGHT_END, end)

    def parts(self) -> list[tuple[str, bool]]:
        """The snippet as (text, highlighted) pieces, for a widget that styles runs itself."""
        pieces: list[tuple[str, bool]] = []
        for i, chunk in enumerate(re.split(f"[{HIGHLIGHT_START}{HIGHLIGHT_END}]", self.snippet)):
            if chunk:
                pieces.append((chunk, i % 2 == 1))
        return pieces


def _timestamp(value: Any, what: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        if value.tzinfo is None:
            value = value.astimezone()  # a naive time is the user's local time
        return value.timestamp()
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    raise HistoryError(f"{what} must be a date and time.")


# ===== export / import data ============================================================
@dataclass
class ExportResult:
    path: Path
    conversations: int
    messages: int


@dataclass
class ImportReport:
    conversations_added: int = 0
    messages_added: int = 0
    #: Conversations already here (kept as they are; their new messages, if any, were added).
    conversations_existing: list[str] = field(default_factory=list)
    #: Messages whose id was already here (in this database or earlier in the same file).
    messages_skipped: int = 0

    def summary(self) -> str:
        text = f"Imported {self.conversations_added} conversation(s) and {self.messages_added} message(s)"
        skipped = []
        if self.conversations_existing:
            skipped.append(f"{len(self.conversations_existing)} conversation(s) already here were kept as they are")
        if self.messages_skipped:
            skipped.append(f"{self.messages_skipped} duplicate message(s) were skipped")
        return text + ("; " + ", ".join(skipped) if skipped else "") + "."


class _Invalid(Exception):
    pass


def _check_text(value: Any, where: str, *, nullable: bool = False, max_chars: int | None = None) -> None:
    if value is None and nullable:
        return
    if not isinstance(value, str):
        raise _Invalid(f"{where} must be {'text or null' if nullable else 'text'}")
    if max_chars is not None and len(value) > max_chars:
        raise _Invalid(f"{where} is longer than {max_chars} characters")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise _Invalid(f"{where} contains an invalid character (a lone surrogate)") from None


def _check_number(value: Any, where: str, *, nullable: bool = False) -> None:
    if value is None and nullable:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise _Invalid(f"{where} must be a number of seconds{' or null' if nullable else ''}")


def _check_bool(value: Any, where: str) -> None:
    if not isinstance(value, bool):
        raise _Invalid(f"{where} must be true or false")


def _check_object(value: Any, where: str) -> None:
    if not isinstance(value, dict):
        raise _Invalid(f"{where} must be an object")
    # Keys and strings nested anywhere must be storable as UTF-8 too.
    try:
        json.dumps(value, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        raise _Invalid(f"{where} contains an invalid character (a lone surrogate)") from None


_ID_MAX = 128


def validate_export(doc: Any) -> list[dict]:
    """Check a parsed export completely; returns its conversations with defaults filled in.

    Raises :class:`HistoryError` naming the first problem and where it is.
    """
    if not isinstance(doc, dict) or doc.get("format") != EXPORT_FORMAT:
        raise HistoryError(f"This is not a history export of this app (no \"format\": \"{EXPORT_FORMAT}\").")
    version = doc.get("schema_version")
    if isinstance(version, bool) or not isinstance(version, int):
        raise HistoryError("This history export has no valid schema_version.")
    if version > EXPORT_SCHEMA_VERSION:
        raise HistoryError(
            f"This history export was written by a newer version of the app (schema {version}; "
            f"this version reads schema {EXPORT_SCHEMA_VERSION}). Nothing was imported; please update the app."
        )
    if version != EXPORT_SCHEMA_VERSION:
        raise HistoryError(
            f"Unsupported history export schema {version} (this version reads schema {EXPORT_SCHEMA_VERSION})."
        )
    conversations = doc.get("conversations")
    if not isinstance(conversations, list):
        raise HistoryError("This history export has no \"conversations\" list.")
    out: list[dict] = []
    try:
        for i, conv in enumerate(conversations):
            where = f"conversations[{i}]"
            if not isinstance(conv, dict):
                raise _Invalid(f"{where} must be an object")
            _check_text(conv.get("id"), f"{where}.id", max_chars=_ID_MAX)
            if not conv["id"]:
                raise _Invalid(f"{where}.id is empty")
            _check_text(conv.get("title"), f"{where}.title", max_chars=MAX_TITLE_CHARS * 20)
            _check_number(conv.get("created_at"), f"{where}.created_at")
            _check_number(conv.get("last_activity_at", conv.get("created_at")), f"{where}.last_activity_at")
            _check_bool(conv.get("pinned", False), f"{where}.pinned")
            _check_bool(conv.get("archived", False), f"{where}.archived")
            _check_number(conv.get("deleted_at"), f"{where}.deleted_at", nullable=True)
            settings = conv.get("settings", {})
            _check_object(settings, f"{where}.settings")
            messages = conv.get("messages", [])
            if not isinstance(messages, list):
                raise _Invalid(f"{where}.messages must be a list")
            clean_messages = []
            for j, msg in enumerate(messages):
                mwhere = f"{where}.messages[{j}]"
                if not isinstance(msg, dict):
                    raise _Invalid(f"{mwhere} must be an object")
                _check_text(msg.get("id"), f"{mwhere}.id", max_chars=_ID_MAX)
                if not msg["id"]:
                    raise _Invalid(f"{mwhere}.id is empty")
                if msg.get("role") not in ROLES:
                    raise _Invalid(f"{mwhere}.role must be one of {', '.join(ROLES)}")
                _check_text(msg.get("text"), f"{mwhere}.text")
                _check_text(msg.get("model"), f"{mwhere}.model", nullable=True)
                _check_object(msg.get("sampling", {}), f"{mwhere}.sampling")
                _check_object(msg.get("metrics", {}), f"{mwhere}.metrics")
                if msg.get("status", "complete") not in STATUSES:
                    raise _Invalid(f"{mwhere}.status must be one of {', '.join(STATUSES)}")
                _check_number(msg.get("created_at"), f"{mwhere}.created_at")
                _check_number(msg.get("updated_at", msg.get("created_at")), f"{mwhere}.updated_at")
                documents = msg.get("documents", [])
                if not isinstance(documents, list):
                    raise _Invalid(f"{mwhere}.documents must be a list")
                for k, doc_id in enumerate(documents):
                    _check_text(doc_id, f"{mwhere}.documents[{k}]")
                _check_text(msg.get("adapter"), f"{mwhere}.adapter", nullable=True)
                _check_text(msg.get("variant_of"), f"{mwhere}.variant_of", nullable=True, max_chars=_ID_MAX)
                _check_bool(msg.get("chosen", True), f"{mwhere}.chosen")
                _check_text(msg.get("reasoning", ""), f"{mwhere}.reasoning")
                clean_messages.append(
                    {
                        "id": msg["id"],
                        "role": msg["role"],
                        "text": msg["text"],
                        "model": msg.get("model"),
                        "sampling": msg.get("sampling", {}),
                        "metrics": msg.get("metrics", {}),
                        "status": msg.get("status", "complete"),
                        "created_at": msg["created_at"],
                        "updated_at": msg.get("updated_at", msg["created_at"]),
                        "documents": documents,
                        "adapter": msg.get("adapter"),
                        "variant_of": msg.get("variant_of"),
                        "chosen": msg.get("chosen", True),
                        "reasoning": msg.get("reasoning", ""),
                    }
                )
            last = conv.get("last_activity_at")
            if last is None:
                last = max([conv["created_at"]] + [m["created_at"] for m in clean_messages])
            out.append(
                {
                    "id": conv["id"],
                    "title": conv["title"],
                    "created_at": conv["created_at"],
                    "last_activity_at": last,
                    "pinned": conv.get("pinned", False),
                    "archived": conv.get("archived", False),
                    "deleted_at": conv.get("deleted_at"),
                    "settings": settings,
                    "messages": clean_messages,
                }
            )
    except _Invalid as exc:
        raise HistoryError(f"The history export is not valid: {exc}. Nothing was imported.") from None
    return out


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not allowed in JSON")


def read_export_file(path: str | os.PathLike, max_bytes: int = DEFAULT_MAX_IMPORT_BYTES) -> list[dict]:
    """Read, parse and validate an export file without touching any database."""
    path = Path(path)
    try:
        size = path.stat().st_size
        if path.is_dir():
            raise HistoryError(f"{path} is a folder, not a history export file.")
        if size > max_bytes:
            raise HistoryError(
                f"{path} is too large to import ({size / 1e6:.1f} MB; the limit is {max_bytes / 1e6:.0f} MB)."
            )
        with path.open("rb") as handle:
            data = handle.read(max_bytes + 1)  # the file may have grown since stat()
    except FileNotFoundError:
        raise HistoryError(f"No such file: {path}.") from None
    except PermissionError:
        raise HistoryError(f"Cannot read {path}: permission denied.") from None
    except OSError as exc:
        raise HistoryError(f"Cannot read {path}: {exc.strerror or exc}.") from None
    except ValueError:  # a NUL byte in the name
        raise HistoryError(f"{str(path)!r} is not a valid file name.") from None
    if len(data) > max_bytes:
        raise HistoryError(f"{path} is too large to import (the limit is {max_bytes / 1e6:.0f} MB).")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise HistoryError(f"{path} is not a JSON text file (not UTF-8 at byte {exc.start}).") from None
    try:
        doc = json.loads(text, parse_constant=_reject_constant)
    except json.JSONDecodeError as exc:
        raise HistoryError(f"{path} is not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg}).") from None
    except ValueError as exc:  # NaN / Infinity
        raise HistoryError(f"{path} is not valid JSON ({exc}).") from None
    except RecursionError:
        raise HistoryError(f"{path} is nested too deeply to be a history export.") from None
    return validate_export(doc)


# ===== Markdown ========================================================================
def _local_time(ts: float | None) -> str:
    if ts is None:
        return ""
    return datetime.fromtimestamp(ts).astimezone().strftime("%Y-%m-%d %H:%M:%S %Z").strip()




def conversation_markdown(conversation: Conversation, messages: list[Message]) -> str:
    """One conversation as readable Markdown (for people; JSON is the format to re-import)."""
    lines = [f"# {conversation.title}", ""]
    facts = [f"Started {_local_time(conversation.created_at)}", f"{len(messages)} messages"]
    if conversation.pinned:
        facts.append("pinned")
    if conversation.archived:
        facts.append("archived")
    if conversation.deleted_at is not None:
        facts.append("in the trash")
    lines += [f"*{' · '.join(facts)}*", ""]
    groups: dict[str, list[str]] = {}
    for message in messages:
        if message.variant_of:
            groups.setdefault(message.variant_of, []).append(message.id)
    for message in messages:
        heading = message.role.capitalize()
        details = [d for d in (message.model, message.adapter and f"adapter {message.adapter}") if d]
        if message.status != "complete":
            details.append(message.status)
        if message.variant_of:
            group = groups[message.variant_of]
            details.append(f"variant {group.index(message.id) + 1} of {len(group)}"
                           + (", chosen" if message.chosen else ""))
        if details:
            heading += f" ({', '.join(details)})"
        lines += [f"## {heading} · {_local_time(message.created_at)}", ""]
        if message.reasoning:
            # The thinking is kept, set apart as a quote before the answer it led to.
            quoted = "\n".join(f"> {line}" if line else ">" for line in message.reasoning.splitlines())
            lines += ["> **Reasoning**", ">", quoted, ""]
        lines += [message.text, ""]
        extra = metrics_line(message.metrics)
        if message.documents:
            extra = "; ".join(x for x in (extra, "documents: " + ", ".join(message.documents)) if x)
        if extra:
            lines += [f"*{extra}*", ""]
    return "\n".join(lines)


# ===== the service =====================================================================
class History:
    """Search and export/import over one store. See the module docstring."""

    def __init__(self, store: Store):
        self._store = store

    # ----- search -------------------------------------------------------------------------
    def search(
        self,
        query: str,
        *,
        conversation_id: str | None = None,
        role: str | None = None,
        model: str | None = None,
        since: float | datetime | None = None,
        until: float | datetime | None = None,
        limit: int = DEFAULT_SEARCH_LIMIT,
        include_titles: bool = True,
    ) -> list[SearchHit]:
        """Best matches first (bm25, over the newest :data:`RANK_WINDOW` matching messages).

        ``since`` is inclusive, ``until`` exclusive.

        Title hits are included unless a role or model filter is given (a title has
        neither); their date is the conversation's last activity.
        """
        match = fts_query(query)
        if role is not None and role not in ROLES:
            raise HistoryError(f"Role must be one of {', '.join(ROLES)}, not {role!r}.")
        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_SEARCH_LIMIT:
            raise HistoryError(f"The number of results must be between 1 and {MAX_SEARCH_LIMIT}.")
        start, end = _timestamp(since, "since"), _timestamp(until, "until")

        # Of a regenerated reply, only the variant the conversation shows (see the module docstring).
        message_filters, message_params = ["c.deleted_at IS NULL", "m.chosen = 1"], []
        title_filters, title_params = ["c.deleted_at IS NULL"], []
        if conversation_id is not None:
            message_filters.append("m.conversation_id = ?")
            message_params.append(conversation_id)
            title_filters.append("c.id = ?")
            title_params.append(conversation_id)
        if role is not None:
            message_filters.append("m.role = ?")
            message_params.append(role)
        if model is not None:
            message_filters.append("m.model = ?")
            message_params.append(model)
        if start is not None:
            message_filters.append("m.created_at >= ?")
            message_params.append(start)
            title_filters.append("c.last_activity_at >= ?")
            title_params.append(start)
        if end is not None:
            message_filters.append("m.created_at < ?")
            message_params.append(end)
            title_filters.append("c.last_activity_at < ?")
            title_params.append(end)

        hits: list[SearchHit] = []
        try:
            with self._store.snapshot() as conn:
                # bm25 is computed for the newest RANK_WINDOW matches only (FTS5 walks its
                # doclists newest first and stops there), then ranked; snippets are built for
                # the few rows shown only. A word in most messages would otherwise cost a
                # bm25 and a snippet per message: 200,000 of them, a third of a second.
                ranked = conn.execute(
                    "SELECT rowid, score FROM (SELECT messages_fts.rowid AS rowid, bm25(messages_fts) AS score "
                    "FROM messages_fts JOIN messages m ON m.n = messages_fts.rowid "
                    "JOIN conversations c ON c.id = m.conversation_id "
                    f"WHERE messages_fts MATCH ? AND {' AND '.join(message_filters)} "
                    "ORDER BY messages_fts.rowid DESC LIMIT ?) ORDER BY score LIMIT ?",
                    (match, *message_params, RANK_WINDOW, limit),
                ).fetchall()
                for rowid, score in ranked:
                    row = conn.execute(
                        "SELECT snippet(messages_fts, 0, ?, ?, ?, ?), m.id, m.conversation_id, c.title, m.role, "
                        "m.model, m.created_at FROM messages_fts JOIN messages m ON m.n = messages_fts.rowid "
                        "JOIN conversations c ON c.id = m.conversation_id "
                        "WHERE messages_fts MATCH ? AND messages_fts.rowid = ?",
                        (HIGHLIGHT_START, HIGHLIGHT_END, ELLIPSIS, SNIPPET_TOKENS, match, rowid),
                    ).fetchone()
                    hits.append(SearchHit("message", row[2], row[3], row[1], row[4], row[5], row[6], row[0], score))
                if include_titles and role is None and model is None:
                    for row in conn.execute(
                        "SELECT highlight(conversations_fts, 0, ?, ?), c.id, c.title, c.last_activity_at, "
                        "bm25(conversations_fts) AS score FROM conversations_fts "
                        "JOIN conversations c ON c.n = conversations_fts.rowid "
                        f"WHERE conversations_fts MATCH ? AND {' AND '.join(title_filters)} ORDER BY score LIMIT ?",
                        (HIGHLIGHT_START, HIGHLIGHT_END, match, *title_params, limit),
                    ):
                        hits.append(SearchHit("title", row[1], row[2], None, None, None, row[3], row[0], row[4]))
        except dbapi.OperationalError as exc:
            # fts_query() quotes everything, so this is not the user's syntax; say what failed.
            raise HistoryError(f"Search failed: {exc}.") from exc
        hits.sort(key=lambda h: h.score)
        return hits[:limit]

    # ----- export -------------------------------------------------------------------------
    def _selected(self, conn, conversation_id: str | None, include_deleted: bool) -> list[tuple]:
        if conversation_id is not None:
            rows = conn.execute(
                "SELECT id, title, created_at, last_activity_at, pinned, archived, deleted_at, n "
                "FROM conversations WHERE id = ?",
                (conversation_id,),
            ).fetchall()
            if not rows:
                raise HistoryError(f"No conversation with id {conversation_id}.")
            return rows
        where = "" if include_deleted else "WHERE deleted_at IS NULL"
        return conn.execute(
            "SELECT id, title, created_at, last_activity_at, pinned, archived, deleted_at, n "
            f"FROM conversations {where} ORDER BY created_at, n"
        ).fetchall()

    def _iter_export(
        self, conversation_id: str | None, include_deleted: bool
    ) -> Iterator[tuple[Conversation, list[Message], dict]]:
        """Each selected conversation with its messages and settings, all from one snapshot."""
        with self._store.snapshot() as conn:
            for row in self._selected(conn, conversation_id, include_deleted):
                messages = [
                    message_from_row(r)
                    for r in conn.execute(
                        f"SELECT {MESSAGE_READ_COLUMNS} FROM messages WHERE conversation_id = ? ORDER BY created_at, n",
                        (row[0],),
                    )
                ]
                settings = {
                    key: json.loads(value)
                    for key, value in conn.execute(
                        "SELECT key, value FROM settings WHERE scope = ? ORDER BY key", (conversation_scope(row[0]),)
                    )
                }
                conversation = conversation_from_row((*row[:7], len(messages)))
                yield conversation, messages, settings

    def export_document(self, conversation_id: str | None = None, *, include_deleted: bool = False) -> dict:
        """The JSON export as a Python object (one conversation, or all not in the trash)."""
        conversations = []
        for conv, messages, settings in self._iter_export(conversation_id, include_deleted):
            conversations.append(
                {
                    "id": conv.id,
                    "title": conv.title,
                    "created_at": conv.created_at,
                    "last_activity_at": conv.last_activity_at,
                    "pinned": conv.pinned,
                    "archived": conv.archived,
                    "deleted_at": conv.deleted_at,
                    "settings": settings,
                    "messages": [
                        {
                            "id": m.id,
                            "role": m.role,
                            "text": m.text,
                            "model": m.model,
                            "sampling": m.sampling,
                            "metrics": m.metrics,
                            "status": m.status,
                            "created_at": m.created_at,
                            "updated_at": m.updated_at,
                            "documents": m.documents,
                            "adapter": m.adapter,
                            "variant_of": m.variant_of,
                            "chosen": m.chosen,
                            "reasoning": m.reasoning,
                        }
                        for m in messages
                    ],
                }
            )
        return {
            "format": EXPORT_FORMAT,
            "schema_version": EXPORT_SCHEMA_VERSION,
            "exported_at": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "conversations": conversations,
        }

    def export(
        self,
        path: str | os.PathLike,
        fmt: str = "json",
        *,
        conversation_id: str | None = None,
        include_deleted: bool = False,
    ) -> ExportResult:
        """Write one conversation or all to ``path`` (a file, or a folder to put one in),
        atomically: on any failure (folder not writable, disk full) no file is left behind."""
        if fmt not in ("json", "md"):
            raise HistoryError(f"Export format must be json or md, not {fmt!r}.")
        target = Path(path)
        if target.is_dir():
            # An imported id can hold "/", "..", NUL: only safe characters reach the file name,
            # so the export lands in the chosen folder and nowhere else.
            safe_id = re.sub(r"[^A-Za-z0-9_-]", "_", conversation_id[:12]) if conversation_id else ""
            what = f"conversation-{safe_id}" if conversation_id else "history"
            target = target / f"{what}-{datetime.now().strftime('%Y%m%d-%H%M%S')}.{fmt}"
        if fmt == "json":
            doc = self.export_document(conversation_id, include_deleted=include_deleted)
            count = len(doc["conversations"])
            messages = sum(len(c["messages"]) for c in doc["conversations"])
            self._write(target, lambda handle: json.dump(doc, handle, ensure_ascii=False, indent=2, allow_nan=False))
        else:
            parts = []
            messages = 0
            for conv, msgs, _settings in self._iter_export(conversation_id, include_deleted):
                parts.append(conversation_markdown(conv, msgs))
                messages += len(msgs)
            count = len(parts)
            self._write(target, lambda handle: handle.write("\n---\n\n".join(parts)))
        return ExportResult(path=target, conversations=count, messages=messages)

    @staticmethod
    def _write(target: Path, fill) -> None:
        try:
            with atomic_write(target, "w") as handle:
                fill(handle)
        except WriteFailedError as exc:
            raise HistoryError(f"{exc.strerror or exc}. Nothing was written.") from None
        except OSError as exc:
            raise HistoryError(f"Cannot write {target}: {exc.strerror or exc}. Nothing was written.") from None

    # ----- import -------------------------------------------------------------------------
    def import_file(self, path: str | os.PathLike, *, max_bytes: int = DEFAULT_MAX_IMPORT_BYTES) -> ImportReport:
        """Import a JSON export: validated whole first, then one transaction (all or nothing)."""
        return self.import_conversations(read_export_file(path, max_bytes))

    def import_document(self, doc: Any) -> ImportReport:
        return self.import_conversations(validate_export(doc))

    def import_conversations(self, conversations: Iterable[dict]) -> ImportReport:
        """Add validated conversations (see :func:`validate_export`); existing ids are skipped."""
        report = ImportReport()
        insert_message = (
            f"INSERT INTO messages ({MESSAGE_READ_COLUMNS}) VALUES "
            f"({', '.join('?' * len(MESSAGE_READ_COLUMNS.split(',')))}) ON CONFLICT (id) DO NOTHING"
        )
        with self._store.transaction() as conn:
            for conv in conversations:
                added = conn.execute(
                    "INSERT INTO conversations (id, title, created_at, last_activity_at, pinned, archived, deleted_at) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO NOTHING",
                    (
                        conv["id"],
                        conv["title"],
                        conv["created_at"],
                        conv["last_activity_at"],
                        int(conv["pinned"]),
                        int(conv["archived"]),
                        conv["deleted_at"],
                    ),
                ).rowcount
                if added:
                    report.conversations_added += 1
                    for key, value in conv["settings"].items():
                        conn.execute(
                            "INSERT INTO settings (scope, key, value) VALUES (?, ?, ?) ON CONFLICT DO NOTHING",
                            (conversation_scope(conv["id"]), key, to_json(value)),
                        )
                else:
                    report.conversations_existing.append(conv["id"])
                for m in conv["messages"]:
                    inserted = conn.execute(
                        insert_message,
                        (
                            m["id"],
                            conv["id"],
                            m["role"],
                            m["text"],
                            m["model"],
                            to_json(m["sampling"]),
                            to_json(m["metrics"]),
                            m["status"],
                            m["created_at"],
                            m["updated_at"],
                            to_json(m["documents"]),
                            m["adapter"],
                            m["variant_of"],
                            int(m["chosen"]),
                            m["reasoning"],
                        ),
                    ).rowcount
                    if inserted:
                        report.messages_added += 1
                    else:
                        report.messages_skipped += 1
        return report
