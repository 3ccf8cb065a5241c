"""The suggesting text box: its pause follows the user's typing pace, typing through a
suggestion keeps the rest of it, an answer for text that has changed is never shown, Tab
accepts. The model's answers come from the real default model (SmolLM2) on the shared engine."""

from __future__ import annotations

import pytest

from PySide6.QtCore import Qt
from PySide6.QtTest import QTest

import ui.suggesting_edit as suggesting_edit
from assistant.tasks.suggestions import Suggester
from ui.suggesting_edit import SuggestingTextEdit, SuggestionController, SuggestPacing, TypingPace

PROMPT = "The capital of France is"


def typed_at(pace: TypingPace, text: str, gap_ms: float, start_ms: float = 0.0) -> float:
    now = start_ms
    for char in text:
        pace.key_typed(char, now)
        now += gap_ms
    return now


def test_the_pause_follows_the_typing_speed_within_its_bounds():
    pacing = SuggestPacing()
    fast, slow = TypingPace(pacing), TypingPace(pacing)
    typed_at(fast, "abcdefghijklmnop", 60)
    typed_at(slow, "abcdefghijklmnop", 200)
    assert fast.pause_ms() == pytest.approx(pacing.gap_multiplier * 60)
    assert slow.pause_ms() == pytest.approx(pacing.gap_multiplier * 200)
    assert fast.pause_ms() < pacing.start_pause_ms < slow.pause_ms()

    very_fast, very_slow = TypingPace(pacing), TypingPace(pacing)
    typed_at(very_fast, "abcdefghijklmnop", 5)  # a held key repeating, say
    typed_at(very_slow, "abcdefghijklmnop", 900)
    assert very_fast.pause_ms() == pacing.min_pause_ms
    assert very_slow.pause_ms() == pacing.max_pause_ms


def test_the_pace_forgets_old_gaps_and_ignores_stops():
    pace = TypingPace(SuggestPacing())
    now = typed_at(pace, "abcdefghijklmnopqrstuvwxyz" * 2, 250)
    now = typed_at(pace, "abcdefghijklmnopqrstuvwxyz", 100, now + 5000)  # a long stop, then faster
    assert pace.typical_gap_ms() == pytest.approx(100), "the stop is not a gap between keys; old gaps are gone"


def test_after_a_space_the_pause_is_judged_by_the_gaps_after_spaces():
    pace = TypingPace(SuggestPacing())
    now = 0.0
    for word in ["one", "two", "six", "ten", "red", "big", "far", "old"]:
        for char in word + " ":
            pace.key_typed(char, now)
            now += 250 if char == " " else 100  # people hesitate before a new word
    assert pace.typical_gap_ms("word") == pytest.approx(100)
    assert pace.typical_gap_ms("space") == pytest.approx(250)
    assert pace.pause_ms() == pytest.approx(SuggestPacing().gap_multiplier * 250), "the last key was a space"


def test_the_box_learns_the_pace_from_its_keys(qtbot, monkeypatch):
    clock = [0.0]
    monkeypatch.setattr(suggesting_edit, "_now_ms", lambda: clock[0])
    edit = SuggestingTextEdit()
    qtbot.addWidget(edit)
    for char in "quickly":
        QTest.keyClick(edit, char)
        clock[0] += 80
    assert edit.pace.pause_ms() == pytest.approx(SuggestPacing().gap_multiplier * 80)
    edit.dismiss()


def test_the_fixed_pacing_keeps_the_old_pause(qtbot):
    pace = TypingPace(SuggestPacing.fixed(250))
    typed_at(pace, "abcdefghijklmnop", 60)
    assert pace.pause_ms() == 250


def test_an_answer_is_held_until_the_pause_and_dropped_if_the_text_changes(qtbot):
    edit = SuggestingTextEdit()
    qtbot.addWidget(edit)
    edit.show()
    QTest.keyClicks(edit, "The quick brown")
    edit.offer_suggestion(" fox", "The quick brown")  # the early request's answer, before the pause
    assert edit.suggestion == "", "not shown while the user may still be typing"
    qtbot.waitUntil(lambda: edit.suggestion == " fox", timeout=5000)  # shown at the pause

    QTest.keyClicks(edit, " jumps")
    edit.offer_suggestion(" over", "The quick brown fox jumps")  # held: not this text
    edit.offer_suggestion(" over", "The quick brown jumps")  # held for the pause
    QTest.keyClick(edit, "x")  # ...but the text changes before the pause
    qtbot.wait(edit.pacing.max_pause_ms + 100)
    assert edit.suggestion == "", "an answer for an older text is never shown"
    edit.offer_suggestion(" the lazy dog", "The quick brown jumps")  # a late answer for an old text
    assert edit.suggestion == ""


@pytest.fixture
def suggesting(qtbot, engine, smollm2_path):
    """A shown box wired to the real model, and how many requests it has sent."""
    edit = SuggestingTextEdit()
    qtbot.addWidget(edit)
    edit.show()
    edit.setFocus()
    controller = SuggestionController(edit, Suggester(engine, smollm2_path))
    requests: list[str] = []
    edit.sig_suggestion_wanted.connect(requests.append)
    yield edit, controller, requests
    assert controller.shutdown()


def wait_for_a_suggestion(qtbot, edit, text: str) -> str:
    QTest.keyClicks(edit, text)
    qtbot.waitUntil(lambda: bool(edit.suggestion), timeout=120000)
    return edit.suggestion


def test_typing_through_a_suggestion_keeps_the_rest_of_it(qtbot, suggesting):
    edit, _controller, requests = suggesting
    suggestion = wait_for_a_suggestion(qtbot, edit, PROMPT)
    assert len(suggestion) >= 2, suggestion
    asked = len(requests)
    seen = []
    for index, char in enumerate(suggestion[:-1]):
        QTest.keyClick(edit, char)
        seen.append(edit.suggestion)
        assert edit.suggestion == suggestion[index + 1:], "the rest stays on screen, no flash off and on"
    assert edit.toPlainText() == PROMPT + suggestion[:-1]
    assert len(requests) == asked, "the rest is the model's answer already: nothing is asked again"
    QTest.keyClick(edit, Qt.Key.Key_Tab)
    assert edit.toPlainText() == PROMPT + suggestion


def test_a_key_that_does_not_match_dismisses_it(qtbot, suggesting):
    edit, _controller, _requests = suggesting
    suggestion = wait_for_a_suggestion(qtbot, edit, PROMPT)
    other = "#" if not suggestion.startswith("#") else "%"
    QTest.keyClick(edit, other)
    assert edit.suggestion == ""


def test_a_stale_answer_from_the_model_is_not_shown(qtbot, suggesting):
    edit, controller, _requests = suggesting
    edit.suggestions_enabled = False  # no requests of the box's own: only the one below
    QTest.keyClicks(edit, "The capital of Fr")
    edit.suggestions_enabled = True
    with qtbot.waitSignal(controller._bridge.sig_suggestion_received, timeout=120000) as answer:
        controller._want(PROMPT)  # asked for a text the box no longer (or never) had
    assert answer.args[1] == PROMPT and answer.args[0], "the model did answer"
    edit.repaint()
    assert edit.suggestion == "" and edit.toPlainText() == "The capital of Fr"


def test_tab_accepts_the_models_suggestion(qtbot, suggesting):
    edit, _controller, _requests = suggesting
    suggestion = wait_for_a_suggestion(qtbot, edit, PROMPT)
    QTest.keyClick(edit, Qt.Key.Key_Tab)
    assert edit.toPlainText() == PROMPT + suggestion
    assert edit.suggestion == ""
