"""Thread back-off: the decision, the load measurement, and the worker under a CPU hog."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from engine import threads
from engine.client import EngineClient
from engine.settings import EngineSettings, physical_cores
from engine.threads import CpuSnapshot, LoadSampler, others_busy, threads_for_load


@pytest.mark.parametrize("max_threads, others, cores, expected", [
    (2, None, 2, 2),     # unknown load: the settings as they are
    (2, 0.0, 2, 2),
    (2, 0.4, 2, 2),      # background noise rounds to no core
    (2, 0.6, 2, 1),
    (2, 1.9, 2, 1),
    (2, 5.0, 2, 1),      # never fewer than one
    (8, 1.2, 8, 7),
    (4, 2.0, 8, 4),      # the user's setting stays the upper bound
    (1, 0.0, 8, 1),
    (6, 0.0, 4, 6),      # a quiet machine keeps an explicit setting above the cores
    (6, 1.0, 4, 3),
    (0, 0.0, 2, 1),
])
def test_threads_for_load(max_threads, others, cores, expected):
    assert threads_for_load(max_threads, others, cores) == expected


def test_others_busy_subtracts_this_process():
    before = CpuSnapshot(at=10.0, busy=100.0, own=5.0)
    after = CpuSnapshot(at=12.0, busy=103.0, own=6.0)  # 3 CPU-seconds in 2 s, 1 of them ours
    assert others_busy(before, after) == pytest.approx(1.0)
    assert others_busy(before, CpuSnapshot(at=12.0, busy=100.5, own=6.0)) == 0.0  # ticks vs precise clock
    assert others_busy(after, after) is None


def test_proc_stat_parsing_keeps_to_the_allowed_cpus(tmp_path, monkeypatch):
    monkeypatch.setattr(threads, "_TICK", 0.01)
    stat = tmp_path / "stat"
    stat.write_text(
        "cpu  900 0 100 5000 10 0 0 0 0 0\n"
        "cpu0 100 10 50 2000 5 1 2 3 7 0\n"
        "cpu1 800 0 50 3000 5 0 0 0 0 0\n"
        "intr 12345\nctxt 678\n")
    # user + nice + system + irq + softirq + steal; idle and iowait are not busy.
    assert threads._proc_stat_busy({0}, str(stat)) == pytest.approx(1.66)
    assert threads._proc_stat_busy(None, str(stat)) == pytest.approx(1.66 + 8.5)
    assert threads._proc_stat_busy({5}, str(stat)) is None
    assert threads._proc_stat_busy(None, str(tmp_path / "missing")) is None


def test_sampler_needs_a_window_before_it_estimates(monkeypatch):
    sampler = LoadSampler(cores=2)
    clock = [100.0]
    monkeypatch.setattr(threads.time, "monotonic", lambda: clock[0])
    sampler._ring.clear()
    sampler._ring.append(CpuSnapshot(at=100.0, busy=0.0, own=0.0))
    monkeypatch.setattr(sampler, "snapshot", lambda: CpuSnapshot(at=clock[0], busy=(clock[0] - 100.0) * 1.5, own=0.0))
    clock[0] = 100.05
    assert sampler.others_busy_cores() is None, "too short a window"
    clock[0] = 101.0
    assert sampler.others_busy_cores() == pytest.approx(1.5 * 2 / sampler.logical)


def _hogs(count: int, seconds: float) -> list[subprocess.Popen]:
    """``count`` processes that each keep a core busy for at most ``seconds``."""
    code = f"import time\nend = time.monotonic() + {seconds}\nwhile time.monotonic() < end:\n    pass\n"
    return [subprocess.Popen([sys.executable, "-c", code]) for _ in range(count)]


def _embed_metrics(client: EngineClient, path: str) -> dict:
    return client.embed(path, ["How busy is the machine?"], with_metrics=True, timeout=120)[1]


@pytest.mark.whole_machine
def test_fewer_threads_beside_a_cpu_hog_and_all_of_them_after(minilm_gguf):
    cores = physical_cores()
    if cores < 2:
        pytest.skip("one core: there is no thread to give up")
    with EngineClient(EngineSettings(n_ctx=512)) as client:
        assert _embed_metrics(client, minilm_gguf)["n_threads"] >= 1  # loads the encoder
        hogs = _hogs(cores, seconds=60)
        try:
            time.sleep(1.5)  # the worker's sampler sees a full window of the hogs
            busy = _embed_metrics(client, minilm_gguf)
        finally:
            for hog in hogs:
                hog.kill()
            for hog in hogs:
                hog.wait()
        assert busy["others_busy_cores"] >= cores - 0.5, busy
        assert busy["n_threads"] == 1 and busy["n_threads_batch"] == 1, busy
        # Once the hogs are gone every thread comes back (waiting out anyone else's burst).
        deadline = time.monotonic() + 20
        while True:
            time.sleep(1.0)
            quiet = _embed_metrics(client, minilm_gguf)
            if quiet["n_threads"] == cores or time.monotonic() > deadline:
                break
        assert quiet["n_threads"] == cores and quiet["n_threads_batch"] == cores, quiet


def test_every_kind_of_request_reports_its_threads(engine, smollm2_path, minilm_gguf):
    done = engine.complete(smollm2_path, "Hello", {"temperature": 0, "max_tokens": 2}).result(timeout=120)
    scored = engine.classify(smollm2_path, ["Great!"], [" yes", " no"], template="{text} Good?").result(timeout=120)
    embedded = _embed_metrics(engine, minilm_gguf)
    for metrics in (done["metrics"], scored["metrics"], embedded):
        assert 1 <= metrics["n_threads"] <= max(1, engine.settings.n_threads), metrics
        assert 1 <= metrics["n_threads_batch"] <= max(1, engine.settings.n_threads_batch), metrics
        assert "others_busy_cores" in metrics
