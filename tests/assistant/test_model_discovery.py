"""Discovery of the GGUF models other tools keep, and linking them in place (issue 20).

The default models are placed (hard links, or copies where the file system refuses them)
into fake Ollama, LM Studio, GPT4All, Jan, Hugging Face cache and llama.cpp trees under a
temporary home; SmolLM2 is also written as a model split in three files. Chats go through
the session's one engine worker.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import gguf
import pytest

from assistant.errors import LibraryError
from assistant.models import discovery
from engine import model_pack
from engine.client import EngineRequestError

GREEDY = {"temperature": 0.0, "max_tokens": 40, "seed": 7}
HF_REPO = "models--HuggingFaceTB--SmolLM2-135M-Instruct-GGUF"
SPLIT_NAME = "SmolLM2-135M-Instruct.Q4_1-{:05d}-of-00003.gguf"


def _place(source: Path, target: Path) -> Path:
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)
    return target


@pytest.fixture(scope="session")
def smollm2_digest(smollm2_gguf) -> str:
    return hashlib.sha256(smollm2_gguf.read_bytes()).hexdigest()


@pytest.fixture(scope="session")
def smollm2_split(smollm2_gguf, tmp_path_factory) -> list[Path]:
    """SmolLM2 written again as three files, as llama.cpp's gguf-split names them."""
    folder = tmp_path_factory.mktemp("split")
    reader = gguf.GGUFReader(smollm2_gguf)
    writer = gguf.GGUFWriter(folder / "SmolLM2-135M-Instruct.Q4_1.gguf", reader.fields["general.architecture"].contents(),
                             split_max_tensors=100)
    for item in reader.fields.values():
        if item.name == "general.architecture" or item.name.startswith("GGUF."):
            continue  # written by the writer itself
        vtype = item.types[0]
        writer.add_key_value(item.name, item.contents(), vtype,
                             sub_type=item.types[-1] if vtype == gguf.GGUFValueType.ARRAY else None)
    for tensor in reader.tensors:
        writer.add_tensor(tensor.name, tensor.data, raw_shape=tensor.data.shape, raw_dtype=tensor.tensor_type)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    parts = [folder / SPLIT_NAME.format(i) for i in (1, 2, 3)]
    assert all(p.is_file() for p in parts)
    return parts


def _ollama_manifest(folder: Path, model: str, tag: str, digest: str, size: int) -> Path:
    path = folder / "manifests" / "registry.ollama.ai" / "library" / model / tag
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({
        "schemaVersion": 2,
        "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
        "config": {"mediaType": "application/vnd.docker.container.image.v1+json", "digest": "sha256:" + "0" * 64,
                   "size": 10},
        "layers": [
            {"mediaType": "application/vnd.ollama.image.model", "digest": digest, "size": size},
            {"mediaType": "application/vnd.ollama.image.template", "digest": "sha256:" + "1" * 64, "size": 10},
        ],
    }))
    return path


@pytest.fixture
def trees(home, smollm2_gguf, smollm2_digest, smollm2_split, joined_pack_dir) -> dict[str, Path]:
    """Each tool's layout with a default model in it, as the tool itself leaves it."""
    gemma = joined_pack_dir / model_pack.GEMMA3.file
    assert gemma.is_file(), "the default model pack (Gemma) is missing: `make test` installs it"
    ollama = home / ".ollama" / "models"
    blob = _place(smollm2_gguf, ollama / "blobs" / f"sha256-{smollm2_digest}")
    size = blob.stat().st_size
    _ollama_manifest(ollama, "smollm2", "135m", f"sha256:{smollm2_digest}", size)
    _ollama_manifest(ollama, "smollm2", "latest", f"sha256:{smollm2_digest}", size)  # two tags, one blob
    lmstudio = _place(gemma, home / ".lmstudio" / "models" / "google" / "gemma-3-270m-GGUF" / gemma.name)
    gpt4all = _place(smollm2_gguf, home / ".local" / "share" / "nomic.ai" / "GPT4All" / smollm2_gguf.name)
    jan = _place(gemma, home / "jan" / "models" / "gemma-3-270m" / "model.gguf")
    # The hub cache: blobs named by their hash, snapshot files are relative links to them.
    repo = home / ".cache" / "huggingface" / "hub" / HF_REPO
    snapshot = repo / "snapshots" / "0123abc"
    snapshot.mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("0123abc")
    for part in smollm2_split:
        digest = hashlib.sha256(part.read_bytes()).hexdigest()
        _place(part, repo / "blobs" / digest)
        (snapshot / part.name).symlink_to(Path("..") / ".." / "blobs" / digest)
    return {"ollama_blob": blob, "lmstudio": lmstudio, "gpt4all": gpt4all, "jan": jan,
            "hf_first": snapshot / smollm2_split[0].name, "hf_repo": repo}


