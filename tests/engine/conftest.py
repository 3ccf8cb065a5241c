"""Engine fixtures: the real default models and one engine worker shared by a module."""

from __future__ import annotations


import pytest

from engine import model_pack


@pytest.fixture(scope="session")
def gemma_path(joined_pack_dir) -> str:
    return str(model_pack.join_parts(model_pack.GEMMA3, joined_pack_dir))


