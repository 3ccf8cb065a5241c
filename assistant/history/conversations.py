"""Conversations and their messages, kept in the app's one :class:`~assistant.store.Store`.

Threading: every method runs on the caller's thread and takes the store's lock for the
duration of one short transaction, so the store stays the single owner of all writes. The
GUI calls these from worker threads (never the GUI thread); the CLI from its main thread.
A :class:`ReplyWriter` is fed by whichever thread receives the engine's tokens.

Durability: a reply is written while it streams. :meth:`Conversations.begin_reply` commits
an empty ``streaming`` row at once, :meth:`ReplyWriter.append` commits the text so far at
most every ``save_interval`` seconds (250 ms by default), and ``finish``/``interrupt``
commit the final text with its status. A crash or kill therefore loses at most the text of
the last interval, never an earlier message; :meth:`Conversations.recover_interrupted`
marks replies a crash left ``streaming`` as ``interrupted`` at the next start.

Why one module of ~610 lines: the conversation rows, their messages and the reply writer share
one transaction discipline over the store.
"""

from __future__ import annotations

import json
import math
import time
import uuid
from dataclasses import asdict, dataclass, field, is_dataclass
from typing import Any, Callable, Iterable, Mapping, TypeVar

from assistant.errors import ConversationError, ConversationNotFoundError
from assistant.store import Store, conversation_scope

T = TypeVar("T")

ROLES = ("system", "user", "assistant")
STATUSES = ("complete", "interrupted", "streaming")
#: Title given to a conversation created without one (the window renames it later).
DEFAULT_TITLE = "New conversation"
#: Longest title kept; longer ones are cut so that lists and exports stay readable.
MAX_TITLE_CHARS = 500
#: How often a streaming reply is committed: often enough that a crash loses only a moment,
#: rarely enough that re-indexing a long reply (FTS5 update) stays a small cost.
DEFAULT_SAVE_INTERVAL_S = 0.25


@dataclass(frozen=True)
class Conversation:
    id: str  # uuid4 hex
    title: str
    created_at: float  # seconds since the epoch (UTC)
    last_activity_at: float  # last message added or reply finished; the list is sorted by it
    pinned: bool = False
    archived: bool = False
    deleted_at: float | None = None  # set while in the trash; None otherwise
    message_count: int = 0

    @property
    def in_trash(self) -> bool:
        return self.deleted_at is not None


@dataclass(frozen=True)
class Message:
    id: str  # uuid4 hex
    conversation_id: str
    role: str  # one of ROLES
    text: str
    model: str | None = None  # model id that wrote it (assistant) or was selected (user)
    sampling: dict = field(default_factory=dict)  # SamplingParams as a dict
    metrics: dict = field(default_factory=dict)  # prompt_tokens, completion_tokens, ttft_ms, tokens_per_s...
    status: str = "complete"  # one of STATUSES
    created_at: float = 0.0
    updated_at: float = 0.0
    documents: list = field(default_factory=list)  # ids of the documents put in the prompt
    adapter: str | None = None  # LoRA adapter active while it was written
    variant_of: str | None = None  # id of the first reply of its group of variants (None: never regenerated)
    chosen: bool = True  # the variant shown and sent to the model (always True without variants)
    # A reasoning model's thinking (assistant/chat/reasoning.py), kept apart from ``text`` (the
    # answer), so search, titles, copies and the next turn's prompt see the answer only.
    reasoning: str = ""


def new_id() -> str:
    return uuid.uuid4().hex


def as_plain_dict(value: Any, what: str) -> dict:
    """A JSON object for a column: accepts a mapping or a dataclass (SamplingParams, metrics)."""
    if value is None:
        return {}
    if is_dataclass(value) and not isinstance(value, type):
        value = asdict(value)
    if not isinstance(value, Mapping):
        raise ConversationError(f"{what} must be a mapping, not {type(value).__name__}.")
    return dict(value)


def to_json(value: Any) -> str:
    """Compact JSON text for a column (sorted keys, no NaN); ConversationError if impossible."""
    # allow_nan=False: NaN is not JSON, and an export must be readable by any JSON parser.
    try:
        return json.dumps(value, ensure_ascii=False, allow_nan=False, sort_keys=True)
    except (TypeError, ValueError) as exc:
        raise ConversationError(f"Cannot store {value!r}: {exc}.") from exc


