"""The chat pane, driven through the real window with the real default model (SmolLM2)."""

from __future__ import annotations

import os
import signal

import pytest

from PySide6.QtCore import Qt
from PySide6.QtGui import QTextFormat
from PySide6.QtWidgets import QApplication

from engine.settings import SamplingParams
from tests.ui.conftest import wait_idle
from ui.chat.message_view import MessageView
from ui.theme import COLORS


def type_and_send(qtbot, win, text: str) -> None:
    win.chat.focus_composer()
    qtbot.keyClicks(win.chat.composer, text)
    qtbot.keyClick(win.chat.composer, Qt.Key.Key_Return)


def wait_streaming(qtbot, win, chars: int = 5) -> None:
    """Wait until the reply has streamed ``chars`` characters; fail at once, saying why, if it ended."""

    def streaming() -> bool:
        view = win.chat.streaming_view
        if not win.chat.busy:
            raise RuntimeError(f"the reply ended before streaming {chars} characters; "
                                 f"banner: {win.chat.banner.label.text()!r}, engine: {win.engine_label.text()!r}")
        return view is not None and len(view.text) > chars

    qtbot.waitUntil(streaming, timeout=120000)


def stored(services, win):
    return services.conversations.messages(win.chat.conversation_id)


def test_send_streams_a_reply_from_the_real_model(qtbot, window, services):
    tokens: list[str] = []
    # An answer of several tokens, so that it is seen growing while it streams.
    type_and_send(qtbot, window, "Write two sentences about the sea.")
    assert window.chat.busy and window.chat.stop_button.isVisible()
    assert window.chat.composer.toPlainText() == ""

    def count_tokens():
        view = window.chat.streaming_view
        if view is not None and view.text and (not tokens or tokens[-1] != view.text):
            tokens.append(view.text)
        return len(tokens) >= 2

    # Seen while streaming: the text grows in the view before the reply is finished.
    qtbot.waitUntil(count_tokens, timeout=120000)
    wait_idle(qtbot, window)

    messages = stored(services, window)
    assert [m.role for m in messages] == ["user", "assistant"]
    user, reply = messages
    assert user.text == "Write two sentences about the sea."
    assert reply.status == "complete" and reply.text.strip()
    assert reply.metrics["completion_tokens"] >= 1 and reply.metrics["tokens_per_s"] > 0
    assert reply.model == services.library.for_task("chat").id

    view = window.chat.views[-1]
    assert view.text == reply.text
    assert "tokens/s" in view.metrics_label.text() and "first token" in view.metrics_label.text()
    assert view.regenerate_button.isVisible() and window.chat.views[0].edit_button.isVisible()
    assert not view.interrupted_tag.isVisible()
    assert not window.chat.banner.isVisible()
    # The conversation is in the sidebar, titled by its first message, and selected.
    qtbot.waitUntil(lambda: window.sidebar.item_for(window.chat.conversation_id) is not None, timeout=10000)
    item = window.sidebar.item_for(window.chat.conversation_id)
    assert item.text() == "Write two sentences about the sea."
    assert window.chat.title_label.text() == "Write two sentences about the sea."
    # Each conversation remembers its model.
    assert services.conversations.get_setting(window.chat.conversation_id, "model") == reply.model


@pytest.mark.parametrize("how", ["escape", "button"])
def test_stop_keeps_the_partial_reply_marked_interrupted(qtbot, window, services, how):
    services.settings.sampling = SamplingParams(temperature=0.0, max_tokens=400, seed=7)
    type_and_send(qtbot, window, "Write a long story about a dragon who learns to bake bread.")
    wait_streaming(qtbot, window)
    if how == "escape":
        qtbot.keyClick(window.chat.composer, Qt.Key.Key_Escape)
    else:
        qtbot.mouseClick(window.chat.stop_button, Qt.MouseButton.LeftButton)
    wait_idle(qtbot, window, timeout=60000)

    reply = stored(services, window)[-1]
    assert reply.role == "assistant" and reply.status == "interrupted"
    assert reply.text.strip()
    assert reply.metrics.get("completion_tokens", 0) < 400
    view = window.chat.views[-1]
    assert view.interrupted_tag.isVisible()
    assert view.text == reply.text
    assert not window.chat.banner.isVisible()  # a stop is the user's choice, not an error
    assert window.chat.send_button.isVisible() and not window.chat.stop_button.isVisible()


