"""Window start-up: process start to the main window's first paint.

Each run is a fresh Python process (no warm imports), started by this script:

- app: ``ui.app.run()``, the code path of the ``assistant`` command. The first paint is
  taken when the main window's first paint event has been handled; the services (store,
  model pack sync) and the engine are started only after it, and their time is reported
  too (``services_ready``), not counted in the first paint;
- baseline: a bare ``QMainWindow`` in the same kind of process: the floor that Python,
  PySide6 and the platform plugin set before any of our code runs.

Time is measured from just before the parent spawns the child to the paint, so interpreter
start-up and imports are included. One warm-up run of each kind fills the page cache (and
joins the default pack once in the private data folder); then the kinds alternate.

Uses a real X server (Xvfb) when one can be started and no DISPLAY is set, else Qt's
offscreen platform. Run: ``python benchmarks/startup.py [--runs N]``. Prints a table, then
one JSON line. Target: first paint p50 under 1500 ms.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from benchmarks.record import report  # noqa: E402

TARGET_FIRST_PAINT_MS = 1500
DEFAULT_RUNS = 9

APP_CHILD = r"""
import json, sys, time
from PySide6.QtCore import QTimer
from ui.app import run
seen = {}
def milestone(name, window):
    seen[name] = time.time()
    if name in ("services_ready", "services_failed"):
        QTimer.singleShot(0, window.close)
run(on_milestone=milestone)
seen["torch_imported"] = "torch" in sys.modules
print("RESULT " + json.dumps(seen), flush=True)
"""

BARE_CHILD = r"""
import json, time
from PySide6.QtCore import QEvent, QObject, QTimer
from PySide6.QtWidgets import QApplication, QLabel, QMainWindow
seen = {}
app = QApplication(["bare"])
window = QMainWindow()
window.setCentralWidget(QLabel("baseline"))
window.resize(1180, 760)
class Watch(QObject):
    def eventFilter(self, obj, event):
        if obj is window and event.type() == QEvent.Type.Paint and "first_paint" not in seen:
            QTimer.singleShot(0, lambda: (seen.setdefault("first_paint", time.time()), app.quit()))
        return False
watch = Watch()
window.installEventFilter(watch)
window.show()
app.exec()
print("RESULT " + json.dumps(seen), flush=True)
"""


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def start_xvfb() -> tuple[subprocess.Popen | None, str | None]:
    binary = shutil.which("Xvfb")
    if binary is None or os.environ.get("DISPLAY"):
        return None, os.environ.get("DISPLAY")
    read_fd, write_fd = os.pipe()
    server = subprocess.Popen([binary, "-displayfd", str(write_fd), "-screen", "0", "1280x800x24", "-nolisten", "tcp"],
                              pass_fds=(write_fd,), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    os.close(write_fd)
    with os.fdopen(read_fd) as pipe:
        display = pipe.readline().strip()
    if not display:
        server.kill()
        server.wait()
        return None, None
    return server, f":{display}"


def one_run(kind: str, env: dict) -> dict:
    code = APP_CHILD if kind == "app" else BARE_CHILD
    started = time.time()
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True,
                            timeout=300)
    lines = [line for line in result.stdout.splitlines() if line.startswith("RESULT ")]
    if result.returncode != 0 or not lines:
        raise RuntimeError(f"{kind} run failed ({result.returncode}):\n{result.stderr[-3000:]}")
    seen = json.loads(lines[-1][len("RESULT "):])
    out = {"first_paint_ms": (seen["first_paint"] - started) * 1000}
    if "services_ready" in seen:
        out["services_ready_ms"] = (seen["services_ready"] - started) * 1000
    if kind == "app":
        out["torch_imported"] = bool(seen.get("torch_imported"))
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=DEFAULT_RUNS, help="measured runs of each kind")
    args = parser.parse_args()

    server, display = start_xvfb()
    data = tempfile.TemporaryDirectory(prefix="startup-bench-")
    env = dict(os.environ, ASSISTANT_DATA_DIR=data.name, PYTHONPATH=str(ROOT))
    if display:
        env.update(DISPLAY=display, QT_QPA_PLATFORM="xcb")
        platform = f"xcb on {'Xvfb ' if server else ''}{display}"
    else:
        env["QT_QPA_PLATFORM"] = "offscreen"
        platform = "offscreen"
    try:
        one_run("app", env)  # warm-up: page cache, and the default pack joined once
        one_run("bare", env)
        app_runs, bare_runs = [], []
        for _ in range(args.runs):
            app_runs.append(one_run("app", env))
            bare_runs.append(one_run("bare", env))
    finally:
        data.cleanup()
        if server is not None:
            server.terminate()
            server.wait()

    paint = [r["first_paint_ms"] for r in app_runs]
    ready = [r["services_ready_ms"] for r in app_runs]
    bare = [r["first_paint_ms"] for r in bare_runs]
    torch = any(r["torch_imported"] for r in app_runs)
    figures = {
        "first_paint_ms_p50": round(percentile(paint, 0.5), 1),
        "first_paint_ms_p95": round(percentile(paint, 0.95), 1),
        "baseline_first_paint_ms_p50": round(percentile(bare, 0.5), 1),
        "baseline_first_paint_ms_p95": round(percentile(bare, 0.95), 1),
        "first_paint_overhead_ms_p50": round(percentile(paint, 0.5) - percentile(bare, 0.5), 1),
        "services_ready_ms_p50": round(percentile(ready, 0.5), 1),
    }
    targets = {"first_paint_ms_p50": TARGET_FIRST_PAINT_MS}
    met = figures["first_paint_ms_p50"] < TARGET_FIRST_PAINT_MS and not torch

    print(f"Window start-up, {args.runs} fresh processes each, platform {platform}")
    print(f"{'':34}{'p50 ms':>10}{'p95 ms':>10}{'min ms':>10}")
    print(f"{'main window, first paint':34}{figures['first_paint_ms_p50']:>10.1f}"
          f"{figures['first_paint_ms_p95']:>10.1f}{min(paint):>10.1f}")
    print(f"{'bare QMainWindow, first paint':34}{figures['baseline_first_paint_ms_p50']:>10.1f}"
          f"{figures['baseline_first_paint_ms_p95']:>10.1f}{min(bare):>10.1f}")
    print(f"{'main window, services ready':34}{figures['services_ready_ms_p50']:>10.1f}"
          f"{percentile(ready, 0.95):>10.1f}{min(ready):>10.1f}")
    print(f"torch imported by the window: {'yes' if torch else 'no'}; target first paint p50 < "
          f"{TARGET_FIRST_PAINT_MS} ms: {'met' if met else 'NOT met'}")
    report("startup", figures, targets, met)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
