"""Base models from the installed GGUF files: the dequantized cache and tokenizer parity."""

from __future__ import annotations

import time

import pytest

from engine.llama_runtime import LoadedModel
from engine.settings import EngineSettings
from training import base_model
from training.base_model import BaseModelError

PARITY_TEXTS = [
    "The year 2024 had 366 days; 3.14159 and 1,000,000 and -42.",
    "def f(x: int) -> list[str]:\n    return [str(i) for i in range(x)]  # comment\n\tindented = {'a': 1}",
    "Café, naïve façade, Übermaß, São Paulo, ¿Qué tal?, déjà vu, Ærøskøbing.",
    "Emoji 😀🎉👍🏽 and CJK 日本語 and math ∑∫√ and arrows →⇒.",
    "  leading spaces, trailing spaces   \n\nand blank lines\r\nwindows line end",
    "English: The cat sleeps.\nFrench:",
]


def test_cache_is_made_once_then_read_instead_of_the_gguf(smollm2_gguf, tmp_path, monkeypatch):
    cache_root = tmp_path / "base-cache"
    started = time.perf_counter()
    folder = base_model.cached_base_dir(smollm2_gguf, cache_root)
    first = time.perf_counter() - started
    assert {"config.json", "model.safetensors", base_model.MARKER} <= {p.name for p in folder.iterdir()}
    assert [p.name for p in cache_root.iterdir()] == [folder.name], "temporary folders were left behind"

    # The second load must not touch transformers' GGUF reader at all: make it unusable.
    import transformers.modeling_gguf_pytorch_utils as gguf_utils

    def refuse(*_a, **_k):
        raise AssertionError("the GGUF was dequantized again instead of reading the cache")

    monkeypatch.setattr(gguf_utils, "load_gguf_checkpoint", refuse)
    started = time.perf_counter()
    model, tokenizer = base_model.load_base(smollm2_gguf, cache_root)
    second = time.perf_counter() - started
    assert model.config.name_or_path == str(folder)
    assert model.config.model_type == "llama" and model.num_parameters() > 100_000_000
    assert tokenizer.eos_token_id is not None
    # Dequantizing is many times slower than reading the safetensors copy (ratio, not a time limit).
    assert second < first / 3, (first, second)


def test_a_changed_gguf_gets_a_new_cache_key(smollm2_gguf, tmp_path):
    copy = tmp_path / smollm2_gguf.name
    copy.write_bytes(smollm2_gguf.read_bytes())
    assert base_model.cache_key(copy) == base_model.cache_key(smollm2_gguf)  # same content, other place
    data = bytearray(copy.read_bytes())
    data[-10] ^= 0xFF
    copy.write_bytes(bytes(data))
    assert base_model.cache_key(copy) != base_model.cache_key(smollm2_gguf)


@pytest.mark.parametrize("which", ["smollm2", "gemma3"])
def test_hf_and_llama_cpp_tokenizers_agree(which, request, base_cache_root):
    gguf = request.getfixturevalue(f"{which}_gguf")
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(base_model.cached_base_dir(gguf, base_cache_root))
    llama = LoadedModel(str(gguf), EngineSettings(n_ctx=512))
    try:
        for text in PARITY_TEXTS:
            assert base_model.encode(tokenizer, text) == llama.tokenize(text, add_special=False, parse_special=False), text
        # What llama.cpp puts in front of a text (BOS for Gemma, nothing for SmolLM2) is what
        # training puts in front of each document.
        plain = llama.tokenize("x", add_special=False, parse_special=False)
        full = llama.tokenize("x", add_special=True, parse_special=False)
        assert base_model.document_start_ids(tokenizer) == full[: len(full) - len(plain)]
        assert tokenizer.eos_token_id == llama_eos(llama)
    finally:
        llama.close()


def llama_eos(llama) -> int:
    import llama_cpp

    return llama_cpp.llama_vocab_eos(llama.vocab)


def test_gemma3_loads_from_its_cache(gemma3_gguf, base_cache_root):
    model, tokenizer = base_model.load_base(gemma3_gguf, base_cache_root)
    assert model.config.model_type in ("gemma3", "gemma3_text")
    assert base_model.encode(tokenizer, "Bonjour") and model.get_output_embeddings() is not None


def test_unsupported_architecture_is_refused_with_a_clear_message(tmp_path):
    import gguf
    import numpy as np

    path = tmp_path / "bert.gguf"
    writer = gguf.GGUFWriter(str(path), "bert")
    writer.add_tensor("token_embd.weight", np.zeros((4, 8), dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    with pytest.raises(BaseModelError, match="'bert' model; training supports llama, gemma3"):
        base_model.cached_base_dir(path, tmp_path / "cache")
    assert not (tmp_path / "cache").exists() or not any((tmp_path / "cache").iterdir())

    junk = tmp_path / "junk.gguf"
    junk.write_bytes(b"not a gguf at all" * 10)
    with pytest.raises(BaseModelError, match="not a readable GGUF"):
        base_model.check_architecture(junk)
    with pytest.raises(BaseModelError, match="does not exist"):
        base_model.check_architecture(tmp_path / "missing.gguf")
