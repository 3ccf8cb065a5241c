"""Prompt lookup (engine.prompt_lookup) and speculative decoding in the engine's generate.

The drafting and the budget are tested on token lists; the verification with the real
default chat model (SmolLM2) on prompts where the reply copies its input.
"""

from __future__ import annotations

import pytest

from engine.prompt_lookup import DraftBudget, PromptLookup


def test_lookup_proposes_what_followed_the_newest_earlier_match():
    lookup = PromptLookup([[1, 2, 3, 4, 5, 1, 2, 3, 9, 9]])
    lookup.extend([7, 1, 2, 3])
    draft, matched = lookup.find(4)
    # The newest earlier "1 2 3" is followed by 9 9, then the source ends.
    assert draft == [9, 9]
    assert matched == 3


def test_lookup_measures_how_long_the_reply_has_followed_its_source():
    source = list(range(10, 40))
    lookup = PromptLookup([source])
    lookup.extend(source[:12])
    draft, matched = lookup.find(3)
    assert draft == source[12:15]
    assert matched == 12


def test_drafts_never_run_across_sources_and_nothing_matches_without_a_shared_ngram():
    lookup = PromptLookup([[1, 2, 3], [4, 5, 6]])
    lookup.extend([2, 3])
    assert lookup.find(5) == ([], 0)  # "2 3" ends the first source: nothing followed it there
    lookup.extend([8, 8])
    assert lookup.find(5) == ([], 0)
    assert PromptLookup([[1, 2, 3]]).find(0) == ([], 0)


def test_budget_grows_drafts_that_are_accepted_and_switches_off_after_refusals():
    budget = DraftBudget(max_draft=8)
    budget.plain_step(10.0)
    first = budget.length(8, matched=8)
    assert first >= 1
    for _ in range(6):
        budget.verified(first, first, 10.0 + first * 2.0, matched=8)
    assert budget.cost_ratio == pytest.approx(0.2)
    assert budget.length(8, matched=8) > first
    for _ in range(6):
        budget.verified(3, 0, 10.0 + 3 * 2.0, matched=2)
    # Short matches are refused now; long ones still draft: one kind does not switch the other off.
    assert budget.length(8, matched=2) == 0
    assert budget.length(8, matched=10) > 0


def test_budget_does_not_draft_where_a_batch_costs_nearly_as_much_as_its_tokens_one_by_one():
    budget = DraftBudget(max_draft=8)
    budget.plain_step(10.0)
    budget.verified(1, 1, 18.0, matched=8)  # a batch of two costs 1.8 steps
    assert budget.cost_ratio == pytest.approx(0.8)
    assert budget.length(8, matched=8) == 0
    # Cheap batches (a larger model reading its weights once for all tokens): long drafts.
    cheap = DraftBudget(max_draft=8)
    cheap.plain_step(10.0)
    cheap.verified(1, 1, 11.0, matched=8)
    assert cheap.length(8, matched=8) >= 4


def test_budget_probes_now_and_then_once_switched_off():
    budget = DraftBudget(max_draft=8)
    budget.verified(4, 0, 20.0, matched=5)
    budget.verified(4, 0, 20.0, matched=5)
    assert budget.length(8, matched=5) == 0
    for _ in range(DraftBudget.PROBE_EVERY):
        budget.plain_step(10.0)
    assert budget.length(8, matched=5) == 1
    assert budget.length(8, matched=2) == 0  # no probe on a chance match of two tokens
    assert budget.length(0, matched=5) == 0


@pytest.fixture(scope="module")
def smollm2(smollm2_path):
    from engine.llama_runtime import LoadedModel
    from engine.settings import EngineSettings

    model = LoadedModel(smollm2_path, EngineSettings(n_ctx=2048))
    yield model
    model.close()


COPY_PROMPT = ("<|im_start|>user\nRepeat this sentence exactly, word for word: The quick brown fox jumps over "
               "the lazy dog while the farmer watches from the old wooden fence near the river.<|im_end|>\n"
               "<|im_start|>assistant\n")


@pytest.fixture
def always_draft(monkeypatch):
    """Verify every draft found, whatever a batch costs on this machine: the verification must
    keep the reply and the cache exactly right however often it runs (the budget that decides
    when drafting pays is tested above)."""
    monkeypatch.setattr(DraftBudget, "length", lambda self, available, matched=0: available)


def greedy(**overrides):
    from engine.settings import SamplingParams

    return SamplingParams(**{"temperature": 0.0, "max_tokens": 48, "repeat_penalty": 1.0, **overrides})


def test_a_copied_reply_is_verified_in_batches_and_comes_out_as_plain_decoding_gives_it(smollm2, always_draft):
    tokens = smollm2.tokenize(COPY_PROMPT)
    smollm2.clear_cache()
    plain = smollm2.generate(tokens, greedy())
    plain_cache = list(smollm2.cached_tokens)
    smollm2.clear_cache()
    fast = smollm2.generate(tokens, greedy(), speculative=True)
    assert "quick brown fox" in plain.text
    assert fast.text == plain.text
    assert fast.metrics["draft_tokens_accepted"] > 0
    assert fast.metrics["draft_steps"] < fast.metrics["completion_tokens"]
    # The cache holds the prompt and the reply as plain decoding leaves it: a next turn reuses it.
    assert smollm2.cached_tokens == plain_cache
    assert plain.metrics["draft_tokens"] == 0


def test_speculative_decoding_keeps_the_token_limit_and_stop_strings(smollm2, always_draft):
    tokens = smollm2.tokenize(COPY_PROMPT)
    smollm2.clear_cache()
    limited = smollm2.generate(tokens, greedy(max_tokens=7), speculative=True)
    assert limited.metrics["completion_tokens"] == 7
    assert limited.finish_reason == "length"
    assert len(smollm2.cached_tokens) == len(tokens) + 6
    smollm2.clear_cache()
    stopped = smollm2.generate(tokens, greedy(stop=["lazy"]), speculative=True)
    assert stopped.finish_reason == "stop"
    assert "lazy" not in stopped.text and "brown fox" in stopped.text


def test_the_engine_drafts_from_the_texts_a_request_names(smollm2, always_draft):
    # The reply to the same question again (an edit that changed nothing the model notices):
    # with the earlier reply as a source, the engine finds drafts it would not find otherwise.
    prompt = smollm2.tokenize("<|im_start|>user\nWrite a short poem about the sea.<|im_end|>\n<|im_start|>assistant\n")
    smollm2.clear_cache()
    without = smollm2.generate(prompt, greedy(max_tokens=64), speculative=True)
    earlier = smollm2.tokenize(without.text, add_special=False, parse_special=False)
    smollm2.clear_cache()
    with_source = smollm2.generate(prompt, greedy(max_tokens=64), speculative=True, lookup_sources=[earlier])
    assert with_source.metrics["draft_tokens_accepted"] > without.metrics["draft_tokens_accepted"]
    assert with_source.metrics["draft_tokens_accepted"] >= with_source.metrics["completion_tokens"] // 2
