"""Dependency floors follow the advisories, not only the versions installed today: every
library that reads untrusted files or requests has a floor past its last known-vulnerable
release, so a fresh install on another machine can never pick a vulnerable one."""

from __future__ import annotations

import re
import tomllib
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

#: package -> first release that fixes its published advisories reachable from this app
#: (untrusted documents, chat templates, requests to the local API). Add a row with each advisory.
FIXED_IN = {
    "pypdf": "6.14.2",  # crafted PDFs: infinite loops, memory exhaustion
    "starlette": "1.3.1",  # request parsing in the local API
    "lxml": "6.1.0",  # untrusted XML in .docx files (through python-docx)
    "jinja2": "3.1.6",  # sandbox escapes through |attr and str.format in chat templates
}


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", text)[:3])


def _floors() -> dict[str, str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    floors = {}
    for requirement in project["dependencies"]:
        match = re.match(r"^([A-Za-z0-9_.\-]+)\s*>=\s*([0-9][0-9.]*)", requirement)
        if match:
            floors[match.group(1).lower()] = match.group(2)
    return floors


def test_every_floor_is_past_its_advisories():
    floors = _floors()
    missing = [name for name in FIXED_IN if name not in floors]
    assert not missing, f"no floor at all for {missing}: any version, vulnerable ones included, would install"
    low = {name: (floors[name], fixed) for name, fixed in FIXED_IN.items() if _version(floors[name]) < _version(fixed)}
    assert not low, f"floors below the fixed releases (floor, fixed): {low}"


def test_the_installed_versions_are_past_the_advisories_too():
    low = {name: (metadata.version(name), fixed) for name, fixed in FIXED_IN.items()
           if _version(metadata.version(name)) < _version(fixed)}
    assert not low, f"installed versions below the fixed releases: {low}"
