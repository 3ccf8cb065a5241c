"""Incognito chat (issue 24): a conversation kept in memory only, through the one ChatSession.

The no-trace test uses the real default model, as the chat session's own first test does; the
variants, edit, stop and discard tests script the engine's stream as test_chat_session does,
since they are about bookkeeping, not about what a model says. Every test also counts the
store's write transactions while the incognito chat runs: there must be none.
"""

from __future__ import annotations

import threading
import uuid
from pathlib import Path

import pytest

from assistant.chat import views as chat_views
from assistant.chat.events import ReplyDone, ReplyFailed, ReplyStarted, Token, TurnPrepared
from assistant.chat.incognito import CLOSED, IncognitoConversations
from assistant.chat.prompt import SETTING_DOCUMENTS, SETTING_MODEL, SETTING_SYSTEM_PROMPT
from assistant.chat.session import ChatSession
from assistant.errors import ChatError, ConversationError, ConversationNotFoundError
from tests.assistant.test_chat_session import ScriptedHandle, scripted

#: Tables an incognito chat must leave exactly as they were.
TABLES = ("conversations", "messages", "messages_fts", "conversations_fts", "settings")


def count_writes(services, monkeypatch) -> list:
    """Count every write transaction of the store from now on (a list, one entry per write)."""
    writes: list = []
    original = services.store.transaction

    def counted(*args, **kwargs):
        writes.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(services.store, "transaction", counted)
    return writes


def row_counts(services) -> dict:
    with services.store.reading() as conn:
        return {table: conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0] for table in TABLES}


def files_holding(folder: Path, marker: str) -> list[str]:
    """Every file under ``folder`` whose bytes contain ``marker`` (UTF-8 or UTF-16, as SQLite may
    store text): the database, its -wal and -shm, the logs, anything."""
    needles = [marker.encode("utf-8"), marker.encode("utf-16-le"), marker.encode("utf-16-be")]
    found = []
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            data = path.read_bytes()
            if any(needle in data for needle in needles):
                found.append(str(path.relative_to(folder)))
    return found


def test_an_incognito_chat_leaves_no_trace_on_disk_in_search_or_in_the_list(services, monkeypatch):
    marker = f"Zorblax{uuid.uuid4().hex[:10]}"
    before = row_counts(services)
    listed_before = [c.id for c in services.conversations.list(include_archived=True, include_deleted=True)]
    writes = count_writes(services, monkeypatch)
    incognito = IncognitoConversations()

    # The first turn, as the window sends it; a persona with the marker, kept with the chat.
    session = ChatSession(services, system_prompt=f"You are a terse assistant. Call the user {marker}.",
                          conversations=incognito)
    assert session.incognito
    events = list(session.turn(f"Hello, my name is {marker}. Say my name."))
    prepared, done = events[0], events[-1]
    assert isinstance(prepared, TurnPrepared) and isinstance(done, ReplyDone), done
    assert prepared.conversation is not None and prepared.conversation.title.startswith("Hello, my name is")
    assert done.message.text == "".join(e.text for e in events if isinstance(e, Token)) and done.message.text.strip()
    conversation_id = session.conversation_id
    assert conversation_id and incognito.exists(conversation_id)

    # Later turns, each through a new session over the same chat, as the window makes them.
    def later() -> ChatSession:
        return ChatSession(services, conversation_id, conversations=incognito)

    assert later().system_prompt is None and later().settle().system_prompt.endswith(f"{marker}.")
    assert isinstance(list(later().turn(f"Repeat after me: {marker} likes otters."))[-1], ReplyDone)
    assert isinstance(list(later().regenerate())[-1], ReplyDone)
    first_user = later().visible_messages()[0]
    assert isinstance(list(later().edit_and_resend(first_user.id, f"I am {marker}. Who am I?"))[-1], ReplyDone)
    shown = later().visible_messages()
    assert [m.role for m in shown] == ["user", "assistant"] and marker in shown[0].text
    # The title came from the first message and stays (an edit does not rename), in memory.
    assert incognito.get(conversation_id).title == f"Hello, my name is {marker}. Say my name."

    # Nothing went to the store: not one write, not one row, nothing in search or in the list.
    assert writes == []
    assert row_counts(services) == before
    assert services.history.search(marker) == []
    assert services.history.search("otters") == []
    listed = services.conversations.list(include_archived=True, include_deleted=True)
    assert [c.id for c in listed] == listed_before
    assert not services.conversations.exists(conversation_id)
    assert all(marker not in c.title for c in listed)
    # Nor anywhere on disk: the database, its WAL and shared memory, the engine's log, any file.
    data_dir = Path(services.paths.data_dir)
    assert (data_dir / "assistant.sqlite3").exists()
    assert files_holding(data_dir, marker) == []

    # Closed, it is gone: a session over it finds nothing to show or continue.
    incognito.discard()
    assert not incognito.exists(conversation_id)
    with pytest.raises(ConversationNotFoundError):
        later().visible_messages()
    with pytest.raises(ConversationNotFoundError):
        list(later().turn("Still there?"))
    assert writes == [] and row_counts(services) == before


