"""The default sentiment path of a fresh install: a fast student that answers the texts it is
sure of, and the language model for the rest ("routed").

Qt-free and torch-free. The student is made once at set-up (``assistant models prepare``, the
Makefile's set-up step) by the project's own pipeline, the training process's
``sentiment_student`` job: MiniLM fine-tuned with a logistic head, then run as its own GGUF
through llama.cpp. Its data is public and ships with the app:
``resources/datasets/uci_sentiment_development.tsv`` (review sentences labelled by people,
CC BY 4.0). Built rather than shipped because the fine-tuned encoder is a 45 MB file while
its recipe and data are 165 kB; a machine without the training component (the
self-contained bundle) has no default student and uses the language model alone.

Routing: the student scores every text (one embedding and a dot product each); where its
confidence, max(p, 1 - p), is at least :data:`ROUTE_CONFIDENCE`, its answer stands; the
other texts go to the language model (:class:`assistant.tasks.sentiment.SentimentAnalyzer`),
whose answer, with its own neutral threshold, is the result. The settings here (epochs, label
smoothing, the routing confidence) are chosen on a development split of the shipped lines by
``benchmarks/sentiment_default.py --develop``; the lines the benchmark scores are not shipped.

Threads: building blocks the calling thread on the training process (the set-up command's
main thread); classifying blocks the calling thread on the engine worker (the CLI's main
thread, a pool thread of the window), never the GUI thread.
"""

from __future__ import annotations

import csv
import hashlib
import json
import tempfile
import threading
import time
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

import resources
from assistant.errors import StudentError
from assistant.tasks.sentiment import (
    PromptConfig,
    SentimentAnalyzer,
    SentimentFinished,
    SentimentProgress,
    SentimentResult,
    classify_one,
    split_empty,
)
from assistant.tasks.sentiment_student import (
    SentimentStudent,
    StudentAnalyzer,
    TrainProgress,
    embedder_identity,
    fine_tune_available,
    run_fine_tune_job,
    write_fine_tune_job,
)
from engine.shred import shred_tree

#: The shipped training lines (see resources/datasets/README.md).
TRAINING_DATA = resources.path("datasets", "uci_sentiment_development.tsv")
#: Folder under the models folder; kept apart from the students the user teaches.
DEFAULT_DIR = "sentiment-default"
#: Gold labels become these targets (label smoothing): a student trained on hard 0/1 targets
#: grows overconfident, and routing needs its confidence to mean something.
SMOOTHED_TARGETS = (0.05, 0.95)
#: Passes over the shipped lines: set-up must stay within about a minute on two cores.
EPOCHS = 1
#: The student answers when max(p, 1 - p) reaches this; below it, the language model does.
ROUTE_CONFIDENCE = 0.9
#: How the default student is made, as its file records it (the encoder is the default pack's MiniLM).
METHOD = ("MiniLM sentence encoder fine-tuned with a logistic head on labelled review sentences "
          "(public data, smoothed targets); run as the encoder's GGUF through llama.cpp and a dot product")


def recipe() -> str:
    """What the default student is made from and how (the shipped lines' bytes, the settings):
    a student built by another recipe is built again at the next set-up."""
    digest = hashlib.sha256(TRAINING_DATA.read_bytes())
    digest.update(json.dumps({"epochs": EPOCHS, "targets": SMOOTHED_TARGETS, "method": METHOD}).encode())
    return digest.hexdigest()[:16]


def read_training_lines(path: str | Path = TRAINING_DATA) -> tuple[list[str], list[int]]:
    """(texts, gold labels 0/1) of a TSV with ``text`` and ``label`` columns."""
    with open(path, encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle, delimiter="\t", quoting=csv.QUOTE_NONE))
    return [r["text"] for r in rows], [int(r["label"]) for r in rows]


def default_student_path(models_dir: str | Path) -> Path:
    return Path(models_dir) / DEFAULT_DIR / "student.json"


