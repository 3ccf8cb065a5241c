"""Fixtures of the proofs (issue 9): the real default models, a real engine, small disks."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest


REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def small_disk(tmp_path):
    """``make(size)`` mounts a tmpfs of ``size`` bytes and returns its folder: a real full disk
    (ENOSPC from the kernel), not a simulated one. Unmounted after the test."""
    mounted: list[Path] = []

    def make(size: int) -> Path:
        folder = tmp_path / f"disk{len(mounted)}"
        folder.mkdir()
        result = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", str(folder)],
                                capture_output=True, text=True)
        assert result.returncode == 0, (
            "the disk-full tests mount a small tmpfs and need root (or CAP_SYS_ADMIN): " + result.stderr.strip())
        mounted.append(folder)
        return folder

    yield make
    for folder in reversed(mounted):
        subprocess.run(["umount", "-l", str(folder)], check=False)


def fill(folder: Path, leave: int = 0) -> Path:
    """Fill the file system of ``folder`` until ``leave`` bytes are free."""
    stat = os.statvfs(folder)
    free = stat.f_bavail * stat.f_frsize
    filler = folder / "filler.bin"
    with open(filler, "wb") as handle:
        handle.write(b"\0" * max(0, free - leave))
    return filler
