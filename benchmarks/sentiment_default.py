"""The default sentiment path of a fresh install: the routed default student against the
language model alone, side by side (issue 23).

Data: ``../shared/data/sentiment/uci_sentiment_labelled.tsv``, split by line number in code:
lines 0, 1, 2 mod 4 are the development part (they are what the app ships in
``resources/datasets/uci_sentiment_development.tsv`` and trains the default student on);
lines 3 mod 4 are scored and never used to train or choose anything.

``--develop`` chooses the settings of ``assistant/tasks/sentiment_default.py`` on the
development part alone: it splits it again by position (every third line is held out),
trains a student on the rest for each candidate number of epochs (timed: set-up must stay
within about a minute), scores the held-out lines with it and with the language model, and
prints, for each routing confidence, the accuracy, the share sent to the language model and
the share labelled neutral. Its results go to ``sentiment_default_development.json``.

The scored run (no flag) does what set-up does (``build_default_student`` on the shipped
lines, timed), then, on the scored lines:
  (a) the routed default (``RoutedAnalyzer``) as the app runs it;
  (b) the language model alone (``SentimentAnalyzer``), what a fresh install used before;
  (c) both on the hand-written reviews of other sources and short film phrases of
      ``benchmarks/sentiment_quality.py`` (UNSEEN), which neither method was tuned on;
and the speed end to end: ``assistant sentiment FILE --output`` in a new process (start,
unlock, engine and model loads included) on 1,000 lines (the 750 scored lines, then their
first 250 again), ``--method auto`` against ``--method language-model``, after one warm-up
call that creates the data folder's database.

Accuracy counts the polar decision (probability of positive at least 0.5) against the gold
label; the neutral share is at the app's default threshold and is reported beside it.

    python benchmarks/sentiment_default.py [--develop]

Prints a table, then one JSON line.
"""

from __future__ import annotations

import argparse
import csv
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

os.environ.setdefault("OMP_WAIT_POLICY", "passive")  # as benchmarks/sentiment_quality.py, for the same reason

from engine import privacy  # noqa: E402

privacy.install()

from assistant.tasks import sentiment_default  # noqa: E402
from assistant.tasks.sentiment import SentimentAnalyzer, SentimentFinished  # noqa: E402
from assistant.tasks.sentiment_student import SentimentStudent, StudentAnalyzer  # noqa: E402
from benchmarks.record import THROWAWAY_PASSPHRASE, report  # noqa: E402
from benchmarks.sentiment_quality import UNSEEN, _Library  # noqa: E402
from engine import model_pack  # noqa: E402
from engine.client import EngineClient  # noqa: E402
from engine.settings import EngineSettings  # noqa: E402

DATA = Path(os.environ.get("ASSISTANT_SHARED_DATA", ROOT / ".." / "shared" / "data")).resolve()
#: Candidates the development run compares, fixed before it ran.
EPOCH_CANDIDATES = (1, 2)
CONFIDENCE_CANDIDATES = (0.6, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95)
SPEED_LINES = 1000


def read_split() -> tuple[list[tuple[str, int]], list[tuple[str, int]]]:
    with open(DATA / "sentiment" / "uci_sentiment_labelled.tsv", encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle, delimiter="\t", quoting=csv.QUOTE_NONE))
    development = [(r["text"], int(r["label"])) for i, r in enumerate(rows) if i % 4 != 3]
    scored = [(r["text"], int(r["label"])) for i, r in enumerate(rows) if i % 4 == 3]
    return development, scored


def run_stream(analyzer, texts: list[str]) -> tuple[list, float, dict]:
    started = time.perf_counter()
    final = None
    for event in analyzer.classify_stream(list(enumerate(texts, 1))):
        if isinstance(event, SentimentFinished):
            final = event
    assert final is not None and not final.bad_rows and not final.cancelled
    return final.results, time.perf_counter() - started, final.metrics


def figures_of(results: list, gold: list[int]) -> dict:
    correct = [(r.positive >= 0.5) == bool(g) for r, g in zip(results, gold)]
    labelled = [r.label == ("positive" if g else "negative") for r, g in zip(results, gold)]
    return {"accuracy": round(float(np.mean(correct)), 4),
            "accuracy_neutral_counted_wrong": round(float(np.mean(labelled)), 4),
            "neutral_share": round(float(np.mean([r.label == "neutral" for r in results])), 4)}


def student_analyzer(engine: EngineClient, student_path: Path) -> StudentAnalyzer:
    student = SentimentStudent.load(student_path)
    encoder = str(student.encoder_path(student_path))

    def embed(texts: list[str]) -> np.ndarray:
        return np.asarray(engine.embed(encoder, texts), dtype=np.float32)

    return StudentAnalyzer(student, embed)


