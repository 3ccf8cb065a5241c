"""How fast could this machine go at best? Its limits, measured in the same run as a benchmark's
figure, and the fraction of them the figure reaches.

Runs in the benchmark's own process (never in the app); the matrix-multiply peak runs in a child
process of it where OpenBLAS's tuning variables are set (see :func:`measure_gemm_peak`).
A speed figure only means something next to the limit of the work it does:

* decode (one token at a time) reads every weight once per token with little arithmetic per
  byte, so its limit is memory bandwidth: fraction = tokens/s x bytes of weights read per
  token (:func:`model_shape`'s ``decode_weight_bytes``) / bandwidth;
* prompt processing, embedding, classification and batched generation multiply many tokens
  by each weight matrix, so their limit is the dense matrix-multiply rate: fraction =
  items/s x GFLOP per item (:func:`gflop_per_text`) / the GEMM peak.

GEMM peak: numpy's BLAS (OpenBLAS), float32, one thread per physical core (the cores llama.cpp
uses), on matrices of the model's shapes (a batch of tokens times each layer's weight matrices)
and on a large square, best of short rounds; the peak is the best shape's rate. A busy machine
lowers the peak as much as the figure, so both come from the same run.

Why an earlier ceiling read ~38-63 GFLOP/s where numpy reaches far more on these cores: the
former ``compute_bound.gemm_gflops`` timed 1024 x 1024 squares in the benchmark's process with
whatever OpenBLAS had chosen at import. Probed on the 2-core development machine, quiet, with
that same code: 1024 squares are not too small (2048 squares and the models' shapes give the
same rate within ~5 %); one thread gives half the two-thread rate; and OPENBLAS_CORETYPE forces
the kernel OpenBLAS picks at import: Nehalem's (SSE) gives about 0.3x the Haswell (AVX2/FMA)
kernel's rate, Prescott's or Core2's about 0.2x, Sandybridge's (AVX, no FMA) about 0.7x. So a
forced pre-AVX2 kernel or a machine busy with other work explains the low figures, not the
matrix size. The peak is therefore measured with all cores requested explicitly (threadpoolctl),
in a child process without OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE where they are set (OpenBLAS
reads them once, at import), and reports the kernel and thread count it ran with.

Memory bandwidth: :func:`assistant.models.fit.measure_bandwidth`, the measurement the app's
"runs well" labels use (one reading thread per core, as llama.cpp decodes, over a buffer four
times a large L3 cache), so a benchmark and the label agree on the machine's limit.

FLOPs per token of a transformer are 2 x the parameters of its layers' weight matrices (one
multiply-add each), read from the GGUF file, plus attention (2 x 2 x layers x width x context:
scores and weighted sum); a scored or generated token also pays the output head (2 x vocabulary
x width).

    python benchmarks/machine_limits.py [--model PATH.gguf]   # measure and print the limits
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

#: OpenBLAS tuning variables read once, when the library loads: where set, the GEMM peak is
#: measured in a child process without them.
OPENBLAS_TUNING_VARIABLES = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")
#: The large square measured beside the model's shapes.
SQUARE = 2048
#: A round repeats a product until it takes at least this long, so the timer's resolution and
#: the threads' wake-up are a small part of it.
_ROUND_SECONDS = 0.01
_CHILD_TIMEOUT_S = 120


# ----- the model's arithmetic and weights -----------------------------------------------
def model_shape(path: str | os.PathLike) -> dict:
    """Layer-matrix parameters, layers, width, feed-forward width, output-head size and the bytes
    decode reads per token of a GGUF model (one pass of gguf's reader; seconds on a large vocabulary).

    ``body_matrix_dim_sum``: the sum of rows plus columns of the layers' matrices (a rank-r
    adapter on every one of them has r times this many parameters).

    ``decode_weight_bytes``: every tensor of the layers, the final norm and the output head, as
    stored (quantized); a tied head reads the whole token-embedding table, an untied model reads
    one row of it per token, which is left out."""
    import gguf

    reader = gguf.GGUFReader(str(path))
    body = n_embd = n_ff = vocab = dim_sum = 0
    layers: set[str] = set()
    layer_bytes = head_bytes = embedding_bytes = 0
    has_output = False
    for tensor in reader.tensors:
        shape = [int(x) for x in tensor.shape]
        name = tensor.name
        if name.startswith("blk."):
            layer_bytes += int(tensor.n_bytes)
            if len(shape) == 2 and min(shape) > 1:
                body += shape[0] * shape[1]
                dim_sum += shape[0] + shape[1]
                layers.add(name.split(".")[1])
            if name.endswith(".ffn_up.weight") and len(shape) == 2:
                n_ff = max(n_ff, shape[1])
        elif name in ("output.weight", "output_norm.weight", "output_norm.bias"):
            head_bytes += int(tensor.n_bytes)
            has_output = has_output or name == "output.weight"
        elif name == "token_embd.weight":
            n_embd, vocab = shape[0], shape[1]
            embedding_bytes = int(tensor.n_bytes)
    return {"body_params": body, "body_matrix_dim_sum": dim_sum, "n_layer": len(layers), "n_embd": n_embd,
            "n_ff": n_ff, "n_vocab": vocab,
            "decode_weight_bytes": layer_bytes + head_bytes + (0 if has_output else embedding_bytes)}


def gflop_per_text(shape: dict, tokens: float, context: float, head: bool) -> float:
    """GFLOPs to read ``tokens`` tokens attending over ``context`` cells on average, plus
    the output head once if ``head`` (a scored text), for a model of ``shape``."""
    per_token = 2 * shape["body_params"] + 4 * shape["n_layer"] * shape["n_embd"] * context
    total = tokens * per_token + (head_gflop(shape) * 1e9 if head else 0)
    return total / 1e9


def head_gflop(shape: dict) -> float:
    """GFLOPs of the output head for one token (the logits over the vocabulary)."""
    return 2 * shape["n_vocab"] * shape["n_embd"] / 1e9


def batch_gflop(shape: dict, prefix_tokens: float, item_tokens: float, generated_tokens: float,
                items: int) -> float:
    """GFLOPs of one batch of ``items`` continuations after a shared prefix: the prefix once
    (``prefix_tokens`` evaluated), each item's input and generated tokens attending over the prefix
    and half their own length on average, and the output head for every generated token."""
    own = (item_tokens + generated_tokens) / max(1, items)
    return (gflop_per_text(shape, prefix_tokens, prefix_tokens / 2, head=False)
            + gflop_per_text(shape, item_tokens + generated_tokens, prefix_tokens + own / 2, head=False)
            + generated_tokens * head_gflop(shape))


def model_gemm_shapes(shape: dict, tokens: int) -> list[tuple[int, int, int]]:
    """(m, k, n) products a batch of ``tokens`` tokens makes with a layer's weights: the
    attention projection (width x width), the feed-forward up (width x ff) and down (ff x width)."""
    width, ff = int(shape["n_embd"]), int(shape.get("n_ff") or 4 * shape["n_embd"])
    return [(tokens, width, width), (tokens, width, ff), (tokens, ff, width)]


# ----- fractions of the limits ------------------------------------------------------------
def decode_bandwidth_fraction(tokens_per_s: float, weight_bytes: float, bandwidth_gb_per_s: float) -> float:
    """The share of the memory bandwidth a decode rate streams: tokens/s x bytes read a token / bandwidth."""
    return tokens_per_s * weight_bytes / (bandwidth_gb_per_s * 1e9)


def compute_fraction(items_per_s: float, gflop_per_item: float, peak_gflops: float) -> float:
    """The share of the GEMM peak a throughput computes: items/s x GFLOP an item / peak GFLOP/s."""
    return items_per_s * gflop_per_item / peak_gflops


# ----- measurements -------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class GemmPeak:
    """A matrix-multiply peak and how it was measured."""

    gflops: float  # the best shape's rate
    by_shape: dict  # "MxKxN" -> GFLOP/s
    threads: int  # threads requested from the BLAS
    blas: dict  # what threadpoolctl saw while measuring: library, version, kernel, threads
    child_process: bool  # measured in a child process without OPENBLAS_TUNING_VARIABLES
    environment_seen: dict  # the tuning variables as the measuring process saw them (None: unset)


def _blas_info() -> dict:
    try:
        from threadpoolctl import threadpool_info
    except ImportError:  # the dev dependencies are not installed: say so rather than fail
        return {"library": "unknown (threadpoolctl missing)"}
    for pool in threadpool_info():
        if pool.get("user_api") == "blas":
            return {"library": pool.get("internal_api"), "version": pool.get("version"),
                    "kernel": pool.get("architecture"), "threads": pool.get("num_threads")}
    return {"library": "none found"}


def _rate(m: int, k: int, n: int, seconds: float) -> float:
    """Best GFLOP/s of float32 (m x k) @ (k x n) over rounds lasting ``seconds`` in all."""
    import numpy as np

    rng = np.random.default_rng(0)
    a = rng.random((m, k), dtype=np.float32)
    b = rng.random((k, n), dtype=np.float32)
    out = np.empty((m, n), dtype=np.float32)
    started = time.perf_counter()
    np.matmul(a, b, out=out)  # warm-up: the BLAS wakes its threads, pages are touched
    repeats = max(1, math.ceil(_ROUND_SECONDS / max(time.perf_counter() - started, 1e-6)))
    best = 0.0
    deadline = time.perf_counter() + seconds
    while True:
        started = time.perf_counter()
        for _ in range(repeats):
            np.matmul(a, b, out=out)
        elapsed = time.perf_counter() - started
        best = max(best, repeats * 2.0 * m * k * n / elapsed / 1e9)
        if time.perf_counter() >= deadline:
            return best


def _measure_here(shapes: list[tuple[int, int, int]], seconds: float, threads: int) -> dict:
    """The GEMM rates measured in this process (the benchmark's, or the clean child's)."""
    from threadpoolctl import threadpool_limits

    importlib.import_module("numpy")  # loads the BLAS first: threadpoolctl sees and limits loaded libraries only

    each = seconds / max(1, len(shapes))
    with threadpool_limits(limits=threads, user_api="blas"):
        blas = _blas_info()
        by_shape = {f"{m}x{k}x{n}": round(_rate(m, k, n, each), 1) for m, k, n in shapes}
    return {"by_shape": by_shape, "blas": blas,
            "environment_seen": {name: os.environ.get(name) for name in OPENBLAS_TUNING_VARIABLES}}


def measure_gemm_peak(shapes: list[tuple[int, int, int]] | None = None, seconds: float = 1.5,
                      threads: int | None = None) -> GemmPeak:
    """numpy's float32 matrix-multiply peak on ``threads`` threads (one per physical core by
    default) over ``shapes`` (m, k, n) and a :data:`SQUARE` square, ``seconds`` in all.

    In this process, unless OPENBLAS_CORETYPE or OPENBLAS_L2_SIZE is set: then in a child
    process (this file, ``--gemm-child``) whose environment lacks them, because OpenBLAS read
    them when numpy loaded here and cannot be re-tuned afterwards."""
    from engine.settings import physical_cores

    threads = int(threads or physical_cores())
    todo = [tuple(int(x) for x in s) for s in (shapes or [])]
    if (SQUARE, SQUARE, SQUARE) not in todo:
        todo.append((SQUARE, SQUARE, SQUARE))
    tuned = [name for name in OPENBLAS_TUNING_VARIABLES if name in os.environ]
    if tuned:
        env = {k: v for k, v in os.environ.items() if k not in OPENBLAS_TUNING_VARIABLES}
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p)
        proc = subprocess.run([sys.executable, "-m", "benchmarks.machine_limits", "--gemm-child",
                               json.dumps({"shapes": todo, "seconds": seconds, "threads": threads})],
                              cwd=ROOT, env=env, capture_output=True, text=True, timeout=_CHILD_TIMEOUT_S)
        if proc.returncode != 0:
            raise RuntimeError(f"the GEMM measurement's child process failed: {proc.stderr[-2000:]}")
        found = json.loads(proc.stdout.strip().splitlines()[-1])
    else:
        found = _measure_here(todo, seconds, threads)
    return GemmPeak(max(found["by_shape"].values()), found["by_shape"], threads, found["blas"], bool(tuned),
                    found["environment_seen"])


def gemm_peak_gflops(shapes: list[tuple[int, int, int]] | None = None, seconds: float = 1.5) -> float:
    """:func:`measure_gemm_peak`'s rate alone, in GFLOP/s."""
    return measure_gemm_peak(shapes, seconds).gflops