def test_engine_death_mid_reply_keeps_the_partial_reply_and_says_so(qtbot, window, services):
    services.settings.sampling = SamplingParams(temperature=0.0, max_tokens=400, seed=7)
    type_and_send(qtbot, window, "Tell me everything you know about the history of ships.")
    wait_streaming(qtbot, window)
    pid = services.engine.pid
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    wait_idle(qtbot, window, timeout=60000)

    conversation_id = window.chat.conversation_id
    messages = services.conversations.messages(conversation_id)
    reply = messages[-1]
    assert reply.status == "interrupted" and reply.text.strip()
    assert window.chat.views[-1].interrupted_tag.isVisible()
    assert window.chat.banner.isVisible()
    banner = window.chat.banner.label.text()
    assert "stopped unexpectedly" in banner and "kept and marked interrupted" in banner
    # The engine restarts by itself and the conversation goes on where it was.
    qtbot.waitUntil(lambda: services.engine.pid not in (None, pid) and window.engine_state == "ready",
                    timeout=60000)
    services.settings.sampling = SamplingParams(temperature=0.0, max_tokens=8, seed=7)
    type_and_send(qtbot, window, "Thanks!")
    wait_idle(qtbot, window)
    after = services.conversations.messages(conversation_id)
    assert [m.id for m in after[: len(messages)]] == [m.id for m in messages]
    assert after[-1].status == "complete" and after[-1].role == "assistant"


def test_regenerate_and_edit_the_last_message(qtbot, window, services):
    services.settings.sampling = SamplingParams(temperature=0.0, max_tokens=8, seed=7)
    type_and_send(qtbot, window, "Say hello.")
    wait_idle(qtbot, window)
    first_reply = window.chat.views[-1].message_id

    qtbot.mouseClick(window.chat.views[-1].regenerate_button, Qt.MouseButton.LeftButton)
    assert window.chat.busy
    wait_idle(qtbot, window)
    roles = [v.role for v in window.chat.views]
    assert roles == ["user", "assistant"]
    assert window.chat.views[-1].message_id != first_reply
    assert window.chat.view_for(first_reply) is None

    qtbot.mouseClick(window.chat.views[0].edit_button, Qt.MouseButton.LeftButton)
    assert window.chat.composer.toPlainText() == "Say hello."
    assert window.chat.edit_banner.isVisible()
    window.chat.composer.clear()
    type_and_send(qtbot, window, "Say goodbye.")
    wait_idle(qtbot, window)
    assert [v.role for v in window.chat.views] == ["user", "assistant"]
    assert window.chat.views[0].text == "Say goodbye."
    # The store keeps every message; the ones replaced leave the conversation as shown and sent.
    from assistant.chat.views import load_conversation

    view = load_conversation(services, window.chat.conversation_id)
    assert [m.text for m in view.messages][0] == "Say goodbye."
    assert len(view.messages) == 2
    assert len(services.conversations.messages(window.chat.conversation_id)) == 5


def test_regenerated_replies_are_variants_the_user_switches_between(qtbot, window, services):
    services.settings.sampling = SamplingParams(temperature=1.0, max_tokens=8, seed=1)
    type_and_send(qtbot, window, "Name a fruit.")
    wait_idle(qtbot, window)
    assert not window.chat.views[-1].variant_bar.isVisible()  # one reply: no switcher
    for seed in (2, 3):
        services.settings.sampling = SamplingParams(temperature=1.0, max_tokens=8, seed=seed)
        qtbot.mouseClick(window.chat.views[-1].regenerate_button, Qt.MouseButton.LeftButton)
        wait_idle(qtbot, window)
    assert [v.role for v in window.chat.views] == ["user", "assistant"]
    reply = window.chat.views[-1]
    variants = services.conversations.variants(reply.message_id)
    assert len(variants) == 3 and reply.variant_ids == [v.id for v in variants]
    assert reply.variant_bar.isVisible() and reply.variant_label.text() == "3/3"
    assert reply.previous_variant.isEnabled() and not reply.next_variant.isEnabled()

    for index in (1, 0):
        qtbot.mouseClick(reply.previous_variant, Qt.MouseButton.LeftButton)
        qtbot.waitUntil(lambda: reply.message_id == variants[index].id, timeout=30000)
        assert reply.text == variants[index].text and reply.variant_label.text() == f"{index + 1}/3"
    assert not reply.previous_variant.isEnabled()

    # The choice is stored: reopening the conversation shows the first variant again.
    conversation_id = window.chat.conversation_id
    window.chat.new_conversation()
    qtbot.waitUntil(lambda: window.chat.conversation_id is None and not window.chat.views, timeout=30000)
    window.chat.open_conversation(conversation_id)
    qtbot.waitUntil(lambda: len(window.chat.views) == 2, timeout=30000)
    reopened = window.chat.views[-1]
    assert reopened.message_id == variants[0].id and reopened.text == variants[0].text
    assert reopened.variant_label.text() == "1/3" and reopened.variant_bar.isVisible()


