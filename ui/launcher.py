"""The `assistant` command: the desktop window without arguments, the CLI with them.

It sits in ``ui`` because starting the window is the one place that may import Qt; with
arguments it hands over to :mod:`assistant.cli` before Qt is ever imported, so terminal
commands stay fast and work without a display. Runs on the main thread.
"""

from __future__ import annotations

import importlib.util
import sys


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    from assistant import cli

    if args:
        return cli.main(args)
    if importlib.util.find_spec("ui.app") is None:
        print("The desktop window is not part of this build yet; starting the terminal chat.", file=sys.stderr)
        return cli.main(["chat"])
    from ui.app import run

    return run()


if __name__ == "__main__":
    raise SystemExit(main())
