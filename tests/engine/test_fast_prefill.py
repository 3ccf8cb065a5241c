"""The fast-prompt copy of a model's weights (engine.fast_prefill): made once, handed over.

With the real default chat model (SmolLM2, Q4_1: the format without fast prompt kernels).
"""

from __future__ import annotations

import os
import shutil

import pytest

from engine import fast_prefill
from engine.client import EngineClient
from engine.gguf_check import summarize
from engine.library import inspect_model
from engine.settings import EngineSettings, SamplingParams

LONG_PROMPT = ("<|im_start|>user\n" + " ".join(
    f"Note {i}: the meeting about the river bridge moved to room {i % 7} on day {i % 5}." for i in range(40))
    + "\nWhere did note 3 say the meeting moved?<|im_end|>\n<|im_start|>assistant\n")


def test_only_small_models_in_formats_without_fast_prompt_kernels_get_a_copy(smollm2_path):
    summary = inspect_model(smollm2_path, with_hash=False).summary
    assert summary["quantization"] == "Q4_1"
    assert fast_prefill.wants_copy(summary)
    assert not fast_prefill.wants_copy({**summary, "quantization": "Q4_K_M"})
    assert not fast_prefill.wants_copy({**summary, "quantization": "F16"})
    assert not fast_prefill.wants_copy({**summary, "parameter_count": 7_000_000_000})


def test_the_copy_is_f16_made_once_and_made_again_when_the_source_changes(smollm2_path, tmp_path):
    source = tmp_path / "chat.gguf"
    shutil.copyfile(smollm2_path, source)
    copies = tmp_path / "copies"
    first = fast_prefill.ensure_copy(str(source), copies)
    header = inspect_model(str(first), with_hash=False)
    assert summarize(header.header)["quantization"] == "F16"
    assert summarize(header.header)["architecture"] == inspect_model(smollm2_path, with_hash=False).summary["architecture"]
    made = first.stat().st_mtime_ns
    assert fast_prefill.ensure_copy(str(source), copies) == first and first.stat().st_mtime_ns == made
    # A re-exported source is a new model: a new copy, and the old one goes.
    os.utime(source, ns=(made + 10**9, made + 10**9))
    second = fast_prefill.ensure_copy(str(source), copies)
    assert second != first and second.exists() and not first.exists()
    assert not list(copies.glob("*.partial"))


@pytest.fixture(scope="module")
def pair(smollm2_path, tmp_path_factory):
    from engine.llama_runtime import LoadedModel

    copy = fast_prefill.ensure_copy(smollm2_path, tmp_path_factory.mktemp("copies"))
    plain = LoadedModel(smollm2_path, EngineSettings(n_ctx=2048))
    fast = LoadedModel(smollm2_path, EngineSettings(n_ctx=2048))
    fast.attach_fast_prefill(str(copy))
    yield plain, fast
    plain.close()
    fast.close()


def test_a_long_prompt_goes_through_the_copy_and_the_model_decodes_from_the_handed_cache(pair):
    plain, fast = pair
    tokens = fast.tokenize(LONG_PROMPT)
    assert len(tokens) >= fast_prefill.MIN_TOKENS
    greedy = SamplingParams(temperature=0.0, max_tokens=12)
    reference = plain.generate(tokens, greedy)
    result = fast.generate(tokens, greedy)
    assert result.metrics["prompt_by_fast_copy"] and not reference.metrics["prompt_by_fast_copy"]
    assert result.text.strip() and result.text == reference.text
    # The model's cache holds the prompt and the reply: the next turn re-uses all of it.
    follow = tokens + fast.tokenize(result.text, add_special=False) + fast.tokenize("<|im_end|>\n<|im_start|>user\nThanks.",
                                                                                     add_special=False)
    again = fast.generate(follow, SamplingParams(temperature=0.0, max_tokens=4))
    assert again.metrics["prompt_tokens_cached"] >= len(tokens)
    assert not again.metrics["prompt_by_fast_copy"]  # a few new tokens: the model itself


