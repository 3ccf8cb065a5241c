"""Embeddings through the engine worker match sentence-transformers' all-MiniLM-L6-v2."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from engine import model_pack
from engine.client import EngineRequestError

SOURCE = model_pack.locate(model_pack.MINILM, Path("/nonexistent"))
assert SOURCE is not None, "the default model pack (MiniLM) is missing: `make test` installs it"

TEXTS = [
    "The cat sat on the mat.",
    "A feline rested on a rug.",
    "PEP 484 introduces a standard syntax for type annotations in Python.",
    "Protocols let static type checkers verify structural subtyping, also called static duck typing.",
    "TypedDict describes dictionaries with a fixed set of string keys, each with its own value type.",
    "Literal types indicate that an expression has one specific value, such as Literal['r'].",
    "Stock markets fell sharply on Monday after the central bank raised interest rates.",
    "How do I bake sourdough bread at home?",
    "Ünïcödé café naïve résumé — déjà vu",
    "中文文本测试 and some English",
    "def greet(name: str) -> str:\n    return 'Hello ' + name",
    "x",
    "",
    "Final names cannot be reassigned or overridden in subclasses.",
    "The @overload decorator describes functions that accept different combinations of argument types.",
    "Variance: a generic class can be covariant, contravariant or invariant in its type parameter.",
    "ParamSpec captures the parameter list of a callable so decorators can preserve signatures.",
    "A long passage. " * 120,  # past 256 tokens: truncated the same way on both sides
    "Don't panic! e-mail: someone@example.org, price $3.14 (approx.)",
    "Les modèles de langue fonctionnent localement sur votre ordinateur.",
]


@pytest.fixture(scope="module")
def reference() -> np.ndarray:
    """sentence-transformers' recipe: BERT, mean pooling over the attention mask, L2 norm."""
    import torch
    from transformers import AutoModel, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(SOURCE))
    model = AutoModel.from_pretrained(str(SOURCE)).eval()
    encoded = tokenizer(TEXTS, padding=True, truncation=True, max_length=256, return_tensors="pt")
    with torch.no_grad():
        hidden = model(**encoded).last_hidden_state
    mask = encoded["attention_mask"].unsqueeze(-1).float()
    pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
    return torch.nn.functional.normalize(pooled, dim=1).numpy()


def test_embeddings_match_sentence_transformers(engine, minilm_gguf, reference):
    vectors = np.asarray(engine.embed(minilm_gguf, TEXTS), dtype=np.float32)
    assert vectors.shape == (len(TEXTS), 384)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-4)
    cosines = (vectors * reference).sum(axis=1)
    assert cosines.min() >= 0.99, cosines


def test_batching_does_not_change_vectors(engine, minilm_gguf):
    together, metrics = engine.embed(minilm_gguf, TEXTS, with_metrics=True)
    alone = np.asarray([engine.embed(minilm_gguf, [t])[0] for t in TEXTS[:5]])
    # Half-precision weights make the last digits depend on the batch shape, nothing more.
    assert ((together[:5] * alone).sum(axis=1) > 0.9995).all()
    assert metrics["texts"] == len(TEXTS) and metrics["tokens"] > len(TEXTS)


def test_similar_sentences_are_close(engine, minilm_gguf):
    cat, feline, stocks = np.asarray(engine.embed(minilm_gguf, TEXTS[0:2] + TEXTS[6:7]))
    assert cat @ feline > cat @ stocks + 0.2


def test_bad_requests_are_clear(engine, minilm_gguf, tmp_path):
    assert engine.embed(minilm_gguf, []) == []
    with pytest.raises(EngineRequestError) as info:
        engine.request("embed", {"model": minilm_gguf, "texts": "not a list"}).result(60)
    assert info.value.kind == "bad_request"
    bogus = tmp_path / "bogus.gguf"
    bogus.write_bytes(b"GGUF" + b"\0" * 60)
    with pytest.raises(EngineRequestError):
        engine.embed(str(bogus), ["text"], timeout=60)
    # The engine still serves after the bad file.
    assert len(engine.embed(minilm_gguf, ["still here"])[0]) == 384


def test_the_numpy_forward_gives_llama_cpps_vectors(minilm_gguf, reference):
    """A BERT with mean pooling is computed on numpy's BLAS (engine/bert_numpy.py): the vectors
    are llama.cpp's for the same tokens, with one thread or several, for any number of texts
    (groups of like length, padding masked), and both stay sentence-transformers'."""
    from engine import bert_numpy
    from engine.embedder import Embedder

    numpy_path, llama_path = Embedder(minilm_gguf, n_threads=2), Embedder(minilm_gguf, n_threads=2, force_llama=True)
    try:
        assert numpy_path.backend == "numpy" and llama_path.backend == "llama.cpp"
        assert numpy_path.ctx is None  # the weights are numpy's; llama.cpp holds only the tokenizer
        many = TEXTS * 4  # more than one group of bert_numpy.GROUP_TOKENS, short and long mixed
        fast, metrics = numpy_path.embed(many)
        assert metrics["backend"] == "numpy" and metrics["texts"] == len(many)
        assert sum(len(numpy_path.tokenize(t)) for t in many) > 2 * bert_numpy.GROUP_TOKENS
        baseline, _ = llama_path.embed(many)
        assert ((fast * baseline).sum(axis=1) > 0.9999).all()
        assert ((fast[:len(TEXTS)] * reference).sum(axis=1) >= 0.99).all()
        numpy_path.set_threads(1)
        alone, _ = numpy_path.embed(many)
        assert np.allclose(alone, fast, atol=1e-5)
        # Each thread's work arrays outlive a call: a lone short text after the mixed batch
        # (arrays of other shapes, stale contents) gets the vector it got inside the batch.
        single, _ = numpy_path.embed(TEXTS[:1])
        assert np.allclose(single[0], alone[0], atol=1e-5)
    finally:
        numpy_path.close()
        llama_path.close()


def test_the_numpy_forward_stops_on_cancel_and_leaves_other_models_to_llama_cpp(minilm_gguf, smollm2_path,
                                                                                 tmp_path):
    import threading

    from engine import bert_numpy
    from engine.embedder import Embedder
    from engine.llama_runtime import Cancelled

    assert bert_numpy.load(str(smollm2_path)) is None  # a decoder (llama), not a BERT
    # A damaged file is left to llama.cpp, whose load explains the fault, instead of raising here.
    damaged = tmp_path / "damaged.gguf"
    damaged.write_bytes(b"GGUF" + b"\x03\x00\x00\x00" + b"\xff" * 64)
    assert bert_numpy.load(str(damaged)) is None
    embedder = Embedder(minilm_gguf, n_threads=2)
    try:
        cancel = threading.Event()
        cancel.set()
        with pytest.raises(Cancelled):
            embedder.embed(TEXTS * 10, cancel=cancel)
        assert embedder.embed(["still here"])[0].shape == (1, 384)
    finally:
        embedder.close()
