"""Fit labels (issue 20): header facts of the real default models, labels at their boundaries with
free memory given as a number, the longest context that fits, the cached bandwidth, the CLI's columns."""

from __future__ import annotations

import json
import math
from pathlib import Path

import gguf
import pytest

from assistant.models import fit
from engine import model_pack
from engine.library import memory_needed
from engine.settings import physical_cores
from tests.assistant import test_model_discovery as trees

# SmolLM2 written as three files, as llama.cpp's gguf-split names them (shared with discovery's tests).
smollm2_split = trees.smollm2_split

GiB = 1024**3


def _field(reader: gguf.GGUFReader, key: str):
    """A metadata value as the gguf package reads it: the reference the header facts are checked against."""
    value = reader.fields[key]
    return value.parts[value.data[0]][0] if len(value.data) == 1 else len(value.data)


@pytest.fixture(scope="module")
def gemma3_gguf(joined_pack_dir) -> Path:
    path = model_pack.locate(model_pack.GEMMA3, joined_pack_dir)
    assert path is not None, "the default model pack (Gemma) is missing: `make test` installs it"
    return path


def _hand_computed(path: Path) -> dict:
    """llama.cpp's f16 KV cache: 2 (K and V) x n_layer x n_embd_kv x 2 bytes, with
    n_embd_kv = head_dim x n_head_kv and head_dim = key_length, else n_embd / n_head."""
    reader = gguf.GGUFReader(path)
    arch = str(bytes(reader.fields["general.architecture"].parts[-1]), "utf-8")
    n_layer = int(_field(reader, f"{arch}.block_count"))
    n_embd = int(_field(reader, f"{arch}.embedding_length"))
    n_head = int(_field(reader, f"{arch}.attention.head_count"))
    n_head_kv = int(_field(reader, f"{arch}.attention.head_count_kv"))
    key_length = f"{arch}.attention.key_length"
    head_dim = int(_field(reader, key_length)) if key_length in reader.fields else n_embd // n_head
    return {"kv": 2 * n_layer * head_dim * n_head_kv * 2, "vocab": len(reader.fields["tokenizer.ggml.tokens"].data),
            "n_embd": n_embd, "context": int(_field(reader, f"{arch}.context_length"))}


