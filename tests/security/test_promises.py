"""PRIVACY.md and SECURITY.md name a test for every promise: each named test must exist."""

from __future__ import annotations

import ast
import re

import pytest

from .conftest import REPO

NAMED = re.compile(r"`(tests/[\w/]+\.py)::(\w+)`")


def _named_tests() -> list[tuple[str, str, str]]:
    found = []
    for page in ("PRIVACY.md", "SECURITY.md"):
        for path, name in NAMED.findall((REPO / page).read_text(encoding="utf-8")):
            found.append((page, path, name))
    return found


def test_both_pages_name_tests():
    pages = {page for page, _, _ in _named_tests()}
    assert pages == {"PRIVACY.md", "SECURITY.md"}


@pytest.mark.parametrize("page, path, name", _named_tests(), ids=lambda v: str(v))
def test_every_test_a_promise_names_exists(page, path, name):
    source = REPO / path
    assert source.is_file(), f"{page} names {path}, which does not exist"
    tree = ast.parse(source.read_text(encoding="utf-8"))
    functions = {node.name for node in ast.walk(tree) if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))}
    assert name in functions, f"{page} names {path}::{name}, which is not a test there"