def clean_title(title: str | None) -> str:
    """A title as kept: one line, at most MAX_TITLE_CHARS, DEFAULT_TITLE when empty (also used
    by the incognito chat's in-memory conversation, so both keep the same titles)."""
    if title is None:
        return DEFAULT_TITLE
    if not isinstance(title, str):
        raise ConversationError("A title must be text.")
    title = " ".join(title.split())  # no line breaks or runs of spaces in a one-line title
    return title[:MAX_TITLE_CHARS] or DEFAULT_TITLE


_CONVERSATION_COLUMNS = (
    "c.id, c.title, c.created_at, c.last_activity_at, c.pinned, c.archived, c.deleted_at, "
    "(SELECT count(*) FROM messages m WHERE m.conversation_id = c.id)"
)
MESSAGE_COLUMNS = (
    "id, conversation_id, role, text, model, sampling, metrics, status, created_at, updated_at, documents, adapter"
)
#: What a read takes: the written columns, then the reply's variant group and whether it is the chosen one,
#: then its reasoning.
MESSAGE_READ_COLUMNS = MESSAGE_COLUMNS + ", variant_of, chosen, reasoning"


def conversation_from_row(row: tuple) -> Conversation:
    """A Conversation from the columns of ``_CONVERSATION_COLUMNS`` (the message count last)."""
    return Conversation(
        id=row[0],
        title=row[1],
        created_at=row[2],
        last_activity_at=row[3],
        pinned=bool(row[4]),
        archived=bool(row[5]),
        deleted_at=row[6],
        message_count=row[7],
    )


def message_from_row(row: tuple) -> Message:
    return Message(
        id=row[0],
        conversation_id=row[1],
        role=row[2],
        text=row[3],
        model=row[4],
        sampling=json.loads(row[5] or "{}"),
        metrics=json.loads(row[6] or "{}"),
        status=row[7],
        created_at=row[8],
        updated_at=row[9],
        documents=json.loads(row[10] or "[]"),
        adapter=row[11],
        variant_of=row[12] if len(row) > 12 else None,
        chosen=bool(row[13]) if len(row) > 13 else True,
        reasoning=(row[14] or "") if len(row) > 14 else "",
    )


def check_message(role: str, status: str, text: str) -> None:
    """What every message must be, stored or kept in memory (an incognito chat); raises
    :class:`ConversationError` in words."""
    if role not in ROLES:
        raise ConversationError(f"A message's role must be one of {', '.join(ROLES)}, not {role!r}.")
    if status not in STATUSES:
        raise ConversationError(f"A message's status must be one of {', '.join(STATUSES)}, not {status!r}.")
    if not isinstance(text, str):
        raise ConversationError("A message's text must be text.")


