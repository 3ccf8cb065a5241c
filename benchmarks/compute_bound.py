"""How fast could this machine go at best? A compute ceiling measured in the same run.

Used by `benchmarks/sentiment_quality.py` and `benchmarks/retrieval.py` (runs in the
benchmark's own process, never in the app): a throughput target is only meaningful next
to the arithmetic it needs. The ceiling is

    items/s <= (dense float32 matrix-multiply rate of this machine, now) / (FLOPs per item)

The rate is numpy's (OpenBLAS, every core) on 1024 x 1024 float32 products, measured
while the benchmark runs, so a busy machine lowers the ceiling as much as the figure.

FLOPs per token of a transformer are 2 x the parameters of its layers' weight matrices
(one multiply-add each), read from the GGUF file, plus attention (2 x 2 x layers x width x
context: scores and weighted sum); a scored text also pays the output head once (2 x
vocabulary x width).
"""

from __future__ import annotations

import time

import numpy as np


def gemm_gflops(seconds: float = 1.5, size: int = 1024) -> float:
    """float32 matrix-multiply rate of this machine now, in GFLOP/s (best of short rounds)."""
    rng = np.random.default_rng(0)
    a = rng.random((size, size), dtype=np.float32)
    b = rng.random((size, size), dtype=np.float32)
    a @ b  # warm up the threads
    best = 0.0
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        started = time.perf_counter()
        for _ in range(4):
            a @ b
        elapsed = time.perf_counter() - started
        best = max(best, 4 * 2 * size**3 / elapsed / 1e9)
    return best


def model_shape(path: str) -> dict:
    """Layer-matrix parameters, layers, width and output-head size of a GGUF model."""
    import gguf

    reader = gguf.GGUFReader(path)
    body = 0
    n_embd = 0
    vocab = 0
    layers: set[str] = set()
    for tensor in reader.tensors:
        shape = [int(x) for x in tensor.shape]
        if tensor.name.startswith("blk.") and len(shape) == 2 and min(shape) > 1:
            body += shape[0] * shape[1]
            layers.add(tensor.name.split(".")[1])
        if tensor.name == "token_embd.weight":
            n_embd, vocab = shape[0], shape[1]
    return {"body_params": body, "n_layer": len(layers), "n_embd": n_embd, "n_vocab": vocab}


def gflop_per_text(shape: dict, tokens: float, context: float, head: bool) -> float:
    """GFLOPs to read ``tokens`` tokens attending over ``context`` cells on average, plus
    the output head once if ``head`` (a scored text), for a model of ``shape``."""
    per_token = 2 * shape["body_params"] + 4 * shape["n_layer"] * shape["n_embd"] * context
    total = tokens * per_token + (2 * shape["n_vocab"] * shape["n_embd"] if head else 0)
    return total / 1e9
