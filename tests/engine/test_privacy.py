"""The privacy guard: offline variables set, sockets outside loopback refused."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import pytest

from engine import privacy


def test_guard_is_installed_for_the_suite():
    assert privacy.is_installed()
    for key, value in privacy.OFFLINE_ENVIRONMENT.items():
        assert os.environ.get(key) == value


@pytest.mark.parametrize("address", [("93.184.216.34", 80), ("10.0.0.1", 443), ("2606:4700::1111", 443)])
def test_connections_outside_loopback_are_refused(address):
    family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        with pytest.raises(privacy.NetworkBlockedError, match="never leaves the machine"):
            sock.connect(address)


def test_name_lookups_are_refused():
    with pytest.raises(privacy.NetworkBlockedError):
        socket.getaddrinfo("example.com", 443)


def test_loopback_is_allowed():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as server:
        server.bind(("127.0.0.1", 0))
        server.listen(1)
        with socket.create_connection(server.getsockname(), timeout=5) as client:
            conn, _ = server.accept()
            client.sendall(b"ping")
            assert conn.recv(4) == b"ping"
            conn.close()


def test_wildcard_bind_is_refused():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as server:
        with pytest.raises(privacy.NetworkBlockedError):
            server.bind(("0.0.0.0", 0))


def test_offline_variables_precede_library_imports_in_a_fresh_process():
    # `import assistant` must set them before anything else could read them.
    code = (
        "import assistant, os, json, socket\n"
        "blocked = False\n"
        "try:\n    socket.create_connection(('1.1.1.1', 443), timeout=1)\n"
        "except PermissionError:\n    blocked = True\n"
        "print(json.dumps({'hf': os.environ.get('HF_HUB_OFFLINE'), 'dnt': os.environ.get('DO_NOT_TRACK'), 'blocked': blocked}))"
    )
    env = {k: v for k, v in os.environ.items() if k not in privacy.OFFLINE_ENVIRONMENT}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    assert json.loads(out.stdout.strip().splitlines()[-1]) == {"hf": "1", "dnt": "1", "blocked": True}