def test_header_gives_the_kv_cache_per_token_of_each_default_model(smollm2_gguf, gemma3_gguf):
    for path, kv in ((smollm2_gguf, 23040), (gemma3_gguf, 18432)):
        shape = fit.read_shape(path)
        expected = _hand_computed(path)
        assert shape.kv_bytes_per_token == expected["kv"] == kv
        assert shape.n_vocab == expected["vocab"] and shape.n_embd == expected["n_embd"]
        assert shape.trained_context == expected["context"]
        assert shape.file_bytes == path.stat().st_size
    # Gemma's heads are wider than n_embd / n_head (256, not 160): key_length decides.
    assert _hand_computed(gemma3_gguf)["kv"] != 2 * 18 * (640 // 4) * 1 * 2


def test_a_split_model_counts_every_part(smollm2_split):
    shape = fit.read_shape(smollm2_split[0])
    assert len(smollm2_split) == 3 and shape.file_bytes == sum(p.stat().st_size for p in smollm2_split)
    assert shape.kv_bytes_per_token == 23040 and shape.n_vocab == 49152


SHAPE = fit.ModelShape(file_bytes=400 * 1024**2, kv_bytes_per_token=20_000, n_vocab=50_000, n_embd=1024,
                       trained_context=8192)
FAST = 50e9  # bytes/s: fast enough that speed never makes the label


def test_labels_at_their_boundaries():
    needed = memory_needed(SHAPE.file_bytes, SHAPE.kv_bytes_per_token, 4096, n_vocab=SHAPE.n_vocab,
                           n_embd=SHAPE.n_embd)
    assert fit.assess(SHAPE, 4096, needed - 1, FAST).label == fit.TOO_LARGE
    assert fit.assess(SHAPE, 4096, needed, FAST).label == fit.TIGHT
    comfortable = math.ceil(needed / fit.COMFORTABLE_SHARE)
    assert fit.assess(SHAPE, 4096, comfortable - 1, FAST).label == fit.TIGHT
    assert fit.assess(SHAPE, 4096, comfortable, FAST).label == fit.RUNS_WELL
    assert fit.assess(SHAPE, 4096, comfortable, FAST).needed_bytes == needed

    # Plenty of memory but slower than people read: tight.
    reading_speed = fit.SLOW_TOKENS_PER_S * (SHAPE.file_bytes + SHAPE.kv_bytes_per_token * fit.TYPICAL_CONTEXT_TOKENS) \
        / fit.DECODE_EFFICIENCY
    assert fit.assess(SHAPE, 4096, 64 * GiB, reading_speed * 0.99).label == fit.TIGHT
    assert fit.assess(SHAPE, 4096, 64 * GiB, reading_speed * 1.01).label == fit.RUNS_WELL
    # No bandwidth known: the label is memory's alone, and says the speed is unknown.
    unknown = fit.assess(SHAPE, 4096, 64 * GiB, None)
    assert unknown.label == fit.RUNS_WELL and unknown.tokens_per_s is None and "unknown" in unknown.short_text


def test_the_context_is_capped_at_what_the_model_was_trained_for():
    capped = fit.assess(SHAPE, 100_000, 64 * GiB, FAST)
    assert capped.n_ctx == 8192 and capped.largest_context == 8192
    assert capped.needed_bytes == memory_needed(SHAPE.file_bytes, SHAPE.kv_bytes_per_token, 8192,
                                                n_vocab=SHAPE.n_vocab, n_embd=SHAPE.n_embd)


def test_the_largest_context_grows_with_free_memory_and_fits():
    base = memory_needed(SHAPE.file_bytes, SHAPE.kv_bytes_per_token, 0, n_vocab=SHAPE.n_vocab, n_embd=SHAPE.n_embd)
    previous = -1
    for free in range(base - 10 * 2**20, base + 200 * 2**20, 2**20):
        longest = fit.assess(SHAPE, 4096, free, FAST).largest_context
        assert longest >= previous, f"shrank at {free} bytes free"
        assert longest % 256 == 0 and longest <= SHAPE.trained_context
        if longest:
            assert fit.assess(SHAPE, longest, free, FAST).label != fit.TOO_LARGE
        previous = longest
    assert fit.assess(SHAPE, 4096, base - 1, FAST).largest_context == 0
    assert previous == SHAPE.trained_context
    # The too-large warning names it, with the memory it needs and what is free.
    tight_fit = fit.assess(SHAPE, 8192, base + 2048 * SHAPE.kv_bytes_per_token, FAST)
    assert tight_fit.label == fit.TOO_LARGE and tight_fit.largest_context == 2048
    warning = tight_fit.warning("Big Model")
    assert "up to 2,048 tokens would fit" in warning and "MiB is free" in warning and "needs about" in warning


def test_expected_speed_is_bandwidth_over_the_bytes_read_per_token():
    per_token = SHAPE.file_bytes + SHAPE.kv_bytes_per_token * 100
    assert fit.expected_tokens_per_s(SHAPE, 10e9, context_tokens=100) == pytest.approx(
        10e9 * fit.DECODE_EFFICIENCY / per_token)
    assert fit.expected_tokens_per_s(SHAPE, 10e9, 1000) < fit.expected_tokens_per_s(SHAPE, 10e9, 100)


def test_the_bandwidth_is_measured_once_and_again_on_other_hardware(tmp_path):
    calls = []

    def measure(threads: int) -> float:
        calls.append(threads)
        return 12e9 + len(calls)

    first = fit.machine_bandwidth(tmp_path, cpu="CPU One", threads=2, measure=measure)
    cached = json.loads((tmp_path / fit.BANDWIDTH_FILE).read_text())
    assert first == 12e9 + 1 and calls == [2]
    assert cached["cpu_model"] == "CPU One" and cached["threads"] == 2 and cached["measured_at"][:4].isdigit()
    assert fit.machine_bandwidth(tmp_path, cpu="CPU One", threads=2, measure=measure) == first and calls == [2]

    # The data folder moved to another machine: measured again, and the file says so.
    assert fit.machine_bandwidth(tmp_path, cpu="CPU Two", threads=2, measure=measure) == 12e9 + 2
    assert json.loads((tmp_path / fit.BANDWIDTH_FILE).read_text())["cpu_model"] == "CPU Two"
    # More cores for the engine: measured again; a damaged file: measured again.
    fit.machine_bandwidth(tmp_path, cpu="CPU Two", threads=4, measure=measure)
    (tmp_path / fit.BANDWIDTH_FILE).write_text("{not json")
    fit.machine_bandwidth(tmp_path, cpu="CPU Two", threads=4, measure=measure)
    assert calls == [2, 2, 4, 4]


def test_the_real_measurement_reads_memory_with_the_engines_threads():
    assert fit.cpu_model()
    bandwidth = fit.measure_bandwidth(threads=2)
    # Any machine that runs the suite streams more than 500 MB/s and less than 10 TB/s.
    assert 5e8 < bandwidth < 1e13


def test_models_list_shows_the_label_and_the_speed(services):
    from assistant.cli.model_fit import with_fit_columns

    (services.paths.data_dir / fit.BANDWIDTH_FILE).write_text(json.dumps(
        {"bytes_per_s": 20e9, "cpu_model": fit.cpu_model(), "threads": physical_cores(),
         "measured_at": "2026-01-01T00:00:00+00:00"}))
    records = services.library.list()
    rows = with_fit_columns([("ID",)] + [(r.id,) for r in records], records, services)
    assert rows[0] == ("ID", "FIT", "TOK/S", "MAX CTX")
    by_id = {row[0]: row[1:] for row in rows[1:]}
    smollm2 = by_id[model_pack.SMOLLM2.id]
    assert smollm2[0] in fit.LABELS and smollm2[0] != fit.TOO_LARGE
    # The cached 20 GB/s, not a new measurement: the speed follows from it.
    shape = fit.read_shape(model_pack.locate(model_pack.SMOLLM2, Path("/nonexistent")))
    assert int(smollm2[1]) == round(fit.expected_tokens_per_s(shape, 20e9))
    assert int(smollm2[2].replace(",", "")) == 8192
    assert by_id[model_pack.MINILM.id] == ("-", "-", "-"), "the embedding model is not a GGUF the engine decodes with"
