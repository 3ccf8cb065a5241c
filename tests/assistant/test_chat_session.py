"""ChatSession: the one path from a user's words to a stored reply (window, CLI, API).

The real default model answers where the behaviour depends on it; the handling of a loop, a
cancel and a consumer that goes away is tested with the engine's stream scripted, since a 135M
model's loop cannot be produced on demand.
"""

from __future__ import annotations

import threading
from types import SimpleNamespace

import pytest

from assistant.chat.events import ModelLoading, ReplyDone, ReplyFailed, ReplyStarted, Token, TurnPrepared
from assistant.chat.prompt import AUTO_TITLE_CHARS, SETTING_HIDDEN, SETTING_SYSTEM_PROMPT
from assistant.chat.session import ChatSession, _Turn
from assistant.errors import ChatError, UserError


class ScriptedHandle:
    """Plays a fixed token stream with the engine client's event protocol (tokens, then ``done``;
    after ``cancel``, the worker's ``error`` of kind ``cancelled`` with the metrics so far).
    ``gate``: when given, each token waits for it, so a test can act between tokens."""

    def __init__(self, tokens: list[str], gate: threading.Semaphore | None = None):
        self.tokens = tokens
        self.sent = 0
        self.cancelled_at: int | None = None
        self.finished = False
        self.gate = gate

    def cancel(self) -> None:
        if self.cancelled_at is None:
            self.cancelled_at = self.sent

    def events(self, timeout=None):
        while not self.finished:
            if self.cancelled_at is not None:
                self.finished = True
                yield {"event": "error", "kind": "cancelled", "message": "Stopped.", "metrics": {"tokens": self.sent}}
            elif self.sent == len(self.tokens):
                self.finished = True
                yield {"event": "done", "metrics": {"completion_tokens": self.sent},
                       "result": {"finish_reason": "stop"}}
            else:
                if self.gate is not None and not self.gate.acquire(timeout=timeout or 0.1):
                    raise TimeoutError
                self.sent += 1
                yield {"event": "token", "text": self.tokens[self.sent - 1]}


def scripted(services, handle: ScriptedHandle, options: list | None = None) -> list:
    """Give ``services`` an engine that answers with ``handle``; returns the prompts it was sent
    (and appends each request's other options to ``options`` when given)."""
    prompts = []

    def chat(path, prompt, sampling, adapters=None, **more):
        prompts.append(prompt)
        if options is not None:
            options.append(more)
        return handle

    services._engine = SimpleNamespace(chat=chat, close=lambda: None)
    return prompts


def kinds(events) -> list[str]:
    return [type(e).__name__ for e in events]


# ----- with the real model -------------------------------------------------------------------------
def test_a_turn_stores_the_conversation_and_streams_the_reply(services):
    question = "What is the capital of France?"
    session = ChatSession(services)
    events = list(session.turn(question))
    names = [n for n in kinds(events) if n != "ModelLoading"]
    assert names[:2] == ["TurnPrepared", "ReplyStarted"] and names[-1] == "ReplyDone"
    assert set(names[2:-1]) == {"Token"}
    prepared, done = events[0], events[-1]
    assert isinstance(prepared, TurnPrepared) and prepared.user_message.text == question
    assert services.conversations.get(session.conversation_id).title == question
    stored = services.conversations.messages(session.conversation_id)
    assert [m.role for m in stored] == ["user", "assistant"]
    assert isinstance(done, ReplyDone) and done.message.id == stored[1].id
    assert stored[1].status == "complete" and stored[1].text == "".join(e.text for e in events if isinstance(e, Token))
    assert "Paris" in stored[1].text and done.metrics["completion_tokens"] > 0
    assert not any(isinstance(e, ModelLoading) and not e.model_path for e in events)


def test_the_title_and_the_persona_are_kept_as_the_window_keeps_them(services):
    prompts = scripted(services, ScriptedHandle(["Short."]))
    question = "What is the capital of France? Answer in one word, please, and nothing else at all."
    session = ChatSession(services, system_prompt="You are terse.")
    list(session.turn(question))
    conversation = services.conversations.get(session.conversation_id)
    # The title comes from the first message, cut at the sidebar's length.
    assert len(conversation.title) <= AUTO_TITLE_CHARS and conversation.title.endswith("…")
    # The persona is a setting of the conversation and the first prompt message, never a stored message.
    assert services.conversations.get_setting(session.conversation_id, SETTING_SYSTEM_PROMPT) == "You are terse."
    assert [m.role for m in services.conversations.messages(session.conversation_id)] == ["user", "assistant"]
    assert prompts[0][0] == {"role": "system", "content": "You are terse."}
    # A later session over the same conversation finds the persona again.
    again = ChatSession(services, session.conversation_id)
    list(again.turn("And of Spain?"))
    assert prompts[1][0] == {"role": "system", "content": "You are terse."} and len(prompts[1]) == 4


