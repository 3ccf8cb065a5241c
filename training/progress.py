"""Progress of a training job as JSON lines on stdout.

Runs in the training process. ``emit`` is called from the main thread; ``stop_requested``
is set from the signal handler that ``training.run`` installs (SIGTERM, SIGINT), and the
training loop checks it after every step, saves a checkpoint and returns.

Every line is one JSON object with an ``event`` key, flushed at once so that the parent
(``assistant.train.jobs``) sees it live:

  {"event": "start", ...}                  job accepted, sizes known
  {"event": "step", "step", "total_steps", "loss", "tokens_per_s", "eta_s", ...}
  {"event": "eval", "step", "eval_loss", "perplexity"}
  {"event": "checkpoint", "step", "path"}
  {"event": "message", "text"}             human-readable stage ("Preparing the base model...")
  {"event": "done", "result": {...}} | {"event": "error", "message"} | {"event": "cancelled", "step"}
"""

from __future__ import annotations

import json
import math
import sys
import threading
import time


class JobCancelled(Exception):
    """Raised by a job that stopped on request after saving its state; ``training.run`` then
    emits ``cancelled`` and exits with code 3. ``args[0]`` is the step reached."""


class ProgressReporter:
    def __init__(self, stream=None, rank: int = 0):
        self.stream = stream if stream is not None else sys.stdout
        # Under torchrun only rank 0 speaks: the parent reads one stream of events.
        self.enabled = rank == 0
        self.stop_requested = False
        self.defer_stop = False  # set by a training loop that checks stop_requested itself
        self._lock = threading.Lock()

    def emit(self, event: str, **fields) -> None:
        if not self.enabled:
            return
        record = {"event": event, "time": round(time.time(), 3), **fields}
        line = json.dumps(record, default=_jsonable, allow_nan=False)
        with self._lock:
            self.stream.write(line + "\n")
            self.stream.flush()

    def step(self, step: int, total_steps: int, loss: float, tokens_per_s: float, eta_s: float, **extra) -> None:
        self.emit("step", step=step, total_steps=total_steps, loss=_finite(loss),
                  tokens_per_s=round(float(tokens_per_s), 2), eta_s=round(float(eta_s), 1), **extra)

    def message(self, text: str) -> None:
        self.emit("message", text=text)

    def request_stop(self, *_args) -> None:
        """Signal handler body. While a training loop runs (``defer_stop``) it only sets the
        flag and the loop saves a checkpoint at the next step boundary; before that (loading
        the base, preparing data) there is nothing to save, so the job stops at once."""
        self.stop_requested = True
        if not self.defer_stop:
            raise JobCancelled(None)


def _finite(value: float) -> float | None:
    value = float(value)
    return round(value, 5) if math.isfinite(value) else None


def _jsonable(value):
    if hasattr(value, "item"):
        return value.item()
    return str(value)
