"""A sentiment student: a small, fast classifier taught by the language model's sentiment.

Qt-free and torch-free core. Training and classifying run on whatever thread calls them
(the CLI's main thread, a pool thread of the window, a benchmark), never the GUI thread:
they block on the engine worker for embeddings and, while teaching, for the teacher.

How it is made:
1. The teacher, :class:`assistant.tasks.sentiment.SentimentAnalyzer` (a language model's
   calibrated label log-probabilities), scores the user's *unlabelled* texts; each gets a
   soft label, the teacher's probability that it is positive.
2. Each text is embedded by MiniLM (all-MiniLM-L6-v2, 384-d unit vectors) through
   llama.cpp in the engine worker, the same path document retrieval uses.
3. A logistic-regression head (numpy, Newton's method, L2-regularised) is fitted to the
   teacher's soft labels (cross-entropy against a probability, i.e. distillation of the
   teacher's confidence, not only its hard label). A share of the texts is held out and
   the student's agreement with the teacher there is recorded.

Classifying is then one embedding (a 22M-parameter encoder, all texts batched) and a dot
product per text, far faster than the teacher's 270M-parameter decoder per text.

Saved as one JSON file (weights and how the student was made: teacher model and prompt,
data, counts, held-out agreement, embedding model), written atomically; loading checks
the file and refuses one that does not fit the installed embedding model.

Why one module of ~670 lines: teaching (labels from the language model, the head or the
fine-tuning job), saving, loading and classifying share the student's file format.
"""

from __future__ import annotations

import hashlib
import json
import math
import shutil
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from assistant.errors import StudentError
from engine.atomic import atomic_write_text
from engine.job_files import TEXT_COPIES, write_job_file
from engine.shred import shred_tree
from assistant.tasks.sentiment import (
    SentimentAnalyzer,
    SentimentError,
    SentimentFinished,
    SentimentProgress,
    SentimentResult,
    _clean,
    scored,
    split_empty,
)

#: ``embed(texts) -> float32 array (n, dim)`` of unit vectors (assistant.documents.collections.EmbedFn).
EmbedFn = Callable[[list[str]], np.ndarray]

FORMAT = "sentiment-student/1"
#: Texts embedded per engine request: progress and cancellation come between batches.
EMBED_BATCH = 256
#: Folder under the models folder where students are kept.
STUDENTS_DIR = "sentiment-students"


@dataclass
class StudentConfig:
    """How a student is taught. Defaults chosen on the development split of the UCI sentences."""

    # Share of the teacher-labelled texts kept out of fitting, to report how well the
    # student follows the teacher on texts it did not see.
    heldout_fraction: float = 0.15
    # L2 penalty per example on the head's weights. Measured on the UCI lines with teacher
    # labels: 1e-4 gives the best held-out accuracy (0.872 against 0.869 at 1e-3 and 0.864 at
    # 1e-5) and keeps the probabilities spread enough to tell confident texts from unsure ones.
    l2: float = 1e-4
    # Newton steps; the loss is convex and converges in well under 20.
    max_iter: int = 30
    # Fewer teacher-labelled texts than this teach a head nothing reliable.
    min_texts: int = 40
    # Seed of the held-out split, so a run can be repeated exactly.
    seed: int = 0


@dataclass
class TrainProgress:
    stage: str  # "teacher" | "embed" | "fit" | "fine-tune"
    done: int
    total: int


