"""Suite-wide fixtures: network blocked, a private data folder, nothing left running, and real
services over the default model pack.

The default model pack is registered once per session in a template folder (joining
Gemma's parts and hashing the files takes seconds); each test that asks for ``services``
copies only the template's small database, whose records point at the template's model
files. Every such test therefore starts from an empty history with the real default models.
"""

from __future__ import annotations

import os
import shutil
import threading

import pytest

# Before any test module imports transformers or huggingface_hub.
from engine import privacy

privacy.install()
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

# The database key goes to the OS keyring; a CI machine has none, so every test process (and
# the app processes it starts, which inherit this environment) uses the file keyring of
# tests/keyring_for_tests.py, one file per test process. Tests of "no keyring" switch it off.
_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
os.environ["PYTHON_KEYRING_BACKEND"] = "tests.keyring_for_tests.FileKeyring"
os.environ["ASSISTANT_TEST_KEYRING_FILE"] = os.path.join(
    __import__("tempfile").gettempdir(), f"assistant-test-keyring-{os.getpid()}", "keyring.json")
os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (_ROOT, os.environ.get("PYTHONPATH", "")) if p)


def pytest_configure(config):
    """Under pytest-xdist (``make test`` runs two workers), each worker and everything it starts
    (engines, training jobs, the window's threads) is pinned to its own share of the cores.
    Two workers each running llama.cpp or torch with one thread per core would put four busy
    threads on two cores, and llama.cpp's spinning threads slow down badly when oversubscribed;
    pinned, every process sizes itself to its share (engine.settings.physical_cores reads the
    affinity mask) and the two workers never compete for a core."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    count = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1") or 1)
    if not worker.startswith("gw") or count < 2 or not hasattr(os, "sched_setaffinity"):
        return
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < count:
        return
    share = set(cpus[int(worker[2:]) % count::count])
    # The mask is per thread on Linux: set it on every thread there is now (xdist's own included);
    # threads and processes started later inherit it.
    for thread_id in os.listdir("/proc/self/task") if os.path.isdir("/proc/self/task") else ["0"]:
        try:
            os.sched_setaffinity(int(thread_id), share)
        except OSError:
            pass


@pytest.fixture(scope="session")
def smollm2_gguf():
    """The default chat model's GGUF (SmolLM2), as the model pack installed it."""
    from pathlib import Path

    from engine import model_pack

    path = model_pack.locate(model_pack.SMOLLM2, Path("/nonexistent"))
    assert path is not None, "the default model pack (SmolLM2) is missing: `make test` installs it"
    return path


@pytest.fixture(scope="session")
def smollm2_path(smollm2_gguf) -> str:
    """:func:`smollm2_gguf` as a string, as the engine's requests take it."""
    return str(smollm2_gguf)


@pytest.fixture(scope="session")
def joined_pack_dir(tmp_path_factory):
    """The split default model (Gemma) joined once per test session."""
    from engine import model_pack

    folder = tmp_path_factory.mktemp("pack")
    if model_pack.is_installed(model_pack.GEMMA3):
        model_pack.join_parts(model_pack.GEMMA3, folder)
    return folder


@pytest.fixture
def home(tmp_path, monkeypatch):
    """A temporary home, with none of the tools' folder variables set (model discovery looks there)."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    for name in ("OLLAMA_MODELS", "HF_HOME", "HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE", "LLAMA_CACHE",
                 "XDG_DATA_HOME", "XDG_CACHE_HOME"):
        monkeypatch.delenv(name, raising=False)
    return home


@pytest.fixture
def no_keyring():
    """No usable system keyring (keyring's "fail" backend): the data is locked with a passphrase."""
    import keyring
    from keyring.backends import fail

    before = keyring.get_keyring()
    keyring.set_keyring(fail.Keyring())
    yield
    keyring.set_keyring(before)


@pytest.fixture(autouse=True)
def data_dir(tmp_path, monkeypatch, joined_pack_dir):
    """Every test gets its own data folder; nothing touches the user's real one.

    The joined Gemma file is hard-linked in, as the app's own set-up would have left it,
    so that each test does not copy and hash 250 MB again.
    """
    folder = tmp_path / "data"
    models = folder / "models"
    models.mkdir(parents=True)
    for item in joined_pack_dir.iterdir():
        try:
            os.link(item, models / item.name)
        except OSError:
            import shutil

            shutil.copy2(item, models / item.name)
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


@pytest.fixture(scope="session")
def engine():
    """One engine worker for every test that talks to the engine directly (it keeps its loaded
    models between tests, as the app's does between requests). Started before any test's own
    leftover check begins, closed at the end of the session."""
    from engine.client import EngineClient
    from engine.settings import EngineSettings

    client = EngineClient(EngineSettings())
    client.start()
    yield client
    client.close()


@pytest.fixture(scope="session")
def minilm_gguf(tmp_path_factory) -> str:
    """The default pack's MiniLM converted to GGUF once per session (as the app does once)."""
    from pathlib import Path

    from engine import convert_bert, model_pack

    source = model_pack.locate(model_pack.MINILM, Path("/nonexistent"))
    assert source is not None, "the default model pack (MiniLM) is missing: `make test` installs it"
    return str(convert_bert.ensure_gguf(source, tmp_path_factory.mktemp("minilm")))


@pytest.fixture(scope="session")
def embed(engine, minilm_gguf):
    """Unit-length MiniLM embeddings through the shared engine worker, as the documents use them."""
    import numpy as np

    def embed(texts):
        return np.asarray(engine.embed(minilm_gguf, texts, with_metrics=True)[0], dtype=np.float32)

    return embed


@pytest.fixture(scope="session")
def pack_template(tmp_path_factory):
    from assistant.app import build_services
    from assistant.config import AppPaths

    folder = tmp_path_factory.mktemp("pack-template")
    services = build_services(AppPaths(folder))
    try:
        assert services.library.for_task("chat").id, "the default model pack is not installed: run `make test`"
    finally:
        services.close()
    return folder


@pytest.fixture
def services(data_dir, pack_template):
    from assistant.app import build_services
    from assistant.config import AppPaths
    from engine.settings import SamplingParams
    from tests.keyring_for_tests import copy_data_key

    paths = AppPaths(data_dir).ensure()
    for suffix in ("", "-wal", "-shm"):
        source = pack_template / f"assistant.sqlite3{suffix}"
        if source.exists():
            shutil.copy2(source, paths.database.parent / source.name)
    copy_data_key(pack_template, paths.data_dir)
    built = build_services(paths, sync_pack=False)
    # Greedy and short: replies are reproducible and quick on two cores.
    built.settings.sampling = SamplingParams(temperature=0.0, max_tokens=32, seed=7)
    yield built
    built.close()
