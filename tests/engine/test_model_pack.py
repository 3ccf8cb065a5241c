"""The default pack is found without importing its packages; Gemma is joined and verified."""

from __future__ import annotations

import sys

import pytest

from engine import model_pack
from engine.library import ModelTooLargeError, check_fits, inspect_model, sha256_file


def test_pack_is_located_without_importing_the_packages():
    for model in model_pack.PACK:
        assert model_pack.is_installed(model), f"{model.distribution} missing: `make test` installs the pack"
        assert model.package not in sys.modules, "find_spec must not import the package (its __init__ pulls llm)"
        for part in model.parts:
            assert part not in sys.modules


def test_gemma_parts_are_joined_once_and_checked(tmp_path):
    target = model_pack.join_parts(model_pack.GEMMA3, tmp_path)
    assert target.name == "gemma-3-270m-q4_k_m.gguf"
    assert sha256_file(target) == model_pack.expected_sha256(model_pack.GEMMA3)
    mtime = target.stat().st_mtime_ns
    assert model_pack.join_parts(model_pack.GEMMA3, tmp_path) == target
    assert target.stat().st_mtime_ns == mtime, "a second call must not join again"
    assert not list(tmp_path.glob(".*.part")), "no temp file left behind"


def test_damaged_join_is_refused_and_leaves_nothing(tmp_path, monkeypatch):
    monkeypatch.setattr(model_pack, "expected_sha256", lambda model: "0" * 64)
    target = tmp_path / "join-here"
    with pytest.raises(model_pack.PackError, match="damaged"):
        model_pack.join_parts(model_pack.GEMMA3, target)
    assert list(target.iterdir()) == []


def test_pack_models_metadata(gemma_path, smollm2_path):
    smol = inspect_model(smollm2_path).summary
    assert smol["architecture"] == "llama" and smol["quantization"] == "Q4_1"
    assert 130e6 < smol["parameter_count"] < 140e6
    gemma = inspect_model(gemma_path).summary
    assert gemma["architecture"] == "gemma3" and gemma["quantization"] == "Q4_K_M"
    assert gemma["kv_bytes_per_token"] > 0
    assert "Gemma" in model_pack.licence_text(model_pack.GEMMA3)


def test_memory_check_names_what_is_needed_and_free():
    with pytest.raises(ModelTooLargeError) as info:
        check_fits(4 * 1024**3, 100_000, 4096, "big.gguf", free=1024**3)
    message = str(info.value)
    assert "big.gguf needs about" in message and "only 1.00 GiB is free" in message
    assert check_fits(100, 10, 10, "small.gguf", free=1024**3) > 100


def test_gemmas_licence_is_the_terms_text_without_the_web_pages_menus():
    text = model_pack.licence_text(model_pack.GEMMA3)
    assert text.startswith("Gemma Terms of Use\n\nLast modified:")
    for part in ("Section 1: DEFINITIONS", "(d) \"Google\" means Google LLC.", "4.9 No Waiver", "• Gemma 3"):
        assert part in text, part
    for scrap in ("<", "Send feedback", "Sign in", "Skip to main content", "devsite", "http", "google-signin", "{"):
        assert scrap not in text, scrap
    assert len(text) < 20_000  # the terms, not the 168 kB page


def test_licence_from_html_keeps_paragraphs_headings_and_items_and_drops_the_site():
    page = ("<!doctype html><html><head><style>p{color:red}</style><script>var x = 1;</script></head><body>"
            "<nav><a href='/'>Home</a> <a href='/docs'>Docs</a></nav><main><h1>Terms</h1>"
            "<p>You may   use it.</p><ul><li>One &amp; two</li><li><a href='#a'>Three</a></li></ul>"
            "<devsite-feedback><button>Send feedback</button></devsite-feedback><aside>Archived here</aside>"
            "</main><footer>© Site</footer></body></html>")
    assert model_pack.licence_from_html(page) == "Terms\n\nYou may use it.\n\n• One & two\n\n• Three"
