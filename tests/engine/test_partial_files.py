"""Half-written files carry their writer's pid; the sweep removes only those of dead writers."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from engine.partial_files import partial_path, sweep_stale_partials, writer_pid


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_partial_names_carry_the_writer_and_sit_next_to_the_final_file(tmp_path):
    final = tmp_path / "my model.Q8_0.gguf"
    partial = partial_path(final)
    assert partial.parent == tmp_path and partial.is_file() and partial.stat().st_size == 0
    assert partial.name.startswith(".my model.Q8_0.gguf.") and partial.name.endswith(".part")
    assert writer_pid(partial) == os.getpid()
    staged = partial_path(final, tag="staging_f16")
    assert staged.name == f".my model.Q8_0.gguf.{os.getpid()}.staging_f16.part"
    with pytest.raises(ValueError):
        partial_path(final, tag="../escape")


def test_the_sweep_removes_dead_writers_files_only(tmp_path):
    dead = _dead_pid()
    stale = tmp_path / f".model.gguf.{dead}.k2j4_x.part"
    stale.write_bytes(b"half a model")
    live = partial_path(tmp_path / "model.gguf")  # this process is still writing it
    ours_unrelated = [tmp_path / "model.gguf", tmp_path / ".hidden-notes", tmp_path / f".x.{dead}.part",
                      tmp_path / f"model.{dead}.abc.part"]  # not hidden: not one of our names
    for path in ours_unrelated:
        path.write_bytes(b"keep")
    folder_like = tmp_path / f".dir.{dead}.abc.part"
    folder_like.mkdir()
    assert sweep_stale_partials(tmp_path) == [stale]
    assert not stale.exists() and live.exists() and folder_like.is_dir()
    assert all(p.read_bytes() == b"keep" for p in ours_unrelated)
    assert sweep_stale_partials(tmp_path / "missing") == []


def test_preparing_the_pack_sweeps_the_models_folder(joined_pack_dir):
    from engine import model_pack

    stale = joined_pack_dir / f".gemma.gguf.{_dead_pid()}.abcdef.part"
    stale.write_bytes(b"x" * 1000)
    model_pack.prepare_pack(joined_pack_dir)  # the pack is joined there already: only the sweep works
    assert not stale.exists()