def _by_source(found) -> dict[str, list]:
    grouped: dict[str, list] = {}
    for model in found:
        grouped.setdefault(model.source, []).append(model)
    return grouped


def test_the_default_locations_follow_each_tools_variables(home, monkeypatch, tmp_path):
    roots = {(loc.source, loc.root) for loc in discovery.default_locations(user_folders=["~/models"])}
    assert (discovery.OLLAMA, home / ".ollama" / "models") in roots
    assert (discovery.LM_STUDIO, home / ".lmstudio" / "models") in roots
    assert (discovery.LM_STUDIO, home / ".cache" / "lm-studio" / "models") in roots
    assert (discovery.GPT4ALL, home / ".local" / "share" / "nomic.ai" / "GPT4All") in roots
    assert (discovery.JAN, home / "jan" / "models") in roots
    assert (discovery.HUGGING_FACE, home / ".cache" / "huggingface" / "hub") in roots
    assert (discovery.LLAMA_CPP, home / ".cache" / "llama.cpp") in roots
    assert (discovery.USER_FOLDER, home / "models") in roots
    monkeypatch.setenv("OLLAMA_MODELS", str(tmp_path / "o"))
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("LLAMA_CACHE", str(tmp_path / "l"))
    roots = {(loc.source, loc.root) for loc in discovery.default_locations()}
    assert (discovery.OLLAMA, tmp_path / "o") in roots
    assert (discovery.HUGGING_FACE, tmp_path / "hf" / "hub") in roots
    assert (discovery.LLAMA_CPP, tmp_path / "l") in roots
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    assert (discovery.HUGGING_FACE, tmp_path / "hub") in {(loc.source, loc.root) for loc in discovery.default_locations()}


def test_discovery_finds_each_model_once_with_its_source(trees, smollm2_gguf, smollm2_split):
    result = discovery.discover()
    grouped = _by_source(result.found)
    assert sorted(grouped) == [discovery.HUGGING_FACE, discovery.LM_STUDIO, discovery.OLLAMA], result.found
    assert all(len(models) == 1 for models in grouped.values())
    (ollama,) = grouped[discovery.OLLAMA]
    assert ollama.name == "smollm2:135m" and ollama.path == str(trees["ollama_blob"].resolve())
    assert ollama.size_bytes == smollm2_gguf.stat().st_size and ollama.architecture == "llama"
    assert ollama.quantization == "Q4_1"
    # The second tag and GPT4All's copy of the same file are the same model, named where else it is.
    assert "Ollama: smollm2:latest" in ollama.also_in
    assert any(line.startswith("GPT4All: ") for line in ollama.also_in)
    (lmstudio,) = grouped[discovery.LM_STUDIO]
    assert lmstudio.name == "google/gemma-3-270m-GGUF/gemma-3-270m-q4_k_m.gguf"
    assert lmstudio.architecture == "gemma3" and any(line.startswith("Jan: ") for line in lmstudio.also_in)
    (hf,) = grouped[discovery.HUGGING_FACE]
    assert hf.name == f"HuggingFaceTB/SmolLM2-135M-Instruct-GGUF/{smollm2_split[0].name}"
    assert hf.parts == 3 and hf.size_bytes == sum(p.stat().st_size for p in smollm2_split)
    assert hf.path == str(trees["hf_first"]), "a split model is named by its first part, as llama.cpp loads it"
    assert result.skipped == []