def memory_bandwidth_gbs(threads: int | None = None) -> float:
    """Memory read bandwidth in GB/s with ``threads`` reading threads (one per physical core by
    default): :func:`assistant.models.fit.measure_bandwidth`, under a second. This process."""
    from assistant.models import fit

    return fit.measure_bandwidth(threads) / 1e9


@dataclasses.dataclass(frozen=True)
class MachineLimits:
    """The limits measured once in a benchmark's run, with the load they were measured under."""

    gemm: GemmPeak | None
    bandwidth_gb_per_s: float | None
    bandwidth_threads: int | None
    load_average_1m: float
    measure_s: float

    @property
    def gemm_gflops(self) -> float | None:
        return self.gemm.gflops if self.gemm else None

    def record(self) -> dict:
        """The measurement as a results line keeps it (``report(..., machine=limits.record())``)."""
        line: dict = {"load_average_1m": round(self.load_average_1m, 2), "measure_s": round(self.measure_s, 2)}
        if self.gemm:
            line.update({"gemm_peak_gflops": round(self.gemm.gflops, 1), "gemm_gflops_by_shape": self.gemm.by_shape,
                         "gemm_threads": self.gemm.threads, "gemm_blas": self.gemm.blas,
                         "gemm_in_child_without_openblas_tuning": self.gemm.child_process})
        if self.bandwidth_gb_per_s is not None:
            line.update({"bandwidth_gb_per_s": round(self.bandwidth_gb_per_s, 2),
                         "bandwidth_threads": self.bandwidth_threads})
        return line

    def describe(self) -> str:
        """One line for a benchmark's printout."""
        parts = []
        if self.gemm:
            blas = self.gemm.blas
            parts.append(f"GEMM peak {self.gemm.gflops:.1f} GFLOP/s ({blas.get('library')} {blas.get('kernel')} kernel, "
                         f"{blas.get('threads')} threads{', clean child process' if self.gemm.child_process else ''})")
        if self.bandwidth_gb_per_s is not None:
            parts.append(f"memory bandwidth {self.bandwidth_gb_per_s:.1f} GB/s ({self.bandwidth_threads} threads)")
        return f"machine limits: {'; '.join(parts)}; load average {self.load_average_1m:.2f} (1 min)"