def test_composer_enter_sends_shift_enter_adds_a_line_and_it_grows(qtbot, window):
    composer = window.chat.composer
    composer.setFocus()
    start_height = composer.height()
    qtbot.keyClicks(composer, "line one")
    qtbot.keyClick(composer, Qt.Key.Key_Return, Qt.KeyboardModifier.ShiftModifier)
    qtbot.keyClicks(composer, "line two")
    qtbot.keyClick(composer, Qt.Key.Key_Return, Qt.KeyboardModifier.ShiftModifier)
    qtbot.keyClicks(composer, "line three")
    assert composer.toPlainText() == "line one\nline two\nline three"
    assert not window.chat.busy
    qtbot.waitUntil(lambda: composer.height() > start_height, timeout=5000)
    for _ in range(20):
        qtbot.keyClick(composer, Qt.Key.Key_Return, Qt.KeyboardModifier.ShiftModifier)
    tallest = composer.height()
    assert composer.lines_shown() == 8 and tallest < 400


def test_persona_is_kept_per_conversation(qtbot, window, services):
    services.settings.sampling = SamplingParams(temperature=0.0, max_tokens=4, seed=7)
    window.chat.persona_button.click()
    assert window.chat.persona_panel.isVisible()
    window.chat.persona_edit.setPlainText("You are a pirate.")
    window.chat.persona_save.click()
    type_and_send(qtbot, window, "Hello")
    wait_idle(qtbot, window)
    cid = window.chat.conversation_id
    assert services.conversations.get_setting(cid, "system_prompt") == "You are a pirate."
    window.chat.new_conversation()
    qtbot.waitUntil(lambda: window.chat.conversation_id is None and window.chat.persona_edit.toPlainText() == "",
                    timeout=10000)
    window.chat.open_conversation(cid)
    qtbot.waitUntil(lambda: window.chat.persona_edit.toPlainText() == "You are a pirate.", timeout=10000)


def test_the_persona_box_shows_the_persona_the_model_gets_and_where_it_comes_from(qtbot, window, services,
                                                                                 tmp_path):
    from assistant.models import model_settings
    from assistant.models.model_settings import ModelSettings
    from tests.engine.gguf_corpus import write_valid_gguf

    chat, combo = window.chat, window.chat.model_combo
    model = services.library.for_task("chat")
    other = services.library.add(write_valid_gguf(tmp_path / "tiny.gguf"))
    services.settings.default_system_prompt = "You are helpful."
    model_settings.save(services.store, model, ModelSettings(system_prompt="Answer like a pirate."),
                        free_bytes=64 * 1024 ** 3)
    chat.refresh_models()
    chat.new_conversation()
    # A new chat with a model that has a persona of its own: the box shows that one, and says so.
    qtbot.waitUntil(lambda: chat.persona_edit.toPlainText() == "Answer like a pirate."
                    and combo.findData(other.id) >= 0, timeout=10000)
    assert chat.persona_source_label.text() == "From this model's settings (Models → Settings…)."
    # Another model in the chat's model box: the box follows it (the app's default), and back.
    combo.setCurrentIndex(combo.findData(other.id))
    qtbot.waitUntil(lambda: chat.persona_edit.toPlainText() == "You are helpful.", timeout=10000)
    assert chat.persona_source_label.text() == "The app's default (Settings → Default system prompt)."
    combo.setCurrentIndex(combo.findData(model.id))
    qtbot.waitUntil(lambda: chat.persona_edit.toPlainText() == "Answer like a pirate.", timeout=10000)

    # A stored conversation that chose nothing: saving the inherited text unchanged pins nothing, so
    # a later change of the model's settings still reaches it.
    conversation = services.conversations.create("Persona")
    services.conversations.set_setting(conversation.id, "model", model.id)
    window.open_conversation(conversation.id)
    qtbot.waitUntil(lambda: chat.conversation_id == conversation.id
                    and chat.persona_edit.toPlainText() == "Answer like a pirate.", timeout=10000)
    chat.persona_button.click()
    chat.persona_save.click()
    assert not chat.persona_panel.isVisible()
    model_settings.save(services.store, model, ModelSettings(system_prompt="Answer like a robot."),
                        free_bytes=64 * 1024 ** 3)
    chat.persona_button.click()  # opening reads it again
    qtbot.waitUntil(lambda: chat.persona_edit.toPlainText() == "Answer like a robot.", timeout=10000)
    assert services.conversations.get_setting(conversation.id, "system_prompt") is None
    # Different text becomes the conversation's own, as before.
    chat.persona_edit.setPlainText("You are a cat.")
    chat.persona_save.click()
    qtbot.waitUntil(lambda: services.conversations.get_setting(conversation.id, "system_prompt") == "You are a cat."
                    and chat.persona_source_label.text() == "Chosen for this conversation.", timeout=10000)
    assert chat.persona_edit.toPlainText() == "You are a cat."

    # A conversation with its own persona shows that one, whatever the model's.
    window.new_chat()
    qtbot.waitUntil(lambda: chat.conversation_id is None and chat.persona_edit.toPlainText() == "Answer like a robot.",
                    timeout=10000)
    window.open_conversation(conversation.id)
    qtbot.waitUntil(lambda: chat.persona_edit.toPlainText() == "You are a cat.", timeout=10000)
    assert chat.persona_source_label.text() == "Chosen for this conversation."

    # An incognito chat the same: the model's persona, and an unchanged save keeps following it.
    chat.new_incognito_conversation()
    qtbot.waitUntil(lambda: chat.incognito is not None and chat.persona_edit.toPlainText() == "Answer like a robot.",
                    timeout=10000)
    assert chat.persona_source_label.text() == "From this model's settings (Models → Settings…)."
    chat.persona_button.click()
    chat.persona_save.click()
    assert chat.system_prompt == "You are helpful."  # the app's default, which the model's persona replaces


