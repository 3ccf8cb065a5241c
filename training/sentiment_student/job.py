"""The "sentiment_student" job kind: teach a sentence encoder the teacher's sentiment.

Runs in the training process (``python -m training.run JOB.json``), main thread. The
assistant (``assistant.tasks.sentiment_student``) has already had the language model (the
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
  settings: {StudentTrainConfig field: value} (training.sentiment_student.config)

Progress: the usual step events (loss, texts/s as tokens_per_s, ETA). Cancel (SIGTERM)
stops at the next step and writes nothing: the job takes minutes, so it starts over
rather than resuming. Every refusal (no data, too few texts, not a BERT folder, not
enough disk) comes before the encoder loads.
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np

from engine.job_files import write_job_file
from training.datasets import DatasetError, iter_jsonl
from training.progress import ProgressReporter
from training.sentiment_student.config import StudentTrainConfig
from training.sentiment_student.trainer import train_student


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
    write_job_file(output_dir, job)
    reporter.emit("start", texts=len(texts), output_dir=str(output_dir))
    return train_student(texts, labels, encoder_dir, output_dir, config, reporter)