def test_bad_files_and_links_give_one_line_each(home, trees, tmp_path, smollm2_gguf):
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    elsewhere_model = _place(smollm2_gguf, outside / "model.gguf")
    cache = home / ".cache" / "llama.cpp"
    cache.mkdir(parents=True)
    (cache / "notes.gguf").write_text("not a model")
    (cache / "loop.gguf").symlink_to(cache / "loop.gguf")
    (cache / "out.gguf").symlink_to(elsewhere_model)
    (cache / "outdir").symlink_to(outside, target_is_directory=True)
    (cache / "self").symlink_to(cache, target_is_directory=True)  # a folder loop
    (cache / "README.md").write_text("ignored: not named as a model")
    lmstudio_part = home / ".lmstudio" / "models" / "x" / "big-00001-of-00002.gguf"
    _place(smollm2_gguf, lmstudio_part)  # its second part is missing
    result = discovery.discover()
    lines = {Path(s.path).name: s.reason for s in result.skipped}
    assert "not a usable GGUF model" in lines["notes.gguf"] and "text file" in lines["notes.gguf"]
    assert "loop" in lines["loop.gguf"]
    assert "out of" in lines["out.gguf"] and "out of" in lines["outdir"]
    assert "big-00002-of-00002.gguf is missing" in lines["big-00001-of-00002.gguf"]
    assert len(_by_source(result.found)) == 3, "the good models are still listed"
    assert all(str(outside) not in m.path for m in result.found)


def test_an_ollama_manifest_pointing_outside_the_blobs_folder_is_refused(home, smollm2_gguf, tmp_path):
    ollama = home / ".ollama" / "models"
    (ollama / "blobs").mkdir(parents=True)
    secret = _place(smollm2_gguf, tmp_path / "secret" / "model.gguf")
    _ollama_manifest(ollama, "escape", "latest", "sha256:../../../secret/model.gguf", 1)
    _ollama_manifest(ollama, "absolute", "latest", str(secret), 1)
    # A well-formed digest whose blob is a link out of the blobs folder.
    (ollama / "blobs" / f"sha256-{'a' * 64}").symlink_to(secret)
    _ollama_manifest(ollama, "linked", "latest", f"sha256:{'a' * 64}", 1)
    (ollama / "manifests" / "registry.ollama.ai" / "library" / "broken").mkdir()
    (ollama / "manifests" / "registry.ollama.ai" / "library" / "broken" / "latest").write_text("{not json")
    result = discovery.discover()
    assert result.found == []
    reasons = {Path(s.path).parent.name: s.reason for s in result.skipped}
    assert "refused" in reasons["escape"] and "refused" in reasons["absolute"]
    assert "out of" in reasons["blobs"] or "out of" in " ".join(reasons.values())
    assert "not a valid Ollama manifest" in reasons["broken"]


def test_a_user_folder_is_searched(home, services, smollm2_gguf, tmp_path):
    from assistant.models import views

    folder = tmp_path / "my models"
    _place(smollm2_gguf, folder / "sub" / "mine.gguf")
    with pytest.raises(LibraryError):
        services.library.add_model_folder(tmp_path / "nope")
    view = views.add_model_folder(services, str(folder))
    assert services.library.model_folders() == [str(folder.resolve())]
    assert [(m.source, m.name) for m in view.found] == [(discovery.USER_FOLDER, "mine.gguf")]