def test_markdown_replies_render_code_lists_and_tables(qtbot, qapp):
    view = MessageView("assistant", COLORS["light"])
    qtbot.addWidget(view)
    view.set_text("Steps:\n\n- one\n- two\n\n```python\nprint('hi')\n```\n\n| a | b |\n|---|---|\n| 1 | 2 |\n")
    document = view.body.document()
    assert "print('hi')" in document.toPlainText()
    code_blocks = []
    block = document.begin()
    while block.isValid():
        if block.blockFormat().hasProperty(QTextFormat.Property.BlockCodeLanguage):
            code_blocks.append(block)
        block = block.next()
    assert code_blocks and code_blocks[0].blockFormat().background().color().name() == COLORS["light"]["code_bg"]
    fragment = code_blocks[0].begin().fragment()
    assert fragment.charFormat().fontFamilies()  # a monospace family is set
    assert any(type(f).__name__ == "QTextTable" for f in document.rootFrame().childFrames())
    assert any(document.findBlockByNumber(i).textList() is not None for i in range(document.blockCount()))
    view.copy()
    assert QApplication.clipboard().text() == view.text


def test_composer_suggests_the_next_words_tab_accepts_and_typing_dismisses(qtbot, window):
    composer = window.chat.composer
    qtbot.waitUntil(lambda: window.chat.ready, timeout=60000)
    composer.setFocus()
    qtbot.keyClicks(composer, "The capital of France is")
    qtbot.waitUntil(lambda: bool(composer.suggestion), timeout=120000)
    suggestion = composer.suggestion
    qtbot.keyClick(composer, Qt.Key.Key_Tab)
    assert composer.toPlainText() == "The capital of France is" + suggestion
    assert composer.hasFocus(), "Tab with a suggestion accepts it instead of moving the focus"
    qtbot.keyClicks(composer, " and")
    assert composer.suggestion == "", "typing on dismisses"
    qtbot.keyClick(composer, Qt.Key.Key_Tab)
    assert not composer.hasFocus(), "without a suggestion Tab moves the focus as before"


def test_composer_suggestions_follow_the_setting(qtbot, window, services):
    qtbot.waitUntil(lambda: window.chat.ready and window.settings_pane.isEnabled(), timeout=60000)
    window.settings_pane.suggestions.setChecked(False)
    window.settings_pane.flush()
    qtbot.waitUntil(lambda: not window.chat.composer.suggestions_enabled, timeout=30000)
    assert services.settings.suggestions_enabled is False
    composer = window.chat.composer
    composer.setFocus()
    qtbot.keyClicks(composer, "The capital of France is")
    qtbot.wait(1500)
    assert composer.suggestion == ""


