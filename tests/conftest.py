"""Suite-wide fixtures: network blocked, a private data folder, nothing left running."""

from __future__ import annotations

import os
import threading

import pytest

# Before any test module imports transformers or huggingface_hub.
from engine import privacy

privacy.install()
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")


@pytest.fixture(autouse=True)
def data_dir(tmp_path, monkeypatch):
    """Every test gets its own empty data folder; nothing touches the user's real one."""
    folder = tmp_path / "data"
    monkeypatch.setenv("ASSISTANT_DATA_DIR", str(folder))
    return folder


def _child_pids() -> set[int]:
    import psutil

    return {p.pid for p in psutil.Process().children(recursive=True)}


@pytest.fixture(autouse=True)
def no_leftover_threads_or_processes():
    """Fail any test that leaves a worker thread or child process running."""
    threads_before = set(threading.enumerate())
    children_before = _child_pids()
    yield
    import time

    import psutil

    deadline = time.monotonic() + 5.0
    while True:
        extra_threads = [t for t in threading.enumerate() if t not in threads_before and t.is_alive()]
        extra_children = []
        for pid in _child_pids() - children_before:
            try:
                if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                    extra_children.append(pid)
            except psutil.NoSuchProcess:
                pass
        if not extra_threads and not extra_children:
            return
        if time.monotonic() > deadline:
            break
        time.sleep(0.05)
    for pid in extra_children:
        try:
            psutil.Process(pid).kill()
        except psutil.NoSuchProcess:
            pass
    pytest.fail(
        f"test left running: threads {[t.name for t in extra_threads]}, child processes {extra_children}"
    )
