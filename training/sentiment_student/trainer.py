"""The sentiment student's fine-tuning: the MiniLM sentence encoder and a logistic head, on
the teacher's soft labels; the encoder then written as a GGUF for llama.cpp.

Runs in the training process (``python -m training.run``, kind "sentiment_student", see
:mod:`training.sentiment_student.job`), main thread. The student is measured as the user
will run it: through llama.cpp's embedding of the written GGUF, not through torch.
"""

from __future__ import annotations

import math
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from engine.atomic import write_json_atomic
from training.progress import JobCancelled, ProgressReporter
from training.sentiment_student.config import StudentTrainConfig

#: The head sees unit vectors; their dot product with a unit-scale weight is small, so the
#: logit is scaled by this fixed factor while training (folded into the saved weights).
LOGIT_SCALE = 8.0


def train_student(texts: list[str], labels: np.ndarray, encoder_dir: Path, output_dir: Path,
                  config: StudentTrainConfig, reporter: ProgressReporter) -> dict:
    """Fine-tune the encoder and a logistic head on ``labels`` (the teacher's probabilities),
    write the encoder as ``output_dir/encoder.gguf`` and ``result.json``, return the result."""
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

    window = config.batch_size * LENGTH_WINDOW_BATCHES
    steps_per_epoch = sum(math.ceil(min(window, len(fit) - start) / config.batch_size)
                          for start in range(0, len(fit), window))
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
    lengths = np.asarray([len(ids) for ids in tokenizer([texts[i] for i in fit], truncation=True,
                                                          max_length=config.max_length)["input_ids"]])
    for epoch in range(epochs):
        for rows in _batches_of_similar_length(fit, lengths, config.batch_size, rng):
            if reporter.stop_requested:
                raise JobCancelled(step)
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
        convert(hf_dir, target, weight_type="f16")  # written atomically by the converter

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
        "config": config.to_dict(),
        "encoder_source": encoder_dir.name,
    }
    write_json_atomic(output_dir / "result.json", result)
    return result


#: Batches are drawn from windows of this many batches, sorted by length within a window.
LENGTH_WINDOW_BATCHES = 16


def _batches_of_similar_length(rows: np.ndarray, lengths: np.ndarray, batch_size: int,
                               rng: np.random.Generator) -> list[np.ndarray]:
    """One epoch's batches: the rows shuffled, cut into windows of LENGTH_WINDOW_BATCHES
    batches, each window sorted by token length and cut into batches, the batches shuffled.
    Each batch is padded to its longest text, so texts of like length waste far less work than
    a random mix of short and long reviews, while every epoch still sees new mixes."""
    order = rng.permutation(len(rows))
    window = batch_size * LENGTH_WINDOW_BATCHES
    batches = []
    for start in range(0, len(order), window):
        part = order[start:start + window]
        part = part[np.argsort(lengths[part], kind="stable")]
        batches.extend(rows[part[i:i + batch_size]] for i in range(0, len(part), batch_size))
    return [batches[i] for i in rng.permutation(len(batches))]


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
