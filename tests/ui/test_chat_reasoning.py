"""A reasoning model's reply in the chat pane: the thinking streams into a collapsed
"Thinking…" section above the answer, which reads "Thought for N s" once the answer comes and
opens on a click; a reply cut inside its thinking says so. The engine's token stream is
scripted (the default models do not think), the rest of the window is real."""

from __future__ import annotations

import threading

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QApplication

from assistant.chat.reasoning import UNCLOSED_NOTE
from tests.assistant.test_chat_session import ScriptedHandle
from tests.ui.conftest import wait_idle
from tests.ui.test_chat_pane import stored, type_and_send


def script(monkeypatch, services, handle: ScriptedHandle) -> None:
    """The real engine client, except that chat replies play ``handle``."""
    monkeypatch.setattr(services.engine, "chat", lambda *args, **kwargs: handle)


def test_the_thinking_streams_collapsed_above_the_answer(qtbot, window, services, monkeypatch):
    gate = threading.Semaphore(0)
    script(monkeypatch, services, ScriptedHandle(
        ["<think>", "The user asks", " for France's capital.", "</think>", "\n\nParis", " is the capital."], gate))
    type_and_send(qtbot, window, "What is the capital of France?")
    for _ in range(3):
        gate.release()
    qtbot.waitUntil(lambda: window.chat.streaming_view is not None
                    and window.chat.streaming_view.reasoning.text.endswith("capital."), timeout=30000)
    view = window.chat.streaming_view
    section = view.reasoning
    assert section.isVisible() and section.toggle.text() == "Thinking…"
    assert not section.expanded and not section.body.isVisible()  # collapsed while it streams too
    assert view.text == ""

    for _ in range(3):
        gate.release()
    wait_idle(qtbot, window, timeout=30000)
    view = window.chat.views[-1]
    reply = stored(services, window)[-1]
    assert reply.text == "Paris is the capital." and reply.reasoning == "The user asks for France's capital."
    assert view.text == reply.text and view.body.isVisible()
    assert view.reasoning.toggle.text().startswith("Thought for ") and view.reasoning.toggle.text().endswith(" s")
    assert not view.reasoning.body.isVisible() and not view.reasoning.note.isVisible()
    # The section sits above the answer.
    assert view.reasoning.geometry().bottom() <= view.body.geometry().top()

    qtbot.mouseClick(view.reasoning.toggle, Qt.MouseButton.LeftButton)
    assert view.reasoning.expanded and view.reasoning.body.isVisible()
    assert view.reasoning.body.text() == reply.reasoning
    qtbot.mouseClick(view.reasoning.toggle, Qt.MouseButton.LeftButton)
    assert not view.reasoning.body.isVisible()

    # A copy is the answer alone.
    view.copy()
    assert QApplication.clipboard().text() == "Paris is the capital."


def test_a_reply_cut_inside_its_thinking_shows_it_with_a_note(qtbot, window, services, monkeypatch):
    script(monkeypatch, services, ScriptedHandle(["<think>", "One, two,", " three"]))
    type_and_send(qtbot, window, "Count to a thousand.")
    wait_idle(qtbot, window, timeout=30000)
    view = window.chat.views[-1]
    assert stored(services, window)[-1].reasoning == "One, two, three"
    assert view.reasoning.isVisible() and view.reasoning.note.isVisible()
    assert view.reasoning.note.text() == UNCLOSED_NOTE
    assert view.reasoning.toggle.text() == "Thinking (stopped before an answer)"
    assert not view.body.isVisible()


def test_a_reply_without_thinking_has_no_section(qtbot, window, services, monkeypatch):
    script(monkeypatch, services, ScriptedHandle(["Just ", "an answer."]))
    type_and_send(qtbot, window, "Hello")
    wait_idle(qtbot, window, timeout=30000)
    view = window.chat.views[-1]
    assert view.text == "Just an answer." and not view.reasoning.isVisible() and view.body.isVisible()


def test_the_models_page_says_a_model_thinks(qtbot, window, services, tmp_path):
    from tests.engine.gguf_corpus import write_valid_gguf

    template = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
                "{% if add_generation_prompt %}<|im_start|>assistant\n<think>\n{% endif %}")
    model = services.library.add(write_valid_gguf(tmp_path / "thinker.gguf", name="Thinker", chat_template=template))
    assert model.metadata["reasoning"] and model.metadata["think_opened_by_template"]
    window.show_page("models")
    window.models.refresh(select=model.id)
    qtbot.waitUntil(lambda: window.models.selected_model() is not None
                    and window.models.selected_model().id == model.id, timeout=30000)
    assert "thinks before it answers" in window.models.fields["tasks"].text()
