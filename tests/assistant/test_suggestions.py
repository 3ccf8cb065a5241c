"""Writing suggestions with the real default completion model (SmolLM2)."""

from __future__ import annotations

import threading

from assistant.tasks.suggestions import CONTEXT_CHARS, MAX_TOKENS, Suggester, context_window, tidy


def test_context_window_start_moves_in_steps():
    text = "word " * 1000
    first = context_window(text)
    assert len(first) <= CONTEXT_CHARS
    # A few more keystrokes keep the same start, so the engine's cache covers the old prompt.
    later = context_window(text + "more wor")
    assert later.startswith(first)


def test_tidy_keeps_whole_words_and_one_line():
    assert tidy(" the quick brown fo", finished=False, text_ends_with_space=False) == " the quick brown"
    assert tidy(" the end", finished=True, text_ends_with_space=False) == " the end"
    assert tidy(" next words\nmore", finished=False, text_ends_with_space=True) == "next words"


def test_suggestion_arrives(engine, smollm2_path):
    suggester = Suggester(engine, smollm2_path)
    suggestion = suggester.suggest("The capital of France is")
    assert suggestion.text.strip()
    assert suggestion.metrics["completion_tokens"] <= MAX_TOKENS
    again = suggester.suggest("The capital of France is Paris, and the capital of Germany")
    assert again.metrics["prompt_tokens_cached"] > 0, "the next keystroke re-uses the cached prompt"


def test_typing_on_cancels_the_pending_suggestion(engine, smollm2_path):
    suggester = Suggester(engine, smollm2_path)
    got: list[tuple[str, str]] = []
    arrived = threading.Event()

    def on_result(tag):
        def callback(suggestion):
            got.append((tag, suggestion.text))
            arrived.set()
        return callback

    long_text = "Dear team, " + "thank you for the meeting notes from last week about the budget. " * 30
    assert suggester.request(long_text, on_result("old"))
    assert suggester.request("I would like to order a cup of", on_result("new"))  # the user typed on
    assert arrived.wait(60)
    assert [tag for tag, _ in got] == ["new"]
    suggester.request("Another sentence that", on_result("dismissed"))
    suggester.cancel()  # typing on dismisses without asking again
    arrived.clear()
    assert not arrived.wait(2)


def test_switched_off_or_empty_does_nothing(engine, smollm2_path):
    assert not Suggester(engine, smollm2_path, enabled=False).request("Hello there", lambda s: None)
    assert not Suggester(engine, smollm2_path).request("   ", lambda s: None)