class Conversations:
    """Create, organise and fill conversations. See the module docstring for threading."""

    def __init__(
        self,
        store: Store,
        *,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ):
        self._store = store
        # Injectable so that tests can drive the save throttle without sleeping.
        self._clock = clock
        self._monotonic = monotonic

    @property
    def store(self) -> Store:
        return self._store

    # ----- conversations ------------------------------------------------------------------
    def create(self, title: str | None = None) -> Conversation:
        now = self._clock()
        conversation_id = new_id()
        with self._store.transaction() as conn:
            conn.execute(
                "INSERT INTO conversations (id, title, created_at, last_activity_at) VALUES (?, ?, ?, ?)",
                (conversation_id, clean_title(title), now, now),
            )
        return self.get(conversation_id)

    def get(self, conversation_id: str) -> Conversation:
        with self._store.reading() as conn:
            row = conn.execute(
                f"SELECT {_CONVERSATION_COLUMNS} FROM conversations c WHERE c.id = ?", (conversation_id,)
            ).fetchone()
        if row is None:
            raise ConversationNotFoundError(f"No conversation with id {conversation_id}.")
        return conversation_from_row(row)

    def exists(self, conversation_id: str) -> bool:
        with self._store.reading() as conn:
            return conn.execute("SELECT 1 FROM conversations WHERE id = ?", (conversation_id,)).fetchone() is not None

    def list(
        self,
        *,
        include_archived: bool = False,
        include_deleted: bool = False,
        only_archived: bool = False,
        only_deleted: bool = False,
        limit: int | None = None,
        offset: int = 0,
    ) -> list[Conversation]:
        """Conversations by last activity, pinned first; the trash and archive only when asked.

        The trash (``only_deleted``) is ordered by when things were deleted, newest first.
        """
        where: list[str] = []
        if only_deleted:
            where.append("c.deleted_at IS NOT NULL")
        elif not include_deleted:
            where.append("c.deleted_at IS NULL")
        if only_archived:
            where.append("c.archived = 1")
        elif not include_archived:
            where.append("c.archived = 0")
        order = "c.deleted_at DESC, c.n DESC" if only_deleted else "c.pinned DESC, c.last_activity_at DESC, c.n DESC"
        sql = f"SELECT {_CONVERSATION_COLUMNS} FROM conversations c"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += f" ORDER BY {order} LIMIT ? OFFSET ?"
        with self._store.reading() as conn:
            rows = conn.execute(sql, (-1 if limit is None else int(limit), int(offset))).fetchall()
        return [conversation_from_row(r) for r in rows]

    def trash(self) -> list[Conversation]:
        return self.list(include_archived=True, only_deleted=True)

    def _update(self, conversation_id: str, sql: str, params: tuple) -> Conversation:
        with self._store.transaction() as conn:
            cursor = conn.execute(f"UPDATE conversations SET {sql} WHERE id = ?", (*params, conversation_id))
            if cursor.rowcount == 0:
                raise ConversationNotFoundError(f"No conversation with id {conversation_id}.")
        return self.get(conversation_id)

    def rename(self, conversation_id: str, title: str) -> Conversation:
        return self._update(conversation_id, "title = ?", (clean_title(title),))

    def pin(self, conversation_id: str, pinned: bool = True) -> Conversation:
        return self._update(conversation_id, "pinned = ?", (int(bool(pinned)),))

    def archive(self, conversation_id: str, archived: bool = True) -> Conversation:
        return self._update(conversation_id, "archived = ?", (int(bool(archived)),))

    def delete(self, conversation_id: str) -> Conversation:
        """Move to the trash: hidden everywhere, recoverable with :meth:`restore` until emptied."""
        # COALESCE keeps the first deletion time if it is deleted twice.
        return self._update(conversation_id, "deleted_at = COALESCE(deleted_at, ?)", (self._clock(),))

    def restore(self, conversation_id: str) -> Conversation:
        """Take a conversation back out of the trash (the window's undo)."""
        return self._update(conversation_id, "deleted_at = NULL", ())

    def empty_trash(self, conversation_ids: Iterable[str] | None = None) -> int:
        """Delete conversations in the trash for good (all, or only these); returns how many.

        Their messages go with them (ON DELETE CASCADE, FTS kept in sync by triggers), and so
        do their per-conversation settings; the freed pages, the search index's old segments and
        the WAL are then wiped (:meth:`Store.erase_freed_space`). Conversations not in the trash
        are never touched.
        """
        with self._store.transaction() as conn:
            if conversation_ids is None:
                ids = [r[0] for r in conn.execute("SELECT id FROM conversations WHERE deleted_at IS NOT NULL")]
            else:
                wanted = list(conversation_ids)
                ids = [
                    r[0]
                    for r in conn.execute(
                        "SELECT id FROM conversations WHERE deleted_at IS NOT NULL AND id IN "
                        "(SELECT value FROM json_each(?))",
                        (json.dumps(wanted),),
                    )
                ]
            for conversation_id in ids:
                conn.execute("DELETE FROM settings WHERE scope = ?", (conversation_scope(conversation_id),))
                conn.execute("DELETE FROM conversations WHERE id = ?", (conversation_id,))
        if ids:
            # "For good" means the text cannot be read back from the file either.
            self._store.erase_freed_space(("messages_fts", "conversations_fts"))
        return len(ids)

    # ----- messages -----------------------------------------------------------------------
    def _check_writable(self, conn, conversation_id: str) -> None:
        row = conn.execute("SELECT deleted_at FROM conversations WHERE id = ?", (conversation_id,)).fetchone()
        if row is None:
            raise ConversationNotFoundError(f"No conversation with id {conversation_id}.")
        if row[0] is not None:
            raise ConversationError("This conversation is in the trash; restore it before adding to it.")

    @staticmethod
    def _message_values(
        conversation_id: str,
        role: str,
        text: str,
        *,
        model: str | None,
        sampling: Any,
        metrics: Any,
        status: str,
        documents: Iterable[str] | None,
        adapter: str | None,
        message_id: str | None,
        created_at: float,
    ) -> tuple:
        check_message(role, status, text)
        if not isinstance(created_at, (int, float)) or not math.isfinite(created_at):
            raise ConversationError("A message's time must be a finite number of seconds.")
        docs = [str(d) for d in (documents or [])]
        return (
            message_id or new_id(),
            conversation_id,
            role,
            text,
            model,
            to_json(as_plain_dict(sampling, "Sampling settings")),
            to_json(as_plain_dict(metrics, "Metrics")),
            status,
            created_at,
            created_at,
            to_json(docs),
            adapter,
        )

    def add_message(
        self,
        conversation_id: str,
        role: str,
        text: str,
        *,
        model: str | None = None,
        sampling: Any = None,
        metrics: Any = None,
        status: str = "complete",
        documents: Iterable[str] | None = None,
        adapter: str | None = None,
    ) -> Message:
        """Add one finished message (a user turn, a system prompt, a whole reply); committed on return."""
        return self.add_messages(
            conversation_id,
            [
                dict(
                    role=role,
                    text=text,
                    model=model,
                    sampling=sampling,
                    metrics=metrics,
                    status=status,
                    documents=documents,
                    adapter=adapter,
                )
            ],
        )[0]

    def add_messages(self, conversation_id: str, messages: Iterable[Mapping[str, Any]]) -> list[Message]:
        """Add several messages in one transaction (all or none); each a mapping of
        :meth:`add_message`'s arguments (``role`` and ``text`` required)."""
        now = self._clock()
        added: list[tuple] = []
        with self._store.transaction() as conn:
            self._check_writable(conn, conversation_id)
            for item in messages:
                item = dict(item)
                values = self._message_values(
                    conversation_id,
                    item.pop("role"),
                    item.pop("text"),
                    model=item.pop("model", None),
                    sampling=item.pop("sampling", None),
                    metrics=item.pop("metrics", None),
                    status=item.pop("status", "complete"),
                    documents=item.pop("documents", None),
                    adapter=item.pop("adapter", None),
                    message_id=None,
                    created_at=now,
                )
                if item:
                    raise ConversationError(f"Unknown message fields: {', '.join(sorted(item))}.")
                added.append(values)
            conn.executemany(f"INSERT INTO messages ({MESSAGE_COLUMNS}) VALUES ({', '.join('?' * 12)})", added)
            if added:
                conn.execute(
                    "UPDATE conversations SET last_activity_at = max(last_activity_at, ?) WHERE id = ?",
                    (now, conversation_id),
                )
        return [message_from_row(v) for v in added]

    def begin_reply(
        self,
        conversation_id: str,
        *,
        model: str | None = None,
        sampling: Any = None,
        documents: Iterable[str] | None = None,
        adapter: str | None = None,
        role: str = "assistant",
        save_interval: float = DEFAULT_SAVE_INTERVAL_S,
        variant_of: str | None = None,
    ) -> "ReplyWriter":
        """Start a reply that is saved while it streams; the empty row is committed on return.

        ``variant_of``: the id of a reply this one is written again for; the new reply joins
        that reply's variants as the chosen one, in the same transaction (see :meth:`variants`)."""
        now = self._clock()
        values = self._message_values(
            conversation_id,
            role,
            "",
            model=model,
            sampling=sampling,
            metrics=None,
            status="streaming",
            documents=documents,
            adapter=adapter,
            message_id=None,
            created_at=now,
        )
        with self._store.transaction() as conn:
            self._check_writable(conn, conversation_id)
            conn.execute(f"INSERT INTO messages ({MESSAGE_COLUMNS}) VALUES ({', '.join('?' * 12)})", values)
            if variant_of is not None:
                self._join_variants(conn, conversation_id, variant_of, values[0])
            conn.execute(
                "UPDATE conversations SET last_activity_at = max(last_activity_at, ?) WHERE id = ?",
                (now, conversation_id),
            )
        return ReplyWriter(self, values[0], conversation_id, save_interval)

    @staticmethod
    def _join_variants(conn, conversation_id: str, reply_id: str, new_id_: str) -> None:
        """Make ``new_id_`` the chosen variant of ``reply_id``'s group (in the caller's transaction)."""
        row = conn.execute("SELECT COALESCE(variant_of, id), role FROM messages WHERE id = ? AND conversation_id = ?",
                           (reply_id, conversation_id)).fetchone()
        if row is None or row[1] != "assistant":
            raise ConversationError("Only a reply of this conversation can be written again.")
        group = row[0]
        conn.execute("UPDATE messages SET variant_of = ?, chosen = 0 WHERE id = ? OR variant_of = ?",
                     (group, group, group))
        conn.execute("UPDATE messages SET variant_of = ?, chosen = 1 WHERE id = ?", (group, new_id_))

    def variants(self, message_id: str) -> list[Message]:
        """The variants of a reply (itself included), oldest first; just the reply when it was
        never regenerated."""
        with self._store.reading() as conn:
            rows = conn.execute(
                f"SELECT {MESSAGE_READ_COLUMNS} FROM messages WHERE variant_of = "
                "(SELECT variant_of FROM messages WHERE id = ?) ORDER BY created_at, n",
                (message_id,),
            ).fetchall()
        return [message_from_row(r) for r in rows] or [self.get_message(message_id)]

    def choose_variant(self, message_id: str) -> Message:
        """Make ``message_id`` the variant its conversation shows and the next turn sees."""
        with self._store.transaction() as conn:
            row = conn.execute("SELECT variant_of FROM messages WHERE id = ?", (message_id,)).fetchone()
            if row is None:
                raise ConversationError(f"No message with id {message_id}.")
            if row[0] is not None:
                conn.execute("UPDATE messages SET chosen = (id = ?) WHERE variant_of = ?", (message_id, row[0]))
        return self.get_message(message_id)

    def get_message(self, message_id: str) -> Message:
        with self._store.reading() as conn:
            row = conn.execute(f"SELECT {MESSAGE_READ_COLUMNS} FROM messages WHERE id = ?", (message_id,)).fetchone()
        if row is None:
            raise ConversationError(f"No message with id {message_id}.")
        return message_from_row(row)

    def messages(self, conversation_id: str) -> list[Message]:
        """The conversation's messages, oldest first (every variant of a regenerated reply)."""
        with self._store.reading() as conn:
            rows = conn.execute(
                f"SELECT {MESSAGE_READ_COLUMNS} FROM messages WHERE conversation_id = ? ORDER BY created_at, n",
                (conversation_id,),
            ).fetchall()
            if not rows and conn.execute("SELECT 1 FROM conversations WHERE id = ?", (conversation_id,)).fetchone() is None:
                raise ConversationNotFoundError(f"No conversation with id {conversation_id}.")
        return [message_from_row(r) for r in rows]

    def recover_interrupted(self) -> int:
        """Mark replies that a crash left ``streaming`` as ``interrupted``; returns how many.

        Call once at start, before any reply begins (the composition root does).
        """
        with self._store.transaction() as conn:
            return conn.execute(
                "UPDATE messages SET status = 'interrupted' WHERE status = 'streaming'"
            ).rowcount

    # used by ReplyWriter, under the store's lock
    def _save_reply(self, message_id: str, conversation_id: str, text: str, status: str, metrics: Any,
                    reasoning: str = "") -> None:
        now = self._clock()
        with self._store.transaction() as conn:
            if metrics is None:
                conn.execute(
                    "UPDATE messages SET text = ?, reasoning = ?, status = ?, updated_at = ? WHERE id = ?",
                    (text, reasoning, status, now, message_id),
                )
            else:
                conn.execute(
                    "UPDATE messages SET text = ?, reasoning = ?, status = ?, metrics = ?, updated_at = ? WHERE id = ?",
                    (text, reasoning, status, to_json(as_plain_dict(metrics, "Metrics")), now, message_id),
                )
            if status != "streaming":
                conn.execute(
                    "UPDATE conversations SET last_activity_at = max(last_activity_at, ?) WHERE id = ?",
                    (now, conversation_id),
                )

    # ----- per-conversation settings ------------------------------------------------------
    def load_settings(self, conversation_id: str, cls: type[T]) -> T:
        """A typed settings dataclass for this conversation (stored values over its defaults)."""
        return self._store.load_settings(conversation_scope(conversation_id), cls)

    def save_settings(self, conversation_id: str, value: Any) -> None:
        self._store.save_settings(conversation_scope(conversation_id), value)

    def get_setting(self, conversation_id: str, key: str, default: Any = None) -> Any:
        return self._store.get_setting(conversation_scope(conversation_id), key, default)

    def set_setting(self, conversation_id: str, key: str, value: Any) -> None:
        self._store.set_setting(conversation_scope(conversation_id), key, value)