def test_short_prompts_and_prompts_with_adapters_never_use_the_copy(pair):
    _plain, fast = pair
    fast.clear_cache()
    short = fast.generate(fast.tokenize("<|im_start|>user\nHi.<|im_end|>\n<|im_start|>assistant\n"),
                          SamplingParams(temperature=0.0, max_tokens=2))
    assert not short.metrics["prompt_by_fast_copy"]
    fast.clear_cache()
    fast.active_adapters = ((("adapter.gguf", 0, 0, 0), 1.0),)  # as set_adapters leaves it
    try:
        fast.evaluate_prompt(fast.tokenize(LONG_PROMPT))
        assert not fast.prompt_by_copy
    finally:
        fast.active_adapters = ()
        fast.clear_cache()


def test_the_worker_makes_the_copy_on_the_first_long_prompt_says_so_and_uses_it(smollm2_path, tmp_path):
    statuses = []
    settings = EngineSettings(n_ctx=2048, prefill_copies_dir=str(tmp_path / "copies"))
    with EngineClient(settings, on_status=lambda state, info: statuses.append(state)) as client:
        # Short messages never make the copy: nothing is written until a long prompt comes.
        client.complete(smollm2_path, "Hello there.", {"temperature": 0.0, "max_tokens": 2}).result(timeout=120)
        assert not (tmp_path / "copies").exists() and "preparing" not in statuses
        done = client.complete(smollm2_path, LONG_PROMPT, {"temperature": 0.0, "max_tokens": 4}).result(timeout=120)
        assert done["metrics"]["prompt_by_fast_copy"]
    assert "preparing" in statuses and "ready" in statuses[statuses.index("preparing"):]
    assert len(list((tmp_path / "copies").glob("*.f16.gguf"))) == 1
    with EngineClient(EngineSettings(n_ctx=2048, fast_prefill=False, prefill_copies_dir=str(tmp_path / "copies"))) as client:
        done = client.complete(smollm2_path, LONG_PROMPT, {"temperature": 0.0, "max_tokens": 4}).result(timeout=120)
        assert not done["metrics"]["prompt_by_fast_copy"]


BATCH_ITEMS = [f"Shopping list {i}: eggs, milk, bread and" for i in range(fast_prefill.MIN_BATCH_ITEMS)]


def test_wide_batches_of_a_model_without_fast_batched_kernels_run_on_the_copy(smollm2_path, tmp_path):
    from engine.llama_runtime import LoadedModel

    copies = tmp_path / "copies"
    statuses = []
    with EngineClient(EngineSettings(n_ctx=2048, prefill_copies_dir=str(copies)),
                      on_status=lambda state, info: statuses.append(state)) as client:
        # A narrow batch decodes faster on the quantized weights: no copy is made for it.
        narrow = client.generate_batch(smollm2_path, BATCH_ITEMS[:2], max_tokens=6).result(timeout=300)
        assert not narrow["metrics"]["by_fast_copy"] and not copies.exists()
        capped = client.generate_batch(smollm2_path, BATCH_ITEMS, max_tokens=6, max_parallel=2).result(timeout=300)
        assert not capped["metrics"]["by_fast_copy"] and not copies.exists()
        wide = client.generate_batch(smollm2_path, BATCH_ITEMS, max_tokens=6).result(timeout=300)
        assert wide["metrics"]["by_fast_copy"] and "preparing" in statuses
        # Once the copy is made the status says ready again (the window's status bar follows it).
        assert "ready" in statuses[statuses.index("preparing"):]
        assert wide["metrics"]["generated_tokens"] >= len(BATCH_ITEMS)
    [copy] = list(copies.glob("*.f16.gguf"))
    # The texts are the copy's own greedy continuations, each item's in its place.
    model = LoadedModel(str(copy), EngineSettings(n_ctx=256))
    try:
        context = model.batch_context()
        context.set_prefix(model.tokenize("", add_special=True, parse_special=True))  # as the worker does
        expected = context.generate([model.tokenize(item, add_special=False, parse_special=False) for item in BATCH_ITEMS],
                                    [6] * len(BATCH_ITEMS), [])
    finally:
        model.close()
    assert wide["result"]["texts"] == expected and all(text.strip() for text in expected)


