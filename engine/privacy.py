"""Privacy guard: offline switches and a socket audit hook.

Runs in every process of the product (GUI, engine worker, training job, CLI, tests) and
must be installed before anything that reads the offline variables is imported, so each
entry point calls :func:`install` first thing.

It lives in ``engine`` (the lowest layer, standard library only) because the engine worker
and the training job are separate processes that cannot import ``assistant``.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import socket
import sys

log = logging.getLogger("privacy")

# Libraries that phone home by default read these; they must be set before their import.
OFFLINE_ENVIRONMENT = {
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "HF_HUB_DISABLE_IMPLICIT_TOKEN": "1",
    "HF_HUB_DISABLE_UPDATE_CHECK": "1",
    "DO_NOT_TRACK": "1",
    "DISABLE_TELEMETRY": "1",
    "TQDM_DISABLE": "1",
    "GRADIO_ANALYTICS_ENABLED": "False",
}

_installed = False
#: Every refused attempt, kept so tests and the diagnostics view can show them.
refused_attempts: list[str] = []


class NetworkBlockedError(PermissionError):
    """Raised when code tries to reach an address outside this machine."""


def _is_local_host(host: object) -> bool:
    if host is None:
        return True
    if isinstance(host, bytes):
        host = host.decode("ascii", "replace")
    if not isinstance(host, str):
        return False
    name = host.strip("[]").split("%", 1)[0]
    if name in ("", "localhost", "localhost.localdomain", "ip6-localhost"):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def _address_is_allowed(family: int, address: object) -> bool:
    if family == getattr(socket, "AF_UNIX", object()):
        return True
    if family in (socket.AF_INET, socket.AF_INET6) and isinstance(address, tuple) and address:
        return _is_local_host(address[0])
    # Netlink and other local-only families carry no remote peer.
    return family not in (socket.AF_INET, socket.AF_INET6)


def _refuse(what: str) -> None:
    message = f"Blocked network access to {what}: this assistant never leaves the machine."
    refused_attempts.append(what)
    log.warning(message)
    raise NetworkBlockedError(message)


def _audit(event: str, args: tuple) -> None:
    if event == "socket.connect" or event == "socket.sendto" or event == "socket.sendmsg":
        sock, address = args[0], args[-1]
        family = getattr(sock, "family", socket.AF_INET)
        if address is not None and not _address_is_allowed(family, address):
            _refuse(repr(address))
    elif event == "socket.getaddrinfo" or event == "socket.gethostbyname":
        host = args[0]
        if not _is_local_host(host):
            _refuse(repr(host))
    elif event == "socket.bind":
        sock, address = args
        family = getattr(sock, "family", socket.AF_INET)
        if family in (socket.AF_INET, socket.AF_INET6) and isinstance(address, tuple):
            host = address[0]
            # Binding a wildcard would expose a server to the network; only loopback is ours.
            if host in ("", "0.0.0.0", "::") and not os.environ.get("ASSISTANT_ALLOW_EXTERNAL_BIND"):
                _refuse(f"bind {address!r}")


def set_offline_environment(environ: dict | None = None) -> dict:
    """Set the offline variables in ``environ`` (default: this process) and return it."""
    target = os.environ if environ is None else environ
    for key, value in OFFLINE_ENVIRONMENT.items():
        target[key] = value
    return target


def install() -> None:
    """Set the offline variables and add the audit hook (idempotent; hooks cannot be removed)."""
    global _installed
    set_offline_environment()
    if _installed:
        return
    sys.addaudithook(_audit)
    _installed = True


def is_installed() -> bool:
    return _installed
