"""Fit prediction (issue 20): the decode speed assistant.models.fit predicts for each default
model against the rate llama-cpp-python reaches here: greedy, 128 tokens after a warm-up, the
engine's thread count, batch size and flash-attention setting. Target: the prediction within
+-30 % of the measured rate for each default model.

Development and scored parts, fixed before the first run: fit.DECODE_EFFICIENCY is calibrated
on Gemma 3 270M only (``--calibrate`` measures it alone and prints the factor that would have
made its prediction exact); SmolLM2 135M is scored with the factor fixed in code. The baseline,
side by side: the same prediction with no efficiency factor (the bare bandwidth bound).

The bandwidth is measured afresh in the run (fit.measure_bandwidth), not read from a data
folder's cache. Prints a table and the 1-minute load average, then one JSON line, also written
to benchmarks/results/model_fit.json (model_fit_calibration.json with --calibrate).

    python benchmarks/model_fit.py [--calibrate] [--tokens 128] [--runs 3]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from engine import privacy  # noqa: E402

privacy.install()

from assistant.config import default_paths  # noqa: E402
from assistant.models import fit  # noqa: E402
from benchmarks import machine_limits  # noqa: E402
from benchmarks.record import results_line, write_results  # noqa: E402
from engine import model_pack  # noqa: E402
from engine.settings import EngineSettings  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results" / "model_fit.json"
CALIBRATION = ROOT / "benchmarks" / "results" / "model_fit_calibration.json"
DEVELOPMENT = model_pack.GEMMA3.id  # the factor is calibrated on this model only
TARGETS = {"tokens_per_s_ratio_min": 0.7, "tokens_per_s_ratio_max": 1.3}
PROMPT = "The lighthouse keeper climbed the stairs every evening. On the first night of winter,"
WARM_UP_TOKENS = 16


def model_path(model: model_pack.PackModel, scratch: Path) -> Path:
    """The model's GGUF: SmolLM2 inside its package; Gemma's parts joined (the app's joined copy
    when it has one, else once into ``scratch``)."""
    if not model.parts:
        path = model_pack.locate(model, Path("/nonexistent"))
    else:
        path = model_pack.locate(model, default_paths().models_dir) or model_pack.join_parts(model, scratch)
    if path is None:
        raise SystemExit(f"{model.display_name} is not installed: `make test` installs the default pack.")
    return path


def decode_rate(llm, prompt_tokens: list[int], tokens: int) -> float:
    """Tokens/s from the first generated token to the last, greedy (ties broken the same each run)."""
    stamps = []
    for _token in llm.generate(prompt_tokens, top_k=1, temp=0.0, repeat_penalty=1.0, reset=True):
        stamps.append(time.perf_counter())
        if len(stamps) >= tokens:
            break
    return (len(stamps) - 1) / (stamps[-1] - stamps[0])


def measure(path: Path, tokens: int, runs: int) -> tuple[float, int]:
    """The median decode rate of ``runs`` greedy generations after a warm-up, and the prompt's length."""
    import llama_cpp

    settings = EngineSettings()
    llm = llama_cpp.Llama(model_path=str(path), n_ctx=1024, n_batch=settings.n_batch, n_ubatch=settings.n_batch,
                          n_threads=settings.n_threads, n_threads_batch=settings.n_threads_batch,
                          flash_attn=settings.flash_attn, use_mmap=settings.use_mmap, verbose=False)
    try:
        prompt = llm.tokenize(PROMPT.encode("utf-8"), add_bos=True)
        decode_rate(llm, prompt, WARM_UP_TOKENS)  # pages the weights in, sizes the buffers
        return statistics.median(decode_rate(llm, prompt, tokens) for _ in range(runs)), len(prompt)
    finally:
        llm.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calibrate", action="store_true",
                        help=f"measure the development model ({DEVELOPMENT}) only and print the factor it implies")
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    models = [m for m in model_pack.PACK if m.kind == "gguf" and (not args.calibrate or m.id == DEVELOPMENT)]

    load_before = os.getloadavg()[0]
    started = time.perf_counter()
    bandwidth = fit.measure_bandwidth()
    bandwidth_s = time.perf_counter() - started
    rows, figures = [], {"bandwidth_gb_per_s": round(bandwidth / 1e9, 2), "bandwidth_measure_s": round(bandwidth_s, 2),
                         "decode_efficiency": fit.DECODE_EFFICIENCY, "threads": EngineSettings().n_threads,
                         "tokens": args.tokens, "runs": args.runs}
    with tempfile.TemporaryDirectory(prefix="model-fit-") as scratch:
        for model in models:
            path = model_path(model, Path(scratch))
            shape = fit.read_shape(path)
            measured, prompt_length = measure(path, args.tokens, args.runs)
            # Predicted where the timed tokens are on average: after the prompt and half the reply.
            context = prompt_length + args.tokens // 2
            predicted = fit.expected_tokens_per_s(shape, bandwidth, context_tokens=context)
            bound = predicted / fit.DECODE_EFFICIENCY
            key = model.id.replace("-", "_")
            part = "development" if model.id == DEVELOPMENT else "scored"
            # The share of the bandwidth the measured decode streams, counting the weights it reads
            # (benchmarks/machine_limits.py): the fit's efficiency factor, seen from the other side.
            weight_bytes = machine_limits.model_shape(path)["decode_weight_bytes"]
            share = machine_limits.decode_bandwidth_fraction(measured, weight_bytes, bandwidth / 1e9)
            rows.append((model.display_name, part, shape.file_bytes, predicted, measured, bound, share))
            figures.update({f"{key}_predicted_tokens_per_s": round(predicted, 1),
                            f"{key}_measured_tokens_per_s": round(measured, 1),
                            f"{key}_tokens_per_s_ratio": round(predicted / measured, 3),
                            f"{key}_bandwidth_bound_tokens_per_s_ratio": round(bound / measured, 3),
                            f"{key}_decode_weight_mb": round(weight_bytes / 1e6, 1),
                            f"{key}_decode_fraction_of_bandwidth": round(share, 3)})
    load_after = os.getloadavg()[0]

    print(f"memory bandwidth {bandwidth / 1e9:.1f} GB/s ({figures['threads']} threads, measured in {bandwidth_s:.2f} s); "
          f"decode efficiency {fit.DECODE_EFFICIENCY} (calibrated on {DEVELOPMENT})")
    print(f"{'model':34}{'part':>13}{'MiB':>8}{'predicted':>11}{'measured':>10}{'ratio':>8}{'bound ratio':>13}"
          f"{'of bandwidth':>14}  within 30 %")
    within = []
    for name, part, size, predicted, measured, bound, share in rows:
        ratio = predicted / measured
        ok = TARGETS["tokens_per_s_ratio_min"] <= ratio <= TARGETS["tokens_per_s_ratio_max"]
        within.append(ok)
        print(f"{name:34}{part:>13}{size / 2**20:>8.1f}{predicted:>11.1f}{measured:>10.1f}{ratio:>8.2f}"
              f"{bound / measured:>13.2f}{share:>14.1%}  {'yes' if ok else 'NO'}")
    print(f"load average (1 min): {load_before:.2f} before, {load_after:.2f} after")
    if args.calibrate:
        name, _part, _size, predicted, measured, _bound, _share = rows[0]
        implied = fit.DECODE_EFFICIENCY * measured / predicted
        figures["implied_decode_efficiency"] = round(implied, 3)
        print(f"{name}: the efficiency that makes its prediction exact is {implied:.3f} "
              f"(fit.DECODE_EFFICIENCY is {fit.DECODE_EFFICIENCY})")
    figures["load_average_1m_before"] = round(load_before, 2)
    line = results_line("model_fit", figures, TARGETS, all(within),
                        part="development" if args.calibrate else "all")
    print(json.dumps(line))
    write_results(line, CALIBRATION if args.calibrate else RESULTS)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
