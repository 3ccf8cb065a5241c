"""The "sentiment_student" job kind: teach a sentence encoder the teacher's sentiment.

Runs in the training process (``python -m training.run JOB.json``), main thread. The
assistant (``assistant.sentiment_student``) has already had the language model (the
teacher) label the user's unlabelled texts with its calibrated probability of "positive";
this job fine-tunes the MiniLM sentence encoder and a logistic head on those soft labels
(binary cross-entropy against the probability: the teacher's confidence is distilled, not
only its verdict), then writes the encoder as a GGUF for llama.cpp. At classification time
the student is that GGUF's mean-pooled unit embedding (llama.cpp, no torch) and a dot
product with the head, exactly what a head fitted on the stock encoder used to be, only
with an encoder that has learned which words carry sentiment: on the UCI development
lines the stock encoder's features cap a head at ~0.87-0.89 accuracy, a fine-tuned one
reaches the teacher's level (see benchmarks/sentiment_student.py).

Job file keys:
  kind: "sentiment_student"
  encoder_dir: the Hugging Face BERT folder of the sentence encoder (the pack's MiniLM)
  data: JSON-lines file of {"text": str, "positive": float in [0, 1]} (the teacher's labels)
  output_dir: where job.json, encoder.gguf and result.json go
  settings: {StudentTrainConfig field: value}

Progress: the usual step events (loss, texts/s as tokens_per_s, ETA). Cancel (SIGTERM)
stops at the next step and writes nothing: the job takes minutes, so it starts over
rather than resuming. Every refusal (no data, too few texts, not a BERT folder, not
enough disk) comes before the encoder loads.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np

from engine.partial_files import partial_path
from training.datasets import DatasetError, iter_jsonl
from training.progress import JobCancelled, ProgressReporter

#: The head sees unit vectors; their dot product with a unit-scale weight is small, so the
#: logit is scaled by this fixed factor while training (folded into the saved weights).
LOGIT_SCALE = 8.0


@dataclass
class StudentTrainConfig:
    """Defaults measured on the UCI development lines (2,250 lines 0-2 mod 4, Gemma's labels;
    accuracy on the 750 lines 3 mod 4 against their gold labels, teacher 0.949): 3 epochs at
    1e-4 with 5% held out 0.927 (163 s); 4 epochs at 5e-5, 5% held out 0.928 (221 s);
    3 epochs at 5e-5, 15% held out 0.913; 5 epochs at 5e-5, 15% held out 0.920."""

    epochs: int = 3
    learning_rate: float = 1e-4  # encoder
    head_learning_rate: float = 1e-2  # the head starts from zero and must move fast
    batch_size: int = 32
    max_length: int = 128  # tokens; review sentences are far shorter
    warmup_steps: int = 20  # at most a tenth of the run
    # A few hundred texts make only a handful of steps an epoch; the student then sees them
    # for more epochs, so that it trains at least this many steps.
    min_steps: int = 50
    weight_decay: float = 0.01
    heldout_fraction: float = 0.05  # of the teacher-labelled texts, to report agreement
    min_texts: int = 40
    seed: int = 0
    threads: int = 0  # torch threads (0: torch's default, one per core)

    @classmethod
    def from_dict(cls, data: dict | None) -> "StudentTrainConfig":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data or {}) - known)
        if unknown:
            raise ValueError(f"Unknown sentiment student setting {unknown[0]!r}.")
        config = cls(**(data or {}))
        if config.epochs < 1 or config.batch_size < 1 or not 0 <= config.heldout_fraction < 0.9:
            raise ValueError("The student needs at least one epoch, a batch of at least one text and a held-out "
                             "share below 0.9.")
        return config


def read_labelled(path: Path, min_texts: int) -> tuple[list[str], np.ndarray]:
    """The teacher-labelled texts, duplicates (after whitespace folding) kept once."""
    if not path.is_file():
        raise DatasetError(f"The teacher's labels {path} are missing; label the texts first.")
    texts, labels, seen = [], [], set()
    for number, row in iter_jsonl(path, "a labelled text"):
        try:
            text, positive = str(row["text"]), float(row["positive"])
        except (ValueError, KeyError, TypeError) as exc:
            raise DatasetError(f"Line {number} of {path.name} is not a labelled text ({exc}).") from None
        key = " ".join(text.split())
        if not key or key in seen or not math.isfinite(positive):
            continue
        seen.add(key)
        texts.append(key)
        labels.append(min(1.0, max(0.0, positive)))
    if len(texts) < min_texts:
        raise DatasetError(f"A student needs at least {min_texts} different non-empty texts to learn from; "
                           f"{len(texts)} were given.")
    return texts, np.asarray(labels, dtype=np.float32)


def _check_encoder(encoder_dir: Path) -> None:
    try:
        config = json.loads((encoder_dir / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        raise ValueError(f"{encoder_dir} is not a sentence encoder folder (no readable config.json).") from None
    if config.get("model_type") != "bert":
        raise ValueError(f"The student's encoder must be a BERT sentence encoder; {encoder_dir.name} is "
                         f"{config.get('model_type')!r}.")


def run_job(job: dict, reporter: ProgressReporter) -> dict:
    for key in ("encoder_dir", "data", "output_dir"):
        if not job.get(key):
            raise ValueError(f"The job names no {key}.")
    encoder_dir, output_dir = Path(job["encoder_dir"]), Path(job["output_dir"])
    config = StudentTrainConfig.from_dict(job.get("settings"))
    texts, labels = read_labelled(Path(job["data"]), config.min_texts)
    _check_encoder(encoder_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    needed = 3 * sum(p.stat().st_size for p in encoder_dir.glob("*.safetensors"))  # HF copy + GGUF + slack
    if shutil.disk_usage(output_dir).free < needed:
        raise ValueError(f"Not enough disk space in {output_dir}: the student needs about {needed / 1e6:.0f} MB.")
    (output_dir / "job.json").write_text(json.dumps(job, indent=2, default=str), encoding="utf-8")
    reporter.emit("start", texts=len(texts), output_dir=str(output_dir))
    return _train(texts, labels, encoder_dir, output_dir, config, reporter)


def _train(texts: list[str], labels: np.ndarray, encoder_dir: Path, output_dir: Path, config: StudentTrainConfig,
           reporter: ProgressReporter) -> dict:
    import torch
    from transformers import AutoModel, AutoTokenizer

    from engine.convert_bert import convert

    if config.threads:
        torch.set_num_threads(config.threads)
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    order = rng.permutation(len(texts))
    n_held = int(round(len(texts) * config.heldout_fraction))
    held, fit = order[:n_held], order[n_held:]

    reporter.message("Loading the sentence encoder…")
    tokenizer = AutoTokenizer.from_pretrained(encoder_dir)
    encoder = AutoModel.from_pretrained(encoder_dir, dtype=torch.float32)
    head = torch.nn.Linear(encoder.config.hidden_size, 1)
    torch.nn.init.zeros_(head.weight)
    torch.nn.init.zeros_(head.bias)

    def embed(batch: list[str]) -> torch.Tensor:
        """Mean over the real tokens, then unit length: what llama.cpp computes from the GGUF."""
        tokens = tokenizer(batch, padding=True, truncation=True, max_length=config.max_length, return_tensors="pt")
        hidden = encoder(**tokens).last_hidden_state
        mask = tokens["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)
        return torch.nn.functional.normalize(pooled, dim=-1)

    def logits(batch: list[str]) -> torch.Tensor:
        return head(embed(batch) * LOGIT_SCALE).squeeze(-1)

    steps_per_epoch = math.ceil(len(fit) / config.batch_size)
    epochs = max(config.epochs, math.ceil(config.min_steps / steps_per_epoch))
    total_steps = epochs * steps_per_epoch
    warmup = max(1, min(config.warmup_steps, total_steps // 10))
    optimizer = torch.optim.AdamW([{"params": encoder.parameters(), "lr": config.learning_rate},
                                   {"params": head.parameters(), "lr": config.head_learning_rate}],
                                  weight_decay=config.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: min(1.0, (s + 1) / warmup) * max(0.0, 1.0 - s / total_steps))
    targets = torch.from_numpy(labels)

    reporter.defer_stop = True
    started, step, losses = time.monotonic(), 0, []
    encoder.train()
    for epoch in range(epochs):
        shuffled = fit[rng.permutation(len(fit))]
        for start in range(0, len(shuffled), config.batch_size):
            if reporter.stop_requested:
                raise JobCancelled(step)
            rows = shuffled[start:start + config.batch_size]
            loss = torch.nn.functional.binary_cross_entropy_with_logits(logits([texts[i] for i in rows]),
                                                                        targets[rows])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            scheduler.step()
            step += 1
            losses.append(float(loss))
            elapsed = time.monotonic() - started
            rate = step * config.batch_size / max(elapsed, 1e-6)
            reporter.step(step, total_steps, float(loss), rate, (total_steps - step) * elapsed / step, epoch=epoch + 1)
    reporter.defer_stop = False

    encoder.eval()
    held_texts = [texts[i] for i in held]
    with torch.no_grad():
        torch_positive = (torch.cat([torch.sigmoid(logits(held_texts[i:i + 64])) for i in range(0, len(held_texts), 64)])
                          .numpy() if n_held else np.zeros(0))
    weights = (head.weight.detach().numpy()[0] * LOGIT_SCALE).astype(np.float64)
    bias = float(head.bias.detach().numpy()[0])

    reporter.message("Writing the student's encoder for llama.cpp…")
    target = output_dir / "encoder.gguf"
    with tempfile.TemporaryDirectory(prefix=".student-hf-", dir=output_dir) as hf_dir:
        encoder.save_pretrained(hf_dir, safe_serialization=True)
        tokenizer.save_pretrained(hf_dir)
        pooling = encoder_dir / "1_Pooling"
        if pooling.is_dir():
            shutil.copytree(pooling, Path(hf_dir) / "1_Pooling")
        staged = partial_path(target)
        try:
            convert(hf_dir, staged, weight_type="f16")
            os.replace(staged, target)
        finally:
            staged.unlink(missing_ok=True)

    # The student the user will run is llama.cpp's embedding of that file, not torch's: measure it.
    gguf_positive = _gguf_positive(target, held_texts, weights, bias)
    teacher_says = labels[held] >= 0.5
    result = {
        "encoder_gguf": str(target),
        "weights": [float(w) for w in weights],
        "bias": bias,
        "dim": int(weights.shape[0]),
        "n_texts": len(texts),
        "n_fit": int(len(fit)),
        "n_heldout": int(n_held),
        "steps": step,
        "epochs": epochs,
        "first_loss": round(float(np.mean(losses[: max(1, steps_per_epoch // 4)])), 5),
        "last_loss": round(float(np.mean(losses[-max(1, steps_per_epoch // 4):])), 5),
        "heldout_agreement_with_teacher": round(float(np.mean((gguf_positive >= 0.5) == teacher_says)), 4) if n_held else None,
        "heldout_agreement_torch": round(float(np.mean((torch_positive >= 0.5) == teacher_says)), 4) if n_held else None,
        "gguf_torch_max_difference": round(float(np.max(np.abs(gguf_positive - torch_positive))), 4) if n_held else None,
        "train_seconds": round(time.monotonic() - started, 1),
        "config": asdict(config),
        "encoder_source": encoder_dir.name,
    }
    (output_dir / "result.json").write_text(json.dumps(result, indent=1), encoding="utf-8")
    return result


def _gguf_positive(encoder_gguf: Path, texts: list[str], weights: np.ndarray, bias: float) -> np.ndarray:
    if not texts:
        return np.zeros(0)
    from engine.embedder import Embedder

    embedder = Embedder(str(encoder_gguf), n_threads=max(1, os.cpu_count() or 1))
    try:
        vectors, _metrics = embedder.embed(texts)
    finally:
        embedder.close()
    z = np.asarray(vectors, dtype=np.float64) @ weights + bias
    return 0.5 * (1.0 + np.tanh(0.5 * z))