@dataclass
class SentimentStudent:
    """The fitted head and the record of how it was made."""

    weights: np.ndarray  # (dim,) float64
    bias: float
    neutral_below: float  # same meaning as the teacher's: confidence under it is "neutral"
    embedder: dict  # {"name", "sha256", "dim"} of the GGUF embedding model it was fitted on
    provenance: dict = field(default_factory=dict)
    # A fine-tuned student brings its own encoder: the GGUF's file name, next to the
    # student's JSON file. None: the head was fitted on the library's embedding model.
    encoder_file: str | None = None
    # A freshly fine-tuned encoder not yet stored beside a student file (moved by save()).
    staged_encoder: Path | None = field(default=None, compare=False, repr=False)

    def positive(self, vectors: np.ndarray) -> np.ndarray:
        """Probability of "positive" for each row of unit embeddings."""
        vectors = np.asarray(vectors, dtype=np.float64)
        if vectors.ndim != 2 or vectors.shape[1] != self.weights.shape[0]:
            raise StudentError(
                f"The student expects {self.weights.shape[0]}-dimensional embeddings, not {vectors.shape[-1]}: "
                "it was trained with another embedding model."
            )
        return _sigmoid(vectors @ self.weights + self.bias)

    def to_dict(self) -> dict:
        return {"format": FORMAT, "weights": [float(w) for w in self.weights], "bias": float(self.bias),
                "neutral_below": float(self.neutral_below), "embedder": dict(self.embedder),
                "encoder_file": self.encoder_file, "provenance": self.provenance}

    @classmethod
    def from_dict(cls, data: dict) -> "SentimentStudent":
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise StudentError("This is not a sentiment student file (unknown format).")
        try:
            weights = np.asarray(data["weights"], dtype=np.float64)
            student = cls(weights=weights, bias=float(data["bias"]), neutral_below=float(data["neutral_below"]),
                          embedder=dict(data["embedder"]), provenance=dict(data.get("provenance") or {}),
                          encoder_file=data.get("encoder_file"))
        except (KeyError, TypeError, ValueError) as error:
            raise StudentError(f"The sentiment student file is damaged ({error}).") from None
        if weights.ndim != 1 or not weights.size or not np.all(np.isfinite(weights)) or not math.isfinite(student.bias):
            raise StudentError("The sentiment student file is damaged (its weights are not a finite vector).")
        if student.encoder_file is not None and (not isinstance(student.encoder_file, str)
                                                 or Path(student.encoder_file).name != student.encoder_file
                                                 or not student.encoder_file.endswith(".gguf")):
            # Only a plain file name next to the student: a path could point anywhere.
            raise StudentError("The sentiment student file is damaged (its encoder is not a file beside it).")
        return student

    def encoder_path(self, student_path: str | Path) -> Path | None:
        """The student's own encoder GGUF, next to its file; None when it uses the library's."""
        return Path(student_path).with_name(self.encoder_file) if self.encoder_file else None


    def save(self, path: str | Path) -> Path:
        """Write the student's file atomically. A fine-tuned student's encoder is moved beside
        it first (``<stem>.encoder.gguf``), so a student file never names a missing encoder."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        if self.staged_encoder is not None:
            encoder_target = path.with_name(f"{path.stem}.encoder.gguf")
            try:
                shutil.move(str(self.staged_encoder), encoder_target)
            except OSError as error:
                raise StudentError(f"The student's encoder cannot be stored in {path.parent}: "
                                   f"{error.strerror or error}.") from None
            self.encoder_file, self.staged_encoder = encoder_target.name, None
        atomic_write_text(path, json.dumps(self.to_dict(), indent=1))
        return path

    @classmethod
    def load(cls, path: str | Path) -> "SentimentStudent":
        path = Path(path)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise StudentError(f"The sentiment student {path} does not exist.") from None
        except (OSError, ValueError) as error:
            raise StudentError(f"The sentiment student {path.name} cannot be read: {error}.") from None
        student = cls.from_dict(data)
        encoder = student.encoder_path(path)
        if encoder is not None and not encoder.is_file():
            raise StudentError(f"The sentiment student {path.stem} is missing its encoder {encoder.name}; "
                               "teach it again.")
        return student


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * x))  # stable for large |x|


def fit_logistic(features: np.ndarray, targets: np.ndarray, l2: float = 1e-3, max_iter: int = 30) -> tuple[np.ndarray, float]:
    """Logistic regression on soft targets in [0, 1] by Newton's method (IRLS).

    Minimises mean cross-entropy(target, sigmoid(x·w + b)) + l2/2·|w|² (the bias is not
    penalised). Convex, so Newton converges from zero in a handful of steps; each step
    solves a (dim+1)² system, 385² for MiniLM, which takes milliseconds.
    """
    x = np.asarray(features, dtype=np.float64)
    y = np.clip(np.asarray(targets, dtype=np.float64), 0.0, 1.0)
    n, dim = x.shape
    design = np.hstack([x, np.ones((n, 1))])
    theta = np.zeros(dim + 1)
    penalty = np.full(dim + 1, float(l2))
    penalty[-1] = 0.0
    for _ in range(max_iter):
        p = _sigmoid(design @ theta)
        gradient = design.T @ (p - y) / n + penalty * theta
        curvature = np.maximum(p * (1.0 - p), 1e-9)
        hessian = (design * curvature[:, None]).T @ design / n + np.diag(penalty + 1e-9)
        step = np.linalg.solve(hessian, gradient)
        theta -= step
        if np.max(np.abs(step)) < 1e-7:
            break
    return theta[:-1], float(theta[-1])


def embedder_identity(gguf_path: str | Path, dim: int) -> dict:
    """Which embedding model a student was fitted on: a student is only valid on that one."""
    path = Path(gguf_path)
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return {"name": path.name, "sha256": digest.hexdigest(), "dim": int(dim)}


def embed_all(embed: EmbedFn, texts: list[str], cancel: threading.Event | None = None,
              on_batch: Callable[[int], None] | None = None) -> np.ndarray:
    parts = []
    for start in range(0, len(texts), EMBED_BATCH):
        if cancel is not None and cancel.is_set():
            raise StudentError("Training was cancelled.")
        batch = [_clean(t) for t in texts[start:start + EMBED_BATCH]]
        parts.append(np.asarray(embed(batch), dtype=np.float32))
        if on_batch is not None:
            on_batch(min(start + EMBED_BATCH, len(texts)))
    return np.vstack(parts) if parts else np.zeros((0, 0), dtype=np.float32)


def teacher_labels(teacher: SentimentAnalyzer, texts: list[str], cancel: threading.Event | None = None,
                   on_progress: Callable[[int, int], None] | None = None) -> np.ndarray:
    """The teacher's calibrated probability of "positive" for each text, in order."""
    positive: dict[int, float] = {}
    finished = None
    for event in teacher.classify_stream(list(enumerate(texts)), cancel=cancel):
        if isinstance(event, SentimentProgress):
            for r in event.results:
                positive[r.row] = r.positive
            if on_progress is not None:
                on_progress(event.done, event.total)
        elif isinstance(event, SentimentFinished):
            finished = event
    if finished is None or finished.cancelled:
        raise StudentError("Training was cancelled while the teacher was labelling the texts.")
    for r in finished.results:
        positive[r.row] = r.positive
    return np.asarray([positive[i] for i in range(len(texts))], dtype=np.float64)


