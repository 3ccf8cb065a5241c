"""Distilled student: a half-depth SmolLM2-135M cut out of the teacher and healed by
distillation on the typing-PEPs corpus, against the teacher, through llama.cpp.

Steps, all in this process, side by side in one run:
  1. teacher = SmolLM2-135M-Instruct from the installed GGUF (dequantized base cache);
  2. data = the typing PEPs packed in blocks, whole documents held out (never trained on);
  3. student = half the teacher's layers, chosen by measured importance (block influence,
     1 - cos(layer input, output), on calibration blocks of the training text), DistilBERT
     initialisation (the kept layers are the teacher's own); the every-other-layer student is
     scored too, as the baseline choice;
  4. distillation (KL at T=2 + LM loss + per-layer hidden cosine, training.distill) for a time
     budget (the machine is 2 shared cores: the budget, not an epoch count, bounds the run);
  5. the fair baseline (issue 23): the teacher taught the same training blocks for the same
     time the distillation had, by the app's own fine-tune (LoRA, the "balanced" preset a
     user's Train run gets, constant rate after warm-up: time, not epochs, bounds both),
     merged into its weights;
  6. teacher, fine-tuned teacher, pruned student before distillation and distilled student
     are written the same way (f16 GGUF, then llama.cpp's Q8_0) and measured: held-out
     perplexity with training.evaluate.gguf_perplexity, generation tokens/s with
     gguf_generation_speed, teacher and student alternating run by run.

    python benchmarks/distill_student.py [--train-seconds 1800] [--budget-minutes 75] [--quick]

The whole run fits --budget-minutes (75 on a quiet 2-core machine): the teacher and both pruned
students are exported and scored first, which measures what a model's export and scoring cost
here; the distillation, and then the teacher's fine-tune, each get at most --train-seconds of
half of what is left after keeping room for the two models' own export and scoring and the
speed runs. --quick is a smoke run of a few minutes (60 s of training each, 4000 held-out
characters, one speed run).

Targets: student tokens/s >= 1.5x the teacher's; student held-out perplexity <= 1.3x the
fine-tuned teacher's (the fair baseline). The ratio to the unadapted teacher is reported beside it.
Prints a table, then one JSON line.
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

from engine import model_pack  # noqa: E402
from benchmarks import machine_limits  # noqa: E402
from benchmarks.record import report  # noqa: E402

DATA = Path(os.environ.get("ASSISTANT_SHARED_DATA", ROOT / ".." / "shared" / "data")).resolve()
SPEED_TARGET, PPL_TARGET = 1.5, 1.3
PROMPT = "Type hints in Python let tools check programs before they run. A generic class"


class _Quiet:
    """Progress events go to stderr so stdout stays the table and the JSON line."""

    stop_requested = False
    defer_stop = False

    def emit(self, event, **fields):
        if event in ("step", "pruned", "start", "checkpoint") or event == "message":
            print(json.dumps({"event": event, **fields}, default=str), file=sys.stderr, flush=True)

    def step(self, step, total_steps, loss, tokens_per_s, eta_s, **extra):
        self.emit("step", step=step, loss=round(loss, 4), tokens_per_s=round(tokens_per_s, 1), **extra)

    def message(self, text):
        self.emit("message", text=text)


class _Deadline(_Quiet):
    """A reporter that asks the trainer to stop once ``seconds`` of training have passed."""

    def __init__(self, seconds: float):
        self.seconds = seconds
        self.started = time.monotonic()

    @property
    def stop_requested(self) -> bool:
        return time.monotonic() - self.started >= self.seconds


def fine_tune_teacher(teacher, tokenizer, data, seconds: float, out_dir: Path):
    """The teacher fine-tuned on ``data``'s training blocks for ``seconds`` by the app's LoRA
    trainer ("balanced" preset, constant rate after warm-up), merged into its weights.
    Returns the merged model and the trainer's figures."""
    from training.lora.config import preset
    from training.lora.trainer import LoraTrainer
    from training.progress import JobCancelled

    config = preset("balanced", epochs=10_000.0, schedule="constant", checkpoint_every=10**9,
                    checkpoint_seconds=10**9)
    reporter = _Deadline(seconds)
    trainer = LoraTrainer(teacher, tokenizer, data, config, out_dir, reporter)
    try:
        trainer.train()
    except JobCancelled:
        pass  # the time is up: the adapter as it stands is the baseline
    figures = {"steps": trainer.step, "tokens": trainer.tokens_seen, "train_seconds": round(trainer.elapsed, 2),
               "tokens_per_s": round(trainer.tokens_seen / max(trainer.elapsed, 1e-9), 2)}
    return trainer.peft_model.merge_and_unload(), figures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train-seconds", type=float, default=1800.0, help="time budget of the distillation, and of the teacher's fine-tune (at most)")
    parser.add_argument("--budget-minutes", type=float, default=75.0,
                        help="wall time of the whole run; the two trainings share what the rest leaves")
    parser.add_argument("--quick", action="store_true", help="smoke run: 60 s of each training, less text to score")
    parser.add_argument("--max-steps", type=int, default=100000, help="cap on distillation steps")
    parser.add_argument("--seq-len", type=int, default=128)
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--lr", type=float, default=2e-4)
    parser.add_argument("--eval-fraction", type=float, default=0.15, help="share of the PEPs held out")
    parser.add_argument("--eval-chars", type=int, default=24000, help="held-out characters scored by llama.cpp")
    parser.add_argument("--calibration-blocks", type=int, default=4)
    parser.add_argument("--speed-runs", type=int, default=3)
    parser.add_argument("--quant", default="Q8_0")
    parser.add_argument("--work", type=Path, default=None)
    args = parser.parse_args()
    if args.quick:
        args.train_seconds, args.eval_chars, args.speed_runs = min(args.train_seconds, 60.0), 4000, 1
        args.seq_len, args.calibration_blocks = 64, 2
    started = time.monotonic()
    deadline = started + args.budget_minutes * 60
    print(f"budget: {args.budget_minutes:.0f} min in all, distillation and fine-tune at most {args.train_seconds:.0f} s each, "
          f"{args.eval_chars} held-out characters scored, {args.speed_runs} speed run(s) per model",
          file=sys.stderr, flush=True)

    import torch

    from assistant.config import default_paths
    from training import datasets as ds
    from training.base_model import load_base
    from training.distill.config import DistillConfig
    from training.distill.trainer import DistillTrainer
    from training.evaluate import gguf_generation_speed, gguf_perplexity
    from training.export.full_gguf import write_full_gguf
    from training.prune.config import PruneConfig
    from training.prune.gguf_export import write_student_gguf
    from training.prune.trainer import build_student, choose_layers, count_params, prune
    from training.quantize import quantize_gguf

    teacher_gguf = model_pack.locate(model_pack.SMOLLM2, Path("/nonexistent"))
    if teacher_gguf is None:
        print("the default model pack (SmolLM2) is missing", file=sys.stderr)
        return 1
    work = args.work or Path(tempfile.mkdtemp(prefix="distill-student-"))
    work.mkdir(parents=True, exist_ok=True)
    reporter = _Quiet()
    teacher, tokenizer = load_base(teacher_gguf, default_paths().data_dir / "training" / "base-cache")
    files = sorted((DATA / "documents" / "typing-peps").glob("*.rst"))
    docs = ds.read_text_files(files)
    data = ds.pack_documents(docs, tokenizer, args.seq_len, eval_fraction=args.eval_fraction, seed=0)
    held_out = "\n\n".join(data.eval_texts)[: args.eval_chars]
    calibration = data.train_ids[: args.calibration_blocks]

    export_seconds: list[float] = []

    def export(model, name, layer_map=None) -> Path:
        t = time.monotonic()
        f16 = work / f"{name}.f16.gguf"
        if layer_map is None:
            write_full_gguf(model, teacher_gguf, f16)
        else:
            write_student_gguf(model, teacher_gguf, f16, layer_map)
        out = quantize_gguf(f16, work / f"{name}.{args.quant}.gguf", args.quant)
        f16.unlink()
        export_seconds.append(time.monotonic() - t)
        return Path(out)

    t0 = time.monotonic()
    student, record = prune(teacher, PruneConfig(keep_ratio=0.5, strategy="importance", metric="cosine",
                                                 iterative=False, calibration_blocks=args.calibration_blocks),
                            calibration, reporter)
    prune_s = time.monotonic() - t0
    eo_map, _ = choose_layers(teacher, PruneConfig(strategy="every_other"), None)
    every_other, eo_record = build_student(teacher, eo_map)
    paths = {"teacher": export(teacher, "teacher"),
             "pruned_every_other": export(every_other, "pruned-every-other", eo_record["layer_map"]),
             "pruned": export(student, "pruned", record["layer_map"])}
    del every_other

    # Scored before the distillation (they do not change): this also measures what scoring a
    # model costs on this machine, so the distillation's share of the budget can be set.
    t0 = time.monotonic()
    ppl = {name: gguf_perplexity(path, [held_out], ctx=512) for name, path in paths.items()}
    ppl_seconds = (time.monotonic() - t0) / len(paths)
    t0 = time.monotonic()
    teacher_speed = gguf_generation_speed(paths["teacher"], PROMPT, n_tokens=64)
    speed_seconds = time.monotonic() - t0
    # Left for after the two trainings: two exports and scorings (the distilled student and the
    # fine-tuned teacher), the speed runs (the student's and the teacher's), with a 1.5x margin
    # for a busier machine; the rest is shared equally by the distillation and the fine-tune.
    reserve = 1.5 * (2 * (max(export_seconds) + ppl_seconds) + speed_seconds * (2 * args.speed_runs - 1)) + 30
    # At least a second: a time budget of 0 would mean no limit at all.
    train_seconds = max(1.0, min(args.train_seconds, (deadline - time.monotonic() - reserve) / 2))
    print(f"distillation budget: {train_seconds:.0f} s ({time.monotonic() - started:.0f} s used, "
          f"{reserve:.0f} s kept for the rest)", file=sys.stderr, flush=True)

    config = DistillConfig(max_steps=args.max_steps, time_budget_s=train_seconds, seq_len=args.seq_len,
                           batch_size=args.batch, learning_rate=args.lr, warmup_steps=3, schedule="constant",
                           eval_blocks=8, checkpoint_every=10**9, checkpoint_seconds=10**9)
    trainer = DistillTrainer(student, teacher, data, config, work / "run", reporter, record["layer_map"])
    stats = trainer.train()
    trainer.close()
    paths["distilled"] = export(trainer.student, "distilled", record["layer_map"])
    (work / "distilled.json").write_text(json.dumps({"teacher": str(teacher_gguf), "prune": record, **stats,
                                                     "settings": config.to_dict(), "data": data.stats},
                                                    indent=2, default=str))

    ppl["distilled"] = gguf_perplexity(paths["distilled"], [held_out], ctx=512)

    # The fair baseline: the teacher taught the same blocks for as long as the distillation ran.
    del trainer, student
    tuned, tune_stats = fine_tune_teacher(teacher, tokenizer, data, stats["train_seconds"], work / "fine-tune")
    paths["teacher_fine_tuned"] = export(tuned, "teacher-fine-tuned")
    del tuned
    ppl["teacher_fine_tuned"] = gguf_perplexity(paths["teacher_fine_tuned"], [held_out], ctx=512)
    speeds: dict[str, list[float]] = {"teacher": [teacher_speed], "distilled": []}
    for run in range(args.speed_runs):
        # Alternating, the teacher's first run already made: student, teacher, student, ...
        for name in (("distilled",) if run == 0 else ("distilled", "teacher")):
            speeds[name].append(gguf_generation_speed(paths[name], PROMPT, n_tokens=64))
    tps = {name: statistics.median(v) for name, v in speeds.items()}
    size = {name: path.stat().st_size for name, path in paths.items()}
    # Decode's bytes of weights read per second against the memory bandwidth measured now
    # (benchmarks/machine_limits.py), for the teacher and the student.
    limits = machine_limits.measure_machine(gemm=False)
    share = {name: machine_limits.decode_bandwidth_fraction(
        tps[name], machine_limits.model_shape(paths[name])["decode_weight_bytes"], limits.bandwidth_gb_per_s)
        for name in tps}

    figures = {
        "tokens_per_s_teacher": round(tps["teacher"], 1),
        "tokens_per_s_student": round(tps["distilled"], 1),
        "tokens_per_s_ratio": round(tps["distilled"] / tps["teacher"], 3),
        "decode_fraction_of_bandwidth_teacher": round(share["teacher"], 3),
        "decode_fraction_of_bandwidth_student": round(share["distilled"], 3),
        "machine_bandwidth_gb_per_s": round(limits.bandwidth_gb_per_s, 2),
        "perplexity_teacher": round(ppl["teacher"], 2),
        "perplexity_pruned_every_other": round(ppl["pruned_every_other"], 2),
        "perplexity_pruned_before_distill": round(ppl["pruned"], 2),
        "perplexity_student": round(ppl["distilled"], 2),
        "perplexity_teacher_fine_tuned": round(ppl["teacher_fine_tuned"], 2),
        "perplexity_ratio_to_fine_tuned_teacher": round(ppl["distilled"] / ppl["teacher_fine_tuned"], 3),
        "perplexity_ratio": round(ppl["distilled"] / ppl["teacher"], 3),
        "perplexity_ratio_before_distill": round(ppl["pruned"] / ppl["teacher"], 3),
        "file_mb_teacher": round(size["teacher"] / 1e6, 1), "file_mb_student": round(size["distilled"] / 1e6, 1),
        "params_teacher": count_params(teacher), "params_student": record["student_params"],
        "layers_kept": record["layer_map"], "distill_steps": stats["steps"], "distill_tokens": stats["tokens"],
        "distill_seconds": stats["train_seconds"], "train_tokens_per_s": stats["tokens_per_s"],
        "fine_tune_steps": tune_stats["steps"], "fine_tune_tokens": tune_stats["tokens"],
        "fine_tune_seconds": tune_stats["train_seconds"], "fine_tune_tokens_per_s": tune_stats["tokens_per_s"],
        "prune_seconds": round(prune_s, 1), "held_out_documents": data.stats.get("eval_documents"),
        "held_out_chars": len(held_out), "quant": args.quant, "total_seconds": round(time.monotonic() - started, 1),
        "budget_seconds": round(args.budget_minutes * 60), "distill_budget_seconds": round(train_seconds, 1),
    }
    targets = {"tokens_per_s_ratio": f">= {SPEED_TARGET}", "perplexity_ratio_to_fine_tuned_teacher": f"<= {PPL_TARGET}"}
    met = (figures["tokens_per_s_ratio"] >= SPEED_TARGET
           and figures["perplexity_ratio_to_fine_tuned_teacher"] <= PPL_TARGET)
    print(f"{'model':28} {'ppl (held out)':>15} {'tokens/s':>9} {'MB':>7} {'of bandwidth':>13}")
    for name in paths:
        print(f"{name:28} {ppl[name]:15.2f} {tps.get(name, float('nan')):9.1f} {size[name] / 1e6:7.1f} "
              + (f"{share[name]:>13.1%}" if name in share else ""))
    print(limits.describe())
    print(f"distillation: {stats['steps']} steps, {stats['tokens']} tokens, {stats['train_seconds']} s "
          f"({stats['tokens_per_s']} tokens/s); layers kept {record['layer_map']}")
    print(f"teacher's fine-tune: {tune_stats['steps']} steps, {tune_stats['tokens']} tokens, "
          f"{tune_stats['train_seconds']} s ({tune_stats['tokens_per_s']} tokens/s)")
    print(f"student perplexity / fine-tuned teacher's {figures['perplexity_ratio_to_fine_tuned_teacher']:.3f}, "
          f"/ unadapted teacher's {figures['perplexity_ratio']:.3f}")
    # A smoke run's figures are kept apart: they are not the benchmark's.
    report("distill_student", figures, targets, met, name="distill_student_quick" if args.quick else None,
           machine=limits.record())
    return 0


if __name__ == "__main__":
    sys.exit(main())
