"""The quantization lab: one model in several llama.cpp types, measured side by side.

Runs in the training process (``python -m training.run`` with kind "quantize_lab", see
:mod:`training.quantize.job`), a benchmark or a test, on the calling thread. Its settings are
:class:`training.quantize.config.LabConfig`. Torch-free: every file is made by llama.cpp's
quantizer (:mod:`training.quantize.worker`) and measured through llama.cpp, so the table
describes exactly what the app would run.

What the table holds, per type: file size, decode tokens/s, perplexity on held-out text,
next-token agreement with the F16 reference (the share of positions where both pick the
same most likely token) and the perplexity ratio to the reference.

The reference is an F16 file. Where the model arrives as F16/BF16/F32 it is the model
itself (converted to F16). Where it arrives already quantized (the default pack ships
SmolLM2 as Q4_1 and Gemma 3 as Q4_K_M) no original weights exist on the machine: the
reference is the quantized model dequantized to F16, which is exactly as good as the
shipped file, and the other types are requantized from it. The result records this
(``reference_kind`` and ``notes``), because a Q8_0 made that way carries the source's
4-bit error and is compared against a reference with the same error: it measures what
requantization costs, not what quantizing the original weights would.
"""

from __future__ import annotations

import csv
import io
import os
import platform
import shutil
import statistics
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from engine.atomic import atomic_write_text, write_json_atomic
from training.evaluate import EvaluationError, TokenStats, gguf_generation_speed, token_stats, tokenize_windows
from training.quantize.config import LabConfig
from training.quantize.worker import KNOWN_TYPES, QuantizeError, quantize_gguf, source_type

__all__ = ["LabCancelled", "LabConfig", "LabRow", "check_inputs", "format_table", "run_lab", "table_csv"]

#: A progress callback: (stage text, done, total). The job forwards it to the reporter.
Progress = Callable[[str, int, int], None]


class LabCancelled(Exception):
    """The caller asked the lab to stop; finished files and measurements are kept for a resume."""


@dataclass
class LabRow:
    """One line of the table."""

    label: str  # "F16", "Q8_0", ..., or "source (Q4_1)"
    qtype: str  # the weight type holding most parameters
    path: str
    file_bytes: int
    tokens_per_s: float | None = None
    tokens_per_s_runs: list[float] = field(default_factory=list)
    perplexity: float | None = None
    perplexity_ratio: float | None = None  # to the F16 reference
    agreement: float | None = None  # next-token agreement with the F16 reference
    quantize_s: float | None = None


CSV_COLUMNS = ("label", "qtype", "file_mb", "tokens_per_s", "perplexity", "perplexity_ratio", "agreement", "path")


