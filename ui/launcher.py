"""The `assistant` command: the desktop window without arguments, the CLI with them.

It sits in ``ui`` because starting the window is the one place that may import Qt; with
arguments it hands over to :mod:`assistant.cli.main` before Qt is ever imported, so terminal
commands stay fast and work without a display. Runs on the main thread.

Two more forms:

- ``assistant FILE.gguf [...]`` ("Open with" in a file manager, the desktop entry's ``%F``)
  opens the window and imports the files, or hands them to the window already running;
- ``assistant -m engine.worker ...`` (and the other child modules the app spawns) runs that
  module as ``python -m`` would. The app spawns its children as ``sys.executable -m MODULE``;
  in a PyInstaller bundle ``sys.executable`` is this program, not a Python, so the same
  command line must work here too. Only the modules in :data:`CHILD_MODULES` are accepted.
"""

from __future__ import annotations

import importlib.util
import runpy
import sys

#: The modules the app runs as child processes (``sys.executable -m MODULE``).
CHILD_MODULES = ("engine.worker", "assistant.documents.ingest")


def run_child_module(module: str, args: list[str]) -> int:
    """``python -m module args`` inside this process (the bundle has no separate Python)."""
    if module.split(".")[0] == "training" and getattr(sys, "frozen", False):
        # The bundle leaves out torch, transformers and peft (packaging/assistant.spec).
        print("Training is not part of this self-contained bundle: it needs PyTorch. Train from the source "
              "installation (`make setup`, then the Train page or `python -m training.run JOB.json`).",
              file=sys.stderr)
        return 2
    if module not in CHILD_MODULES:
        print(f"assistant: -m {module}: not a module this program runs (only {', '.join(CHILD_MODULES)}).",
              file=sys.stderr)
        return 2
    sys.argv = [module, *args]
    try:
        runpy.run_module(module, run_name="__main__", alter_sys=True)
    except SystemExit as exc:  # the module's `raise SystemExit(main())`
        code = exc.code
        if code is None or isinstance(code, int):
            return int(code or 0)
        print(code, file=sys.stderr)
        return 1
    return 0


def is_model_argument(args: list[str]) -> bool:
    """True for ``assistant FILE.gguf [FILE.gguf...]``: "Open with" from a file manager.

    Decided on the names (no Qt import, no disk access): a CLI command never ends in .gguf
    on its own, and ``assistant models add FILE.gguf`` starts with a command word.
    """
    return bool(args) and all(not a.startswith("-") and a.lower().endswith(".gguf") for a in args)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) >= 2 and args[0] == "-m":
        # Before anything else is imported: the engine worker should start small and fast.
        return run_child_module(args[1], args[2:])
    if (not args or is_model_argument(args)) and importlib.util.find_spec("ui.app") is not None:
        from assistant.config import default_paths
        from ui.single_instance import SingleInstance

        # A window of this library is open: hand it the files and exit, before the window's
        # code is even loaded (Qt's network module only, no QApplication).
        if SingleInstance(default_paths().data_dir).pass_to_running(args, become_first=False):
            print("Local Assistant is already open: its window was brought to the front"
                  + (" and imports the files." if args else "."), file=sys.stderr)
            return 0
        from ui.app import run

        return run(open_files=args)
    from assistant.cli import main as cli
    if args:
        return cli.main(args)
    if importlib.util.find_spec("ui.app") is None:
        print("The desktop window is not part of this build yet; starting the terminal chat.", file=sys.stderr)
        return cli.main(["chat"])
    from ui.app import run

    return run()


if __name__ == "__main__":
    raise SystemExit(main())
