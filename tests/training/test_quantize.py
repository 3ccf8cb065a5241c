"""llama.cpp's quantizer through training.quantize: real default model, real files."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.gguf_check import check_gguf
from training.quantize import QUANT_TYPES, QuantizeError, quantize_gguf, source_type


@pytest.fixture(scope="module")
def f16_model(tmp_path_factory, smollm2_gguf) -> Path:
    """SmolLM2 dequantized once from the shipped Q4_1 to F16 (the lab's reference file)."""
    out = tmp_path_factory.mktemp("quant") / "smollm2-f16.gguf"
    return quantize_gguf(smollm2_gguf, out, "F16", threads=2)


def test_types_cover_the_issue():
    assert QUANT_TYPES == ("F16", "Q8_0", "Q5_0", "Q4_K_M", "Q4_1")


def test_requantize_q4_to_f16_and_q8(f16_model, tmp_path, smollm2_gguf):
    tmp_path = tmp_path / "out"
    assert source_type(smollm2_gguf) == "Q4_1"
    assert source_type(f16_model) == "F16"
    q8 = quantize_gguf(f16_model, tmp_path / "q8.gguf", "q8_0", threads=2)  # case does not matter
    assert source_type(q8) == "Q8_0"
    header = check_gguf(q8)
    assert header.metadata["general.architecture"] == "llama"
    # Q8_0 stores 34 bytes per 32 weights against F16's 64: a little over half the size.
    ratio = q8.stat().st_size / f16_model.stat().st_size
    assert 0.45 < ratio < 0.65, ratio
    # Nothing left behind but the two finished files.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["q8.gguf"]


@pytest.mark.parametrize("qtype", ["Q5_0", "Q4_K_M", "Q4_1"])
def test_every_lab_type_is_written(f16_model, tmp_path, qtype):
    import gguf

    out = quantize_gguf(f16_model, tmp_path / f"{qtype}.gguf", qtype, threads=2)
    # The file says which llama.cpp type it is (some SmolLM2 tensors, 576 wide, are not a
    # multiple of the K-quants' 256-block, so llama.cpp picks a fallback type for them).
    assert gguf.LlamaFileType(check_gguf(out).metadata["general.file_type"]).name == f"MOSTLY_{qtype}"
    assert out.stat().st_size < f16_model.stat().st_size * 0.45


def test_unknown_type_is_one_clear_message(f16_model, tmp_path):
    tmp_path = tmp_path / "out"
    tmp_path.mkdir()
    with pytest.raises(QuantizeError, match="Unknown quantization type 'Q7_X'.*Q8_0"):
        quantize_gguf(f16_model, tmp_path / "x.gguf", "Q7_X")
    assert list(tmp_path.iterdir()) == []


def test_not_a_gguf_source_is_refused(tmp_path):
    tmp_path = tmp_path / "out"
    tmp_path.mkdir()
    bogus = tmp_path / "notes.gguf"
    bogus.write_bytes(b"PK\x03\x04 this is a zip, not a model" * 10)
    with pytest.raises(QuantizeError, match="Cannot quantize .*notes.gguf"):
        quantize_gguf(bogus, tmp_path / "out.gguf", "Q8_0")
    with pytest.raises(QuantizeError, match="does not exist"):
        quantize_gguf(tmp_path / "missing.gguf", tmp_path / "out.gguf", "Q8_0")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.gguf"]


def test_quantized_source_needs_explicit_requantize(tmp_path, smollm2_gguf):
    tmp_path = tmp_path / "out"
    tmp_path.mkdir()
    with pytest.raises(QuantizeError, match="already quantized \\(Q4_1\\)"):
        quantize_gguf(smollm2_gguf, tmp_path / "q8.gguf", "Q8_0", allow_requantize=False)
    assert list(tmp_path.iterdir()) == []


def test_failure_keeps_an_existing_destination(f16_model, tmp_path):
    """A failed run must not clobber or truncate what is already at the destination."""
    dst = tmp_path / "keep.gguf"
    dst.write_bytes(b"previous result")
    with pytest.raises(QuantizeError):
        quantize_gguf(f16_model, dst, "NOPE")
    assert dst.read_bytes() == b"previous result"
