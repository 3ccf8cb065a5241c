"""The results line every benchmark prints and keeps: its figures with the date, the commit
and the machine's load average, written to ``benchmarks/results/NAME.json`` by the run itself."""

from __future__ import annotations

import datetime
import json
import os
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


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