def develop(models_dir: Path, gemma: str, minilm_dir: Path) -> int:
    development, _scored = read_split()
    fit = [row for j, row in enumerate(development) if j % 3 != 2]
    held = [row for j, row in enumerate(development) if j % 3 == 2]
    texts, gold = [t for t, _ in held], [g for _, g in held]
    table, per_epochs = [], {}
    with EngineClient(EngineSettings()) as engine:
        teacher = SentimentAnalyzer(engine, _Library(gemma))
        teacher_results, _, _ = run_stream(teacher, texts)
        teacher_neutral_below = teacher.neutral_below
        for epochs in EPOCH_CANDIDATES:
            folder = models_dir / f"develop-{epochs}"
            started = time.perf_counter()
            # min_steps 0: the candidates differ in their passes, not a floor of steps.
            path = sentiment_default.build_default_student(folder, minilm_dir, [t for t, _ in fit],
                                                           [g for _, g in fit],
                                                           settings={"epochs": epochs, "min_steps": 0})
            build_s = time.perf_counter() - started
            student_results, _, _ = run_stream(student_analyzer(engine, path), texts)
            per_epochs[epochs] = {"build_s": round(build_s, 1), **figures_of(student_results, gold)}
            for confidence in CONFIDENCE_CANDIDATES:
                routed = []
                for s, t in zip(student_results, teacher_results):
                    routed.append(s if s.confidence >= confidence else t)
                share = float(np.mean([s.confidence < confidence for s in student_results]))
                table.append({"epochs": epochs, "route_confidence": confidence, "routed_share": round(share, 4),
                              **figures_of(routed, gold)})
    teacher_figures = figures_of(teacher_results, gold)
    print(f"development: trained on {len(fit)} lines, held out {len(held)}; language model alone: {teacher_figures}")
    for epochs, row in per_epochs.items():
        print(f"  student alone, {epochs} epoch(s): {row}")
    print(f"  {'epochs':>6} {'conf':>5} {'to LM':>6} {'acc':>6} {'acc(n)':>6} {'neutral':>7}")
    for row in table:
        print(f"  {row['epochs']:>6} {row['route_confidence']:>5} {row['routed_share']:>6.3f} {row['accuracy']:>6.3f} "
              f"{row['accuracy_neutral_counted_wrong']:>6.3f} {row['neutral_share']:>7.3f}")
    chosen = choose(table)
    print(f"chosen by the rule: {chosen}")
    report("sentiment_default", {"language_model": teacher_figures, "students": per_epochs, "routing": table,
                                 "neutral_below": teacher_neutral_below, "chosen": chosen},
           {}, True, name="sentiment_default_development", part="development")
    return 0


def choose(table: list[dict]) -> dict:
    """The rule, fixed before the development run: for each number of epochs, the lowest routing
    confidence whose accuracy is that epoch count's best (to three decimals; fewer texts for the
    language model is faster); then one epoch unless two gain at least half a point there
    (set-up time doubles)."""
    best = {}
    for epochs in EPOCH_CANDIDATES:
        rows = [r for r in table if r["epochs"] == epochs]
        top = max(round(r["accuracy"], 3) for r in rows)
        best[epochs] = min((r for r in rows if round(r["accuracy"], 3) == top), key=lambda r: r["route_confidence"])
    pick = best[1]
    if best[2]["accuracy"] >= best[1]["accuracy"] + 0.005:
        pick = best[2]
    return {"epochs": pick["epochs"], "route_confidence": pick["route_confidence"]}


def cli_seconds(data_dir: Path, input_path: Path, method: str, output: Path) -> float:
    env = {**os.environ, "ASSISTANT_DATA_DIR": str(data_dir), "ASSISTANT_PASSPHRASE": THROWAWAY_PASSPHRASE}
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "assistant", "sentiment", str(input_path), "--method", method,
                    "--output", str(output)], env=env, check=True, cwd=ROOT, stdout=subprocess.DEVNULL)
    return time.perf_counter() - started


