"""Incognito chat: a conversation kept in memory only, never written to disk.

:class:`IncognitoConversations` answers the calls that :class:`~assistant.chat.session.ChatSession`
and :mod:`assistant.chat.views` make on :class:`~assistant.history.conversations.Conversations`
(``create``, ``get``, ``rename``, ``add_message``, ``messages``, ``get_message``, ``begin_reply``,
``variants``, ``choose_variant``, ``get_setting``, ``set_setting``) with the same records
(:class:`~assistant.history.conversations.Conversation`, :class:`~assistant.history.conversations.Message`).
A session given one (``ChatSession(services, conversations=IncognitoConversations())``) therefore
sends, streams, stops, regenerates (keeping the earlier replies as variants), edits and resends
exactly as it does over a stored conversation, through the same code.

What never happens: no row in the ``conversations``, ``messages`` (and so the full-text index)
or ``settings`` tables, nothing in the WAL, in a backup or in an export, and history search
never finds it. The title, the persona, the chosen model and documents and the hidden and
variant bookkeeping are kept here too. What a reply still reads from disk is only what any
reply reads: the model files, the app's settings, the active adapter, and the documents when
the user attaches some.

Replies are written by the store's own :class:`~assistant.history.conversations.ReplyWriter`,
given this object as its owner (``_monotonic``, ``_save_reply``, ``get_message``): one writer,
one rhythm of saves, whichever place keeps the conversation.

Gone when closed: :meth:`IncognitoConversations.discard` forgets everything at once (the
window calls it when the user leaves the chat or closes the window), and dropping the object
does the same. Python cannot overwrite the freed strings, so the text may linger in the process's
memory until it is reused; it is never in a file.

Threading: any thread. A reply streams on a worker thread while the window may switch a variant
or change a setting from another job, so one lock guards the records.
"""

from __future__ import annotations

import copy
import threading
import time
from dataclasses import replace
from typing import Any, Callable, Iterable

from assistant.errors import ConversationError, ConversationNotFoundError
from assistant.history.conversations import (
    DEFAULT_SAVE_INTERVAL_S,
    Conversation,
    Message,
    ReplyWriter,
    as_plain_dict,
    check_message,
    clean_title,
    new_id,
)


#: Said by any call on a chat already discarded.
CLOSED = "This incognito chat was closed and forgotten; start a new one."


