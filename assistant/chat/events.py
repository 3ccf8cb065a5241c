"""The typed events a :class:`~assistant.chat.session.ChatSession` yields, in order:

``TurnPrepared`` once (the prompt is built, the passages chosen), ``ReplyStarted`` once (the
reply's row exists), then any number of ``ModelLoading``, ``Reasoning`` and ``Token``, and last exactly one of
``ReplyDone`` or ``ReplyFailed``. Plain frozen dataclasses: they cross threads (a Qt adapter
hands them to the GUI thread) and hold no live object but stored records.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class TurnPrepared:
    """The turn is ready to go to the model."""

    conversation: Any  # the Conversation (stored) or None (a session that writes nothing)
    user_message: Any  # the Message just added, or None (regenerate, reply)
    hidden: tuple = ()  # ids of messages this turn took out of view (edited away, or a regenerated
    # reply, kept as a variant that is no longer the chosen one)
    sources: tuple = ()  # source dicts of the passages in the prompt (see assistant.chat.sources)
    budget: dict | None = None  # {"used", "total"} prompt tokens of passages, when documents are attached
    model_id: str = ""
    prompt_messages: int = 0  # how many messages the prompt holds (persona and passages included)
    refused: bool = False  # "only from my documents" and nothing relevant: answered without the model


@dataclass(frozen=True)
class ReplyStarted:
    """The reply's row exists (committed before the engine is asked)."""

    message_id: str


@dataclass(frozen=True)
class ModelLoading:
    """The engine is loading a model for this reply (the first reply, or another model)."""

    model_path: str


@dataclass(frozen=True)
class Token:
    """The next piece of the reply's text."""

    text: str


@dataclass(frozen=True)
class Reasoning:
    """The next piece of a reasoning model's thinking, not part of the answer (see
    :mod:`assistant.chat.reasoning`); the thinking is over when the first ``Token`` comes."""

    text: str


@dataclass(frozen=True)
class ReplyDone:
    """The reply is complete and stored (status ``complete``)."""

    message: Any  # the stored Message, with metrics
    metrics: dict = field(default_factory=dict)
    sources: tuple = ()
    finish_reason: str | None = None  # the engine's: "stop", "length"...


@dataclass(frozen=True)
class ReplyFailed:
    """The reply ended early: stopped by the user, or the engine failed.

    ``kind`` is ``cancelled`` or the engine's error kind; ``text`` is one sentence for people;
    ``message`` is the stored (interrupted) reply with what arrived, or None when nothing was
    stored."""

    kind: str
    text: str
    message: Any = None
    metrics: dict = field(default_factory=dict)  # the engine's figures up to where it stopped


ChatEvent = TurnPrepared | ReplyStarted | ModelLoading | Reasoning | Token | ReplyDone | ReplyFailed