def test_regenerate_keeps_variants_and_edit_takes_earlier_messages_out_of_view(services):
    handle = ScriptedHandle(["First answer."])
    scripted(services, handle)
    session = ChatSession(services)
    list(session.turn("Tell me about otters."))
    first_reply = session.visible_messages()[-1]
    handle.__init__(["Second answer."])
    events = list(session.regenerate())
    assert events[0].hidden == (first_reply.id,)
    visible = session.visible_messages()
    assert [m.text for m in visible] == ["Tell me about otters.", "Second answer."]
    # The regenerated reply stays in the store (and the export) as a variant no longer chosen.
    assert [(v.text, v.chosen) for v in services.conversations.variants(visible[-1].id)] == \
        [("First answer.", False), ("Second answer.", True)]
    assert not services.conversations.get_setting(session.conversation_id, SETTING_HIDDEN)
    handle.__init__(["Third answer."])
    events = list(session.edit_and_resend(visible[0].id, "Tell me about beavers."))
    assert set(events[0].hidden) == {m.id for m in visible}
    assert [m.text for m in session.visible_messages()] == ["Tell me about beavers.", "Third answer."]


def test_an_edited_message_lets_the_engine_draft_from_the_reply_it_replaces(services):
    handle = ScriptedHandle(["Otters live in rivers and eat fish."])
    options: list = []
    scripted(services, handle, options)
    session = ChatSession(services)
    list(session.turn("Tell me about otters."))
    # A plain turn has nothing to draft from: no prompt lookup asked for.
    assert "speculative" not in options[0] and "lookup_texts" not in options[0]
    question = session.visible_messages()[0]
    handle.__init__(["Otters live in rivers."])
    list(session.edit_and_resend(question.id, "Tell me about sea otters."))
    assert options[1]["lookup_texts"] == ["Otters live in rivers and eat fish."]
    assert options[1]["speculative"] is True


def test_regenerating_twice_keeps_three_variants_and_the_next_turn_sees_the_chosen_one(services):
    handle = ScriptedHandle(["Otters hold hands."])
    prompts = scripted(services, handle)
    session = ChatSession(services)
    list(session.turn("Tell me about otters."))
    for text in ("Otters eat clams.", "Otters sleep afloat."):
        handle.__init__([text])
        list(session.regenerate())
    # Each regenerate was asked the conversation before the reply, none of the earlier variants.
    assert prompts[1] == prompts[2] == prompts[0]
    last = session.visible_messages()[-1]
    variants = services.conversations.variants(last.id)
    assert [v.text for v in variants] == ["Otters hold hands.", "Otters eat clams.", "Otters sleep afloat."]
    assert [v.chosen for v in variants] == [False, False, True]
    assert {v.variant_of for v in variants} == {variants[0].id}

    # Switching persists: a new session over the same conversation shows the chosen variant.
    services.conversations.choose_variant(variants[1].id)
    reopened = ChatSession(services, session.conversation_id)
    assert [m.text for m in reopened.visible_messages()] == ["Tell me about otters.", "Otters eat clams."]
    handle.__init__(["They live in rivers."])
    list(reopened.turn("Where do they live?"))
    sent = [m["content"] for m in prompts[-1]]
    assert "Otters eat clams." in sent
    assert "Otters hold hands." not in sent and "Otters sleep afloat." not in sent
    # Only the last reply can be written again: an earlier one would answer another conversation.
    with pytest.raises(ChatError):
        list(reopened.regenerate(variants[1].id))


def test_the_export_marks_the_chosen_variant_and_keeps_the_others(services, tmp_path):
    from assistant.history.archive import History

    handle = ScriptedHandle(["Variant one."])
    scripted(services, handle)
    session = ChatSession(services)
    list(session.turn("Say something."))
    for text in ("Variant two.", "Variant three."):
        handle.__init__([text])
        list(session.regenerate())
    first = services.conversations.variants(session.visible_messages()[-1].id)[0]
    services.conversations.choose_variant(first.id)
    history = History(services.store)
    document = history.export_document(session.conversation_id)
    replies = [m for m in document["conversations"][0]["messages"] if m["role"] == "assistant"]
    assert [(m["text"], m["chosen"]) for m in replies] == \
        [("Variant one.", True), ("Variant two.", False), ("Variant three.", False)]
    assert {m["variant_of"] for m in replies} == {first.id}
    markdown = history.export(tmp_path, "md", conversation_id=session.conversation_id).path.read_text()
    assert "variant 1 of 3, chosen" in markdown and "variant 2 of 3)" in markdown and "Variant three." in markdown
    # Search finds the text the conversation shows, not the variants switched away from.
    assert [h.message_id for h in history.search("Variant one")] == [first.id]
    assert history.search("three", include_titles=False) == []
    # The export comes back in with its variants and the choice.
    services.conversations.delete(session.conversation_id)
    services.conversations.empty_trash()
    history.import_document(document)
    assert [m.text for m in ChatSession(services, session.conversation_id).visible_messages()] == \
        ["Say something.", "Variant one."]


