"""Fixtures of the training tests: the default GGUF models and their dequantized base cache.

The cache is shared by the whole test session (dequantizing costs a minute per model on two
cores) and kept in ``.pytest_cache`` between sessions: it is keyed by the GGUF's name, size and
mtime, so a changed model is dequantized again. ``test_base_model`` builds its own fresh cache
to test creation itself.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from engine import model_pack

ROOT = Path(__file__).resolve().parents[2]
SHARED_CACHE = ROOT / ".pytest_cache" / "training-base-cache"


def shared_data(*parts: str) -> Path:
    """A path in the shared data: ``$ASSISTANT_SHARED_DATA``, else the repository's sibling
    ``../shared/data``, found the way benchmarks/ find it (no machine's absolute path)."""
    root = Path(os.environ.get("ASSISTANT_SHARED_DATA", ROOT / ".." / "shared" / "data")).resolve()
    return root.joinpath(*parts)


PEPS = shared_data("documents", "typing-peps")


@pytest.fixture(scope="session")
def gemma3_gguf(joined_pack_dir) -> Path:
    path = model_pack.locate(model_pack.GEMMA3, joined_pack_dir)
    assert path is not None, "the default model pack (Gemma 3 270M) is missing: `make test` installs it"
    return path


@pytest.fixture(scope="session")
def base_cache_root() -> Path:
    SHARED_CACHE.mkdir(parents=True, exist_ok=True)
    return SHARED_CACHE


@pytest.fixture(scope="session")
def smollm2_base(smollm2_gguf, base_cache_root):
    """(model, tokenizer) of SmolLM2 from the cache; tests must not change the model in place."""
    from training.base_model import load_base

    return load_base(smollm2_gguf, base_cache_root)


@pytest.fixture(scope="session")
def peps_dir() -> Path:
    assert PEPS.is_dir(), f"the shared corpus {PEPS} is missing"
    return PEPS
