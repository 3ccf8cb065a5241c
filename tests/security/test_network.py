"""Nothing leaves the machine: the guard refuses every way out, in this process and in the
processes the app starts (engine worker, training job), and the libraries that phone home by
default stay silent."""

from __future__ import annotations

import importlib.util
import json
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from engine import model_pack, privacy
from engine.client import EngineClient
from engine.settings import EngineSettings

from .conftest import REPO

GUARD_MESSAGE = "never leaves the machine"
# TEST-NET-1 (RFC 5737): never routed, so even a broken guard would not reach anyone.
OUTSIDE = ("192.0.2.1", 9)


def _attempts() -> dict:
    """Every way out a library can take from Python, each tried once."""
    def connect():
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.settimeout(2)
            s.connect(OUTSIDE)

    def connect_ex():
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.settimeout(2)
            s.connect_ex(OUTSIDE)

    def by_name():  # what urllib, requests and httpx do: getaddrinfo, then connect
        socket.create_connection(("huggingface.co", 443), timeout=2)

    def udp_sendto():
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.sendto(b"x", OUTSIDE)

    def udp_sendmsg():
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.sendmsg([b"x"], [], 0, OUTSIDE)

    def ipv6():
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s:
            s.settimeout(2)
            s.connect(("2001:db8::1", 443))

    def gethostbyname():
        socket.gethostbyname("example.com")

    def urllib_open():
        import urllib.request

        urllib.request.urlopen("https://huggingface.co/api/models", timeout=2)

    return {f.__name__: f for f in (connect, connect_ex, by_name, udp_sendto, udp_sendmsg, ipv6, gethostbyname,
                                    urllib_open)}


@pytest.mark.parametrize("way", sorted(_attempts()))
def test_every_way_out_is_refused_in_the_test_process(way):
    before = len(privacy.refused_attempts)
    with pytest.raises(Exception) as info:
        _attempts()[way]()
    # urllib wraps the guard's error in URLError; the guard's own words must be in the chain.
    chain, error = [], info.value
    while error is not None and len(chain) < 10:
        chain.append(str(error))
        reason = getattr(error, "reason", None)
        error = error.__cause__ or error.__context__ or (reason if isinstance(reason, BaseException) else None)
    assert any(GUARD_MESSAGE in text for text in chain), chain
    assert len(privacy.refused_attempts) == before + 1, "each refused attempt is logged once"


def test_loopback_and_unix_sockets_still_work(tmp_path):
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(tmp_path / "s.sock"))
    server.listen(1)
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:
        client.connect(str(tmp_path / "s.sock"))
        peer, _ = server.accept()
        client.sendall(b"local")
        assert peer.recv(5) == b"local"
        peer.close()
    server.close()
    with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as a, socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as b:
        b.bind(("::1", 0))
        a.sendto(b"v6", b.getsockname())
        assert b.recv(2) == b"v6"


# A site hook that only the processes of one test get (through PYTHONPATH): once the process
# has installed the privacy guard itself, a thread tries every way out and writes what
# happened. The process runs its normal code (the real engine worker's main) meanwhile.
PROBE = textwrap.dedent('''
    import json, os, socket, sys, threading, time

    def _probe():
        deadline = time.time() + 300
        while time.time() < deadline:
            # The module is in sys.modules while it is still being executed: only ask it once
            # it has defined is_installed (an AttributeError here once made the probe silent).
            is_installed = getattr(sys.modules.get("engine.privacy"), "is_installed", None)
            if is_installed is not None and is_installed():
                break
            time.sleep(0.01)
        results = {"pid": os.getpid(), "argv": sys.argv, "offline": os.environ.get("HF_HUB_OFFLINE")}
        def connect():
            socket.create_connection(("192.0.2.1", 9), timeout=2)
        def lookup():
            socket.getaddrinfo("huggingface.co", 443)
        def sendto():
            socket.socket(socket.AF_INET, socket.SOCK_DGRAM).sendto(b"x", ("192.0.2.1", 53))
        for name, attempt in (("connect", connect), ("lookup", lookup), ("sendto", sendto)):
            try:
                attempt()
                results[name] = "not blocked"
            except Exception as exc:
                results[name] = f"{type(exc).__name__}: {exc}"
        out = os.environ["SECURITY_PROBE_OUT"]
        with open(out + ".tmp", "w") as handle:
            json.dump(results, handle)
        os.replace(out + ".tmp", out)

    if os.environ.get("SECURITY_PROBE_OUT"):
        threading.Thread(target=_probe, name="security-probe", daemon=True).start()
''')


