"""Sentiment student vs its teacher: speed and accuracy side by side.

Teacher: ``assistant.tasks.sentiment.SentimentAnalyzer`` as the app runs it (Gemma 3 270M,
few-shot label log-probabilities, contextual calibration). Student:
``assistant.tasks.sentiment_student``: MiniLM fine-tuned with a logistic head on the teacher's
probabilities (a training process), then run as its own GGUF through llama.cpp and a dot
product; ``--head-only`` measures the torch-free kind (a head on the stock MiniLM's
embeddings). Taught on unlabelled lines only.

Data: ``../shared/data/sentiment/uci_sentiment_labelled.tsv``. Lines 0,1,2 mod 4 are the
student's *unlabelled* training texts (their gold labels are never read); lines 3 mod 4 are
the held-out scored lines, which the student never sees. Both models are scored against
the gold labels of all held-out lines. Speed: both are timed in this run on the same first
``--speed-lines`` held-out lines (teacher, student, teacher again on half, so background
load falls on both), as sentences per second of wall time through the engine worker; the
teacher after its prompt prefix and calibration are cached, the student including its
embedding requests.

Targets (issue 8): student >= 5x the teacher's sentences/s; accuracy within 3 points.

    python benchmarks/sentiment_student.py [--teacher-cache FILE] [--limit N]

``--teacher-cache`` keeps the teacher's probabilities for every line between runs (labelling
3,000 lines takes most of an hour on a loaded 2-core CPU); the teacher is deterministic, so
a cached probability is what a fresh run gives. The timing runs are always fresh.
Prints a table, then one JSON line.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from engine import privacy  # noqa: E402

privacy.install()

from assistant.config import default_paths  # noqa: E402
from assistant.tasks.sentiment import SentimentAnalyzer, SentimentFinished  # noqa: E402
from assistant.tasks.sentiment_student import StudentAnalyzer, StudentConfig, teacher_labels, train_student  # noqa: E402
from engine import convert_bert, model_pack  # noqa: E402
from engine.client import EngineClient  # noqa: E402
from engine.settings import EngineSettings  # noqa: E402
from benchmarks import machine_limits  # noqa: E402
from benchmarks.record import report  # noqa: E402

DATA = Path(os.environ.get("ASSISTANT_SHARED_DATA", ROOT / ".." / "shared" / "data")).resolve()


class _Library:
    def __init__(self, path: str):
        self.path = path

    def routes(self) -> dict:
        return {"classify": "chosen"}

    def for_task(self, task: str):
        return self

    def get(self, name: str):
        return self


def _scored(analyzer, texts: list[str]) -> tuple[list[float], float, dict]:
    started = time.perf_counter()
    final = None
    for event in analyzer.classify_stream(list(enumerate(texts))):
        if isinstance(event, SentimentFinished):
            final = event
    seconds = time.perf_counter() - started
    assert final is not None and not final.bad_rows and not final.cancelled
    by_row = {r.row: r.positive for r in final.results}
    return [by_row[i] for i in range(len(texts))], seconds, final.metrics


def _accuracy(positive: list[float], gold: list[int]) -> float:
    return float(np.mean([(p >= 0.5) == bool(g) for p, g in zip(positive, gold)]))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--teacher-cache", type=Path, default=None)
    parser.add_argument("--limit", type=int, default=0, help="use only the first N lines of the file (0: all)")
    parser.add_argument("--speed-lines", type=int, default=200,
                        help="held-out lines both models are timed on (0: all); accuracy always uses all")
    parser.add_argument("--threads", type=int, default=0,
                        help="llama.cpp threads in the engine worker for both models (0: one per core); on a "
                             "machine busy with other work, 1 avoids threads waiting on each other")
    parser.add_argument("--head-only", action="store_true",
                        help="the torch-free student: a head fitted on the stock MiniLM's embeddings")
    parser.add_argument("--epochs", type=int, default=3, help="fine-tuning epochs of the encoder")
    args = parser.parse_args()

    with open(DATA / "sentiment" / "uci_sentiment_labelled.tsv", encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle, delimiter="\t", quoting=csv.QUOTE_NONE))
    if args.limit:
        rows = rows[: args.limit]
    train_texts = [r["text"] for i, r in enumerate(rows) if i % 4 != 3]
    test_texts = [r["text"] for i, r in enumerate(rows) if i % 4 == 3]
    test_gold = [int(r["label"]) for i, r in enumerate(rows) if i % 4 == 3]

    paths = default_paths().ensure()
    gemma = str(model_pack.join_parts(model_pack.GEMMA3, paths.models_dir))
    minilm = str(convert_bert.ensure_gguf(model_pack.locate(model_pack.MINILM, paths.models_dir), paths.models_dir))

    settings = EngineSettings()
    if args.threads:
        settings.n_threads = settings.n_threads_batch = args.threads
    with EngineClient(settings) as engine:
        teacher = SentimentAnalyzer(engine, _Library(gemma), neutral_below=0.0)
        teacher.bias(teacher.model_path(), teacher.prefix())  # prefix and calibration cached first

        # The cache maps text -> the teacher's probability, valid for one model and prompt
        # (the teacher is deterministic: a cached label is the label a fresh run gives).
        key = hashlib.sha256((teacher.prefix() + Path(gemma).name).encode()).hexdigest()
        cached: dict = {}
        if args.teacher_cache and args.teacher_cache.is_file():
            data = json.loads(args.teacher_cache.read_text())
            cached = data.get("positive", {}) if data.get("key") == key else {}
        missing = sorted({t for t in train_texts + test_texts if t not in cached})
        if missing:
            started = time.perf_counter()
            cached.update(zip(missing, teacher_labels(teacher, missing).tolist()))
            print(f"teacher labelled {len(missing)} lines in {time.perf_counter() - started:.0f} s", file=sys.stderr)
            if args.teacher_cache:
                args.teacher_cache.write_text(json.dumps({"key": key, "positive": cached}))
        soft = np.asarray([cached[t] for t in train_texts], dtype=np.float64)
        teacher_pos = [cached[t] for t in test_texts]

        embedded = {"texts": 0, "tokens": 0}  # what the student's encoder read, for its GFLOP/s

        def embed(texts: list[str]) -> np.ndarray:
            return np.asarray(engine.embed(minilm, texts, with_metrics=True)[0], dtype=np.float32)

        description = f"UCI sentiment lines 0-2 mod 4 ({len(train_texts)}), labels unread"
        if args.head_only:
            student = train_student(train_texts, teacher, embed, minilm, StudentConfig(), soft_labels=soft,
                                    data_description=description)
            def student_embed(texts: list[str]) -> np.ndarray:
                vectors, metrics = engine.embed(minilm, texts, with_metrics=True)
                embedded["texts"] += len(texts)
                embedded["tokens"] += metrics.get("tokens", 0)
                return np.asarray(vectors, dtype=np.float32)
        else:
            work = Path(tempfile.mkdtemp(prefix="student-bench-"))
            started = time.perf_counter()
            student = train_student(train_texts, teacher, None, None, None, soft_labels=soft,
                                    data_description=description,
                                    fine_tune={"encoder_dir": model_pack.locate(model_pack.MINILM, paths.models_dir),
                                               "work_dir": work, "settings": {"epochs": args.epochs}})
            fine_tune_seconds = time.perf_counter() - started
            saved = student.save(work / "student.json")
            encoder = str(student.encoder_path(saved))

            def student_embed(texts: list[str]) -> np.ndarray:
                vectors, metrics = engine.embed(encoder, texts, with_metrics=True)
                embedded["texts"] += len(texts)
                embedded["tokens"] += metrics.get("tokens", 0)
                return np.asarray(vectors, dtype=np.float32)

        student_embed(["warm-up"])  # the encoder loads once in the worker, outside the timings

        # Speed side by side in this run on the same held-out lines: teacher, student, teacher.
        timed = test_texts[: args.speed_lines] if args.speed_lines else test_texts
        _, teacher_s1, teacher_metrics = _scored(teacher, timed)
        embedded.update(texts=0, tokens=0)
        _, student_timed_s, _ = _scored(StudentAnalyzer(student, student_embed), timed)
        student_tokens = embedded["tokens"] / max(1, embedded["texts"])
        _, teacher_s2, _ = _scored(teacher, timed[: max(1, len(timed) // 2)])
        teacher_rate = (len(timed) + max(1, len(timed) // 2)) / (teacher_s1 + teacher_s2)
        student_rate = len(timed) / student_timed_s
        student_pos, _, _ = _scored(StudentAnalyzer(student, student_embed), test_texts)
    teacher_s, student_s = len(test_texts) / teacher_rate, len(test_texts) / student_rate

    # The machine's matrix-multiply peak in the same run, with the engine closed, on both models'
    # shapes; each rate's GFLOP/s against it (benchmarks/machine_limits.py).
    teacher_shape, student_shape = machine_limits.model_shape(gemma), machine_limits.model_shape(minilm)
    n_batch = settings.n_batch
    limits = machine_limits.measure_machine(machine_limits.model_gemm_shapes(teacher_shape, n_batch)
                                            + machine_limits.model_gemm_shapes(student_shape, n_batch), bandwidth=False,
                                            threads=settings.n_threads)
    teacher_tokens = teacher_metrics.get("item_tokens", 0) / max(1, teacher_metrics.get("items", 0))
    teacher_gflop = machine_limits.gflop_per_text(teacher_shape, teacher_tokens,
                                                  teacher_metrics.get("prefix_tokens", 0) + teacher_tokens / 2,
                                                  head=True)
    student_gflop = machine_limits.gflop_per_text(student_shape, student_tokens, student_tokens, head=False)
    teacher_share = machine_limits.compute_fraction(teacher_rate, teacher_gflop, limits.gemm_gflops)
    student_share = machine_limits.compute_fraction(student_rate, student_gflop, limits.gemm_gflops)

    n = len(test_texts)
    teacher_acc, student_acc = _accuracy(teacher_pos, test_gold), _accuracy(student_pos, test_gold)
    agreement = float(np.mean([(a >= 0.5) == (b >= 0.5) for a, b in zip(teacher_pos, student_pos)]))
    figures = {
        "teacher_sentences_per_s": round(n / teacher_s, 2),
        "student_sentences_per_s": round(n / student_s, 2),
        "sentences_per_s_ratio": round(teacher_s / student_s, 2),
        "teacher_fraction_of_gemm_peak": round(teacher_share, 3),
        "student_fraction_of_gemm_peak": round(student_share, 3),
        "teacher_gflop_per_sentence": round(teacher_gflop, 3),
        "student_gflop_per_sentence": round(student_gflop, 3),
        "machine_gemm_peak_gflops": round(limits.gemm_gflops, 1),
        "teacher_accuracy": round(teacher_acc, 4),
        "student_accuracy": round(student_acc, 4),
        "accuracy_gap_points": round(100 * (teacher_acc - student_acc), 2),
        "student_teacher_agreement": round(agreement, 4),
        "student_heldout_agreement_with_teacher_labels": student.provenance["heldout_agreement_with_teacher"],
        "student_kind": "head only (stock MiniLM)" if args.head_only else "fine-tuned MiniLM + head",
        "fine_tune_seconds": None if args.head_only else round(fine_tune_seconds, 1),
        "train_lines": len(train_texts),
        "timed_lines": len(timed),
        "scored_lines": n,
    }
    print(f"{'model':<44}{'accuracy':>10}{'sent/s':>10}{'of peak':>10}")
    print(f"{'teacher: Gemma 3 270M few-shot + calibration':<44}{teacher_acc:>10.4f}{n / teacher_s:>10.1f}"
          f"{teacher_share:>10.1%}")
    print(f"{'student: ' + figures['student_kind']:<44}{student_acc:>10.4f}{n / student_s:>10.1f}{student_share:>10.1%}")
    print(f"student/teacher agreement on held-out lines: {agreement:.4f}; speed ratio {teacher_s / student_s:.1f}x")
    print(limits.describe())
    # Routing: the student answers where it is confident, the teacher the rest. Its speed is
    # computed from the two rates measured above (not timed separately).
    for threshold in (0.6, 0.7, 0.8):
        sure = [max(p, 1 - p) >= threshold for p in student_pos]
        routed = [s if ok else t for s, t, ok in zip(student_pos, teacher_pos, sure)]
        share = float(np.mean(sure))
        seconds = student_s + (1 - share) * teacher_s
        key = f"routed_{int(threshold * 100)}"
        figures[f"{key}_accuracy"] = round(_accuracy(routed, test_gold), 4)
        figures[f"{key}_student_share"] = round(share, 4)
        figures[f"{key}_sentences_per_s_ratio_estimate"] = round(teacher_s / seconds, 2)
        print(f"routed at confidence {threshold}: student answers {share:.0%}, accuracy "
              f"{figures[key + '_accuracy']:.4f}, about {teacher_s / seconds:.1f}x the teacher's speed")
    targets = {"sentences_per_s_ratio_min": 5.0, "accuracy_gap_points_max": 3.0}
    met = figures["sentences_per_s_ratio"] >= 5.0 and figures["accuracy_gap_points"] <= 3.0
    report("sentiment_student", figures, targets, bool(met), machine=limits.record())
    return 0


if __name__ == "__main__":
    sys.exit(main())