def test_with_adapters_active_a_wide_batch_stays_on_the_model_and_closing_frees_the_copy(smollm2_path, tmp_path):
    from engine.llama_runtime import LoadedModel

    copy = fast_prefill.ensure_copy(smollm2_path, tmp_path / "copies")
    model = LoadedModel(smollm2_path, EngineSettings(n_ctx=512))
    try:
        model.attach_batch_copy(str(copy))
        assert model.batch_context(wide_generation=True).model is model.batch_copies["f16"]
        # Without a cut copy, a Latin-only batch takes the full one.
        assert model.batch_context(wide_generation=True, latin=True).model is model.batch_copies["f16"]
        assert model.batch_context().model is model  # classification: the model's own weights
        model.active_adapters = ((("adapter.gguf", 0, 0, 0), 1.0),)  # as set_adapters leaves it
        assert model.batch_context(wide_generation=True).model is model
        model.active_adapters = ()
    finally:
        model.close()
    assert model.batch_copies == {} and model.model is None


def test_a_bad_max_parallel_is_refused_in_words(engine, smollm2_path):
    from engine.client import EngineRequestError

    with pytest.raises(EngineRequestError, match="max_parallel"):
        engine.generate_batch(smollm2_path, BATCH_ITEMS, max_tokens=2, max_parallel=0).result(timeout=300)


LATIN_ITEMS = [f"English: The {word} opened at nine, and the queue reached the corner.\nFrench:"
               for word in ("bakery", "museum", "library", "station", "market", "pharmacy", "school", "bank")]


def test_a_latin_cut_copy_tokenizes_and_continues_latin_text_as_the_full_copy_does(gemma_path, tmp_path):
    from engine import vocab_cut
    from engine.llama_runtime import LoadedModel

    full = fast_prefill.ensure_copy(gemma_path, tmp_path)
    cut = fast_prefill.ensure_latin_copy(gemma_path, tmp_path)
    assert cut != full and full.exists() and not list(tmp_path.glob("*.partial"))
    models = [LoadedModel(str(path), EngineSettings(n_ctx=256)) for path in (full, cut)]
    try:
        whole, small = models
        assert small.n_vocab % vocab_cut.PAD_TO == 0 and small.n_vocab < whole.n_vocab * 2 // 3
        text = "« Il a ajouté : l'été à Zürich coûte 3 € — naïve façade… » Straße, niño, ¿qué?"
        assert ([whole.token_text(t) for t in whole.tokenize(text, add_special=True)]
                == [small.token_text(t) for t in small.tokenize(text, add_special=True)])  # BOS included
        outputs = []
        for model in models:
            context = model.batch_context()
            context.set_prefix(model.tokenize("", add_special=True))
            outputs.append(context.generate([model.tokenize(item, add_special=False) for item in LATIN_ITEMS],
                                            [12] * len(LATIN_ITEMS), ["\n"]))
        assert outputs[0] == outputs[1] and all(text.strip() for text in outputs[0])
    finally:
        for model in models:
            model.close()


def test_latin_only_batches_run_on_the_cut_copy_unless_a_text_has_other_characters(gemma_path, tmp_path):
    settings = EngineSettings(n_ctx=2048, prefill_copies_dir=str(tmp_path / "copies"))
    with EngineClient(settings) as client:
        cut = client.generate_batch(gemma_path, LATIN_ITEMS, max_tokens=6, stop=["\n"], latin_only=True).result(timeout=300)
        assert cut["metrics"]["by_fast_copy"] and cut["metrics"]["copy_vocabulary"] < 200_000
        greek = client.generate_batch(gemma_path, LATIN_ITEMS[:-1] + ["English: Ω is the last letter.\nFrench:"],
                                      max_tokens=6, stop=["\n"], latin_only=True).result(timeout=300)
        assert greek["metrics"]["by_fast_copy"] and greek["metrics"]["copy_vocabulary"] == 262144
        plain = client.generate_batch(gemma_path, LATIN_ITEMS, max_tokens=6, stop=["\n"]).result(timeout=300)
        assert plain["metrics"]["copy_vocabulary"] == 262144
    assert plain["result"]["texts"] == cut["result"]["texts"]
