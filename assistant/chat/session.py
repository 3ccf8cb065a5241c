"""ChatSession: one conversation's turns, from the user's words to the stored reply.

The window, ``assistant chat``, ``assistant ask``, the Documents page and the API's
``/v1/chat/completions`` all reply through this class, so a change to how a reply is built is
made here once. Each of :meth:`ChatSession.turn`, :meth:`~ChatSession.edit_and_resend`,
:meth:`~ChatSession.regenerate` and :meth:`~ChatSession.reply` is a plain generator of the
events in :mod:`assistant.chat.events`; it blocks on the engine and the store, so it runs on
a worker thread (the window's Qt adapter, the API's dispatcher) or the CLI's main thread,
never the GUI thread.

The session owns the store writes of a turn: the user's message, the conversation's title and
settings, and the reply, whose row is committed before the engine is asked and saved while it
streams (:class:`~assistant.history.conversations.ReplyWriter`), so a crash loses at most a
fraction of a second. A session made with ``persist=False`` writes nothing at all: its
messages live in memory (the API's requests, the Documents page's questions). An incognito
chat keeps a whole conversation (title, settings, variants) in memory instead of the store:
the session is given an :class:`~assistant.chat.incognito.IncognitoConversations` in place of
``services.conversations``, and runs the same code over it.

Cancelling: :meth:`ChatSession.cancel` (any thread) stops the reply within a poll interval;
the engine is told to stop (prompt processing included) and what arrived is kept, marked
interrupted. Closing the generator early (``close()``, or an exception such as Ctrl+C raised
in the consumer while it waits) does the same in its ``finally``.

Why one module of ~550 lines: preparing a turn (the prompt, the layered settings, the sources),
streaming it and writing it share the turn's state and its cancel; split, each part would need
the others' internals.
"""

from __future__ import annotations

import contextlib
import threading
import time
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Iterator

from assistant.chat import model_defaults
from assistant.chat import prompt as chat_prompt
from assistant.chat.events import ModelLoading, Reasoning, ReplyDone, ReplyFailed, ReplyStarted, Token, TurnPrepared
from assistant.chat.reasoning import META_OPENS_THINK, REASONING, TimedThinking
from assistant.chat.sources import MODEL_AGREES, prepared_sources, source_refs, with_verdict
from assistant.errors import ChatError
from assistant.history.conversations import DEFAULT_TITLE, Message, new_id
from engine.settings import SamplingParams

if TYPE_CHECKING:
    from assistant.app import Services
    from assistant.chat.incognito import IncognitoConversations
    from assistant.history.conversations import Conversations
    from assistant.models.library import ModelRecord

#: How often a waiting reply wakes to look for a cancel request.
POLL_S = 0.1
#: After a cancel, how long to wait for the engine to confirm before keeping what arrived anyway.
CANCEL_GRACE_S = 10.0
#: How often (in tokens) a reply from the documents is checked for a loop: the check is a regex
#: over the whole text so far (~10 ms at 2,000 characters), cheap at this rate.
LOOP_CHECK_TOKENS = 16


#: ``documents`` left as the conversation keeps them (None means: no documents).
FROM_CONVERSATION = object()


class _MemoryReplyWriter:
    """A reply of a session that writes nothing: the same calls as ReplyWriter, kept in memory."""

    def __init__(self, session: "ChatSession", model_id: str, sampling: dict, documents: list, adapter: str | None):
        self.message_id = new_id()
        self._session = session
        self._fields = {"model": model_id, "sampling": sampling, "documents": list(documents), "adapter": adapter}
        self._parts: list[str] = []
        self.reasoning = ""

    @property
    def text(self) -> str:
        return "".join(self._parts)

    def append(self, text: str) -> bool:
        self._parts.append(text)
        return False

    def append_reasoning(self, text: str) -> bool:
        self.reasoning += text
        return False

    def set_reasoning(self, reasoning: str) -> None:
        self.reasoning = reasoning

    def revise(self, text: str) -> None:
        self._parts = [text]

    def finish(self, metrics: dict | None = None) -> Message:
        return self._close("complete", metrics)

    def interrupt(self, metrics: dict | None = None) -> Message:
        return self._close("interrupted", metrics)

    def _close(self, status: str, metrics: dict | None) -> Message:
        now = time.time()
        message = Message(id=self.message_id, conversation_id="", role="assistant", text=self.text,
                          metrics=dict(metrics or {}), status=status, created_at=now, updated_at=now,
                          reasoning=self.reasoning, **self._fields)
        self._session._memory.append(message)
        return message