def _index_note(services, tmp_path, name: str, text: str) -> None:
    note = tmp_path / name
    note.write_text(text, encoding="utf-8")
    documents, _retriever = services.documents_core()
    events = list(documents.add_paths([str(note)], "notes"))
    assert not [e for e in events if getattr(e, "kind", "") == "error"], events


def test_chat_with_attached_documents_cites_and_opens_its_sources(qtbot, window, services, tmp_path):
    _index_note(services, tmp_path, "garden.md",
                "# Garden notes\n\nThe greenhouse key is kept by Margit Holloway, the head gardener, under the "
                "blue flowerpot. The tomatoes are watered every Tuesday and Friday morning.\n")
    qtbot.waitUntil(lambda: window.chat.ready, timeout=60000)
    window.chat.refresh_collections()
    qtbot.waitUntil(lambda: window.chat.documents_combo.findText("notes (1 file)") >= 0, timeout=30000)
    window.chat.documents_combo.setCurrentIndex(window.chat.documents_combo.findText("notes (1 file)"))
    type_and_send(qtbot, window, "Who keeps the greenhouse key?")
    wait_idle(qtbot, window)
    reply = window.chat.views[-1]
    assert reply.role == "assistant" and reply.sources, window.chat.banner.label.text()
    assert reply.sources[0]["file"] == "garden.md" and "flowerpot" in reply.sources[0]["passage"]
    assert "garden.md" in reply.sources_label.text() and window.chat.budget_label.text().startswith("Used 1 passage (")
    assert "Margit" in reply.text, reply.text  # a 135M model copies a name it was given

    stored_reply = stored(services, window)[-1]
    key_sentence = "The greenhouse key is kept by Margit Holloway, the head gardener, under the blue flowerpot."
    assert reply.sources[0]["quote"] == key_sentence
    assert "From your documents" in reply.sources_label.text() and "blue flowerpot" in reply.sources_label.text()
    assert stored_reply.documents == [f"chunk:{reply.sources[0]['chunk_id']}", f"quote:1:{key_sentence}"]
    chosen = window.chat.documents_combo.currentData()
    assert services.conversations.get_setting(window.chat.conversation_id, "documents") == \
        {"collections": [chosen], "only": False}

    reply.sources_label.linkActivated.emit(f"chunk:{reply.sources[0]['chunk_id']}")
    qtbot.waitUntil(lambda: window.chat.source_dialog is not None and window.chat.source_dialog.isVisible(), timeout=30000)
    assert "flowerpot" in window.chat.source_dialog.passage.toPlainText()
    assert "garden.md" in window.chat.source_dialog.where.text()
    window.chat.source_dialog.reject()

    conversation_id = window.chat.conversation_id
    window.chat.new_conversation()
    qtbot.waitUntil(lambda: window.chat.conversation_id is None and not window.chat.views, timeout=30000)
    assert window.chat.documents_combo.currentIndex() == 0, "a new chat starts without documents"
    window.chat.open_conversation(conversation_id)
    qtbot.waitUntil(lambda: len(window.chat.views) == 2, timeout=30000)
    assert window.chat.views[-1].sources and window.chat.documents_combo.currentText().startswith("notes")
    assert window.chat.views[-1].sources[0]["quote"] == key_sentence  # the quote comes back with the conversation
    assert "From your documents" in window.chat.views[-1].sources_label.text()


def test_only_from_my_documents_says_it_does_not_know_without_the_model(qtbot, window, services, tmp_path):
    from assistant.documents.grounded import DONT_KNOW

    _index_note(services, tmp_path, "garden.md", "# Garden notes\n\nThe tomatoes are watered every Tuesday.\n")
    qtbot.waitUntil(lambda: window.chat.ready, timeout=60000)
    window.chat.refresh_collections()
    qtbot.waitUntil(lambda: window.chat.documents_combo.count() > 2, timeout=30000)
    window.chat.documents_combo.setCurrentIndex(1)  # all my documents
    window.chat.only_documents.setChecked(True)
    type_and_send(qtbot, window, "Who won the football world cup in 1998?")
    wait_idle(qtbot, window)
    reply = stored(services, window)[-1]
    assert reply.text == DONT_KNOW and reply.status == "complete"
    assert window.chat.views[-1].text == DONT_KNOW
