"""The think-parser: a reasoning model's thinking split from its answer as tokens stream in."""

from __future__ import annotations

import pytest

from assistant.chat.reasoning import ANSWER, REASONING, ThinkParser, split_reasoning, template_opens_think, \
    template_reasons


def streamed(tokens: list[str], starts_in_reasoning: bool = False) -> tuple[ThinkParser, list]:
    parser = ThinkParser(starts_in_reasoning)
    pieces = []
    for token in tokens:
        pieces += parser.feed(token)
    pieces += parser.close()
    return parser, pieces


def joined(pieces, kind: str) -> str:
    return "".join(p.text for p in pieces if p.kind == kind)


@pytest.mark.parametrize("tokens", [
    ["<think>", "Two plus two.", "</think>", "\n\n", "4"],
    ["<th", "ink>Two plus", " two.</", "thi", "nk>\n", "\n4"],
    list("<think>Two plus two.</think>\n\n4"),  # one character per token: every split point
])
def test_a_block_split_anywhere_over_the_tokens_is_found(tokens):
    parser, pieces = streamed(tokens)
    assert parser.reasoning == "Two plus two." and parser.answer == "4"
    assert joined(pieces, REASONING).strip() == "Two plus two." and joined(pieces, ANSWER) == "4"
    assert not parser.in_reasoning
    # No piece carries a marker or a fragment of one.
    assert not any("<" in p.text or ">" in p.text for p in pieces)


def test_the_reasoning_streams_before_its_block_closes():
    parser = ThinkParser()
    assert [p.kind for p in parser.feed("<think>Let me see")] == [REASONING]
    assert parser.in_reasoning and parser.reasoning == "Let me see" and parser.answer == ""


def test_a_reply_without_a_block_is_all_answer_and_keeps_lookalike_text():
    parser, pieces = streamed(["Use ", "a <", "b and <t", "able> tags."])
    assert parser.reasoning == "" and parser.answer == "Use a <b and <table> tags."
    assert {p.kind for p in pieces} == {ANSWER} and not parser.saw_marker


def test_an_unclosed_block_is_reasoning_with_no_answer():
    reasoning, answer, unclosed = split_reasoning("<think>First, the capital of France is")
    assert (reasoning, answer, unclosed) == ("First, the capital of France is", "", True)


def test_a_partial_closing_marker_at_the_end_stays_reasoning():
    parser, pieces = streamed(["<think>", "Hmm", "</thi"])
    assert parser.in_reasoning and parser.reasoning == "Hmm</thi" and parser.answer == ""


def test_several_blocks_join_their_reasoning_and_their_answer():
    reasoning, answer, unclosed = split_reasoning("<think>a</think>First. <think>b</think>Second.")
    assert reasoning == "a\n\nb" and answer == "First. Second." and not unclosed


def test_other_common_markers():
    assert split_reasoning("<thinking>x</thinking>y")[:2] == ("x", "y")
    assert split_reasoning("<|begin_of_thought|>x<|end_of_thought|>y")[:2] == ("x", "y")
    # Markers of one pair close only their own block.
    assert split_reasoning("<thinking>a</think>b</thinking>c")[:2] == ("a</think>b", "c")


def test_a_template_that_opens_the_block_starts_the_reply_as_reasoning():
    parser, _ = streamed(["Okay, ", "so 2+2.", "</think>", "\n\n4"], starts_in_reasoning=True)
    assert parser.reasoning == "Okay, so 2+2." and parser.answer == "4"
    # Not told: a closing marker with no block open moves what came before into the reasoning.
    parser, _ = streamed(["Okay, ", "so 2+2.", "</think>", "\n\n4"])
    assert parser.reasoning == "Okay, so 2+2." and parser.answer == "4" and parser.revised


def test_templates_that_reason_and_that_open_the_block():
    assert template_reasons("{% if '</think>' in content %}...{% endif %}")
    assert not template_reasons("{{ bos_token }}{% for m in messages %}{{ m.content }}{% endfor %}")
    assert not template_reasons(None)
    assert template_opens_think("<｜Assistant｜><think>\n")
    assert not template_opens_think("<|im_start|>assistant\n")
