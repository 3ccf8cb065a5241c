"""training.evaluate on the real default model through llama.cpp (small texts: a 2-core CPU)."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from training.evaluate import (
    EvaluationError,
    gguf_generation_speed,
    gguf_next_token_agreement,
    gguf_perplexity,
    token_stats,
    tokenize_windows,
)

PEPS = Path(__file__).resolve().parents[3] / "shared" / "data" / "documents" / "typing-peps"


def _prose() -> str:
    source = PEPS / "pep-0484.rst"
    assert source.is_file(), f"the shared corpus is missing: {source}"
    text = source.read_text(encoding="utf-8")
    # A paragraph of plain prose from the abstract/rationale, ~120 tokens.
    start = text.index("Rationale and Goals")
    return text[start : start + 600]


def test_real_text_beats_shuffled_words(smollm2_gguf):
    text = _prose()
    words = text.split()
    random.Random(7).shuffle(words)
    real = gguf_perplexity(smollm2_gguf, [text], threads=1)
    shuffled = gguf_perplexity(smollm2_gguf, [" ".join(words)], threads=1)
    assert 1.0 < real < shuffled
    # Word order carries most of the information a language model uses.
    assert shuffled > 2 * real, (real, shuffled)


def test_windows_cover_the_text_and_ppl_matches_token_stats(smollm2_gguf):
    text = _prose()
    one = tokenize_windows(smollm2_gguf, [text], ctx=512)
    short = tokenize_windows(smollm2_gguf, [text], ctx=48)
    assert len(one) == 1 and len(short) > 2 and all(len(w) <= 48 for w in short)
    # Non-overlapping windows: the same tokens, cut differently (each opened by BOS when
    # the model adds one; SmolLM2 does not).
    flat = [t for w in short for t in w]
    with_bos = [t for w in short for t in w[1:]]
    assert flat == one[0] or (with_bos == one[0][1:] and len({w[0] for w in short}) == 1)
    stats = token_stats(smollm2_gguf, one, ctx=512, threads=1)
    # Every token after the first of a window is scored.
    assert stats.nll.shape == (len(one[0]) - 1,) and stats.argmax.shape == stats.nll.shape
    assert stats.perplexity == pytest.approx(gguf_perplexity(smollm2_gguf, [text], threads=1), rel=1e-6)


def test_a_model_agrees_with_itself(smollm2_gguf):
    assert gguf_next_token_agreement(smollm2_gguf, smollm2_gguf, [_prose()], threads=1) == 1.0


def test_generation_speed_is_a_rate_per_decode_step(smollm2_gguf):
    """Eight times the steps take about eight times as long: the figure is tokens per second of
    decoding, not a total time or a count (a factor of 4 either way allows for a busy machine)."""
    few = gguf_generation_speed(smollm2_gguf, "The history of typing in Python", n_tokens=4, threads=1)
    many = gguf_generation_speed(smollm2_gguf, "The history of typing in Python", n_tokens=32, threads=1)
    assert few > 0 and many > 0
    assert 0.25 < many / few < 4, (few, many)
    with pytest.raises(EvaluationError, match="at least 2"):
        gguf_generation_speed(smollm2_gguf, "x", n_tokens=1)


def test_bad_inputs_are_clear(tmp_path, smollm2_gguf):
    with pytest.raises(EvaluationError, match="No text"):
        gguf_perplexity(smollm2_gguf, ["  ", ""])
    bogus = tmp_path / "x.gguf"
    bogus.write_text("hello")
    with pytest.raises(EvaluationError, match="Cannot evaluate"):
        gguf_perplexity(bogus, ["some text"])
    with pytest.raises(EvaluationError, match="at least 2"):
        gguf_generation_speed(smollm2_gguf, "hi", n_tokens=1)