def test_a_session_that_persists_nothing_writes_nothing(services):
    handle = ScriptedHandle(["Hello", " there."])
    prompts = scripted(services, handle)
    before = len(services.conversations.list())
    session = ChatSession(services, persist=False, system_prompt="Be kind.",
                          history=[{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"}])
    events = list(session.turn("How are you?"))
    assert isinstance(events[-1], ReplyDone) and events[-1].message.text == "Hello there."
    assert events[0].conversation is None and session.conversation_id is None
    assert len(services.conversations.list()) == before
    assert prompts[0] == [{"role": "system", "content": "Be kind."}, {"role": "user", "content": "Hi"},
                          {"role": "assistant", "content": "Hello!"}, {"role": "user", "content": "How are you?"}]
    assert [m.text for m in session.visible_messages()] == ["Hi", "Hello!", "How are you?", "Hello there."]


def test_mistakes_are_user_errors_in_words(services):
    scripted(services, ScriptedHandle(["ok"]))
    with pytest.raises(ChatError, match="empty"):
        list(ChatSession(services).turn("   "))
    session = ChatSession(services)
    list(session.turn("Hello"))
    with pytest.raises(ChatError, match="no longer in this conversation"):
        list(session.regenerate("not-a-message-id"))
    assert issubclass(ChatError, UserError)


# ----- cancelling --------------------------------------------------------------------------------
def test_cancel_keeps_what_arrived_marked_interrupted(services):
    gate = threading.Semaphore(0)
    handle = ScriptedHandle(["One", " two", " three", " four"], gate)
    scripted(services, handle)
    session = ChatSession(services)
    events = session.turn("Count.")
    seen = []
    gate.release()
    for event in events:
        seen.append(event)
        if isinstance(event, Token):
            session.cancel()  # from the consumer here; any thread may call it
    failed = seen[-1]
    assert isinstance(failed, ReplyFailed) and failed.kind == "cancelled" and failed.text == "Stopped."
    assert handle.cancelled_at == 1
    stored = services.conversations.get_message(failed.message.id)
    assert stored.status == "interrupted" and stored.text == "One"
    # The next turn of the same session starts afresh.
    handle.__init__(["Fine."])
    assert isinstance(list(session.turn("Again."))[-1], ReplyDone)


def test_a_consumer_that_goes_away_stops_the_engine_and_keeps_the_text(services):
    handle = ScriptedHandle(["Once", " upon", " a", " time"])
    scripted(services, handle)
    events = ChatSession(services).turn("A story.")
    started = None
    for event in events:
        if isinstance(event, ReplyStarted):
            started = event.message_id
        if isinstance(event, Token):
            break
    events.close()  # what Ctrl+C in the terminal or a closed window does to the generator
    assert handle.cancelled_at is not None
    stored = services.conversations.get_message(started)
    assert stored.status == "interrupted" and stored.text == "Once"


# ----- replies from the documents ----------------------------------------------------------------
SOURCE = {"number": 1, "chunk_id": 1, "path": "/notes/moving.md", "file": "moving.md", "location": "(beginning)",
          "passage": "Start early; label every box."}


def _grounded_reply(services, tokens: list[str], sources: list[dict]):
    handle = ScriptedHandle(tokens)
    scripted(services, handle)
    session = ChatSession(services, conversation_id=services.conversations.create("Moving").id)
    session.settle()
    services.conversations.add_message(session.conversation_id, "user", "What is the key to a moving checklist?")
    model = services.library.for_task("chat")
    turn = _Turn(model=model, prompt=[{"role": "user", "content": "What is the key?"}],
                 sampling=services.settings.sampling, sources=sources)
    events = list(session._stream(turn))
    return handle, events, services.conversations.messages(session.conversation_id)[-1]


def test_a_reply_from_the_documents_that_loops_is_stopped_early_and_kept_tidied(services):
    looped = ["The key is here [3]. "] + ["The key to a moving ", "checklist: "] * 200
    handle, events, stored = _grounded_reply(services, looped, [SOURCE])
    assert isinstance(events[-1], ReplyDone)
    # Stopped within a few checks of the third saying, not streamed to the end of its 401 tokens.
    assert handle.cancelled_at is not None and handle.cancelled_at < 40
    assert stored.status == "complete"
    assert stored.text == "The key is here. The key to a moving checklist: …"  # loop cut, [3] names no source
    assert events[-1].message.text == stored.text and stored.documents == ["chunk:1"]


def test_a_reply_from_the_documents_keeps_its_real_citations(services):
    handle, events, stored = _grounded_reply(services, ["Start early [1]", " and label boxes [2]."], [SOURCE])
    assert handle.cancelled_at is None and isinstance(events[-1], ReplyDone)
    assert stored.status == "complete" and stored.text == "Start early [1] and label boxes."


def test_a_plain_chat_reply_is_kept_as_the_model_said_it(services):
    said = ["ha ha ha ha ha ha ha ha ha ha ha ha ha ha ha ha ha ha ha ha ha ha ha ha ha ha ha [2]"] * 3
    handle, events, stored = _grounded_reply(services, said, [])
    assert handle.cancelled_at is None and isinstance(events[-1], ReplyDone)
    assert stored.status == "complete" and stored.text == "".join(said)
