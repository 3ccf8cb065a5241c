"""Helpers of the training-process tests: small job files and reading a job's JSON lines."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

TEXT = ("Packed blocks train on every token. A checkpoint holds the adapter, the optimizer, the "
        "schedule, the random state and the data position, so a stopped job resumes exactly. ") * 40


def lora_job(tmp_path: Path, gguf: Path, cache_root: Path, **settings) -> Path:
    data = tmp_path / "notes.txt"
    data.write_text(TEXT, encoding="utf-8")
    out = tmp_path / "run"
    job = {"kind": "lora", "base_gguf": str(gguf), "cache_root": str(cache_root), "output_dir": str(out),
           "dataset": {"type": "text_files", "paths": [str(data)]}, "preset": "balanced",
           "export_gguf": False,
           "settings": {"rank": 4, "alpha": 8, "seq_len": 32, "batch_size": 2, "max_steps": 3,
                        "eval_blocks": 2, "warmup_steps": 0, "checkpoint_every": 2, "threads": 1, **settings}}
    path = tmp_path / "job.json"
    path.write_text(json.dumps(job), encoding="utf-8")
    return path


def env() -> dict:
    return {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"}


def start(job: Path, *extra: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "training.run", str(job), *extra], cwd=ROOT, env=env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def run(job: Path, *extra: str) -> tuple[int, list[dict], str]:
    proc = start(job, *extra)
    out, err = proc.communicate()
    return proc.returncode, parse(out), err


def parse(stdout: str) -> list[dict]:
    """Every stdout line must be one JSON event."""
    events = []
    for line in stdout.splitlines():
        record = json.loads(line)
        assert isinstance(record, dict) and "event" in record, line
        events.append(record)
    return events