class ReplyWriter:
    """One streaming reply. Feed it from the thread that receives tokens.

    ``append`` commits the accumulated text when ``save_interval`` has passed since the last
    save; ``finish``/``interrupt`` commit the final text and status. As a context manager it
    interrupts the reply if the block ends without ``finish`` (an exception, a cancel).
    Not meant to be shared between threads: one stream, one writer.
    """

    def __init__(self, owner: Conversations, message_id: str, conversation_id: str, save_interval: float):
        self._owner = owner
        self.message_id = message_id
        self.conversation_id = conversation_id
        self._save_interval = save_interval
        self._parts: list[str] = []
        self._saved_len = 0
        self._len = 0
        self._reasoning_parts: list[str] = []  # a reasoning model's thinking, apart from the text
        self._last_save = owner._monotonic()
        self.status = "streaming"

    @property
    def text(self) -> str:
        return "".join(self._parts)

    @property
    def reasoning(self) -> str:
        return "".join(self._reasoning_parts)

    def append_reasoning(self, text: str) -> bool:
        """Add streamed reasoning (kept apart from the text), committed with the text at the next
        save; returns True when this call committed."""
        self._check_open()
        if text:
            self._reasoning_parts.append(text)
        if text and self._owner._monotonic() - self._last_save >= self._save_interval:
            self.flush()
            return True
        return False

    def set_reasoning(self, reasoning: str) -> None:
        """Replace the reasoning so far (tidied at the end of the reply); committed with the next save."""
        self._check_open()
        self._reasoning_parts = [reasoning] if reasoning else []

    @property
    def saved_chars(self) -> int:
        """How many characters of the reply are committed so far."""
        return self._saved_len

    def append(self, text: str) -> bool:
        """Add streamed text; returns True when this call committed the text so far."""
        self._check_open()
        if text:
            self._parts.append(text)
            self._len += len(text)
        if self._len != self._saved_len and self._owner._monotonic() - self._last_save >= self._save_interval:
            self.flush()
            return True
        return False

    def flush(self) -> None:
        """Commit the text so far now (e.g. from a timer while the model is thinking)."""
        self._check_open()
        self._save("streaming", None)

    def revise(self, text: str) -> None:
        """Replace the text so far (a grounded reply tidied before it is finished); committed
        with the next save, like streamed text."""
        self._check_open()
        self._parts = [text]
        self._len = len(text)

    def finish(self, metrics: Any = None) -> Message:
        """Commit the whole reply as ``complete`` with its metrics (tokens, ttft_ms, tokens/s...)."""
        return self._close("complete", metrics)

    def interrupt(self, metrics: Any = None) -> Message:
        """Commit what arrived so far as ``interrupted`` (stopped by the user, the engine died)."""
        return self._close("interrupted", metrics)

    def _close(self, status: str, metrics: Any) -> Message:
        self._check_open()
        self._save(status, metrics if metrics is not None else {})
        self.status = status
        return self._owner.get_message(self.message_id)

    def _save(self, status: str, metrics: Any) -> None:
        text, reasoning = self.text, self.reasoning
        self._owner._save_reply(self.message_id, self.conversation_id, text, status, metrics, reasoning=reasoning)
        # Only after the commit: a failed save is retried by the next append.
        self._parts = [text]
        self._saved_len = len(text)
        self._reasoning_parts = [reasoning] if reasoning else []
        self._last_save = self._owner._monotonic()

    def _check_open(self) -> None:
        if self.status != "streaming":
            raise RuntimeError(f"This reply is already {self.status}.")

    def __enter__(self) -> "ReplyWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if self.status == "streaming":
            self.interrupt()