def find_default_student(models_dir: str | Path) -> Path | None:
    """The default student's file when it was built and is whole (its encoder beside it)."""
    path = default_student_path(models_dir)
    if not path.is_file():
        return None
    try:
        student = SentimentStudent.load(path)
    except StudentError:
        return None
    encoder = student.encoder_path(path)
    return path if encoder is None or encoder.is_file() else None


def build_default_student(models_dir: str | Path, encoder_dir: str | Path,
                          texts: list[str] | None = None, labels: list[int] | None = None,
                          settings: dict | None = None, python: str | None = None,
                          on_progress: Callable[[TrainProgress], None] | None = None,
                          cancel: threading.Event | None = None) -> Path:
    """Train the default student on ``texts``/``labels`` (the shipped lines unless given) in a
    training process and save it as :func:`default_student_path`, replacing an older one only
    once the new one is whole. Blocks the calling thread (minutes at most); StudentError when
    training is unavailable, fails or is cancelled."""
    if not fine_tune_available():
        raise StudentError("This installation cannot train (PyTorch is missing), so it has no default sentiment "
                           "student; the Sentiment page uses the language model alone.")
    shipped = texts is None or labels is None
    if shipped:
        texts, labels = read_training_lines()
        data_description = (f"{len(texts)} labelled review sentences ({TRAINING_DATA.name}): UCI Sentiment Labelled "
                            "Sentences, Kotzias et al., KDD 2015, CC BY 4.0")
    else:
        data_description = f"{len(texts)} labelled texts given by the caller"
    low, high = SMOOTHED_TARGETS
    targets = np.where(np.asarray(labels) >= 1, high, low)
    target = default_student_path(models_dir)
    target.parent.mkdir(parents=True, exist_ok=True)
    for stale in target.parent.glob(".building-*"):
        shred_tree(stale)  # a build killed mid-way (set-up builds one at a time)
    work = Path(tempfile.mkdtemp(prefix=".building-", dir=target.parent))
    started = time.perf_counter()
    try:
        job = write_fine_tune_job(texts, targets, encoder_dir, work, {"epochs": EPOCHS, **dict(settings or {})})
        result = run_fine_tune_job(job, python, on_progress, cancel)
        encoder = Path(result["encoder_gguf"])
        student = SentimentStudent(weights=np.asarray(result["weights"], dtype=np.float64), bias=float(result["bias"]),
                                   neutral_below=PromptConfig.load().neutral_below,
                                   embedder=embedder_identity(encoder, int(result["dim"])), staged_encoder=encoder)
        student.provenance = {
            "method": METHOD,
            "data": data_description,
            "n_texts": len(texts),
            "n_fit": result.get("n_fit"),
            "n_heldout": result.get("n_heldout"),
            "heldout_accuracy": result.get("heldout_agreement_with_teacher"),
            "training": {k: result.get(k) for k in ("steps", "epochs", "first_loss", "last_loss", "train_seconds",
                                                     "config", "gguf_torch_max_difference")},
            "build_seconds": round(time.perf_counter() - started, 1),
            # Only the set-up's own build (the shipped lines, the settings above) carries the recipe.
            "recipe": recipe() if shipped and not settings else None,
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }
        student.save(work / "student.json")
        _replace_default(work, target)
    finally:
        if work.exists():
            shred_tree(work)  # the job's copy of the lines and anything a failed run left
    return target


def _replace_default(work: Path, target: Path) -> None:
    """Move the freshly saved student (its encoder, then the JSON that names it) over the old
    one. The names are fixed, so nothing of an older build is left behind; a crash between the
    two moves leaves the old JSON beside the new encoder, which classifies as the new student's
    encoder does until the next build."""
    staged = SentimentStudent.load(work / "student.json")
    encoder = staged.encoder_path(work / "student.json")
    if encoder is not None:
        encoder.replace(target.parent / encoder.name)
    (work / "student.json").replace(target)