def measure_machine(shapes: list[tuple[int, int, int]] | None = None, *, gemm: bool = True, bandwidth: bool = True,
                    gemm_seconds: float = 1.5, threads: int | None = None) -> MachineLimits:
    """The GEMM peak (over ``shapes`` and a square) and/or the memory bandwidth, now, on
    ``threads`` threads (one per physical core by default: pass the benchmark's own thread count
    where it limits it). Run it while no other part of the benchmark is working (the engine idle
    between requests)."""
    from engine.settings import physical_cores

    started = time.perf_counter()
    load = os.getloadavg()[0]
    threads = int(threads or physical_cores())
    peak = measure_gemm_peak(shapes, gemm_seconds, threads) if gemm else None
    bytes_per_s = memory_bandwidth_gbs(threads) if bandwidth else None
    return MachineLimits(peak, bytes_per_s, threads if bandwidth else None, load, time.perf_counter() - started)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="a GGUF file: also measure on its matrix shapes (512-token batch)")
    parser.add_argument("--seconds", type=float, default=1.5)
    parser.add_argument("--gemm-child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.gemm_child:
        request = json.loads(args.gemm_child)
        print(json.dumps(_measure_here([tuple(s) for s in request["shapes"]], float(request["seconds"]),
                                       int(request["threads"]))))
        return 0
    shapes = model_gemm_shapes(model_shape(args.model), 512) if args.model else None
    limits = measure_machine(shapes, gemm_seconds=args.seconds)
    print(limits.describe())
    print(json.dumps(limits.record()))
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    raise SystemExit(main())
