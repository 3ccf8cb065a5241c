"""Training data: packed document blocks with a held-out split, translation memory in the
translator's prompt format, and clear errors for data that cannot train."""

from __future__ import annotations

import json

import numpy as np
import pytest

from training import datasets as ds
from training.base_model import cached_base_dir, document_start_ids


@pytest.fixture(scope="module")
def tokenizer(smollm2_gguf, base_cache_root):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(cached_base_dir(smollm2_gguf, base_cache_root))


def test_documents_are_packed_without_padding_and_whole_documents_held_out(tokenizer, peps_dir):
    docs = ds.read_text_files(sorted(peps_dir.glob("*.rst"))[:6])
    data = ds.pack_documents(docs, tokenizer, seq_len=128, eval_fraction=0.2, seed=1)
    assert data.train_ids.shape[1] == 128 and data.train_ids.dtype == np.int64
    assert data.stats["held_out"] == "documents" and data.stats["eval_documents"] == 1
    # No padding: every position is a real token that trains.
    assert (data.train_labels == data.train_ids).all()
    assert tokenizer.pad_token_id is None or tokenizer.pad_token_id != tokenizer.eos_token_id \
        or (data.train_ids == tokenizer.eos_token_id).sum() <= len(docs)
    # The held-out document's text never appears in a training block.
    held_out = data.eval_texts[0]
    probe = ds._encode(tokenizer, held_out[1000:1400])[5:25]
    flat = data.train_ids.reshape(-1).tolist()
    assert not any(flat[i:i + len(probe)] == probe for i in range(len(flat) - len(probe)))
    # All documents' tokens are there (minus the cut remainder of each stream).
    total = sum(len(ds._encode(tokenizer, d.text)) + 1 + len(document_start_ids(tokenizer)) for d in docs)
    used = data.train_ids.size + data.eval_ids.size
    assert total - 2 * 128 < used <= total


def test_few_documents_hold_out_the_tail_and_the_split_is_deterministic(tokenizer, peps_dir):
    docs = ds.read_text_files([peps_dir / "pep-0484.rst"])
    a = ds.pack_documents(docs, tokenizer, seq_len=64, eval_fraction=0.1, seed=0)
    b = ds.pack_documents(docs, tokenizer, seq_len=64, eval_fraction=0.1, seed=0)
    assert a.stats["held_out"] == "tail" and len(a.eval_ids) >= 1 and a.eval_texts
    assert (a.train_ids == b.train_ids).all()
    assert a.eval_texts[0].strip() in docs[0].text or a.eval_texts[0][:200] in docs[0].text


def test_no_documents_and_too_little_text_are_clear_errors(tokenizer, tmp_path):
    with pytest.raises(ds.DatasetError, match="no documents with text"):
        ds.pack_documents([ds.Document("empty", "   \n")], tokenizer, seq_len=64)
    with pytest.raises(ds.DatasetError, match="Too little text: .* tokens"):
        ds.pack_documents([ds.Document("short", "Just one sentence.")], tokenizer, seq_len=64)
    bad = tmp_path / "docs.jsonl"
    bad.write_text('{"title": "a"}\n', encoding="utf-8")
    with pytest.raises(ds.DatasetError, match="Line 1 of docs.jsonl is not a"):
        ds.read_documents_jsonl(bad)
    for line in ("{not json", '["a list"]'):
        bad.write_text('{"text": "fine"}\n\n' + line + "\n", encoding="utf-8")
        with pytest.raises(ds.DatasetError, match="Line 3 of docs.jsonl is not a"):
            ds.read_documents_jsonl(bad)
    with pytest.raises(ds.DatasetError, match="Unknown dataset type"):
        ds.build({"type": "web"}, tokenizer, 64, 0.1)


def test_translation_prompt_is_the_translators_own():
    from assistant.tasks import langdetect, translation

    assert ds.LANGUAGE_NAMES == langdetect.SUPPORTED
    for src, tgt, text in [("en", "fr", "The cat  sleeps\n on the mat."), ("de", "es", "Guten Tag!")]:
        assert ds.translation_prompt(text, src, tgt) == translation.segment_prompt(text, src, tgt, [])
        # A training pair is exactly one few-shot example of the translator's prompt.
        clean = " ".join(text.split())
        shot = translation.segment_prompt("", src, tgt, [(clean, "Bonjour.")]).rsplit(
            f"{langdetect.SUPPORTED[src]}: \n", 1)[0]
        assert ds.translation_prompt(clean, src, tgt) + ds.translation_completion("Bonjour.") == shot


