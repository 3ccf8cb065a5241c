"""Engine fixtures: the real default models and one engine worker shared by a module."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine import model_pack


@pytest.fixture(scope="session")
def smollm2_path() -> str:
    path = model_pack.locate(model_pack.SMOLLM2, Path("/nonexistent"))
    assert path is not None, "the default model pack is not installed: run `make test`, which installs it"
    return str(path)


@pytest.fixture(scope="session")
def gemma_path(joined_pack_dir) -> str:
    return str(model_pack.join_parts(model_pack.GEMMA3, joined_pack_dir))


