"""engine/atomic.py and engine/job_files.py: the one way every process writes a file."""

from __future__ import annotations

import json
import os
import stat

import pytest

from engine.atomic import (
    WriteFailedError,
    atomic_dir,
    atomic_path,
    atomic_write,
    atomic_write_bytes,
    atomic_write_text,
    write_json_atomic,
)
from engine.job_files import JOB_FILE, new_run_folder, write_job_file
from engine.partial_files import writer_pid


@pytest.fixture
def folder(tmp_path):
    """A folder of its own (the suite's fixtures put a data folder in tmp_path)."""
    path = tmp_path / "out"
    path.mkdir()
    return path


def _mode(path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_a_write_replaces_the_file_whole_and_private_unless_asked(folder):
    target = folder / "notes.txt"
    atomic_write_text(target, "first")
    assert target.read_text() == "first" and _mode(target) == 0o600
    atomic_write_bytes(target, b"second", permissions=0o644)
    assert target.read_bytes() == b"second" and _mode(target) == 0o644
    assert os.listdir(folder) == ["notes.txt"]


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary_file(folder):
    target = folder / "notes.txt"
    atomic_write_text(target, "old")
    with pytest.raises(WriteFailedError, match="No space left on device") as info:
        with atomic_write(target) as handle:
            handle.write("half of the new")
            raise OSError(28, "No space left on device")
    assert info.value.errno == 28 and str(target) in str(info.value)
    with pytest.raises(ValueError):
        with atomic_write(target) as handle:
            handle.write("half of the new")
            raise ValueError("not an OSError: passes through unchanged")
    assert target.read_text() == "old" and os.listdir(folder) == ["notes.txt"]


def test_bad_names_and_missing_folders_are_one_clear_error(folder):
    with pytest.raises(WriteFailedError, match="is not a valid file name"):
        atomic_write_text(folder / "bad\0name", "x")
    with pytest.raises(WriteFailedError, match=f"Cannot write to {folder / 'missing'}"):
        atomic_write_text(folder / "missing" / "x.txt", "x")


def test_json_is_indented_and_writes_what_json_does_not_know_as_text(folder):
    write_json_atomic(folder / "r.json", {"path": folder, "n": 1})
    text = (folder / "r.json").read_text()
    assert json.loads(text) == {"path": str(folder), "n": 1} and text.startswith("{\n  ")


def test_a_staged_path_is_named_for_the_sweep_and_renamed_only_on_success(folder):
    target = folder / "deep" / "model.gguf"
    with atomic_path(target, permissions=0o644, make_parents=True) as tmp:
        assert writer_pid(tmp) == os.getpid() and tmp.parent == target.parent
        tmp.write_bytes(b"GGUF")
        assert not target.exists()
    assert target.read_bytes() == b"GGUF" and _mode(target) == 0o644
    with pytest.raises(OSError):
        with atomic_path(target) as tmp:
            tmp.write_bytes(b"half")
            raise OSError(5, "Input/output error")
    assert target.read_bytes() == b"GGUF" and os.listdir(target.parent) == ["model.gguf"]


def test_a_folder_is_replaced_whole_or_not_at_all(folder):
    target = folder / "adapter"
    with atomic_dir(target) as tmp:
        (tmp / "a.bin").write_bytes(b"1")
    with atomic_dir(target) as tmp:
        (tmp / "b.bin").write_bytes(b"2")
    assert os.listdir(target) == ["b.bin"]
    with pytest.raises(RuntimeError):
        with atomic_dir(target) as tmp:
            (tmp / "c.bin").write_bytes(b"3")
            raise RuntimeError("killed half-way")
    assert os.listdir(target) == ["b.bin"] and os.listdir(folder) == ["adapter"]
    # A folder another process finished first is kept when asked: the rename is refused.
    with pytest.raises(OSError):
        with atomic_dir(target, replace=False) as tmp:
            (tmp / "d.bin").write_bytes(b"4")
    assert os.listdir(target) == ["b.bin"] and os.listdir(folder) == ["adapter"]


def test_run_folders_sort_by_time_and_never_collide_and_job_files_are_json(folder):
    first, second = new_run_folder(folder / "runs", "documents"), new_run_folder(folder / "runs", "documents")
    assert first != second and first.is_dir() and second.is_dir()
    stamp, name, suffix = first.name[:15], first.name[16:-7], first.name[-6:]
    assert stamp[8] == "-" and name == "documents" and len(suffix) == 6
    path = write_job_file(first, {"kind": "lora", "output_dir": first})
    assert path == first / JOB_FILE and json.loads(path.read_text()) == {"kind": "lora", "output_dir": str(first)}
    assert write_job_file(first, {"kind": "quantize_lab"}, name="job-in.json").name == "job-in.json"
