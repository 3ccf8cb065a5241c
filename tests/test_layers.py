"""The layer rules of ARCHITECTURE.md, checked on the source (AST), not by goodwill."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("assistant", "engine", "training", "ui")

# package -> top-level modules it must never import
FORBIDDEN = {
    "engine": {"PySide6", "torch", "transformers", "peft", "assistant", "ui", "training"},
    # training runs only as its own process (python -m training.run, --check before a job).
    "assistant": {"PySide6", "torch", "transformers", "peft", "ui", "training"},
    "training": {"PySide6", "ui", "assistant"},
    "ui": {"torch", "transformers", "peft", "training"},
}


#: Calls that import the module their first argument names. (importlib.util.find_spec only asks
#: whether a module is installed, without importing it: assistant.train.support relies on that.)
IMPORT_CALLS = {"import_module", "__import__"}


def _imports(path: Path) -> set[str]:
    return _imports_of(path.read_text(encoding="utf-8"), str(path))


def _imports_of(source: str, filename: str = "<source>") -> set[str]:
    """Top-level modules ``source`` imports anywhere: module level, inside functions and
    classes (ast.walk visits every node), and by name through importlib.import_module /
    __import__ with a literal string."""
    tree = ast.parse(source, filename=filename)
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module.split(".")[0])
        elif isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant) \
                and isinstance(node.args[0].value, str):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            if name in IMPORT_CALLS:
                found.add(node.args[0].value.split(".")[0])
    return found


def test_the_check_finds_imports_in_functions_and_by_name():
    source = ("def late():\n    from training.base_model import x\n"
              "class C:\n    def m(self):\n        import torch.nn\n"
              "def by_name():\n    import importlib\n    importlib.import_module('peft.tuners')\n"
              "    __import__('transformers')\n"
              "def asks():\n    import importlib.util\n    importlib.util.find_spec('training')\n")
    assert _imports_of(source) == {"training", "torch", "importlib", "peft", "transformers"}


def _sources(package: str):
    return sorted((ROOT / package).rglob("*.py"))


@pytest.mark.parametrize("package", PACKAGES)
def test_layer_imports(package):
    offenders = []
    for path in _sources(package):
        bad = _imports(path) & FORBIDDEN[package]
        if bad:
            offenders.append(f"{path.relative_to(ROOT)} imports {sorted(bad)}")
    assert not offenders, "layer rule broken:\n" + "\n".join(offenders)


def test_engine_worker_and_core_import_without_qt_or_torch():
    import subprocess
    import sys

    code = (
        "import sys, assistant.cli.main, assistant.app, engine.worker, engine.client;"
        "bad = [m for m in ('PySide6', 'torch', 'transformers') if m in sys.modules];"
        "print(bad); raise SystemExit(1 if bad else 0)"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_window_module_imports_without_the_training_package():
    """The bundle leaves out ``training`` with torch (packaging/assistant.spec): every module of
    the window, and the core it imports at start-up, must import without them. The bundle's own
    test (make soak) found ui.train_pane reaching ``training`` through assistant.train.jobs."""
    import subprocess
    import sys

    modules = sorted(".".join(path.relative_to(ROOT).with_suffix("").parts) for path in (ROOT / "ui").rglob("*.py")
                     if path.stem != "__init__")
    code = (
        "import importlib, sys\n"
        "for name in ('training', 'torch', 'transformers', 'peft', 'accelerate'):\n"
        "    sys.modules[name] = None  # as absent as in the bundle: importing it raises ImportError\n"
        f"for module in {modules!r}:\n"
        "    importlib.import_module(module)\n"
        "import assistant.tasks.sentiment_student as student\n"
        "assert student.fine_tune_available() is False\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                            env={**__import__("os").environ, "QT_QPA_PLATFORM": "offscreen"})
    assert result.returncode == 0, result.stdout + result.stderr