def ensure_default_student(models_dir: str | Path, encoder_dir: str | Path | None,
                           on_progress: Callable[[TrainProgress], None] | None = None) -> Path | None:
    """The default student, built here when it is missing and this installation can train;
    None where it cannot (no training component, no encoder folder)."""
    found = find_default_student(models_dir)
    if found is not None and SentimentStudent.load(found).provenance.get("recipe") != recipe():
        found = None  # made by an older recipe: built again below where this installation can
    if found is not None or encoder_dir is None or not Path(encoder_dir).is_dir() or not fine_tune_available():
        return found
    return build_default_student(models_dir, encoder_dir, on_progress=on_progress)


class RoutedAnalyzer:
    """The default student first, the language model for the texts it is unsure of. Same
    interface as :class:`SentimentAnalyzer` (``classify_one``, ``classify_stream``,
    ``cancel``); thread-safe like it. Cheap to build: files open on first use, on the
    classifying thread."""

    def __init__(self, student: StudentAnalyzer, language_model: SentimentAnalyzer,
                 route_confidence: float = ROUTE_CONFIDENCE):
        self.student = student
        self.language_model = language_model
        self.route_confidence = float(route_confidence)
        self._cancel = threading.Event()

    @classmethod
    def from_services(cls, services, student_path: str | Path, **language_model_options) -> "RoutedAnalyzer":
        return cls(StudentAnalyzer.from_services(services, student_path),
                   SentimentAnalyzer.from_services(services, **language_model_options))

    @property
    def neutral_below(self) -> float:
        return self.language_model.neutral_below

    def cancel(self) -> None:
        self._cancel.set()
        self.student.cancel()
        self.language_model.cancel()

    def classify_one(self, text: str) -> SentimentResult:
        return classify_one(self, text)

    def classify_stream(self, rows: list[tuple[int, str]], bad_rows: list[SentimentResult] | None = None,
                        cancel: threading.Event | None = None) -> Iterator[object]:
        """Yield :class:`SentimentProgress` as texts are answered (the student's sure ones per
        embedding batch, then the language model's per its batch), then one
        :class:`SentimentFinished` with the results in row order. A cancel keeps every
        finished result. ``metrics["routed"]`` counts the texts the language model answered."""
        self._cancel = cancel if cancel is not None else threading.Event()
        good, bad = split_empty(rows, bad_rows)
        started = time.perf_counter()
        results: list[SentimentResult] = []
        unsure: list[tuple[int, str]] = []
        cancelled = False
        for event in self.student.classify_stream(good, cancel=self._cancel):
            if isinstance(event, SentimentProgress):
                sure = [r for r in event.results if r.confidence >= self.route_confidence]
                unsure.extend((r.row, r.text) for r in event.results if r.confidence < self.route_confidence)
                results.extend(sure)
                if sure:
                    yield SentimentProgress(len(results), len(good), sure)
            elif isinstance(event, SentimentFinished):
                cancelled = event.cancelled
        if unsure and not cancelled and not self._cancel.is_set():
            answered_before = len(results)
            for event in self.language_model.classify_stream(unsure, cancel=self._cancel):
                if isinstance(event, SentimentProgress):
                    results.extend(event.results)
                    yield SentimentProgress(len(results), len(good), event.results)
                elif isinstance(event, SentimentFinished):
                    cancelled = event.cancelled
            routed = len(results) - answered_before
        else:
            routed = 0
        cancelled = cancelled or self._cancel.is_set()
        results.sort(key=lambda r: r.row)
        metrics = {"items": len(results), "routed": routed, "total_ms": (time.perf_counter() - started) * 1000.0}
        yield SentimentFinished(results, sorted(bad, key=lambda r: r.row), cancelled=cancelled, metrics=metrics)


def default_analyzer(services, **language_model_options):
    """What the Sentiment page, ``assistant sentiment`` and their callers use by default: the
    routed student where the default student was built, else the language model alone.
    Cheap (a file check), any thread."""
    path = find_default_student(services.paths.models_dir)
    if path is None:
        return SentimentAnalyzer.from_services(services, **language_model_options)
    return RoutedAnalyzer.from_services(services, path, **language_model_options)