def scored_run(work: Path) -> int:
    development, scored = read_split()
    shipped_texts, shipped_labels = sentiment_default.read_training_lines()
    assert list(zip(shipped_texts, shipped_labels)) == development, "the shipped lines are not the development part"
    data_dir = work / "data"
    models_dir = data_dir / "models"
    models_dir.mkdir(parents=True)
    pack = model_pack.prepare_pack(models_dir)
    gemma, minilm_dir = str(pack[model_pack.GEMMA3.id]), pack[model_pack.MINILM.id]
    started = time.perf_counter()
    student_path = sentiment_default.build_default_student(models_dir, minilm_dir)  # what set-up does
    build_s = time.perf_counter() - started

    texts, gold = [t for t, _ in scored], [g for _, g in scored]
    unseen_texts, unseen_gold = [t for t, _ in UNSEEN], [g for _, g in UNSEEN]
    figures: dict = {"build_s": round(build_s, 1), "route_confidence": sentiment_default.ROUTE_CONFIDENCE,
                     "epochs": sentiment_default.EPOCHS, "scored_lines": len(texts)}
    with EngineClient(EngineSettings()) as engine:
        language_model = SentimentAnalyzer(engine, _Library(gemma))
        routed = sentiment_default.RoutedAnalyzer(student_analyzer(engine, student_path), language_model)
        routed_results, _, routed_metrics = run_stream(routed, texts)
        lm_results, _, _ = run_stream(language_model, texts)
        figures["routed"] = {**figures_of(routed_results, gold),
                             "routed_share": round(routed_metrics["routed"] / len(texts), 4)}
        figures["language_model"] = figures_of(lm_results, gold)
        unseen_routed, _, unseen_metrics = run_stream(routed, unseen_texts)
        unseen_lm, _, _ = run_stream(language_model, unseen_texts)
        figures["unseen_routed"] = {**figures_of(unseen_routed, unseen_gold),
                                    "routed_share": round(unseen_metrics["routed"] / len(unseen_texts), 4)}
        figures["unseen_language_model"] = figures_of(unseen_lm, unseen_gold)

    lines = (texts * 2)[:SPEED_LINES]
    input_path = work / "speed.csv"
    with open(input_path, "w", encoding="utf-8", newline="") as handle:  # quoted where a review has quotes
        csv.writer(handle).writerows([["text"]] + [[t] for t in lines])
    env = {**os.environ, "ASSISTANT_DATA_DIR": str(data_dir), "ASSISTANT_PASSPHRASE": THROWAWAY_PASSPHRASE}
    subprocess.run([sys.executable, "-m", "assistant", "sentiment", "a warm-up sentence"], env=env, check=True,
                   cwd=ROOT, stdout=subprocess.DEVNULL)
    load_before = os.getloadavg()[0]
    auto_s = cli_seconds(data_dir, input_path, "auto", work / "auto.csv")
    lm_s = cli_seconds(data_dir, input_path, "language-model", work / "lm.csv")
    figures.update(cli_lines=len(lines), cli_auto_s=round(auto_s, 1), cli_language_model_s=round(lm_s, 1),
                   cli_auto_sentences_per_s=round(len(lines) / auto_s, 1),
                   cli_language_model_sentences_per_s=round(len(lines) / lm_s, 1),
                   cli_speed_ratio=round(lm_s / auto_s, 2), load_before_speed=round(load_before, 2))

    targets = {"routed.accuracy": 0.94, "routed.neutral_share_max": 0.05, "cli_auto_sentences_per_s": 50.0,
               "build_s_max": 60.0}
    met = (figures["routed"]["accuracy"] >= 0.94 and figures["routed"]["neutral_share"] <= 0.05
           and figures["cli_auto_sentences_per_s"] >= 50.0 and build_s <= 60.0)
    print(f"default student built in {build_s:.1f} s ({sentiment_default.EPOCHS} epoch(s))")
    print(f"{'':28} {'accuracy':>8} {'neutral':>8} {'to LM':>6}")
    for name in ("routed", "language_model", "unseen_routed", "unseen_language_model"):
        row = figures[name]
        print(f"{name:28} {row['accuracy']:>8.4f} {row['neutral_share']:>8.3f} {row.get('routed_share', 1.0):>6.3f}")
    print(f"CLI, {len(lines)} lines: auto {auto_s:.1f} s ({len(lines) / auto_s:.1f}/s), language model alone "
          f"{lm_s:.1f} s ({len(lines) / lm_s:.1f}/s); load before {load_before:.2f}")
    report("sentiment_default", figures, targets, met, part="scored")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--develop", action="store_true", help="choose the settings on the development part")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-sentiment-default-"))
    if args.develop:
        models_dir = work / "models"
        pack = model_pack.prepare_pack(models_dir)
        return develop(models_dir, str(pack[model_pack.GEMMA3.id]), pack[model_pack.MINILM.id])
    return scored_run(work)


if __name__ == "__main__":
    sys.exit(main())