@pytest.fixture
def probe(tmp_path, monkeypatch):
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(PROBE)
    out = tmp_path / "probe.json"
    monkeypatch.setenv("PYTHONPATH", str(site) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    monkeypatch.setenv("SECURITY_PROBE_OUT", str(out))
    return out


def _wait_for(path: Path, timeout: float = 120.0) -> dict:
    import time

    deadline = time.monotonic() + timeout
    while not path.exists():
        assert time.monotonic() < deadline, f"the probe in the child process wrote nothing to {path}"
        time.sleep(0.05)
    return json.loads(path.read_text())


def _assert_all_refused(results: dict) -> None:
    for name in ("connect", "lookup", "sendto"):
        assert "NetworkBlockedError" in results[name] and GUARD_MESSAGE in results[name], (name, results[name])
    assert results["offline"] == "1"


def test_the_engine_worker_refuses_the_network_too(probe, smollm2_path):
    with EngineClient(EngineSettings()) as client:
        worker_pid = client.ping()["pid"]
        results = _wait_for(probe)
        # The worker kept working after its own attempts were refused.
        assert client.tokenize(smollm2_path, "still here")
        assert client.ping()["pid"] == worker_pid
    assert results["pid"] == worker_pid
    _assert_all_refused(results)


def test_the_training_job_refuses_the_network_too(probe, tmp_path):
    assert importlib.util.find_spec("training.run") is not None, "training/run.py (issue 7) is missing"
    # An unknown job kind: the entry point starts, installs its guard, reports an error and exits.
    job = tmp_path / "job.json"
    job.write_text(json.dumps({"kind": "no-such-kind", "output_dir": str(tmp_path / "out")}))
    env = dict(os.environ)
    code = ("import runpy, sys, time; sys.argv = ['training.run', sys.argv[1]]\n"
            "try:\n    runpy.run_module('training.run', run_name='__main__')\n"
            "except SystemExit:\n    pass\n"
            "import os\n"
            "deadline = time.time() + 120\n"
            "while not os.path.exists(os.environ['SECURITY_PROBE_OUT']) and time.time() < deadline:\n"
            "    time.sleep(0.05)\n")
    subprocess.run([sys.executable, "-c", code, str(job)], cwd=REPO, env=env, capture_output=True, timeout=300)
    _assert_all_refused(_wait_for(probe, 10))


def test_the_worker_environment_is_offline(smollm2_path):
    with EngineClient(EngineSettings()) as client:
        pid = client.ping()["pid"]
        environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    got = dict(item.decode().split("=", 1) for item in environ if b"=" in item)
    for key, value in privacy.OFFLINE_ENVIRONMENT.items():
        assert got.get(key) == value, key


PHONE_HOME = textwrap.dedent('''
    import json, sys
    events = []
    def record(event, args):
        if event.startswith("socket.") and event not in ("socket.__new__",):
            events.append(f"{event} {args[1:]!r}"[:200])
    # Before the guard: anything a library tries is seen here even if the guard refuses it.
    sys.addaudithook(record)
    import assistant  # installs the guard and the offline variables, as every entry point does
    from engine import privacy
    import huggingface_hub, transformers, tqdm
    from huggingface_hub import constants
    from huggingface_hub.constants import is_offline_mode
    folder = sys.argv[1]
    tokenizer = transformers.AutoTokenizer.from_pretrained(folder)
    config = transformers.AutoConfig.from_pretrained(folder)
    model = transformers.AutoModel.from_pretrained(folder)
    for _ in tqdm.tqdm(range(3)):
        pass
    try:
        huggingface_hub.hf_hub_download("sentence-transformers/all-MiniLM-L6-v2", "config.json")
        download = "downloaded"
    except Exception as exc:
        download = type(exc).__name__
    try:
        transformers.AutoTokenizer.from_pretrained("sentence-transformers/all-MiniLM-L6-v2")
        by_name = "loaded"
    except Exception as exc:
        by_name = type(exc).__name__
    print(json.dumps({
        "events": events, "refused": privacy.refused_attempts,
        "hub_offline": constants.HF_HUB_OFFLINE, "telemetry_off": constants.HF_HUB_DISABLE_TELEMETRY,
        "transformers_offline": is_offline_mode(), "tokens": len(tokenizer("hello world")["input_ids"]),
        "hidden": config.hidden_size, "params": sum(p.numel() for p in model.parameters()),
        "download": download, "by_name": by_name,
    }))
''')


def test_libraries_that_phone_home_stay_silent():
    folder = model_pack.locate(model_pack.MINILM, Path("/nonexistent"))
    assert folder is not None, "the default model pack (MiniLM) is missing: `make test` installs it"
    # A clean environment: the offline variables must come from the app, not from the suite.
    env = {k: v for k, v in os.environ.items() if k not in privacy.OFFLINE_ENVIRONMENT}
    result = subprocess.run([sys.executable, "-c", PHONE_HOME, str(folder)], cwd=REPO, env=env,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["hub_offline"] is True and report["telemetry_off"] is True and report["transformers_offline"] is True
    assert report["tokens"] > 2 and report["hidden"] == 384 and report["params"] > 20_000_000
    # Asking the Hub by name fails at once as offline, without a single socket call.
    assert report["download"] in ("LocalEntryNotFoundError", "OfflineModeIsEnabled"), report["download"]
    assert report["by_name"] in ("OSError", "LocalEntryNotFoundError", "OfflineModeIsEnabled"), report["by_name"]
    assert report["events"] == [], report["events"]
    assert report["refused"] == []