def test_link_in_place_chat_and_survive_the_files_removal(trees, services, engine, smollm2_split):
    from assistant.models import views

    before = {p: (p.stat().st_mtime_ns, p.stat().st_size) for p in
              (trees["ollama_blob"], trees["lmstudio"], *smollm2_split)}
    view = views.discover_models(services)
    assert len(view.found) == 3 and view.linked == {}
    ollama_found = next(f for f in view.found if f.source == discovery.OLLAMA)
    # The same bytes as the default pack's SmolLM2: linking finds it already in the library.
    assert services.library.link(ollama_found.path, "ollama", "smollm2:135m").id == model_pack.SMOLLM2.id
    # From here on a library without the default pack, as if these were models the pack lacks.
    for pack in model_pack.PACK:
        services.store.delete_model(pack.id)
    outcome = views.link_models(services, view.found)
    assert outcome.errors == [] and len(outcome.added) == 3
    records = {r.linked_from: r for r in outcome.added}
    ollama, gemma, split = records["ollama"], records["lmstudio"], records["huggingface"]
    assert ollama.path == str(trees["ollama_blob"].resolve()) and ollama.link_name == "smollm2:135m"
    assert ollama.sha256 == trees["ollama_blob"].name.removeprefix("sha256-"), "the same check and hash as an import"
    assert ollama.metadata["architecture"] == "llama" and "chat" in ollama.tasks
    assert split.metadata["split_parts"] == 3 and split.size_bytes == sum(p.stat().st_size for p in smollm2_split)
    assert gemma.metadata["architecture"] == "gemma3"
    # Linking again changes nothing; discovery now says which are in the library.
    assert [r.id for r in views.link_models(services, view.found).added] == [r.id for r in outcome.added]
    assert len(services.library.list()) == 3
    assert set(views.discover_models(services).linked.values()) == {ollama.id, gemma.id, split.id}
    question = [{"role": "user", "content": "What is the capital of France?"}]
    answers = [engine.chat(r.path, question, GREEDY).result(timeout=300)["result"]["text"] for r in (ollama, split)]
    assert "Paris" in answers[0] and answers[1] == answers[0], "the split model answers as the whole file does"
    assert engine.chat(gemma.path, question, GREEDY).result(timeout=300)["metrics"]["completion_tokens"] > 0
    # Nothing was copied, moved or changed.
    after = {p: (p.stat().st_mtime_ns, p.stat().st_size) for p in before}
    assert after == before
    assert not any(services.paths.models_dir.glob("*smol*"))

    # Ollama deletes the model: the record stays, marked missing, with one clear message.
    services.library.set_route("chat", ollama.id)
    with pytest.raises(LibraryError, match="can be removed only|belongs to Ollama"):
        services.library.remove(ollama.id, delete_file=True, confirmed=True)
    trees["ollama_blob"].unlink()
    missing = services.library.get(ollama.id)
    assert missing.missing and not services.library.get(gemma.id).missing
    with pytest.raises(LibraryError) as raised:
        services.library.for_task("chat")
    assert "is missing" in str(raised.value) and "smollm2:135m" in str(raised.value)
    engine.request("unload").result(timeout=60)  # a loaded model keeps its mapped file; a new load must fail
    with pytest.raises(EngineRequestError, match="does not exist"):
        engine.chat(missing.path, [{"role": "user", "content": "Hi"}], GREEDY).result(timeout=60)
    assert engine.ping()["pid"], "the engine is still serving"
    assert views.library_view(services).effective["chat"] is None
    # Locate: GPT4All has the same file.
    located = views.locate_model(services, ollama.id, str(trees["gpt4all"]))
    assert not located.missing and located.id == ollama.id and located.path == str(trees["gpt4all"].resolve())
    assert services.library.for_task("chat").id == ollama.id
    # A split model with a part gone is missing too; removing it from the list leaves the files alone.
    smollm2_split_blob = (trees["hf_first"].parent / smollm2_split[2].name)
    smollm2_split_blob.unlink()
    assert services.library.get(split.id).missing
    services.library.remove(split.id)
    assert split.id not in {m.id for m in services.library.list()}
    assert trees["hf_first"].exists()
    engine.request("unload").result(timeout=60)  # the session's engine keeps no file of this test open


def test_the_cli_lists_links_and_shows_missing_models(trees, services, capsys):
    from assistant.cli.main import main

    services.close()  # the command opens the same database itself
    assert main(["models", "discover"]) == 0
    out = capsys.readouterr().out
    assert "Ollama" in out and "smollm2:135m" in out and "LM Studio" in out and "3 parts" in out
    assert main(["models", "discover", "--link", "1", "3"]) == 0
    out = capsys.readouterr().out
    assert f"Already in the library as {model_pack.SMOLLM2.id}" in out, "Ollama's file is the pack's SmolLM2"
    assert "Linked smollm2" in out and "stays where it is" in out
    assert main(["models", "discover", "--link", "9"]) == 2
    assert "not one of the numbers" in capsys.readouterr().err
    (trees["hf_first"].parent / SPLIT_NAME.format(2)).unlink()
    assert main(["models", "list"]) == 0
    out = capsys.readouterr().out
    assert "huggingface (linked), MISSING" in out
