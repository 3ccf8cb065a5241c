"""engine/shred.py and the job-folder rules of engine/job_files.py: what held the user's text is
overwritten on the disk, not only unlinked.

A second hard link to a file sees the same blocks, so it shows what the shredder wrote there
after the name it was given is gone."""

from __future__ import annotations

import json
import os

from engine.atomic import write_json_atomic
from engine.job_files import TEXT_COPIES, forget_job_texts, has_checkpoint, shred_job_texts, without_texts
from engine.shred import shred_file, shred_tree, shredding_replaced

SECRET = b"my private diary entry " * 1000


def test_a_shredded_file_is_zeros_on_the_disk_before_it_goes(tmp_path):
    path, witness = tmp_path / "copy.jsonl", tmp_path / "witness"
    path.write_bytes(SECRET)
    os.link(path, witness)
    shred_file(path)
    assert not path.exists()
    assert witness.read_bytes() == b"\x00" * len(SECRET)
    shred_file(path)  # already gone: nothing to do


def test_a_shredded_tree_leaves_nothing_and_follows_no_link(tmp_path):
    tree, outside = tmp_path / "work", tmp_path / "users-own.txt"
    (tree / "student").mkdir(parents=True)
    outside.write_bytes(SECRET)
    (tree / "labels.jsonl").write_bytes(SECRET)
    (tree / "student" / "partial.bin").write_bytes(SECRET)
    witness = tmp_path / "witness"
    os.link(tree / "labels.jsonl", witness)
    (tree / "link").symlink_to(outside)
    shred_tree(tree)
    assert not tree.exists()
    assert witness.read_bytes() == b"\x00" * len(SECRET)
    assert outside.read_bytes() == SECRET  # a link's target is not the tree's to erase
    shred_tree(tree)


def test_a_file_replaced_atomically_leaves_its_old_bytes_zeroed(tmp_path):
    path, witness = tmp_path / "result.json", tmp_path / "witness"
    write_json_atomic(path, {"loss": 1.5, "sample_before": SECRET.decode()})
    os.link(path, witness)
    old_size = witness.stat().st_size
    with shredding_replaced(path):
        write_json_atomic(path, {"loss": 1.5})
    assert json.loads(path.read_text()) == {"loss": 1.5}
    assert witness.read_bytes() == b"\x00" * old_size


def test_a_job_forgets_its_copies_but_not_the_users_files_or_a_kept_held_out_file(tmp_path):
    folder, users = tmp_path / "run", tmp_path / "notes.txt"
    folder.mkdir()
    users.write_bytes(SECRET)
    for name in ("documents.jsonl", "teacher_texts.jsonl", "held_out.jsonl"):
        (folder / name).write_bytes(SECRET)
    labels = tmp_path / "labels.jsonl"
    labels.write_bytes(SECRET)
    kept = tmp_path / "held-out.jsonl"
    kept.write_bytes(SECRET)
    (folder / "adapter.gguf").write_bytes(b"weights")
    job = {"output_dir": str(folder), TEXT_COPIES: [str(labels), str(folder / "documents.jsonl")],
           "dataset": {"type": "text_files", "paths": [str(users)]}, "held_out_path": str(kept)}
    removed = forget_job_texts(job)
    assert sorted(p.name for p in removed) == ["documents.jsonl", "held_out.jsonl", "labels.jsonl",
                                               "teacher_texts.jsonl"]
    assert sorted(p.name for p in folder.iterdir()) == ["adapter.gguf"]
    assert users.read_bytes() == SECRET and kept.read_bytes() == SECRET
    assert forget_job_texts(job) == [] and shred_job_texts(folder) == []


def test_a_checkpoint_pointer_makes_a_job_resumable(tmp_path):
    assert not has_checkpoint(tmp_path)
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / "latest").write_text("step-0000002")
    assert has_checkpoint(tmp_path)


def test_a_result_on_the_disk_keeps_figures_not_samples():
    result = {"steps": 3, "sample_prompt": "a", "sample_before": "b", "sample_after": "c"}
    assert without_texts(result) == {"steps": 3}
