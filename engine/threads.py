"""How many threads llama.cpp gets for a request: fewer while other programs keep the cores busy.

llama.cpp's threads meet at a barrier after every operation of the graph; in this build the
barrier is OpenMP's (``libggml-cpu`` links libgomp), whose waiters spin before they sleep.
When other processes occupy the cores, one of our threads is descheduled and the others
spin at the next barrier until it runs again, so a step takes as long as the scheduler's
time slice rather than the work: with threads = cores on a busy machine decode collapses.
With fewer threads than the cores left free, every thread of ours keeps a core.

Why the worker does not set ``OMP_WAIT_POLICY=passive`` (or a small ``GOMP_SPINCOUNT``):
the barrier runs once per graph operation, several hundred times a token, and a passive
wait turns each into a futex sleep and wake-up, which costs the quiet machine far more
than it saves a busy one; the back-off below removes the stall under load instead.

:func:`threads_for_load` is the pure decision. :class:`LoadSampler` measures the busy cores
that are not this process's: CPU time of the CPUs this process may run on (``/proc/stat``,
restricted to the affinity mask) minus this process's own CPU time, over a recent window.
A daemon thread of the engine worker (``engine-load``) takes a snapshot a few times a second
into a short ring; the worker's request thread reads an estimate at the start of each
request, so no request waits for a measurement. Both may be used from any thread.
"""

from __future__ import annotations

import collections
import os
import threading
import time
from dataclasses import dataclass

#: Seconds between the sampler thread's snapshots.
SAMPLE_INTERVAL_S = 0.25
#: The estimate covers at least this much recent time when the ring holds it (shorter
#: windows are noisier: /proc/stat counts in clock ticks).
WINDOW_S = 0.5
#: Below this a window says too little; no estimate is made from it.
MIN_WINDOW_S = 0.1
#: Snapshots kept (the oldest window the ring can offer).
RING = 8


def threads_for_load(max_threads: int, others_busy_cores: float | None, cores: int) -> int:
    """Threads for one request: ``max_threads`` (the user's setting, the upper bound) while the
    others' load rounds to no core, else the cores the others leave free, at least one.

    ``others_busy_cores`` is how many cores other processes kept busy (None: unknown, so
    ``max_threads``); ``cores`` is how many cores this process may use.
    """
    max_threads = max(1, int(max_threads))
    if others_busy_cores is None:
        return max_threads
    busy = int(max(0.0, float(others_busy_cores)) + 0.5)  # round half up
    if busy <= 0:
        return max_threads
    return max(1, min(max_threads, int(cores) - busy))


@dataclass(frozen=True)
class CpuSnapshot:
    """One moment's counters: monotonic time, CPU seconds spent on our CPUs by everything,
    and CPU seconds spent by this process (all its threads)."""

    at: float
    busy: float
    own: float


def others_busy(before: CpuSnapshot, after: CpuSnapshot) -> float | None:
    """Busy CPUs (in logical CPUs) that were not this process's between two snapshots."""
    span = after.at - before.at
    if span <= 0:
        return None
    return max(0.0, ((after.busy - before.busy) - (after.own - before.own)) / span)


def _allowed_cpus() -> set[int] | None:
    try:
        return set(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return None


_TICK = 1.0 / (os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100)


def _proc_stat_busy(cpus: set[int] | None, path: str = "/proc/stat") -> float | None:
    """Non-idle CPU seconds since boot over ``cpus`` (all when None), from ``/proc/stat``."""
    try:
        with open(path, "rb") as handle:
            lines = handle.read().decode("ascii", "replace").splitlines()
    except OSError:
        return None
    total = 0
    seen = False
    for line in lines:
        if not line.startswith("cpu") or line.startswith("cpu "):
            continue
        name, *values = line.split()
        try:
            cpu = int(name[3:])
            numbers = [int(v) for v in values[:8]]
        except ValueError:
            continue
        if cpus is not None and cpu not in cpus:
            continue
        numbers += [0] * (8 - len(numbers))
        user, nice, system, _idle, _iowait, irq, softirq, steal = numbers
        total += user + nice + system + irq + softirq + steal  # guest time is inside user
        seen = True
    return total * _TICK if seen else None


def _psutil_busy() -> float | None:
    try:
        import psutil

        times = psutil.cpu_times()
    except Exception:
        return None
    return float(sum(times)) - float(times.idle) - float(getattr(times, "iowait", 0.0))


class LoadSampler:
    """Estimates the cores other processes keep busy; see the module docstring.

    ``start()`` runs the snapshot thread (a daemon); without it, :meth:`others_busy_cores`
    measures from the previous call. ``cores`` is the physical cores this process may use
    (the estimate is scaled to them from logical CPUs).
    """

    def __init__(self, cores: int):
        self.cpus = _allowed_cpus()
        self.logical = len(self.cpus) if self.cpus else (os.cpu_count() or 1)
        self.cores = max(1, int(cores))
        self._proc = _proc_stat_busy(self.cpus) is not None
        if not self._proc:
            # Without /proc/stat the counters are the whole machine's.
            self.logical = os.cpu_count() or 1
        self._lock = threading.Lock()
        self._ring: collections.deque[CpuSnapshot] = collections.deque(maxlen=RING)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        first = self.snapshot()
        if first is not None:
            self._ring.append(first)

    def snapshot(self) -> CpuSnapshot | None:
        busy = _proc_stat_busy(self.cpus) if self._proc else _psutil_busy()
        if busy is None:
            return None
        return CpuSnapshot(at=time.monotonic(), busy=busy, own=time.process_time())

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="engine-load", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        while not self._stop.wait(SAMPLE_INTERVAL_S):
            snap = self.snapshot()
            if snap is not None:
                with self._lock:
                    self._ring.append(snap)

    def others_busy_cores(self, window_s: float = WINDOW_S) -> float | None:
        """Cores kept busy by other processes over the most recent window of at least
        ``window_s`` the ring holds (a shorter one right after start), or None when no
        window is long enough yet."""
        now = self.snapshot()
        if now is None:
            return None
        with self._lock:
            ring = list(self._ring)
            if self._thread is None:
                self._ring.append(now)
        base = None
        for snap in reversed(ring):
            if now.at - snap.at >= window_s:
                base = snap
                break
        if base is None and ring and now.at - ring[0].at >= MIN_WINDOW_S:
            base = ring[0]
        if base is None:
            return None
        logical = others_busy(base, now)
        if logical is None:
            return None
        return logical * self.cores / max(1, self.logical)

    def threads(self, max_threads: int, others: float | None) -> int:
        """:func:`threads_for_load` for this process's cores."""
        return threads_for_load(max_threads, others, self.cores)
