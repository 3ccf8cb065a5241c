"""The MiniLM -> GGUF converter: llama.cpp's BERT layout, atomic and cached, same tokens."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine import convert_bert, model_pack
from engine.gguf_check import check_gguf

SOURCE = model_pack.locate(model_pack.MINILM, Path("/nonexistent"))
assert SOURCE is not None, "the default model pack (MiniLM) is missing: `make test` installs it"


@pytest.fixture(scope="module")
def converted(tmp_path_factory) -> Path:
    """A fresh conversion in this module's own folder: the conversion is what these tests test."""
    return convert_bert.ensure_gguf(SOURCE, tmp_path_factory.mktemp("models"))


def test_layout_and_keys(converted):
    import gguf

    reader = gguf.GGUFReader(str(converted))
    names = {t.name for t in reader.tensors}
    assert {"token_embd.weight", "token_types.weight", "position_embd.weight", "token_embd_norm.weight"} <= names
    for i in range(6):
        for part in ("attn_q", "attn_k", "attn_v", "attn_output", "attn_output_norm", "ffn_up", "ffn_down",
                     "layer_output_norm"):
            assert f"blk.{i}.{part}.weight" in names and f"blk.{i}.{part}.bias" in names
    assert len(names) == 5 + 16 * 6
    fields = reader.fields

    def value(key):
        field = fields[key]
        return field.parts[field.data[0]].tolist()[0] if len(field.data) == 1 else None

    assert bytes(fields["general.architecture"].parts[-1]).decode() == "bert"
    assert value("bert.block_count") == 6
    assert value("bert.embedding_length") == 384
    assert value("bert.attention.head_count") == 12
    assert value("bert.attention.causal") is False or value("bert.attention.causal") == 0
    assert value("bert.pooling_type") == int(gguf.PoolingType.MEAN)
    assert bytes(fields["tokenizer.ggml.model"].parts[-1]).decode() == "bert"
    # The project's own bounded header check accepts what we wrote.
    check_gguf(str(converted))


def test_cached_by_source_hash_and_atomic(converted):
    again = convert_bert.ensure_gguf(SOURCE, converted.parent)
    assert again == converted
    assert convert_bert.source_hash(SOURCE)[:16] in converted.name
    assert not [p for p in converted.parent.iterdir() if p.name.endswith(".tmp")]


def test_rejects_non_bert(tmp_path):
    (tmp_path / "config.json").write_text('{"model_type": "llama"}')
    with pytest.raises(convert_bert.ConversionError, match="not BERT"):
        convert_bert.convert(tmp_path, tmp_path / "out.gguf")
    assert not (tmp_path / "out.gguf").exists()


def test_tensor_names():
    assert convert_bert.tensor_name("encoder.layer.3.attention.self.query.weight") == "blk.3.attn_q.weight"
    assert convert_bert.tensor_name("encoder.layer.0.output.LayerNorm.bias") == "blk.0.layer_output_norm.bias"
    assert convert_bert.tensor_name("encoder.layer.0.intermediate.dense.weight") == "blk.0.ffn_up.weight"
    assert convert_bert.tensor_name("embeddings.position_ids") is None
    assert convert_bert.tensor_name("pooler.dense.weight") is None


TEXTS = [
    "Hello world!",
    "PEP 484 introduces type hints; see typing.TypeVar and Generic[T].",
    "Ünïcödé café naïve résumé — déjà vu",
    "Don't stop-believing: e-mail x@y.z costs $3.14 (approx.)",
    "中文文本 and 日本語 mixed with English",
    "supercalifragilisticexpialidocious antidisestablishmentarianism",
    "",
    "def f(x: int) -> list[str]:\n    return [str(x)] * 3",
]


def test_tokens_match_transformers(converted):
    from transformers import BertTokenizerFast

    from engine.embedder import Embedder

    reference = BertTokenizerFast.from_pretrained(str(SOURCE))
    embedder = Embedder(str(converted), n_threads=2, n_batch=512, n_seq_max=4)
    try:
        for text in TEXTS + ["word " * 400]:
            assert embedder.tokenize(text) == reference(text, truncation=True, max_length=256)["input_ids"], text[:40]
    finally:
        embedder.close()
