"""LoRA training throughput: the project's trainer against a plain transformers + peft loop.

Same model (SmolLM2 135M from the installed GGUF, through the dequantized base cache), same
adapter (rank 16, alpha 32, every linear layer), same packed blocks of the typing-PEPs corpus
in the same order (sequence 256, batch 4), fp32 master weights, same optimizer (AdamW 2e-4,
constant rate, gradient clipping 1.0), same seed: so the two loss curves must agree within
noise, and the tokens/s ratio is the figure.

* baseline: ``model(input_ids, labels=input_ids).loss.backward(); opt.step()`` with peft's
  LoraConfig defaults otherwise and torch's defaults (threads, AdamW implementation).
* trainer: ``training.lora.trainer.LoraTrainer`` as a job runs it (fused head + loss,
  no KV cache, threads per physical core, foreach AdamW).

Each method runs in its own child process (so each one's peak memory, ru_maxrss, is its
own), alternating baseline / trainer for ``--rounds`` rounds so that load from other
processes falls on both alike; the first ``--warmup`` steps of each child are not timed.

    python benchmarks/lora_throughput.py [--steps 4] [--warmup 1] [--rounds 1]

Prints a table, then one JSON line.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from engine import privacy  # noqa: E402
from benchmarks import machine_limits  # noqa: E402
from benchmarks.record import report  # noqa: E402

privacy.install()

DATA = Path(os.environ.get("ASSISTANT_SHARED_DATA", ROOT / ".." / "shared" / "data")).resolve()
SEQ, BATCH, RANK, ALPHA, LR = 256, 4, 16, 32, 2e-4
TARGET_RATIO = 1.5
#: Largest per-step loss difference (nats) still "the same curve": the step-to-step change of
#: the loss on this data is ~0.1-0.3 nats; both compute the same fp32 math.
MAX_LOSS_DIFF = 0.05


def cache_root() -> Path:
    from assistant.config import default_paths

    return default_paths().data_dir / "training" / "base-cache"


def packed_blocks(tokenizer):
    from training import datasets as ds

    docs = ds.read_text_files(sorted((DATA / "documents" / "typing-peps").glob("*.rst")))
    return ds.pack_documents(docs, tokenizer, SEQ, eval_fraction=0.0)


def train_gflop_per_token(shape: dict) -> float:
    """Model GFLOPs one trained token costs, frozen base with rank-RANK adapters on every layer
    matrix: the forward pass (layer matrices, attention over half a block on average, the output
    head), the backward pass's gradients with respect to activations (as much again; the frozen
    weights get no gradients), attention's backward (twice its forward) and the adapters' own
    forward, backward and weight gradients (6 x their parameters). Recomputation is not counted."""
    forward = machine_limits.gflop_per_text(shape, 1, SEQ / 2, head=False) + machine_limits.head_gflop(shape)
    attention = 4 * shape["n_layer"] * shape["n_embd"] * (SEQ / 2) / 1e9
    adapters = 6 * RANK * shape["body_matrix_dim_sum"] / 1e9
    return 2 * forward + attention + adapters


def child(method: str, steps: int, warmup: int, root: Path) -> dict:
    import numpy as np
    import torch

    from engine import model_pack
    from training.base_model import load_base

    gguf = model_pack.locate(model_pack.SMOLLM2, Path("/nonexistent"))
    model, tokenizer = load_base(gguf, root)
    data = packed_blocks(tokenizer)
    total = warmup + steps
    times: list[float] = []
    losses: list[float] = []
    if method == "plain":
        from peft import LoraConfig, get_peft_model

        torch.manual_seed(0)
        peft_model = get_peft_model(model, LoraConfig(r=RANK, lora_alpha=ALPHA, target_modules="all-linear",
                                                      task_type="CAUSAL_LM"))
        peft_model.train()
        opt = torch.optim.AdamW([p for p in peft_model.parameters() if p.requires_grad], lr=LR, weight_decay=0.0)
        order = np.random.default_rng(0).permutation(len(data.train_ids))  # the trainer's epoch-0 order
        for step in range(total):
            started = time.perf_counter()
            ids = torch.from_numpy(data.train_ids[order[step * BATCH:(step + 1) * BATCH]])
            loss = peft_model(input_ids=ids, labels=ids).loss
            loss.backward()
            torch.nn.utils.clip_grad_norm_([p for p in peft_model.parameters() if p.requires_grad], 1.0)
            opt.step()
            opt.zero_grad()
            times.append(time.perf_counter() - started)
            losses.append(float(loss))
        threads, precision = torch.get_num_threads(), "fp32"
    else:
        from training.lora.config import LoraTrainConfig
        from training.lora.trainer import LoraTrainer
        from training.progress import ProgressReporter

        config = LoraTrainConfig(rank=RANK, alpha=ALPHA, seq_len=SEQ, batch_size=BATCH, learning_rate=LR,
                                 warmup_steps=0, schedule="constant", max_steps=total, device="cpu",
                                 eval_blocks=0, checkpoint_every=10**9, checkpoint_seconds=1e9)
        stream = io.StringIO()
        trainer = LoraTrainer(model, tokenizer, data, config, Path("/nonexistent-never-written"),
                              ProgressReporter(stream))
        started = time.time()
        trainer.train()
        stamps = [started] + [json.loads(line)["time"] for line in stream.getvalue().splitlines()
                              if '"event": "step"' in line]
        times = [b - a for a, b in zip(stamps, stamps[1:])]
        losses = trainer.losses
        threads, precision = torch.get_num_threads(), "fp32"
    timed = times[warmup:]
    return {"method": method, "tokens_per_s": BATCH * SEQ * len(timed) / sum(timed), "step_s": timed,
            "losses": losses, "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "threads": threads, "base_precision": precision}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=4, help="timed optimizer steps per child")
    parser.add_argument("--warmup", type=int, default=1, help="untimed first steps per child")
    parser.add_argument("--rounds", type=int, default=1, help="baseline/trainer alternations")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--cache-root", type=Path, default=None)
    args = parser.parse_args()
    root = args.cache_root or cache_root()
    if args.child:
        print(json.dumps(child(args.child, args.steps, args.warmup, root)))
        return 0

    from engine import model_pack
    from training.base_model import cached_base_dir

    cached_base_dir(model_pack.locate(model_pack.SMOLLM2, Path("/nonexistent")), root)  # not timed
    runs: dict[str, list[dict]] = {"plain": [], "trainer": []}
    for _ in range(args.rounds):
        for method in ("plain", "trainer"):
            proc = subprocess.run([sys.executable, __file__, "--child", method, "--steps", str(args.steps),
                                   "--warmup", str(args.warmup), "--cache-root", str(root)],
                                  capture_output=True, text=True, cwd=ROOT)
            if proc.returncode != 0:
                print(proc.stderr[-4000:], file=sys.stderr)
                return 1
            runs[method].append(json.loads(proc.stdout.strip().splitlines()[-1]))
    plain, ours = runs["plain"], runs["trainer"]
    plain_tps = statistics.median(r["tokens_per_s"] for r in plain)
    ours_tps = statistics.median(r["tokens_per_s"] for r in ours)
    # The machine's matrix-multiply peak in the same run, after the children, on the model's
    # shapes for one batch (benchmarks/machine_limits.py); training GFLOP/s against it.
    shape = machine_limits.model_shape(model_pack.locate(model_pack.SMOLLM2, Path("/nonexistent")))
    limits = machine_limits.measure_machine(machine_limits.model_gemm_shapes(shape, BATCH * SEQ), bandwidth=False)
    per_token = train_gflop_per_token(shape)
    plain_share = machine_limits.compute_fraction(plain_tps, per_token, limits.gemm_gflops)
    ours_share = machine_limits.compute_fraction(ours_tps, per_token, limits.gemm_gflops)
    diffs = [abs(a - b) for a, b in zip(plain[0]["losses"], ours[0]["losses"])]
    print(f"{'method':<22}{'tokens/s':>10}{'peak RSS MB':>13}{'threads':>9}  losses per step")
    for name, rs in (("transformers+peft", plain), ("project trainer", ours)):
        for r in rs:
            print(f"{name:<22}{r['tokens_per_s']:>10.1f}{r['peak_rss_mb']:>13.0f}{r['threads']:>9}  "
                  + " ".join(f"{x:.3f}" for x in r["losses"]) + f"  ({r['base_precision']})")
    ratio = ours_tps / plain_tps
    print(f"ratio {ratio:.2f}x, largest per-step loss difference {max(diffs):.4f} nats; "
          f"{per_token:.3f} GFLOP a token: trainer {ours_tps * per_token:.1f} GFLOP/s = {ours_share:.1%} of the "
          f"GEMM peak, baseline {plain_tps * per_token:.1f} GFLOP/s = {plain_share:.1%}")
    print(limits.describe())
    figures = {"tokens_per_s_plain": round(plain_tps, 1), "tokens_per_s_trainer": round(ours_tps, 1),
               "tokens_per_s_ratio": round(ratio, 3), "loss_max_abs_diff": round(max(diffs), 4),
               "train_gflop_per_token": round(per_token, 4),
               "gflops_plain": round(plain_tps * per_token, 1), "gflops_trainer": round(ours_tps * per_token, 1),
               "fraction_of_gemm_peak_plain": round(plain_share, 3),
               "fraction_of_gemm_peak_trainer": round(ours_share, 3),
               "machine_gemm_peak_gflops": round(limits.gemm_gflops, 1),
               "peak_rss_mb_plain": round(max(r["peak_rss_mb"] for r in plain)),
               "peak_rss_mb_trainer": round(max(r["peak_rss_mb"] for r in ours)),
               "losses_plain": [round(x, 4) for x in plain[0]["losses"]],
               "losses_trainer": [round(x, 4) for x in ours[0]["losses"]],
               "steps_timed": args.steps, "rounds": args.rounds, "base_precision": ours[0]["base_precision"]}
    targets = {"tokens_per_s_ratio": TARGET_RATIO, "loss_max_abs_diff": MAX_LOSS_DIFF}
    met = ratio >= TARGET_RATIO and max(diffs) <= MAX_LOSS_DIFF
    report("lora_throughput", figures, targets, met, machine=limits.record())
    return 0


if __name__ == "__main__":
    sys.exit(main())
