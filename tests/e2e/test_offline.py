"""The whole product works with no network at all, and tries no connection outside the machine.

One run of tests/e2e/offline_e2e.py inside ``unshare -n`` (a fresh network namespace: only a
loopback interface, and that one down) under ``strace -f -e trace=network`` (every process
of the tree: the app, the engine worker, the training job). The run must succeed, and the
trace must show no connect/sendto/sendmsg to any address outside loopback or Unix sockets.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.e2e import offline_e2e

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = Path(offline_e2e.__file__)

_ADDRESS_CALLS = re.compile(r"\b(connect|sendto|sendmsg|sendmmsg)\(")
_FAMILY = re.compile(r"sa_family=(AF_[A-Z0-9]+)")
_INET = re.compile(r'inet_addr\("([0-9.]+)"\)')
_INET6 = re.compile(r'inet_pton\(AF_INET6, "([0-9a-fA-F:.]+)"')
_LOCAL_FAMILIES = {"AF_UNIX", "AF_LOCAL", "AF_NETLINK", "AF_UNSPEC"}


def outside_attempts(trace: str) -> list[str]:
    """strace lines that address a peer outside this machine."""
    bad = []
    for line in trace.splitlines():
        if not _ADDRESS_CALLS.search(line):
            continue
        for family in _FAMILY.findall(line):
            if family in _LOCAL_FAMILIES:
                continue
            if family == "AF_INET" and all(a.startswith("127.") for a in _INET.findall(line)) and _INET.search(line):
                continue
            if family == "AF_INET6" and _INET6.search(line) and all(
                    a in ("::1",) or a.startswith("::ffff:127.") for a in _INET6.findall(line)):
                continue
            bad.append(line)
    return bad


def test_the_trace_parser_catches_outside_addresses():
    # Lines as strace 6 prints them, so that a change of format cannot make the proof vacuous.
    outside = [
        '812 connect(5, {sa_family=AF_INET, sin_port=htons(443), sin_addr=inet_addr("13.35.7.1")}, 16) = -1 ENETUNREACH',
        '812 sendto(6, "\\x12", 1, 0, {sa_family=AF_INET6, sin6_port=htons(53), sin6_flowinfo=htonl(0), '
        'inet_pton(AF_INET6, "2001:4860::8888", &sin6_addr), sin6_scope_id=0}, 28) = 1',
        '900 connect(7, {sa_family=AF_PACKET, sll_protocol=htons(ETH_P_ALL)}, 20) = 0',
    ]
    local = [
        '812 connect(5, {sa_family=AF_UNIX, sun_path="/tmp/e2e-canary.sock"}, 110) = 0',
        '812 connect(5, {sa_family=AF_INET, sin_port=htons(8080), sin_addr=inet_addr("127.0.0.1")}, 16) = 0',
        '812 connect(5, {sa_family=AF_INET6, sin6_port=htons(80), sin6_flowinfo=htonl(0), '
        'inet_pton(AF_INET6, "::1", &sin6_addr), sin6_scope_id=0}, 28) = 0',
        '812 socket(AF_INET, SOCK_STREAM|SOCK_CLOEXEC, IPPROTO_IP) = 5',
        '812 sendto(3, "x", 1, MSG_NOSIGNAL, NULL, 0) = 1',
    ]
    assert outside_attempts("\n".join(outside)) == outside
    assert outside_attempts("\n".join(local)) == []


def _tool(name: str) -> str:
    path = shutil.which(name)
    assert path, f"{name} is needed for the offline proof: `make system-deps` installs it"
    return path


def test_everything_works_offline_and_nothing_tries_to_leave(data_dir, tmp_path):
    unshare, strace = _tool("unshare"), _tool("strace")
    probe = subprocess.run([unshare, "-n", "true"], capture_output=True, text=True)
    assert probe.returncode == 0, "`unshare -n` needs root or CAP_SYS_ADMIN: " + probe.stderr.strip()
    trace = tmp_path / "network.trace"
    work = tmp_path / "work"
    command = [unshare, "-n", strace, "-f", "--seccomp-bpf", "-e", "trace=network", "-s", "128", "-o", str(trace),
               sys.executable, str(SCRIPT), str(work)]
    env = {**os.environ, "ASSISTANT_DATA_DIR": str(data_dir), "PYTHONUNBUFFERED": "1"}
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=3600)
    records = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    steps = {r["step"]: r for r in records if "step" in r}
    summary = next((r["summary"] for r in records if "summary" in r), None)
    assert summary is not None, result.stderr[-4000:]
    failed = {name: r.get("error") for name, r in steps.items() if not r["ok"]}
    assert result.returncode == 0 and summary["ok"] and not failed, (failed, result.stderr[-3000:])

    print("\n" + "\n".join(f"{name:>18}: {'ok' if r['ok'] else 'FAILED'} in {r.get('seconds', 0):7.1f} s"
                             for name, r in steps.items()))
    # Really no network: the namespace has nothing but a loopback that is down.
    assert steps["network"]["interfaces"] == ["lo"] and steps["network"]["loopback"].startswith("down")
    for name in ("engine", "chat", "translate", "classify", "ingest"):
        assert steps[name]["ok"], name
    assert steps["classify"]["labels"] == ["positive", "negative"]
    assert steps["ingest"]["indexed"] == len(offline_e2e.DOCS)
    if all(summary["training"].values()):
        for name in ("finetune", "chat-with-adapter", "export", "quantize", "import-and-chat"):
            assert steps[name]["ok"], name
        assert steps["import-and-chat"]["quantization"] == "Q8_0"
    assert summary["refused"] == [], "the guard had to refuse something: a library tried to go online"

    text = trace.read_text(errors="replace")
    # The tracer saw the whole tree: both canaries (this process and a child) are in it.
    canaries = [line for line in text.splitlines() if offline_e2e.CANARY in line and "connect(" in line]
    assert len({line.split()[0] for line in canaries}) >= 2, canaries
    assert outside_attempts(text) == []


@pytest.mark.parametrize("kind", ["connect", "sendto"])
def test_the_traced_run_would_show_an_attempt(tmp_path, kind):
    """The same tracer, on a process that does try to leave (guard not installed): seen."""
    trace = tmp_path / "t.trace"
    code = ("import socket\n"
            "s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM if %r == 'sendto' else socket.SOCK_STREAM)\n"
            "try:\n"
            "    (s.sendto(b'x', ('192.0.2.1', 53)) if %r == 'sendto' else s.connect(('192.0.2.1', 9)))\n"
            "except OSError:\n    pass\n") % (kind, kind)
    subprocess.run([_tool("unshare"), "-n", _tool("strace"), "-f", "--seccomp-bpf", "-e", "trace=network",
                    "-o", str(trace), sys.executable, "-S", "-c", code], check=True, timeout=120)
    attempts = outside_attempts(trace.read_text())
    assert len(attempts) == 1 and "192.0.2.1" in attempts[0], attempts
