"""benchmarks/machine_limits.py: the machine's limits measured beside a benchmark's figure, and
the fractions of them a figure reaches. Behaviour only; no speed is asserted."""

from __future__ import annotations

import os
import time

import numpy as np
import pytest

from benchmarks import machine_limits as limits
from engine.settings import physical_cores
from tests.engine.gguf_corpus import write_valid_gguf

WIDTH, FF, VOCAB = 32, 64, 8
SMALL = [(64, 128, 256)]


def _tensors(untied_head: bool) -> dict:
    rng = np.random.default_rng(0)
    tensors = {
        "token_embd.weight": rng.random((VOCAB, WIDTH), dtype=np.float32),  # GGUF shape [WIDTH, VOCAB]
        "blk.0.attn_norm.weight": np.ones(WIDTH, dtype=np.float32),
        "blk.0.attn_q.weight": rng.random((WIDTH, WIDTH), dtype=np.float32),
        "blk.0.ffn_up.weight": rng.random((FF, WIDTH), dtype=np.float32),  # GGUF shape [WIDTH, FF]
        "blk.0.ffn_down.weight": rng.random((WIDTH, FF), dtype=np.float32),
        "output_norm.weight": np.ones(WIDTH, dtype=np.float32),
    }
    if untied_head:
        tensors["output.weight"] = rng.random((VOCAB, WIDTH), dtype=np.float32)
    return tensors


LAYER_BYTES = 4 * (WIDTH + WIDTH * WIDTH + 2 * WIDTH * FF)  # float32: norm, q, up, down
HEAD_BYTES = 4 * VOCAB * WIDTH
NORM_BYTES = 4 * WIDTH


@pytest.fixture
def no_openblas_tuning(monkeypatch):
    for name in limits.OPENBLAS_TUNING_VARIABLES:
        monkeypatch.delenv(name, raising=False)


def test_model_shape_reads_the_arithmetic_and_the_bytes_decode_reads(tmp_path):
    tied = limits.model_shape(write_valid_gguf(tmp_path / "tied.gguf", tensors=_tensors(untied_head=False)))
    assert tied == {"body_params": WIDTH * WIDTH + 2 * WIDTH * FF, "body_matrix_dim_sum": 2 * WIDTH + 2 * (WIDTH + FF),
                    "n_layer": 1, "n_embd": WIDTH, "n_ff": FF, "n_vocab": VOCAB,
                    # a tied head reads the whole embedding table for every token
                    "decode_weight_bytes": LAYER_BYTES + NORM_BYTES + HEAD_BYTES}
    untied = limits.model_shape(write_valid_gguf(tmp_path / "untied.gguf", tensors=_tensors(untied_head=True)))
    # an untied model reads its output matrix, and only one row of the embedding table
    assert untied["decode_weight_bytes"] == LAYER_BYTES + NORM_BYTES + HEAD_BYTES
    assert untied["body_params"] == tied["body_params"]


def test_fractions_compute_the_share_of_each_limit(tmp_path):
    shape = limits.model_shape(write_valid_gguf(tmp_path / "m.gguf", tensors=_tensors(untied_head=False)))
    body = WIDTH * WIDTH + 2 * WIDTH * FF

    # 100 tokens/s each reading the weights once, against 1 GB/s
    assert limits.decode_bandwidth_fraction(100, shape["decode_weight_bytes"], 1.0) == pytest.approx(
        100 * (LAYER_BYTES + NORM_BYTES + HEAD_BYTES) / 1e9)

    per_text = limits.gflop_per_text(shape, tokens=10, context=4, head=True)
    assert per_text == pytest.approx((10 * (2 * body + 4 * 1 * WIDTH * 4) + 2 * VOCAB * WIDTH) / 1e9)
    assert limits.gflop_per_text(shape, tokens=10, context=4, head=False) == pytest.approx(
        10 * (2 * body + 4 * WIDTH * 4) / 1e9)
    assert limits.compute_fraction(items_per_s=5, gflop_per_item=2.0, peak_gflops=100.0) == pytest.approx(0.1)

    # a batch: prefix of 20 once, 3 items of 4 input + 6 generated tokens after it
    expected = (20 * (2 * body + 4 * WIDTH * 10)  # the prefix, attending over half of itself
                + 30 * (2 * body + 4 * WIDTH * (20 + 10 / 2))  # each item's tokens: prefix + half their own
                + 18 * 2 * VOCAB * WIDTH) / 1e9  # the head for every generated token
    assert limits.batch_gflop(shape, prefix_tokens=20, item_tokens=12, generated_tokens=18, items=3) == pytest.approx(
        expected)

    assert limits.model_gemm_shapes(shape, 16) == [(16, WIDTH, WIDTH), (16, WIDTH, FF), (16, FF, WIDTH)]


def test_machine_measurement_returns_positive_limits_in_seconds(no_openblas_tuning):
    started = time.perf_counter()
    measured = limits.measure_machine(SMALL, gemm_seconds=0.2)
    elapsed = time.perf_counter() - started

    assert measured.gemm is not None and measured.gemm.gflops > 0
    assert set(measured.gemm.by_shape) == {"64x128x256", f"{limits.SQUARE}x{limits.SQUARE}x{limits.SQUARE}"}
    assert measured.gemm.gflops == max(measured.gemm.by_shape.values())
    assert not measured.gemm.child_process
    # all cores were asked for, and the BLAS ran with them
    assert measured.gemm.threads == physical_cores()
    assert measured.gemm.blas.get("threads") == physical_cores()
    assert measured.bandwidth_gb_per_s is not None and measured.bandwidth_gb_per_s > 0
    record = measured.record()
    assert record["gemm_peak_gflops"] > 0 and record["bandwidth_gb_per_s"] > 0
    assert record["bandwidth_threads"] == physical_cores() and "load_average_1m" in record
    assert "GFLOP/s" in measured.describe() and "GB/s" in measured.describe()
    assert elapsed < 60  # a few seconds even on a busy machine: a bound on the method, not a speed target


def test_openblas_tuning_variables_are_unset_for_the_gemm_measurement_only(monkeypatch):
    monkeypatch.setenv("OPENBLAS_CORETYPE", "Nehalem")
    monkeypatch.setenv("OPENBLAS_L2_SIZE", "262144")

    peak = limits.measure_gemm_peak(SMALL, seconds=0.1, threads=1)

    assert peak.child_process
    assert peak.environment_seen == {"OPENBLAS_CORETYPE": None, "OPENBLAS_L2_SIZE": None}
    assert peak.gflops > 0 and peak.blas.get("threads") == 1
    # the benchmark's own environment keeps them
    assert os.environ["OPENBLAS_CORETYPE"] == "Nehalem" and os.environ["OPENBLAS_L2_SIZE"] == "262144"


def test_without_tuning_variables_the_peak_is_measured_in_this_process(no_openblas_tuning):
    peak = limits.measure_gemm_peak(SMALL, seconds=0.05, threads=1)
    assert not peak.child_process
    assert peak.environment_seen == {"OPENBLAS_CORETYPE": None, "OPENBLAS_L2_SIZE": None}
    assert peak.blas.get("threads") == 1