class IncognitoConversations:
    """The conversations of one incognito chat (in practice one), in memory. See the module docstring."""

    def __init__(self, *, monotonic: Callable[[], float] = time.monotonic) -> None:
        # The reply writer's clock (ReplyWriter reads it as Conversations'), for the same save rhythm.
        self._monotonic = monotonic
        self._lock = threading.RLock()
        self._conversations: dict[str, Conversation] = {}
        self._messages: dict[str, Message] = {}  # by id, in the order they were added
        self._settings: dict[str, dict[str, Any]] = {}
        self.discarded = False

    # ----- conversations ------------------------------------------------------------------
    def create(self, title: str | None = None) -> Conversation:
        if self.discarded:
            raise ConversationError(CLOSED)
        now = time.time()
        conversation = Conversation(id=new_id(), title=clean_title(title), created_at=now, last_activity_at=now)
        with self._lock:
            self._conversations[conversation.id] = conversation
            self._settings[conversation.id] = {}
        return conversation

    def get(self, conversation_id: str) -> Conversation:
        with self._lock:
            conversation = self._stored(conversation_id)
            count = sum(1 for m in self._messages.values() if m.conversation_id == conversation_id)
        return replace(conversation, message_count=count)

    def exists(self, conversation_id: str) -> bool:
        with self._lock:
            return conversation_id in self._conversations

    def rename(self, conversation_id: str, title: str) -> Conversation:
        with self._lock:
            conversation = self._stored(conversation_id)
            self._conversations[conversation_id] = replace(conversation, title=clean_title(title))
        return self.get(conversation_id)

    def discard(self) -> None:
        """Forget every conversation, message and setting (any thread). A reply still streaming on
        a worker thread keeps nothing; its session ends with :data:`CLOSED`."""
        with self._lock:
            self.discarded = True
            self._conversations.clear()
            self._messages.clear()
            self._settings.clear()

    # ----- messages -----------------------------------------------------------------------
    def add_message(self, conversation_id: str, role: str, text: str, *, model: str | None = None,
                    sampling: Any = None, metrics: Any = None, status: str = "complete",
                    documents: Iterable[str] | None = None, adapter: str | None = None) -> Message:
        """Add one finished message, as :meth:`Conversations.add_message` does."""
        message = _new_message(conversation_id, role, text, model=model, sampling=sampling, metrics=metrics,
                               status=status, documents=documents, adapter=adapter)
        with self._lock:
            self._touch(conversation_id, message.created_at)
            self._messages[message.id] = message
        return message

    def begin_reply(self, conversation_id: str, *, model: str | None = None, sampling: Any = None,
                    documents: Iterable[str] | None = None, adapter: str | None = None, role: str = "assistant",
                    save_interval: float = DEFAULT_SAVE_INTERVAL_S, variant_of: str | None = None) -> ReplyWriter:
        """Start a reply, written by the store's own :class:`ReplyWriter` into this object
        (``_save_reply``, ``get_message``) instead of the store; ``variant_of`` makes it the
        chosen variant of that reply's group, as :meth:`Conversations.begin_reply` does."""
        message = _new_message(conversation_id, role, "", model=model, sampling=sampling, metrics=None,
                               status="streaming", documents=documents, adapter=adapter)
        with self._lock:
            self._touch(conversation_id, message.created_at)
            if variant_of is not None:
                reply = self._messages.get(variant_of)
                if reply is None or reply.conversation_id != conversation_id or reply.role != "assistant":
                    raise ConversationError("Only a reply of this conversation can be written again.")
                group = reply.variant_of or reply.id
                for other in list(self._messages.values()):
                    if other.id == group or other.variant_of == group:
                        self._messages[other.id] = replace(other, variant_of=group, chosen=False)
                message = replace(message, variant_of=group, chosen=True)
            self._messages[message.id] = message
        return ReplyWriter(self, message.id, conversation_id, save_interval)  # type: ignore[arg-type]

    def variants(self, message_id: str) -> list[Message]:
        """The variants of a reply (itself included), oldest first; just the reply when it was
        never regenerated."""
        with self._lock:
            message = self.get_message(message_id)
            if message.variant_of is None:
                return [message]
            return [m for m in self._messages.values() if m.variant_of == message.variant_of]

    def choose_variant(self, message_id: str) -> Message:
        with self._lock:
            message = self.get_message(message_id)
            if message.variant_of is not None:
                for other in list(self._messages.values()):
                    if other.variant_of == message.variant_of:
                        self._messages[other.id] = replace(other, chosen=other.id == message_id)
            return self.get_message(message_id)

    def get_message(self, message_id: str) -> Message:
        with self._lock:
            message = self._messages.get(message_id)
            discarded = self.discarded
        if message is None:
            raise ConversationError(CLOSED if discarded else f"No message with id {message_id}.")
        return message

    def messages(self, conversation_id: str) -> list[Message]:
        """The conversation's messages, oldest first (every variant of a regenerated reply)."""
        with self._lock:
            self._stored(conversation_id)
            return [m for m in self._messages.values() if m.conversation_id == conversation_id]

    def _stored(self, conversation_id: str) -> Conversation:
        conversation = self._conversations.get(conversation_id)
        if conversation is None:
            raise ConversationNotFoundError(CLOSED if self.discarded else f"No conversation with id {conversation_id}.")
        return conversation

    def _touch(self, conversation_id: str, when: float) -> None:
        """The conversation's last activity (the caller holds the lock)."""
        conversation = self._stored(conversation_id)
        self._conversations[conversation_id] = replace(conversation,
                                                       last_activity_at=max(conversation.last_activity_at, when))

    def _save_reply(self, message_id: str, conversation_id: str, text: str, status: str, metrics: Any,
                    reasoning: str = "") -> None:
        """What :class:`ReplyWriter` calls to keep the text so far and, at the end, the status and
        metrics. After a discard the reply is kept nowhere: its writer's last call then says
        :data:`CLOSED` (get_message), which only a chat already left could hear."""
        now = time.time()
        with self._lock:
            message = self._messages.get(message_id)
            if message is None:
                return
            changes: dict[str, Any] = {"text": text, "reasoning": reasoning, "status": status, "updated_at": now}
            if metrics is not None:
                changes["metrics"] = as_plain_dict(metrics, "Metrics")
            self._messages[message_id] = replace(message, **changes)
            if status != "streaming":
                self._touch(conversation_id, now)

    # ----- per-conversation settings ------------------------------------------------------
    def get_setting(self, conversation_id: str, key: str, default: Any = None) -> Any:
        with self._lock:
            values = self._settings.get(conversation_id, {})
            # Copies, as the store's JSON round trip gives: a caller changing a list changes nothing here.
            return copy.deepcopy(values[key]) if key in values else default

    def set_setting(self, conversation_id: str, key: str, value: Any) -> None:
        with self._lock:
            self._stored(conversation_id)
            self._settings[conversation_id][key] = copy.deepcopy(value)


def _new_message(conversation_id: str, role: str, text: str, *, model: str | None, sampling: Any, metrics: Any,
                 status: str, documents: Iterable[str] | None, adapter: str | None) -> Message:
    """A Message checked as :class:`Conversations` checks what it stores."""
    check_message(role, status, text)
    now = time.time()
    return Message(id=new_id(), conversation_id=conversation_id, role=role, text=text, model=model,
                   sampling=as_plain_dict(sampling, "Sampling settings"), metrics=as_plain_dict(metrics, "Metrics"),
                   status=status, created_at=now, updated_at=now, documents=[str(d) for d in (documents or [])],
                   adapter=adapter)