@dataclass
class _Turn:
    """What a reply needs, prepared before the engine is asked."""

    model: "ModelRecord"
    prompt: list
    sampling: "SamplingParams"
    sources: list = field(default_factory=list)
    refuse: bool = False
    question: str = ""
    variant_of: str | None = None  # the reply this one is written again for (a regenerate)
    n_ctx: int | None = None  # the model's own context length (its settings), None: the app's
    # Replies this turn replaces (an edited message's old answers): the engine drafts from them.
    lookup_texts: list = field(default_factory=list)


class ChatSession:
    """One conversation's turns (see the module docstring).

    ``conversation_id``: a stored conversation to continue (None: the first turn creates one).
    ``model_id``, ``system_prompt``, ``documents``: the choices of the screen; left None, a stored
    conversation's own settings apply, else the app's defaults. ``sampling`` overrides the app's
    sampling settings (the CLI's flags, an API request). ``persist=False``: nothing is written;
    ``history`` then holds the earlier turns as ``{"role", "content"}`` dicts.
    ``budget_tokens`` caps the passages' share of the prompt (``assistant ask --budget``).
    ``conversations``: where the conversation is kept, ``services.conversations`` (the store)
    unless given; an :class:`~assistant.chat.incognito.IncognitoConversations` keeps it in memory
    only (an incognito chat: ``conversation_id`` is then one of its conversations, or None).
    """

    def __init__(self, services: "Services", conversation_id: str | None = None, *, model_id: str | None = None,
                 system_prompt: str | None = None, documents: dict | None | object = FROM_CONVERSATION,
                 sampling: "SamplingParams | None" = None, persist: bool = True, history: list[dict] | None = None,
                 budget_tokens: int | None = None,
                 conversations: "Conversations | IncognitoConversations | None" = None,
                 worked_examples: bool = True):
        # Nothing here touches the store: a screen builds a session on the GUI thread and hands
        # its generators to a worker; what the conversation keeps is read when a turn starts.
        self.services = services
        # The same calls either way, so an incognito chat runs exactly this code and never the store's.
        self.conversations = conversations if conversations is not None else services.conversations
        # The model's worked examples (model_defaults) go before a plain chat; an API client sends
        # the whole conversation it wants the model to see, so the API turns them off.
        self.worked_examples = worked_examples
        self.persist = persist
        self.conversation_id = conversation_id if persist else None
        self.model_id = model_id
        self.system_prompt = system_prompt
        self.documents = documents
        self.sampling = sampling
        self.budget_tokens = budget_tokens
        self._settled = False
        self._memory: list[Message] = []
        for turn in history or []:
            self._memory.append(Message(id=new_id(), conversation_id="", role=turn["role"], text=turn["content"]))
        self._cancel = threading.Event()

    def settle(self) -> "ChatSession":
        """Fill the choices left open from the conversation's settings, else the app's defaults.
        Worker thread (reads the store); every generator calls it first."""
        if self._settled:
            return self
        conversations = self.conversations
        stored = self.persist and self.conversation_id is not None
        if self.model_id is None and stored:
            self.model_id = conversations.get_setting(self.conversation_id, chat_prompt.SETTING_MODEL)
        if self.system_prompt is None and stored:
            self.system_prompt = conversations.get_setting(self.conversation_id, chat_prompt.SETTING_SYSTEM_PROMPT)
        if self.system_prompt is None:
            self.system_prompt = self.services.settings.default_system_prompt if self.persist else ""
        if self.documents is FROM_CONVERSATION:
            self.documents = conversations.get_setting(self.conversation_id, chat_prompt.SETTING_DOCUMENTS) \
                if stored else None
        self.documents = self.documents or None
        self._settled = True
        return self

    # ----- what the screens call ----------------------------------------------------------------
    @property
    def incognito(self) -> bool:
        """Whether the conversation is kept in memory only (see :mod:`assistant.chat.incognito`)."""
        from assistant.chat.incognito import IncognitoConversations

        return isinstance(self.conversations, IncognitoConversations)

    def cancel(self) -> None:
        """Stop the reply in progress (any thread); what arrived is kept, marked interrupted."""
        self._cancel.set()

    @property
    def cancelled(self) -> bool:
        return self._cancel.is_set()

    def turn(self, text: str) -> Iterator:
        """The user says ``text``; the model replies."""
        return self._events(self._prepare_turn, text, None)

    def edit_and_resend(self, message_id: str, text: str) -> Iterator:
        """The user message ``message_id`` and everything after it leave the conversation; ``text``
        is said in its place and the model replies."""
        return self._events(self._prepare_turn, text, message_id)

    def regenerate(self, reply_id: str | None = None) -> Iterator:
        """A new reply in place of ``reply_id`` (default: the last reply, the only one that can
        be written again) to the same question. A stored conversation keeps the earlier reply as
        a variant and shows the new one (``Conversations.variants``, ``choose_variant``); a
        session that writes nothing forgets it."""
        return self._events(self._prepare_regenerate, reply_id)

    def reply(self) -> Iterator:
        """A reply to the conversation as it stands (the API: the request's messages)."""
        return self._events(self._prepare_reply)

    def visible_messages(self) -> list[Message]:
        """The conversation as shown and as sent to the model, oldest first: of a regenerated
        reply, only its chosen variant."""
        if not self.persist:
            return list(self._memory)
        if self.conversation_id is None:
            return []
        self.settle()
        hidden = set(self._hidden())
        return [m for m in self.conversations.messages(self.conversation_id)
                if m.id not in hidden and m.chosen]

    # ----- preparing ------------------------------------------------------------------------------
    def _model(self) -> "ModelRecord":
        from assistant.errors import LibraryError

        library = self.services.library
        if self.model_id:
            try:
                return library.get(self.model_id)
            except LibraryError:
                pass  # removed since it was chosen: fall back to the model routed for chat
        return library.for_task("chat")

    def _hidden(self) -> list[str]:
        return list(self.conversations.get_setting(self.conversation_id, chat_prompt.SETTING_HIDDEN, [])
                    or [])

    def _hide(self, message_ids: list[str]) -> None:
        if not message_ids:
            return
        if not self.persist:
            self._memory = [m for m in self._memory if m.id not in set(message_ids)]
            return
        self.conversations.set_setting(self.conversation_id, chat_prompt.SETTING_HIDDEN,
                                                self._hidden() + list(message_ids))

    def _prepare_turn(self, text: str, replace_from: str | None) -> tuple[TurnPrepared, _Turn]:
        text = text.strip()
        if not text:
            raise ChatError("There is nothing to send: the message is empty.")
        model = self._model()
        conversation = None
        user_message = None
        hidden: list[str] = []
        replaced_replies: list[str] = []
        if replace_from is not None:
            visible = self.visible_messages()
            ids = [m.id for m in visible]
            if replace_from not in ids:
                raise ChatError("That message is no longer in this conversation, so it cannot be edited.")
            hidden = ids[ids.index(replace_from):]
            # An edited question is often answered much as before: the old reply seeds the
            # engine's drafts (prompt lookup), which only ever keeps tokens the model samples.
            replaced_replies = [m.text for m in visible[ids.index(replace_from):] if m.role == "assistant" and m.text]
        if self.persist:
            conversations = self.conversations
            if self.conversation_id is None:
                conversation = conversations.create(chat_prompt.auto_title(text))
                self.conversation_id = conversation.id
                conversations.set_setting(self.conversation_id, chat_prompt.SETTING_MODEL, model.id)
                conversations.set_setting(self.conversation_id, chat_prompt.SETTING_SYSTEM_PROMPT, self.system_prompt)
                if self.documents:
                    conversations.set_setting(self.conversation_id, chat_prompt.SETTING_DOCUMENTS, self.documents)
            elif conversations.get(self.conversation_id).title == DEFAULT_TITLE:
                conversations.rename(self.conversation_id, chat_prompt.auto_title(text))
            self._hide(hidden)
            user_message = conversations.add_message(self.conversation_id, "user", text, model=model.id)
            conversation = conversations.get(self.conversation_id)
        else:
            self._hide(hidden)
            now = time.time()
            user_message = Message(id=new_id(), conversation_id="", role="user", text=text, model=model.id,
                                   created_at=now, updated_at=now)
            self._memory.append(user_message)
        prepared, turn = self._prepared(model, conversation, user_message, hidden, text)
        return prepared, replace(turn, lookup_texts=replaced_replies)

    def _prepare_regenerate(self, reply_id: str | None) -> tuple[TurnPrepared, _Turn]:
        visible = self.visible_messages()
        if reply_id is None:
            reply_id = next((m.id for m in reversed(visible) if m.role == "assistant"), None)
        elif reply_id not in {m.id for m in visible}:
            raise ChatError("That reply is no longer in this conversation, so it cannot be regenerated.")
        if reply_id is None:
            return self._prepare_reply()
        if visible[-1].id != reply_id:
            # A variant sits where its first reply was; a later turn would have answered another text.
            raise ChatError("Only the last reply can be written again.")
        if not self.persist:
            self._hide([reply_id])
            return self._prepare_reply([reply_id])
        # The reply stays as a variant; the new one answers the conversation before it.
        return self._prepare_reply([reply_id], visible[:-1], variant_of=reply_id)

    def _prepare_reply(self, hidden: list[str] | None = None, messages: list[Message] | None = None,
                       variant_of: str | None = None) -> tuple[TurnPrepared, _Turn]:
        model = self._model()
        messages = self.visible_messages() if messages is None else messages
        question = next((m.text for m in reversed(messages) if m.role == "user"), "")
        if not question:
            raise ChatError("There is no question to answer in this conversation.")
        conversation = self.conversations.get(self.conversation_id) if self.persist else None
        prepared, turn = self._prepared(model, conversation, None, hidden or [], question, messages)
        if hidden and turn.sampling.temperature <= 0:
            # A greedy reply comes out the same every time; regenerating asks for another one, so
            # it samples at the engine's usual temperature.
            turn = replace(turn, sampling=replace(turn.sampling, temperature=SamplingParams().temperature))
        return prepared, replace(turn, variant_of=variant_of)

    def _prepared(self, model, conversation, user_message, hidden: list[str], question: str,
                  messages: list[Message] | None = None) -> tuple:
        messages = self.visible_messages() if messages is None else messages
        own = self._model_settings(model)
        defaults = model_defaults.for_model(model)
        system_prompt = self._system_prompt_with(own) or defaults.system_prompt
        prompt = chat_prompt.build_prompt(system_prompt, messages)
        if self.worked_examples and not self.documents and not system_prompt.strip():
            # Nobody chose a persona: the model's worked examples go first (never shown or stored).
            prompt = defaults.example_turns() + prompt
        sampling = self.sampling or model_defaults.under(self.services.settings.sampling, defaults)
        sampling = self._sampling_with(own, model, sampling)
        sources: list[dict] = []
        budget = None
        refuse = False
        if self.documents:
            prepared = chat_prompt.ground(self.services, prompt, question, self.documents, model.path,
                                          self.budget_tokens, n_ctx=own.n_ctx)
            sources, budget, refuse = prepared_sources(prepared), prepared.budget, prepared.refuse
            sampling = chat_prompt.grounded_sampling(sampling)
        event = TurnPrepared(conversation=conversation, user_message=user_message, hidden=tuple(hidden),
                             sources=tuple(sources), budget=budget, model_id=model.id, prompt_messages=len(prompt),
                             refused=refuse)
        return event, _Turn(model=model, prompt=prompt, sampling=sampling, sources=sources, refuse=refuse,
                            question=question, n_ctx=own.n_ctx)

    # ----- the model's own settings (Models -> Settings…, assistant/models/model_settings.py) -----
    # They sit above the app's settings and the model's defaults, below a choice made for this
    # session (the CLI's flags, an API request) or typed for this conversation.
    def _model_settings(self, model):
        from assistant.models import model_settings

        return model_settings.load(self.services.store, model.id)

    def _system_prompt_with(self, own) -> str:
        from assistant.models.model_settings import system_prompt_for

        return system_prompt_for(own, self.system_prompt, self.services.settings.default_system_prompt) or ""

    def _sampling_with(self, own, model, sampling):
        from assistant.models.model_settings import for_chat

        return sampling if self.sampling is not None else for_chat(own, model, sampling)

    # ----- replying -------------------------------------------------------------------------------
    def _events(self, prepare, *args) -> Iterator:
        try:
            self.settle()
            prepared, turn = prepare(*args)
            yield prepared
            yield from self._stream(turn)
        finally:
            self._cancel.clear()  # the next turn of this session starts afresh

    def _writer(self, turn: _Turn, adapters: list):
        sampling = turn.sampling.to_dict() if hasattr(turn.sampling, "to_dict") else dict(turn.sampling)
        documents = source_refs(turn.sources)
        adapter = adapters[0]["path"] if adapters else None
        if not self.persist:
            return _MemoryReplyWriter(self, turn.model.id, sampling, documents, adapter)
        return self.conversations.begin_reply(self.conversation_id, model=turn.model.id, sampling=sampling,
                                                       documents=documents, adapter=adapter,
                                                       variant_of=turn.variant_of)

    def _stream(self, turn: _Turn) -> Iterator:
        from assistant.documents.grounded import DONT_KNOW, has_loop, tidy_reply
        from assistant.models.adapters import ActiveAdapters

        # The adapter the user chose for chat, when it was trained for this model.
        adapters = ActiveAdapters(self.services.store).for_model("chat", turn.model.path)
        writer = self._writer(turn, adapters)
        yield ReplyStarted(writer.message_id)
        sources = turn.sources
        handle = None
        ended = False
        # A reasoning model's thinking goes to the reply's reasoning, its answer to the text.
        thinking = TimedThinking(bool(turn.model.metadata.get(META_OPENS_THINK)))

        def split(text: str) -> Iterator:
            for piece in thinking.feed(text):
                if piece.kind == REASONING:
                    writer.append_reasoning(piece.text)
                    yield Reasoning(piece.text)
                else:
                    writer.append(piece.text)
                    yield Token(piece.text)

        def settled(metrics: dict | None) -> dict | None:
            return _settle_reasoning(writer, thinking, metrics)

        try:
            if self._cancel.is_set():
                ended = True
                yield ReplyFailed("cancelled", "Stopped.", writer.interrupt())
                return
            if turn.refuse:
                # "Only from my documents" and nothing relevant was found: a small model would
                # make an answer up, so the reply says so without asking it.
                writer.append(DONT_KNOW)
                yield Token(DONT_KNOW)
                ended = True
                yield ReplyDone(writer.finish({}), {}, tuple(sources), "stop")
                return
            try:
                # The model's own context length travels with the request; the engine loads the
                # model with it, and refuses it with the longest that fits when it does not.
                engine_options = {"engine": {"n_ctx": int(turn.n_ctx)}} if turn.n_ctx else {}
                if turn.lookup_texts:
                    engine_options["lookup_texts"] = list(turn.lookup_texts)
                if turn.lookup_texts or turn.sources:
                    # The reply is likely to repeat passages or the old reply: let the engine
                    # draft from them (it stops drafting by itself when drafts are refused).
                    engine_options["speculative"] = True
                handle = self.services.engine.chat(turn.model.path, turn.prompt, turn.sampling, adapters=adapters,
                                                   **engine_options)
            except Exception as exc:
                from assistant.errors import user_message

                ended = True
                yield ReplyFailed(getattr(exc, "kind", "error"), user_message(exc), writer.interrupt())
                return

            def tidied(metrics: dict, finish_reason: str | None) -> ReplyDone:
                # A reply from the documents is tidied as everywhere (a loop cut, invented
                # citations removed); one that started looping was stopped early. Then it is
                # checked against the extractive answer: the screens show its wording beside
                # that answer only when it agrees (assistant/documents/answers.py).
                shown = sources
                metrics = settled(metrics)
                if sources:
                    writer.revise(tidy_reply(writer.text, len(sources)))
                    agrees = self._agrees(turn, writer.text)
                    metrics = {**metrics, MODEL_AGREES: agrees}
                    shown = with_verdict(sources, agrees)
                return ReplyDone(writer.finish(metrics), metrics, tuple(shown), finish_reason)

            looped = False
            tokens = 0
            cancelled_at: float | None = None
            while not handle.finished:
                if (self._cancel.is_set() or looped) and cancelled_at is None:
                    handle.cancel()
                    cancelled_at = time.monotonic()
                if cancelled_at is not None and time.monotonic() - cancelled_at > CANCEL_GRACE_S:
                    # The engine did not confirm; keep what arrived rather than wait for ever.
                    ended = True
                    if looped and not self._cancel.is_set():
                        yield tidied({}, "stop")
                    else:
                        yield ReplyFailed("cancelled", "Stopped.", writer.interrupt(settled({})))
                    return
                try:
                    for event in handle.events(timeout=POLL_S):
                        kind = event.get("event")
                        if kind == "token":
                            yield from split(event.get("text", ""))
                            tokens += 1
                            if sources and not looped and tokens % LOOP_CHECK_TOKENS == 0 and has_loop(writer.text):
                                looped = True
                                break  # back to the loop head, which sends the cancel
                        elif kind == "status" and event.get("state") == "loading":
                            yield ModelLoading(str(event.get("model", "")))
                        elif kind == "done":
                            ended = True
                            yield tidied(event.get("metrics") or {}, (event.get("result") or {}).get("finish_reason"))
                            return
                        elif kind == "error" and looped and not self._cancel.is_set() \
                                and event.get("kind") == "cancelled":
                            ended = True  # the loop's cancel, not the user's
                            yield tidied(event.get("metrics") or {}, "stop")
                            return
                        elif kind == "error":
                            partial = event.get("partial") or ""
                            if partial and not writer.text and not writer.reasoning:
                                for _event in split(partial):
                                    pass
                            metrics = event.get("metrics") or {}
                            stored = writer.interrupt(settled(metrics) or None)
                            err_kind = event.get("kind", "error")
                            ended = True
                            yield ReplyFailed(err_kind, "Stopped." if err_kind == "cancelled"
                                              else event.get("message", "The engine failed."), stored, metrics)
                            return
                        if self._cancel.is_set() and cancelled_at is None:
                            break  # back to the loop head, which sends the cancel
                except TimeoutError:
                    continue
        finally:
            if not ended:
                # The consumer went away mid-reply (closed the generator, Ctrl+C): stop the
                # engine and keep what arrived, marked interrupted.
                if handle is not None and not handle.finished:
                    handle.cancel()
                # Best effort: when the store itself failed, its error is already on its way out.
                with contextlib.suppress(Exception):
                    writer.interrupt(settled({}))


    def _agrees(self, turn: _Turn, reply: str) -> bool:
        """Whether ``reply`` agrees with the turn's extractive answer (one embedding call);
        False when it cannot be checked (the engine failed), so an unchecked reply stays hidden."""
        from assistant.documents.answers import judge_reply

        quoted = next((source for source in turn.sources if source.get("quote")), None)
        known = "\n".join([turn.question] + [source["passage"] for source in turn.sources])
        try:
            _documents, retriever = self.services.documents_core()
            return judge_reply(reply, quoted["quote"] if quoted else None, known, retriever.embed).agrees
        except Exception:  # noqa: BLE001 - a failed check hides the wording, it never loses the reply
            return False


def _settle_reasoning(writer, thinking: TimedThinking, metrics: dict | None) -> dict | None:
    """The end of a reply: a marker held back is text after all, the answer and the reasoning
    are stored as the parser split them (a block the template opened moves what came before its
    close into the reasoning), and ``metrics`` gain the thinking's figures."""
    for piece in thinking.close():
        if piece.kind == REASONING:
            writer.append_reasoning(piece.text)
        else:
            writer.append(piece.text)
    if not thinking.parser.saw_marker:
        return metrics
    writer.revise(thinking.parser.answer)
    writer.set_reasoning(thinking.parser.reasoning)
    return thinking.metrics(metrics or {})


def sampling_with(base: "SamplingParams", **overrides) -> "SamplingParams":
    """``base`` with the given fields replaced (None leaves a field as it is); ValueError if one is out of range."""
    from engine.settings import SamplingParams

    values = {k: v for k, v in overrides.items() if v is not None}
    return SamplingParams.from_dict({**base.to_dict(), **values}) if values else replace(base)