def _tmx(path, pairs):
    units = "".join(f'<tu><tuv xml:lang="en-GB"><seg>{s}</seg></tuv><tuv xml:lang="fr"><seg>{t}</seg></tuv></tu>'
                    for s, t in pairs)
    path.write_text(f'<?xml version="1.0"?><tmx version="1.4"><header srclang="en"/><body>{units}</body></tmx>',
                    encoding="utf-8")


def test_translation_memory_from_tsv_and_tmx_with_masked_prompts(tokenizer, tmp_path):
    pairs = [(f"I have {i} red apples.", f"J'ai {i} pommes rouges.") for i in range(60)]
    tsv = tmp_path / "memory.tsv"
    tsv.write_text("eng\tfra\n" + "".join(f"{s}\t{t}\n" for s, t in pairs), encoding="utf-8")
    tmx = tmp_path / "memory.tmx"
    _tmx(tmx, pairs)
    assert ds.read_translation_memory(tsv) == ("en", "fr", pairs)
    assert ds.read_translation_memory(tmx) == ("en", "fr", pairs)

    data = ds.build({"type": "translation_memory", "path": str(tmx)}, tokenizer, seq_len=64, eval_fraction=0.1)
    assert data.stats["direction"] == "en-fr" and data.stats["eval_pairs"] == 6
    text = tokenizer.decode(data.train_ids[0])
    assert "English: I have" in text and "\nFrench: J'ai" in text
    trained = tokenizer.decode([t for t, y in zip(data.train_ids[1], data.train_labels[1]) if y != -100])
    assert "pommes" in trained and "apples" not in trained  # only the target side trains
    assert data.eval_texts[0].startswith("English: I have") and data.eval_texts[0].endswith("\n\n")

    reverse = ds.build({"type": "translation_memory", "path": str(tsv), "source": "fr", "target": "en"},
                       tokenizer, seq_len=64, eval_fraction=0.1)
    assert "French: J'ai" in tokenizer.decode(reverse.train_ids[0])


def test_bad_translation_memories_are_clear_errors(tokenizer, tmp_path):
    tsv = tmp_path / "memory.tsv"
    tsv.write_text("source\ttarget\nhello\tbonjour\n", encoding="utf-8")
    with pytest.raises(ds.DatasetError, match="must name the two languages"):
        ds.read_translation_memory(tsv)
    tsv.write_text("eng\tfra\nhello\tbonjour\n", encoding="utf-8")
    with pytest.raises(ds.DatasetError, match="1 usable pairs; at least 20"):
        ds.build({"type": "translation_memory", "path": str(tsv)}, tokenizer, 64, 0.1)
    with pytest.raises(ds.DatasetError, match="not en->de"):
        ds.build({"type": "translation_memory", "path": str(tsv), "target": "de"}, tokenizer, 64, 0.1)
    broken = tmp_path / "broken.tmx"
    broken.write_text("<tmx><body><tu>", encoding="utf-8")
    with pytest.raises(ds.DatasetError, match="not a readable TMX"):
        ds.read_translation_memory(broken)
    bomb = tmp_path / "bomb.tmx"
    bomb.write_text('<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "aaaa">]><tmx><body>&a;</body></tmx>',
                    encoding="utf-8")
    with pytest.raises(ds.DatasetError, match="not a readable TMX"):
        ds.read_translation_memory(bomb)


def test_documents_jsonl_round_trip(tokenizer, tmp_path, peps_dir):
    path = tmp_path / "documents.jsonl"
    text = (peps_dir / "pep-0526.rst").read_text(encoding="utf-8")
    path.write_text(json.dumps({"title": "PEP 526", "text": text}) + "\n", encoding="utf-8")
    data = ds.build({"type": "documents", "path": str(path)}, tokenizer, 64, 0.1)
    assert data.stats["documents"] == 1 and len(data.train_ids) >= ds.MIN_TRAIN_BLOCKS
