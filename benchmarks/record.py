"""The results line every benchmark prints and keeps: its figures with the date, the commit
and the machine's load average, written to ``benchmarks/results/NAME.json`` by the run itself."""

from __future__ import annotations

import datetime
import json
import os
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS_DIR = ROOT / "benchmarks" / "results"
#: The benchmarks' own data folders hold public data only and are thrown away: where the machine
#: has no keyring their key is wrapped under this passphrase instead of asking for one.
THROWAWAY_PASSPHRASE = "benchmark data folder (public data, thrown away)"


def results_line(benchmark: str, figures: dict, targets: dict, met: bool, **extra) -> dict:
    """The line of one run: ``extra`` (e.g. the part scored) goes after the benchmark's name."""
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                            text=True).stdout.strip()
    return {"benchmark": benchmark, **extra, "figures": figures, "targets": targets, "met": met,
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"), "commit": commit,
            "load_average_1m": round(os.getloadavg()[0], 2)}


def write_results(line: dict, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(line, indent=2) + "\n", encoding="utf-8")


def report(benchmark: str, figures: dict, targets: dict, met: bool, *, name: str | None = None, **extra) -> dict:
    """Print the results line and keep it in ``benchmarks/results/NAME.json`` (NAME: the
    benchmark's name unless given), from the run itself, so a figure in a note is one a run wrote."""
    line = results_line(benchmark, figures, targets, met, **extra)
    write_results(line, RESULTS_DIR / f"{name or benchmark}.json")
    print(json.dumps(line), flush=True)
    return line
