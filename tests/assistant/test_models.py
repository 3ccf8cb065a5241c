"""The model library over the real store and the real default pack."""

from __future__ import annotations

import shutil

import pytest

from assistant.app import build_services
from assistant.config import default_paths
from assistant.models.library import LibraryError
from tests.engine.gguf_corpus import build_malformed_corpus, write_valid_gguf


@pytest.fixture
def services():
    services = build_services(default_paths())
    yield services
    services.close()


def test_default_pack_listed_at_first_start(services):
    ids = {m.id for m in services.library.list()}
    assert {"smollm2-135m-instruct", "gemma-3-270m", "all-minilm-l6-v2"} <= ids
    smol = services.library.get("smollm2")
    assert smol.metadata["architecture"] == "llama"
    assert smol.metadata["parameter_count"] > 100e6
    assert smol.metadata["context_length"] == 8192
    assert smol.metadata["quantization"] == "Q4_1"
    assert len(smol.sha256) == 64 and smol.size_bytes > 50e6
    assert smol.metadata["licence"].lower() == "apache-2.0"
    gemma = services.library.get("gemma-3-270m")
    assert gemma.licence_text.startswith("Gemma Terms of Use") and "<html" not in gemma.licence_text
    assert services.library.for_task("chat").id == "smollm2-135m-instruct"
    assert services.library.for_task("translate").id == "gemma-3-270m"


def test_import_validates_and_records_metadata(services, tmp_path):
    path = write_valid_gguf(tmp_path / "tiny model.gguf")
    record = services.library.add(path)
    assert record.source == "user" and record.metadata["architecture"] == "llama"
    assert record.metadata["has_chat_template"] is True
    with pytest.raises(LibraryError, match="already in the library"):
        services.library.add(path)
    services.library.set_route("chat", record.id)
    assert services.library.for_task("chat").id == record.id
    services.library.remove(record.id)
    assert path.exists(), "removing from the library never deletes the file by itself"
    assert services.library.for_task("chat").id == "smollm2-135m-instruct"


def test_deleting_the_file_needs_a_second_confirmation(services, tmp_path):
    path = write_valid_gguf(tmp_path / "mine.gguf")
    record = services.library.add(path)
    with pytest.raises(LibraryError, match="second confirmation"):
        services.library.remove(record.id, delete_file=True)
    assert path.exists() and services.library.get(record.id)
    services.library.remove(record.id, delete_file=True, confirmed=True)
    assert not path.exists()


def test_malformed_imports_leave_the_library_unchanged(services, tmp_path):
    before = [m.id for m in services.library.list()]
    for path, expected in build_malformed_corpus(tmp_path / "bad"):
        with pytest.raises(LibraryError) as info:
            services.library.add(path)
        assert str(info.value), path
    assert [m.id for m in services.library.list()] == before


def test_not_a_gguf_and_too_large(services, tmp_path):
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    with pytest.raises(LibraryError, match="not a GGUF"):
        services.library.add(text)
    big = tmp_path / "big.gguf"
    shutil.copy(write_valid_gguf(tmp_path / "src.gguf"), big)
    with pytest.raises(LibraryError, match="needs about"):
        services.library.add(big, free_memory=1024)
    with pytest.raises(LibraryError, match="part of the default model pack"):
        services.library.remove("smollm2-135m-instruct")


def test_a_licence_stored_as_a_web_page_is_replaced_by_its_text_at_the_next_start(services):
    from engine import model_pack

    services.store.upsert_model({"id": "gemma-3-270m", "licence_text": "<!doctype html><html>menus…</html>"})
    services.library.sync_default_pack()
    assert services.library.get("gemma-3-270m").licence_text == model_pack.licence_text(model_pack.GEMMA3)