def test_regenerate_keeps_variants_and_edit_takes_messages_out_of_view_in_memory(services, monkeypatch):
    handle = ScriptedHandle(["Otters hold hands."])
    prompts = scripted(services, handle)
    writes = count_writes(services, monkeypatch)
    incognito = IncognitoConversations()
    session = ChatSession(services, system_prompt="Be brief.", conversations=incognito)
    list(session.turn("Tell me about otters."))
    for text in ("Otters eat clams.", "Otters sleep afloat."):
        handle.__init__([text])
        events = list(session.regenerate())
        assert isinstance(events[-1], ReplyDone)
    # Each regenerate was asked the conversation before the reply, none of the earlier variants.
    assert prompts[1] == prompts[2] == prompts[0]
    last = session.visible_messages()[-1]
    variants = incognito.variants(last.id)
    assert [v.text for v in variants] == ["Otters hold hands.", "Otters eat clams.", "Otters sleep afloat."]
    assert [v.chosen for v in variants] == [False, False, True]
    assert {v.variant_of for v in variants} == {variants[0].id}

    # The window's switch between variants, and the next turn sees the chosen one only.
    message, sources = chat_views.choose_variant(services, variants[1].id, incognito)
    assert message.text == "Otters eat clams." and message.chosen and sources == []
    view = chat_views.load_conversation(services, session.conversation_id, incognito)
    assert [m.text for m in view.messages] == ["Tell me about otters.", "Otters eat clams."]
    assert view.variants == {variants[1].id: [v.id for v in variants]}
    assert view.system_prompt == "Be brief." and view.conversation.message_count == 4
    handle.__init__(["They live in rivers."])
    list(ChatSession(services, session.conversation_id, conversations=incognito).turn("Where do they live?"))
    sent = [m["content"] for m in prompts[-1]]
    assert "Otters eat clams." in sent and "Otters hold hands." not in sent and "Otters sleep afloat." not in sent
    with pytest.raises(ChatError, match="Only the last reply"):
        list(session.regenerate(variants[1].id))

    # Edit and resend: the edited message and what followed leave the view (kept as hidden, in memory).
    visible = session.visible_messages()
    handle.__init__(["Beavers build dams."])
    events = list(session.edit_and_resend(visible[0].id, "Tell me about beavers."))
    assert set(events[0].hidden) == {m.id for m in visible}
    assert [m.text for m in session.visible_messages()] == ["Tell me about beavers.", "Beavers build dams."]

    # The screen's settings are kept with the chat, in memory.
    chat_views.set_conversation_setting(services, session.conversation_id, SETTING_SYSTEM_PROMPT, "Be kind.", incognito)
    chat_views.set_conversation_setting(services, session.conversation_id, SETTING_DOCUMENTS, None, incognito)
    assert incognito.get_setting(session.conversation_id, SETTING_SYSTEM_PROMPT) == "Be kind."
    assert incognito.get_setting(session.conversation_id, SETTING_MODEL) == services.library.for_task("chat").id
    assert writes == [] and services.conversations.list() == []


def test_stop_keeps_the_partial_reply_in_memory_and_a_discard_mid_reply_keeps_nothing(services, monkeypatch):
    gate = threading.Semaphore(0)
    handle = ScriptedHandle(["One", " two", " three"], gate)
    scripted(services, handle)
    writes = count_writes(services, monkeypatch)
    incognito = IncognitoConversations()
    session = ChatSession(services, conversations=incognito)
    seen = []
    gate.release()
    for event in session.turn("Count."):
        seen.append(event)
        if isinstance(event, Token):
            session.cancel()
    failed = seen[-1]
    assert isinstance(failed, ReplyFailed) and failed.kind == "cancelled"
    assert incognito.get_message(failed.message.id).status == "interrupted"
    assert incognito.get_message(failed.message.id).text == "One"

    # The user leaves while a reply streams: the window discards the chat. The reply streams on
    # into nothing, and its end says the chat is gone (to a window that no longer listens).
    handle.__init__(["Four", " five"], gate)
    events = ChatSession(services, session.conversation_id, conversations=incognito).turn("Go on.")
    gate.release()  # the first token only
    started = None
    for event in events:
        if isinstance(event, ReplyStarted):
            started = event.message_id
        if isinstance(event, Token):
            break
    incognito.discard()
    gate.release()  # the rest arrives after the discard
    with pytest.raises(ConversationError, match=CLOSED):
        list(events)
    assert handle.finished and not incognito.exists(session.conversation_id)
    with pytest.raises(ConversationError, match=CLOSED):
        incognito.get_message(started)
    assert writes == [] and services.conversations.list() == []


def test_a_stored_chat_beside_an_incognito_one_is_stored_as_before(services):
    """The session's default is unchanged: without an incognito holder it writes to the store."""
    scripted(services, ScriptedHandle(["Stored."]))
    stored = ChatSession(services)
    assert not stored.incognito
    list(stored.turn("Keep this one."))
    assert [m.text for m in services.conversations.messages(stored.conversation_id)] == ["Keep this one.", "Stored."]
    assert [c.id for c in services.conversations.list()] == [stored.conversation_id]