def table_csv(rows: list[LabRow]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for r in rows:
        writer.writerow([
            r.label, r.qtype, f"{r.file_bytes / 1e6:.2f}",
            "" if r.tokens_per_s is None else f"{r.tokens_per_s:.2f}",
            "" if r.perplexity is None else f"{r.perplexity:.4f}",
            "" if r.perplexity_ratio is None else f"{r.perplexity_ratio:.4f}",
            "" if r.agreement is None else f"{r.agreement:.4f}",
            r.path,
        ])
    return out.getvalue()


def format_table(rows: list[LabRow]) -> str:
    """A plain-text table for terminals and benchmark output."""
    lines = [f"{'type':<16}{'MB':>9}{'tok/s':>9}{'ppl':>10}{'ppl/F16':>9}{'agree':>8}"]
    for r in rows:
        def fmt(value, spec):
            return format(value, spec) if value is not None else "-"
        lines.append(f"{r.label:<16}{r.file_bytes / 1e6:>9.1f}{fmt(r.tokens_per_s, '>9.1f')}"
                     f"{fmt(r.perplexity, '>10.3f')}{fmt(r.perplexity_ratio, '>9.4f')}{fmt(r.agreement, '>8.4f')}")
    return "\n".join(lines)


def check_inputs(model_gguf: Path, texts: list[str], config: LabConfig, output_dir: Path) -> str:
    """Everything that can be refused before any work starts; returns the source's type."""
    unknown = [t for t in config.types if t not in KNOWN_TYPES]
    if unknown:
        raise QuantizeError(f"Unknown quantization type(s) {', '.join(unknown)}; choose from {', '.join(KNOWN_TYPES)}.")
    if "F16" not in config.types:
        raise QuantizeError("The lab compares every type with F16: keep F16 in the list of types.")
    kind = source_type(model_gguf)  # raises QuantizeError for a missing or malformed file
    if not any(t and t.strip() for t in texts):
        raise EvaluationError("The lab needs held-out text to measure perplexity: choose at least one document.")
    if config.ctx < 16 or config.max_eval_tokens < 16:
        raise EvaluationError("The evaluation context and token budget must be at least 16 tokens each.")
    # Each type is at most F16-sized: about 2 bytes per weight; keep 64 MB of slack.
    size = Path(model_gguf).stat().st_size
    bits = {"F32": 32, "F16": 16, "BF16": 16, "Q8_0": 8.5}.get(kind, 4.5)
    need = int(size * 16 / bits) * len(config.types) + (64 << 20)
    output_dir.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(output_dir).free
    if free < need:
        raise QuantizeError(f"The lab needs about {need / 1e9:.1f} GB free in {output_dir} but only "
                            f"{free / 1e9:.1f} GB is free.")
    return kind


def _stop_check(should_stop: Callable[[], bool] | None) -> None:
    if should_stop is not None and should_stop():
        raise LabCancelled()


def run_lab(
    model_gguf: str | os.PathLike[str],
    texts: list[str],
    output_dir: str | os.PathLike[str],
    config: LabConfig | None = None,
    progress: Progress | None = None,
    should_stop: Callable[[], bool] | None = None,
    f16_maker: Callable[[Path], Path] | None = None,
) -> dict:
    """Quantize ``model_gguf`` into every type of ``config`` and measure them on ``texts``.

    Writes ``<stem>.<TYPE>.gguf`` files, ``results.json`` and ``results.csv`` into
    ``output_dir`` and returns the results dict. ``f16_maker(dst)``, when given, writes the
    F16 reference at ``dst`` from the original weights (e.g. an HF folder through
    ``training.export.full_gguf.write_full_gguf``); otherwise it is made by llama.cpp from
    ``model_gguf``. Files already present (from an interrupted run) are re-used: they are
    only ever written atomically, so a present file is complete. ``should_stop`` is polled
    between steps; it raises :class:`LabCancelled`.
    """
    config = config or LabConfig()
    model_gguf, output_dir = Path(model_gguf), Path(output_dir)
    kind = check_inputs(model_gguf, texts, config, output_dir)
    report = progress or (lambda *_: None)
    stem = model_gguf.stem.split(".")[0] or "model"
    # Steps: the F16 reference, each other type, each row's quality pass, the speed runs.
    total = 2 * len(config.types) + (1 if config.include_source and kind != "F16" else 0) + 1
    done = 0
    notes: list[str] = []

    def tick(text: str) -> None:
        nonlocal done
        done += 1
        report(text, done, total)
        _stop_check(should_stop)

    # ----- the F16 reference -------------------------------------------------------------
    reference = output_dir / f"{stem}.F16.gguf"
    started = time.perf_counter()
    if f16_maker is not None:
        reference_kind = "original weights (F16 written from the training framework's model)"
        if not reference.exists():
            f16_maker(reference)
    else:
        if kind in ("F16", "BF16", "F32"):
            reference_kind = f"the model as given ({kind}), converted to F16" if kind != "F16" else "the model as given (F16)"
        else:
            reference_kind = f"dequantized from the {kind} file (no full-precision weights available)"
            notes.append(
                f"The source is already quantized ({kind}); its F16 reference is that model dequantized, and every other "
                f"type was requantized from it. Figures measure requantization of the {kind} weights: each file keeps the "
                f"{kind} rounding error, so they are not what quantizing the original full-precision model would give."
            )
        if not reference.exists():
            quantize_gguf(model_gguf, reference, "F16", threads=config.threads)
    quantize_seconds = {"F16": time.perf_counter() - started}
    tick("F16 reference ready")

    # ----- the other types ---------------------------------------------------------------
    files: dict[str, Path] = {"F16": reference}
    for qtype in config.types:
        if qtype == "F16":
            continue
        target = output_dir / f"{stem}.{qtype}.gguf"
        started = time.perf_counter()
        if not target.exists():
            quantize_gguf(reference, target, qtype, threads=config.threads)
        quantize_seconds[qtype] = time.perf_counter() - started
        files[qtype] = target
        tick(f"{qtype} written")

    rows = [LabRow(label=q, qtype=source_type(p), path=str(p), file_bytes=p.stat().st_size,
                   quantize_s=round(quantize_seconds.get(q, 0.0), 2)) for q, p in files.items()]
    if config.include_source and kind != "F16":
        rows.append(LabRow(label=f"source ({kind})", qtype=kind, path=str(model_gguf), file_bytes=model_gguf.stat().st_size))

    # ----- quality: perplexity and agreement, on the reference's token windows -------------
    windows = tokenize_windows(reference, texts, ctx=config.ctx)
    windows = _limit(windows, config.max_eval_tokens)
    n_scored = sum(len(w) - 1 for w in windows)
    stats: dict[str, TokenStats] = {}
    for row in rows:
        stats[row.label] = token_stats(row.path, windows, ctx=config.ctx, threads=config.threads)
        row.perplexity = round(stats[row.label].perplexity, 6)
        tick(f"{row.label}: perplexity {row.perplexity:.3f}")
    ref = stats["F16"]
    for row in rows:
        row.perplexity_ratio = round(row.perplexity / ref.perplexity, 6)
        row.agreement = round(float(np.mean(stats[row.label].argmax == ref.argmax)), 6)

    # ----- speed, interleaved so background load falls on every type alike -----------------
    for repeat in range(config.speed_repeats):
        for row in rows:
            speed = gguf_generation_speed(row.path, config.speed_prompt, n_tokens=config.speed_tokens,
                                          threads=config.threads)
            row.tokens_per_s_runs.append(round(speed, 2))
            _stop_check(should_stop)
        report(f"speed run {repeat + 1} of {config.speed_repeats}", done, total)
    for row in rows:
        row.tokens_per_s = round(statistics.median(row.tokens_per_s_runs), 2)
    tick("speed measured")

    results = {
        "model": str(model_gguf),
        "model_type": kind,
        "reference": str(reference),
        "reference_kind": reference_kind,
        "notes": notes,
        "eval": {"texts": len([t for t in texts if t.strip()]), "windows": len(windows), "tokens_scored": n_scored,
                 "ctx": config.ctx, "method": "exp(mean NLL of every token after the first of non-overlapping "
                                                 "windows), llama.cpp, logits at every position"},
        "speed": {"method": f"median of {config.speed_repeats} greedy runs of {config.speed_tokens} decode steps "
                            "through llama.cpp (engine settings, flash attention), interleaved across types",
                  "prompt": config.speed_prompt},
        "agreement_method": "share of scored positions where the type's most likely next token equals F16's",
        "config": config.to_dict(),
        "machine": {"platform": platform.platform(), "cpu_count": os.cpu_count()},
        "made_by": "llama.cpp llama_model_quantize via llama-cpp-python (training.quantize.worker.quantize_gguf)",
        "rows": [asdict(r) for r in rows],
        "table": format_table(rows),
    }
    # Results are ordinary files the user may share: readable by all, as models are.
    write_json_atomic(output_dir / "results.json", results, permissions=0o644)
    atomic_write_text(output_dir / "results.csv", table_csv(rows), permissions=0o644)
    return results


def _limit(windows: list[list[int]], max_tokens: int) -> list[list[int]]:
    kept, count = [], 0
    for window in windows:
        if count >= max_tokens:
            break
        room = max_tokens - count + 1
        kept.append(window[:room])
        count += len(kept[-1]) - 1
    return [w for w in kept if len(w) >= 2]
