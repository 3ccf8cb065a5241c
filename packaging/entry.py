"""The bundle's entry point: the same ``assistant`` command as the installed package.

PyInstaller needs a script; this one only calls :func:`ui.launcher.main`, which also runs
the engine worker when the bundle starts itself as ``assistant -m engine.worker``.
"""

from ui.launcher import main

if __name__ == "__main__":
    raise SystemExit(main())
