"""The user's adapter choices: kept in the store, used only with the base they were trained for."""

from __future__ import annotations

import pytest

from assistant.models.adapters import ActiveAdapters, AdapterError
from assistant.store import Store
from tests.keyring_for_tests import TEST_DATABASE_KEY


@pytest.fixture
def store(tmp_path):
    store = Store(tmp_path / "app.db", key=TEST_DATABASE_KEY)
    yield store
    store.close()


def test_choice_is_kept_and_applies_only_to_its_own_base(store, tmp_path):
    base = tmp_path / "base.gguf"
    other = tmp_path / "other.gguf"
    adapter = tmp_path / "adapter.gguf"
    for path in (base, other, adapter):
        path.write_bytes(b"GGUF")
    adapters = ActiveAdapters(store)
    assert adapters.for_model("chat", str(base)) == []
    adapters.set("chat", adapter, base)
    assert adapters.for_model("chat", str(base)) == [{"path": str(adapter.resolve()), "scale": 1.0}]
    assert adapters.for_model("chat", str(other)) == [], "never a mismatched base"
    assert adapters.for_model("translate", str(base)) == [], "each task has its own choice"
    assert ActiveAdapters(store).get("chat").base == str(base.resolve()), "kept in the store"
    adapter.unlink()
    assert adapters.for_model("chat", str(base)) == [], "a deleted adapter file is skipped, not an error"
    adapters.clear("chat")
    assert adapters.get("chat") is None


def test_bad_choices_are_clear_errors(store, tmp_path):
    base = tmp_path / "base.gguf"
    base.write_bytes(b"GGUF")
    adapters = ActiveAdapters(store)
    with pytest.raises(AdapterError, match="does not exist"):
        adapters.set("chat", tmp_path / "missing.gguf", base)
    (tmp_path / "a.gguf").write_bytes(b"GGUF")
    with pytest.raises(AdapterError, match="not 'sentiment'"):
        adapters.set("sentiment", tmp_path / "a.gguf", base)
    with pytest.raises(AdapterError, match="no longer installed"):
        adapters.set("chat", tmp_path / "a.gguf", tmp_path / "gone.gguf")
