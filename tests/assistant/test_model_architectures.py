"""Models of other architectures llama.cpp supports, found in other tools' folders (issue 20).

Small random-weight GGUFs of qwen2, qwen3 and phi3 (tests/engine/tiny_models.py) are
placed into fake Ollama and LM Studio trees under a temporary home, discovered once each,
linked in place and chatted with through the session's engine worker. The replies are
noise; the test is that llama.cpp loads each architecture, the family's own chat template
renders (no fallback) and generation finishes.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from assistant.models import discovery
from engine import model_pack
from tests.assistant.test_model_discovery import _ollama_manifest, _place
from tests.engine.tiny_models import ARCHITECTURES, write_tiny_chat_model

SHORT = {"temperature": 0.0, "max_tokens": 8, "seed": 7}


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("tiny-models")
    return {arch: write_tiny_chat_model(folder / f"tiny-{arch}.F32.gguf", arch) for arch in ARCHITECTURES}


@pytest.fixture
def tool_trees(home, tiny_models) -> dict[str, Path]:
    """qwen2 pulled by Ollama; qwen3 in LM Studio's folder, phi3 in its older one."""
    ollama = home / ".ollama" / "models"
    digest = hashlib.sha256(tiny_models["qwen2"].read_bytes()).hexdigest()
    blob = _place(tiny_models["qwen2"], ollama / "blobs" / f"sha256-{digest}")
    _ollama_manifest(ollama, "tiny-qwen2", "latest", f"sha256:{digest}", blob.stat().st_size)
    qwen3 = _place(tiny_models["qwen3"], home / ".lmstudio" / "models" / "test" / "tiny-qwen3-GGUF" / "tiny-qwen3.F32.gguf")
    phi3 = _place(tiny_models["phi3"], home / ".cache" / "lm-studio" / "models" / "test" / "tiny-phi3-GGUF"
                  / "tiny-phi3.F32.gguf")
    return {"qwen2": blob, "qwen3": qwen3, "phi3": phi3}


def test_other_architectures_are_found_once_linked_and_chat(tool_trees, services, engine):
    from assistant.models import views

    view = views.discover_models(services)
    by_arch = {}
    for found in view.found:
        assert found.architecture not in by_arch, f"{found.architecture} found twice: {view.found}"
        by_arch[found.architecture] = found
    assert sorted(by_arch) == sorted(ARCHITECTURES), view.found
    assert by_arch["qwen2"].source == discovery.OLLAMA and by_arch["qwen2"].name == "tiny-qwen2:latest"
    assert by_arch["qwen3"].source == discovery.LM_STUDIO and by_arch["phi3"].source == discovery.LM_STUDIO
    assert view.skipped == []

    for pack in model_pack.PACK:  # a library of only these models
        services.store.delete_model(pack.id)
    outcome = views.link_models(services, view.found)
    assert outcome.errors == [] and len(outcome.added) == 3
    question = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Say hello."}]
    try:
        for record in outcome.added:
            arch = record.metadata["architecture"]
            assert record.path == str(tool_trees[arch].resolve()), "linked in place, not copied"
            assert "chat" in record.tasks, arch
            done = engine.chat(record.path, question, SHORT).result(timeout=120)
            assert done["result"]["template"] == "model", (arch, done["result"].get("template_warning"))
            assert done["metrics"]["completion_tokens"] > 0, arch
    finally:
        engine.request("unload").result(timeout=60)  # the session's engine keeps no file of this test open