def fine_tune_available() -> bool:
    """Whether this installation can fine-tune (torch and transformers for the training
    process); the self-contained bundle cannot, and then students fit a head only."""
    from assistant.train.support import training_unavailable

    return training_unavailable() is None


def write_fine_tune_job(texts: list[str], labels: np.ndarray, encoder_dir: str | Path, work_dir: str | Path,
                        settings: dict | None = None) -> Path:
    """Write the job that fine-tunes the sentence encoder on the teacher's soft labels (kind
    "sentiment_student", run as ``python -m training.run JOB``) into ``work_dir``; returns its file."""
    work_dir = Path(work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    data = work_dir / "labels.jsonl"
    atomic_write_text(data, "".join(json.dumps({"text": t, "positive": float(p)}, ensure_ascii=False) + "\n"
                                    for t, p in zip(texts, labels)))
    # text_copies: the training process shreds the labelled texts when the job ends (engine.job_files).
    return write_job_file(work_dir, {"kind": "sentiment_student", "encoder_dir": str(encoder_dir), "data": str(data),
                                     "output_dir": str(work_dir / "student"), "settings": dict(settings or {}),
                                     TEXT_COPIES: [str(data)]})


def fine_tune_outcome(final, result: dict | None) -> dict:
    """The fine-tuning job's result from its final event (an assistant.train.process
    TrainingEvent); StudentError when it was cancelled or failed."""
    if final is None or final.kind == "cancelled":
        raise StudentError("Training was cancelled.")
    if final.kind == "error":
        raise StudentError(str(final.data.get("message") or "The student's training failed.").splitlines()[0])
    return result or {}


def run_fine_tune_job(job_file: Path, python: str | None = None,
                      on_progress: Callable[[TrainProgress], None] | None = None,
                      cancel: threading.Event | None = None) -> dict:
    """Run a job of :func:`write_fine_tune_job` as a training process and return its result.
    Blocks the calling thread on the process's output (never the GUI's: the window follows the
    job with QProcess instead); ``cancel`` stops the process at its next step, then StudentError."""
    import sys

    from assistant.train.process import StepEvent, TrainingProcess

    process = TrainingProcess.spawn(python or sys.executable, job_file)
    outcome = None
    try:
        for event in process.events():
            if cancel is not None and cancel.is_set():
                process.cancel()  # the job stops at its next step; its final event follows
            if isinstance(event, StepEvent) and on_progress is not None:
                on_progress(TrainProgress("fine-tune", event.step, event.total_steps))
            if event.final:
                outcome = event
    finally:
        if process.process.poll() is None:
            process.process.kill()
            process.process.wait()
    return fine_tune_outcome(outcome, process.result)


def fine_tune_encoder(texts: list[str], labels: np.ndarray, encoder_dir: str | Path, work_dir: str | Path,
                      settings: dict | None = None, python: str | None = None,
                      on_progress: Callable[[TrainProgress], None] | None = None,
                      cancel: threading.Event | None = None) -> dict:
    """Fine-tune the sentence encoder on the teacher's soft labels in a training process
    (``python -m training.run``, kind "sentiment_student"); returns the job's result (head
    weights, the encoder GGUF's path, held-out agreement). Blocks the calling thread (never
    the GUI's); ``cancel`` stops the process at its next step, then StudentError."""
    job_file = write_fine_tune_job(texts, labels, encoder_dir, work_dir, settings)
    return run_fine_tune_job(job_file, python, on_progress, cancel)


@dataclass
class _Labelled:
    """The texts a student learns from, with the teacher's soft labels and how they were made."""

    texts: list[str]
    labels: np.ndarray
    teacher: dict  # the record of the teacher kept in the student's provenance
    neutral_below: float
    teacher_seconds: float | None
    description: str


def _labelled(texts: list[str], teacher: SentimentAnalyzer, config: StudentConfig, data_description: str,
              soft_labels: np.ndarray | None, report: Callable[[TrainProgress], None],
              cancel: threading.Event | None) -> _Labelled:
    """The different non-empty texts and the teacher's probability that each is positive (the
    teacher labels them here unless ``soft_labels`` are given); StudentError for too few."""
    kept = [(i, t) for i, t in enumerate(texts) if isinstance(t, str) and t.strip()]
    unique: dict[str, int] = {}
    for i, t in kept:
        unique.setdefault(" ".join(t.split()), i)
    if len(unique) < config.min_texts:
        raise StudentError(f"A student needs at least {config.min_texts} different non-empty texts to learn from; "
                           f"{len(unique)} were given.")
    indices = sorted(unique.values())
    texts = [texts[i] for i in indices]
    started = time.perf_counter()
    if soft_labels is None:
        labels = teacher_labels(teacher, texts, cancel, lambda d, t: report(TrainProgress("teacher", d, t)))
        teacher_seconds = time.perf_counter() - started
    else:
        labels = np.asarray(soft_labels, dtype=np.float64)[indices]
        teacher_seconds = None
    record = {"model": Path(teacher.model_path()).name,
              "method": "few-shot label log-probabilities with contextual calibration (assistant.tasks.sentiment)",
              "prompt_sha256": hashlib.sha256(teacher.prefix().encode("utf-8")).hexdigest(),
              "neutral_below": teacher.neutral_below}
    return _Labelled(texts, labels, record, teacher.neutral_below, teacher_seconds,
                     data_description or "the user's unlabelled texts")


def _fine_tune_settings(config: StudentConfig, explicit_config: bool, settings: dict | None) -> dict:
    # The job keeps its own, smaller held-out share unless the caller chose one: a fine-tuned
    # encoder gains more from every labelled text than a head does.
    return {"min_texts": config.min_texts, "seed": config.seed,
            **({"heldout_fraction": config.heldout_fraction} if explicit_config else {}), **dict(settings or {})}


def _fine_tuned_student(result: dict, labelled: _Labelled) -> SentimentStudent:
    """The student a fine-tuning job made (its result: head weights, encoder GGUF, agreement)."""
    encoder = Path(result["encoder_gguf"])
    labels = labelled.labels
    student = SentimentStudent(weights=np.asarray(result["weights"], dtype=np.float64), bias=float(result["bias"]),
                               neutral_below=labelled.neutral_below,
                               embedder=embedder_identity(encoder, int(result["dim"])), staged_encoder=encoder)
    student.provenance = {
        "method": "MiniLM sentence encoder fine-tuned with a logistic head on the teacher's calibrated "
                  "probabilities (soft labels, binary cross-entropy); run as the encoder's GGUF through "
                  "llama.cpp and a dot product",
        "teacher": labelled.teacher,
        "data": labelled.description,
        "n_texts": len(labelled.texts),
        "n_fit": result.get("n_fit"),
        "n_heldout": result.get("n_heldout"),
        "teacher_positive_share": round(float(np.mean(labels >= 0.5)), 4),
        "heldout_agreement_with_teacher": result.get("heldout_agreement_with_teacher"),
        "training": {k: result.get(k) for k in ("steps", "first_loss", "last_loss", "train_seconds", "config",
                                                 "encoder_source", "heldout_agreement_torch",
                                                 "gguf_torch_max_difference")},
        "teacher_seconds": None if labelled.teacher_seconds is None else round(labelled.teacher_seconds, 2),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    return student


def train_student(
    texts: list[str],
    teacher: SentimentAnalyzer,
    embed: EmbedFn | None,
    embed_model: str | Path | None,
    config: StudentConfig | None = None,
    data_description: str = "",
    soft_labels: np.ndarray | None = None,
    on_progress: Callable[[TrainProgress], None] | None = None,
    cancel: threading.Event | None = None,
    fine_tune: dict | None = None,
) -> SentimentStudent:
    """Teach a student on the user's unlabelled ``texts`` (see the module docstring).

    ``soft_labels`` lets a caller pass the teacher's probabilities it already has (the
    benchmark labels once and reuses them); otherwise the teacher labels ``texts`` here.
    ``fine_tune`` — {"encoder_dir": the HF encoder folder, "work_dir": a scratch folder,
    optional "settings" and "python"} — fine-tunes the encoder with the head (the accurate
    student, see :func:`fine_tune_encoder`); without it a head is fitted on ``embed``'s
    vectors of ``embed_model`` (seconds, no torch). Raises :class:`StudentError` for too
    few texts or a cancel; nothing is saved here (:meth:`SentimentStudent.save` does).
    """
    explicit_config = config is not None
    config = config or StudentConfig()
    report = on_progress or (lambda _p: None)
    labelled = _labelled(texts, teacher, config, data_description, soft_labels, report, cancel)
    texts, labels, teacher_seconds = labelled.texts, labelled.labels, labelled.teacher_seconds
    if fine_tune is not None:
        settings = _fine_tune_settings(config, explicit_config, fine_tune.get("settings"))
        result = fine_tune_encoder(texts, labels, fine_tune["encoder_dir"], fine_tune["work_dir"], settings,
                                   fine_tune.get("python"), report, cancel)
        return _fine_tuned_student(result, labelled)
    if embed is None or embed_model is None:
        raise StudentError("A head-only student needs the embedding model.")
    vectors = embed_all(embed, texts, cancel, lambda d: report(TrainProgress("embed", d, len(texts))))
    report(TrainProgress("fit", 0, 1))

    rng = np.random.default_rng(config.seed)
    order = rng.permutation(len(texts))
    n_held = int(round(len(texts) * config.heldout_fraction)) if config.heldout_fraction > 0 else 0
    held, fit = order[:n_held], order[n_held:]
    weights, bias = fit_logistic(vectors[fit], labels[fit], config.l2, config.max_iter)
    student = SentimentStudent(weights=weights, bias=bias, neutral_below=teacher.neutral_below,
                               embedder=embedder_identity(embed_model, vectors.shape[1]))
    heldout_agreement = None
    if n_held:
        predicted = student.positive(vectors[held]) >= 0.5
        heldout_agreement = float(np.mean(predicted == (labels[held] >= 0.5)))
    report(TrainProgress("fit", 1, 1))
    student.provenance = {
        "method": "logistic regression on MiniLM sentence embeddings (llama.cpp), fitted to the teacher's "
                  "calibrated probabilities (soft labels)",
        "teacher": labelled.teacher,
        "data": labelled.description,
        "n_texts": len(texts),
        "n_fit": int(len(fit)),
        "n_heldout": int(n_held),
        "teacher_positive_share": round(float(np.mean(labels >= 0.5)), 4),
        "heldout_agreement_with_teacher": None if heldout_agreement is None else round(heldout_agreement, 4),
        "config": asdict(config),
        "teacher_seconds": None if teacher_seconds is None else round(teacher_seconds, 2),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    return student


class StudentAnalyzer:
    """The Sentiment pane's interface (``classify_one``, ``classify_stream``, ``cancel``)
    over a student instead of the language model. Thread-safe like SentimentAnalyzer.

    Built by :meth:`from_services` it is cheap: the student file and the embedding model
    are opened on first use, on the thread that classifies (a pool thread of the window),
    never the GUI thread that chose the model.
    """

    def __init__(self, student: SentimentStudent | None, embed: EmbedFn | None, neutral_below: float | None = None,
                 loader: Callable[[], tuple[SentimentStudent, EmbedFn]] | None = None):
        self._student, self._embed, self._loader = student, embed, loader
        self._neutral_below = neutral_below
        self._lock = threading.Lock()
        self._cancel = threading.Event()

    @classmethod
    def from_services(cls, services, student_path: str | Path, **options) -> "StudentAnalyzer":
        def load() -> tuple[SentimentStudent, EmbedFn]:
            from assistant.documents.collections import engine_embedder

            student = SentimentStudent.load(student_path)
            encoder = student.encoder_path(student_path)
            if encoder is None:
                return student, engine_embedder(services)

            def embed(texts: list[str]) -> np.ndarray:
                vectors, _metrics = services.engine.embed(str(encoder), texts, with_metrics=True)
                return vectors

            return student, embed

        return cls(None, None, loader=load, **options)

    def _ready(self) -> tuple[SentimentStudent, EmbedFn]:
        with self._lock:
            if self._student is None or self._embed is None:
                self._student, self._embed = self._loader()
            return self._student, self._embed

    @property
    def student(self) -> SentimentStudent:
        return self._ready()[0]

    @property
    def embed(self) -> EmbedFn:
        return self._ready()[1]

    @property
    def neutral_below(self) -> float:
        return self.student.neutral_below if self._neutral_below is None else float(self._neutral_below)

    def cancel(self) -> None:
        self._cancel.set()

    def _result(self, row: int, text: str, positive: float) -> SentimentResult:
        return scored(row, text, positive, self.neutral_below)

    def classify_one(self, text: str) -> SentimentResult:
        if not text or not text.strip():
            raise SentimentError("There is no text to analyse.")
        vectors = np.asarray(self.embed([_clean(text)]), dtype=np.float64)
        return self._result(1, text, float(self.student.positive(vectors)[0]))

    def classify_stream(self, rows: list[tuple[int, str]], bad_rows: list[SentimentResult] | None = None,
                        cancel: threading.Event | None = None) -> Iterator[object]:
        """Same events as :meth:`SentimentAnalyzer.classify_stream`, one progress per batch."""
        self._cancel = cancel if cancel is not None else threading.Event()
        good, bad = split_empty(rows, bad_rows)
        results: list[SentimentResult] = []
        started = time.perf_counter()
        cancelled = False
        for start in range(0, len(good), EMBED_BATCH):
            if self._cancel.is_set():
                cancelled = True
                break
            chunk = good[start:start + EMBED_BATCH]
            vectors = np.asarray(self.embed([_clean(t) for _, t in chunk]), dtype=np.float64)
            positive = self.student.positive(vectors)
            fresh = [self._result(number, text, float(p)) for (number, text), p in zip(chunk, positive)]
            results.extend(fresh)
            yield SentimentProgress(len(results), len(good), fresh)
        metrics = {"items": len(results), "total_ms": (time.perf_counter() - started) * 1000.0}
        yield SentimentFinished(results, sorted(bad, key=lambda r: r.row), cancelled=cancelled, metrics=metrics)


def students_dir(models_dir: str | Path) -> Path:
    return Path(models_dir) / STUDENTS_DIR


def student_files(models_dir: str | Path) -> list[Path]:
    """The saved students' files, newest first, without opening them (cheap: a folder listing)."""
    folder = students_dir(models_dir)
    if not folder.is_dir():
        return []
    return sorted(folder.glob("*.json"), key=lambda p: p.stat().st_mtime, reverse=True)


def list_students(models_dir: str | Path) -> list[tuple[str, Path]]:
    """(display name, path) of the saved students, newest first; damaged files are skipped."""
    folder = students_dir(models_dir)
    found = []
    for path in sorted(folder.glob("*.json"), key=lambda p: p.stat().st_mtime, reverse=True) if folder.is_dir() else []:
        try:
            student = SentimentStudent.load(path)
        except StudentError:
            continue
        agreement = student.provenance.get("heldout_agreement_with_teacher")
        label = f"Student: {path.stem}" + (f" ({agreement:.0%} agreement with teacher)" if agreement else "")
        found.append((label, path))
    return found


def _student_path(models_dir: str | Path, name: str) -> Path:
    """A new file name in the students folder from ``name`` (letters, digits, - and _ kept)."""
    stem = "".join(c if c.isalnum() or c in "-_" else "-" for c in name.strip()).strip("-")[:60] or "student"
    folder = students_dir(models_dir)
    candidate, n = folder / f"{stem}.json", 2
    while candidate.exists():
        candidate, n = folder / f"{stem}-{n}.json", n + 1
    return candidate


@dataclass
class Lesson:
    """A student being taught for the app, after :func:`prepare_lesson`.

    Either it is done (``path``: a head was fitted on the library's embeddings and the student
    saved), or what is left is the fine-tuning job (``job_file``): run it as a training process
    (``python -m training.run``; the window follows it with QProcess, :func:`teach_student` with
    :func:`run_fine_tune_job`), then :meth:`finish` with its result, or :meth:`discard` when it
    failed or was cancelled. Both remove the scratch folder.
    """

    models_dir: Path
    name: str
    path: Path | None = None
    job_file: Path | None = None
    work_dir: Path | None = None
    labelled: _Labelled | None = field(default=None, repr=False)

    def finish(self, result: dict) -> Path:
        """Save the student the job made (its ``done`` result); returns the student's file.
        Worker thread (hashes and moves the encoder)."""
        try:
            student = _fine_tuned_student(result, self.labelled)
            self.path = student.save(_student_path(self.models_dir, self.name))
            return self.path
        finally:
            self.discard()

    def discard(self) -> None:
        """Shred the scratch folder (the labelled texts, what the job wrote with it): a job that
        was killed could not shred its copy itself. Any thread."""
        if self.work_dir is not None:
            shred_tree(self.work_dir)


def prepare_lesson(services, texts: list[str], name: str, cancel: threading.Event | None = None,
                   on_progress: Callable[[TrainProgress], None] | None = None) -> Lesson:
    """The first part of teaching a student for the app (the Sentiment pane): the library's
    sentiment model labels ``texts``; then, where this installation can train and the library's
    sentence encoder is a model folder, the job that fine-tunes it on those labels is written
    (the caller runs it); otherwise (the bundle, an encoder that is a GGUF only) a head is
    fitted on its embeddings and the student saved here. Blocks the calling thread on the
    engine (a pool thread, never the GUI's); StudentError for too few texts or a cancel."""
    from assistant.documents.collections import engine_embedder
    from engine.convert_bert import ensure_gguf

    teacher = SentimentAnalyzer.from_services(services)
    models_dir = Path(services.paths.models_dir)
    source = Path(services.library.for_task("embed").path)
    folder = students_dir(models_dir)
    folder.mkdir(parents=True, exist_ok=True)
    description = f"{len(texts)} texts from {name}"
    if source.is_dir() and fine_tune_available():
        config = StudentConfig()
        labelled = _labelled(texts, teacher, config, description, None, on_progress or (lambda _p: None), cancel)
        work = Path(tempfile.mkdtemp(prefix=".teaching-", dir=folder))
        try:
            job_file = write_fine_tune_job(labelled.texts, labelled.labels, source, work,
                                           _fine_tune_settings(config, False, None))
        except BaseException:
            shred_tree(work)
            raise
        return Lesson(models_dir, name, job_file=job_file, work_dir=work, labelled=labelled)
    gguf_path = source if source.is_file() else ensure_gguf(source, models_dir)
    student = train_student(texts, teacher, engine_embedder(services), gguf_path, data_description=description,
                            on_progress=on_progress, cancel=cancel)
    return Lesson(models_dir, name, path=student.save(_student_path(models_dir, name)))


def teach_student(services, texts: list[str], name: str, cancel: threading.Event | None = None,
                  on_progress: Callable[[TrainProgress], None] | None = None) -> Path:
    """Teach and save a student in one call (:func:`prepare_lesson`, the fine-tuning process if
    any, :meth:`Lesson.finish`); returns the student's file. Blocks the calling thread (a worker
    or a script's, never the GUI's: the window runs the parts itself)."""
    lesson = prepare_lesson(services, texts, name, cancel, on_progress)
    if lesson.path is not None:
        return lesson.path
    try:
        result = run_fine_tune_job(lesson.job_file, on_progress=on_progress, cancel=cancel)
    except BaseException:
        lesson.discard()
        raise
    return lesson.finish(result)
