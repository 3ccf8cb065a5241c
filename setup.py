"""Ships the Help menu's documents in the wheel: the user guide (with its pictures) and the
privacy promises live at the repository's top (docs/, PRIVACY.md), outside every package, so
build_py copies them into the built ``resources/help/`` (see resources.HELP_SOURCES).
Everything else about the build is in pyproject.toml."""

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent


class BuildPyWithHelp(build_py):
    def run(self):
        super().run()
        import sys

        sys.path.insert(0, str(ROOT))
        import resources

        target = Path(self.build_lib) / "resources" / "help"
        target.mkdir(parents=True, exist_ok=True)
        for name, source in resources.HELP_SOURCES.items():
            shutil.copy2(ROOT / source, target / name)
        shutil.copytree(ROOT / resources.HELP_IMAGES, target / "images", dirs_exist_ok=True)


setup(cmdclass={"build_py": BuildPyWithHelp})
