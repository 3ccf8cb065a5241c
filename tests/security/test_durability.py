"""Nothing lost: SIGKILL at random moments during ingestion, training and model export, and a
full disk during exports and writes. After each, the database passes PRAGMA integrity_check,
every item reported committed is there, and no half file carries a final name.

(SIGKILL during message writes, 100 rounds: tests/assistant/test_conversations.py::
test_sigkill_at_random_moments_never_loses_committed_messages.) The quick rounds run in
`make test`; the full counts of issue 9 run in `make soak` (marker ``slow``).
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from assistant.history.conversations import Conversations
from assistant.history.archive import History, HistoryError
from assistant.store import DiskFullError, Store
from engine.gguf_check import MalformedModelError, check_gguf

from .conftest import REPO, fill
from tests.keyring_for_tests import TEST_DATABASE_KEY

INGEST_CHILD = Path(__file__).with_name("ingest_child.py")
# The dequantized base models, shared with tests/training (same cache, same keys).
BASE_CACHE = REPO / ".pytest_cache" / "training-base-cache"


def rounds(quick: int, soak: int):
    return [pytest.param(quick, id=f"{quick}-rounds"), pytest.param(soak, id=f"{soak}-rounds", marks=pytest.mark.slow)]


def soak_rounds(soak: int):
    """Rounds that run in ``make soak`` only: one round costs a minute or more (a training run or
    a merge of the whole model), and ``make test`` covers the same kill-and-resume path more
    cheaply (tests/training/test_run.py::test_kill_9_mid_run_then_resume_finishes; the export
    kills above)."""
    return [pytest.param(soak, id=f"{soak}-rounds", marks=pytest.mark.slow)]


def _wait_gone(pid: int | None, timeout: float = 60.0) -> None:
    """The killed parent's engine worker exits once its stdin closes; make sure it did."""
    if not pid:
        return
    try:
        process = psutil.Process(pid)
    except psutil.NoSuchProcess:
        return
    try:
        process.wait(timeout)
    except psutil.TimeoutExpired:
        process.kill()
        pytest.fail(f"the engine worker {pid} outlived its killed parent by {timeout} s")


def _kill_child(code: str, args: list[str], delay: float) -> str:
    """Run ``python -c code args``; once it has printed "start", SIGKILL it after ``delay``
    seconds. Returns what it printed after "start" (its "done" lines, if it got that far)."""
    proc = subprocess.Popen([sys.executable, "-c", code, *args], cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline() == "start\n", proc.stderr.read()[-2000:]
        time.sleep(delay)
        os.kill(proc.pid, signal.SIGKILL)
        out = proc.stdout.read()
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()
        proc.stderr.close()
    return out


# ----- ingestion --------------------------------------------------------------------------------
def _corpus(folder: Path, n: int = 24) -> None:
    rng = random.Random(5)
    words = "harbour lighthouse garden bread storm ledger river orchard copper lantern meadow".split()
    for i in range(n):
        paragraphs = [" ".join(rng.choice(words) for _ in range(rng.randint(40, 120))) + "." for _ in range(rng.randint(1, 6))]
        (folder / f"note-{i:02d}.md").write_text(f"# Note {i}\n\n" + "\n\n".join(paragraphs), encoding="utf-8")


def _check_documents(store: Store, committed: dict[str, int]) -> None:
    assert store.integrity_problems() == []
    with store.reading() as conn:
        conn.execute("INSERT INTO doc_chunks_fts (doc_chunks_fts) VALUES ('integrity-check')")
        rows = {r[0]: (r[1], r[2]) for r in conn.execute("SELECT path, status, chunk_count FROM doc_files")}
        actual = dict(conn.execute("SELECT f.path, COUNT(c.n) FROM doc_files f LEFT JOIN doc_chunks c ON c.file_n = f.n "
                                   "GROUP BY f.n"))
        orphans = conn.execute("SELECT COUNT(*) FROM doc_chunks WHERE file_n NOT IN (SELECT n FROM doc_files)").fetchone()[0]
    assert orphans == 0
    for path, (status, count) in rows.items():
        assert actual[path] == count, f"{path}: {actual[path]} chunks stored, {count} recorded (half a file)"
    for path, chunks in committed.items():
        assert rows.get(path) == ("indexed", chunks), f"{path} was committed and is now {rows.get(path)}"


@pytest.mark.parametrize("n_rounds", rounds(3, 20))
def test_sigkill_during_ingestion_loses_nothing(tmp_path, minilm_gguf, n_rounds):
    folder = tmp_path / "docs"
    folder.mkdir()
    _corpus(folder)
    db_path = tmp_path / "docs.sqlite3"
    rng = random.Random(9)
    committed: dict[str, int] = {}
    kills_mid_batch = 0
    for round_no in range(n_rounds):
        child = subprocess.Popen([sys.executable, str(INGEST_CHILD), str(db_path), str(folder), minilm_gguf],
                                 cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        worker = None
        try:
            first = child.stdout.readline()
            assert first.startswith("W "), first + child.stderr.read()[-2000:]
            worker = int(first.split()[1])
            assert child.stdout.readline() == "ready\n"
            # Before the first commit, or after some files (the machine's speed must not decide
            # where the kill lands), then a little later: mid-parse, mid-embedding or mid-commit.
            kill_after = rng.choice([0, rng.randint(1, 40)])
            seen = []
            while len(seen) < kill_after:
                line = child.stdout.readline()
                assert line, "the indexer stopped by itself: " + child.stderr.read()[-2000:]
                seen.append(line)
            time.sleep(rng.uniform(0.0, 0.5))
            os.kill(child.pid, signal.SIGKILL)
            out = "".join(seen) + child.stdout.read()
            child.wait(timeout=60)
        finally:
            if child.poll() is None:
                child.kill()
                child.wait()
            child.stdout.close()
            child.stderr.close()
            _wait_gone(worker)
        lines = [line for line in out.splitlines(keepends=True) if line.endswith("\n")]
        reported = 0
        for line in lines:
            kind, path, value = line.rstrip("\n").split(" ", 2)
            assert kind == "I", line  # "E": a good file failed to index
            committed[path] = int(value)
            reported += 1
        kills_mid_batch += 0 < reported
        store = Store(db_path, key=TEST_DATABASE_KEY)
        try:
            _check_documents(store, committed)
        finally:
            store.close()
    assert committed, "no round got a file committed before the kill: the test proved nothing"
    assert kills_mid_batch >= 1


# ----- training ---------------------------------------------------------------------------------
@pytest.mark.parametrize("n_rounds", soak_rounds(5))
def test_sigkill_during_training_then_resume_finishes_and_the_adapter_loads(tmp_path, smollm2_path, n_rounds):
    from engine.client import EngineClient
    from engine.settings import EngineSettings
    from tests.training.jobs import lora_job, parse, run, start

    cache_root = tmp_path / "base-cache"
    rng = random.Random(13)
    adapters = []
    for round_no in range(n_rounds):
        folder = tmp_path / f"round{round_no}"
        folder.mkdir()
        job_path = lora_job(folder, Path(smollm2_path), cache_root, max_steps=6, checkpoint_every=1)
        job = json.loads(job_path.read_text())
        job["export_gguf"] = True
        job_path.write_text(json.dumps(job))
        out_dir = Path(job["output_dir"])
        kill_after_steps = rng.randint(0, 6)
        proc = start(job_path)
        seen_steps = 0
        try:
            for line in proc.stdout:
                event = json.loads(line)
                if event["event"] == "step":
                    seen_steps += 1
                if event["event"] in ("start", "step") and seen_steps >= kill_after_steps:
                    time.sleep(rng.uniform(0.0, 0.5))
                    break
                assert event["event"] not in ("done", "error"), event
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            proc.stdout.close()
            proc.stderr.close()
        # Whatever the kill interrupted, no artefact under its final name is half written.
        if (out_dir / "adapter.gguf").exists():
            check_gguf(out_dir / "adapter.gguf")
        if (out_dir / "result.json").exists():
            json.loads((out_dir / "result.json").read_text())
        code, events, err = run(job_path, "--resume")
        assert code == 0, (events[-1:], err[-2000:])
        result = events[-1]["result"]
        steps = [e["step"] for e in events if e["event"] == "step"]
        assert not steps or steps[-1] == 6, steps  # a kill after the last step resumes straight to the end
        check_gguf(result["adapter_gguf"])
        adapters.append(result["adapter_gguf"])
    with EngineClient(EngineSettings()) as engine:
        for adapter in adapters:
            done = engine.chat(smollm2_path, [{"role": "user", "content": "Hello"}], {"max_tokens": 4, "temperature": 0},
                               adapters=[{"path": adapter, "scale": 1.0}]).result(timeout=300)
            assert done["result"]["text"] is not None
            active = engine.request("adapters").result(timeout=60)["result"]["models"][0]["active"]
            assert [a["path"] for a in active] == [os.path.abspath(adapter)]
        assert engine.restarts == 0


# ----- model export (quantization) --------------------------------------------------------------
QUANTIZE_CHILD = ("import sys; from engine import privacy; privacy.install()\n"
                  "from training.quantize import quantize_gguf\n"
                  "print('start', flush=True)\n"
                  "quantize_gguf(sys.argv[1], sys.argv[2], 'Q8_0', threads=1)\n"
                  "print('done', flush=True)\n")


def _library_files_are_whole(folder: Path) -> list[str]:
    names = []
    for path in folder.iterdir():
        if path.name.endswith(".gguf") and not path.name.startswith("."):
            check_gguf(path)  # raises on a half file
            names.append(path.name)
    return names


@pytest.mark.parametrize("n_rounds", rounds(3, 10))
def test_sigkill_during_model_export_leaves_no_half_file(tmp_path, smollm2_path, n_rounds):
    library = tmp_path / "models"
    library.mkdir()
    rng = random.Random(17)
    finished_once = False
    for round_no in range(n_rounds):
        target = library / f"smollm2-q8_0-{round_no}.gguf"
        out = _kill_child(QUANTIZE_CHILD, [smollm2_path, str(target)], rng.uniform(0.0, 6.0))
        finished_once |= "done" in out
        assert target.exists() == ("done" in out), "the final name appears only when the file is complete"
        _library_files_are_whole(library)
    # A leftover temp file from a kill never stops the next export.
    from training.quantize import quantize_gguf

    final = quantize_gguf(smollm2_path, library / "after-the-kills.gguf", "Q8_0")
    assert "after-the-kills.gguf" in _library_files_are_whole(library)
    assert check_gguf(final).tensors


# ----- model export (merge and export) ----------------------------------------------------------
MERGE_CHILD = ("import sys; from engine import privacy; privacy.install()\n"
               "from training.export.full_gguf import merge_and_export\n"
               "print('start', flush=True)\n"
               "merge_and_export(sys.argv[1], sys.argv[2], sys.argv[3], cache_root=sys.argv[4],\n"
               "                 quantize=sys.argv[5] or None, threads=1)\n"
               "print('done', flush=True)\n")


PEFT_CHILD = ("import sys; from engine import privacy; privacy.install()\n"
              "import torch; from peft import LoraConfig, get_peft_model\n"
              "from training.export.full_gguf import load_hf_model\n"
              "base = load_hf_model(sys.argv[1], sys.argv[2]); torch.manual_seed(0)\n"
              "model = get_peft_model(base, LoraConfig(r=8, lora_alpha=16, target_modules=['q_proj', 'v_proj'],\n"
              "                                        lora_dropout=0.0))\n"
              "for name, parameter in model.named_parameters():\n"
              "    if 'lora_B' in name:\n"
              "        torch.nn.init.normal_(parameter, std=0.02)\n"
              "model.save_pretrained(sys.argv[3])\n")


@pytest.fixture(scope="module")
def peft_adapter(tmp_path_factory, smollm2_path) -> Path:
    """A small random peft LoRA (q and v, rank 8) of SmolLM2, as a finished fine-tune leaves it.
    Made in a child process: torch stays out of this test process (and out of the engine
    workers and probes the later security tests start from it)."""
    folder = tmp_path_factory.mktemp("peft") / "my-notes-lora"
    made = subprocess.run([sys.executable, "-c", PEFT_CHILD, smollm2_path, str(BASE_CACHE), str(folder)], cwd=REPO,
                          capture_output=True, text=True)
    assert made.returncode == 0 and (folder / "adapter_config.json").is_file(), made.stderr[-3000:]
    return folder


@pytest.mark.parametrize("n_rounds", soak_rounds(10))
def test_sigkill_during_merge_and_export_leaves_no_half_model(tmp_path, smollm2_path, peft_adapter, n_rounds):
    """Killed while merging, writing the f16 model or quantizing it: the library folder holds
    whole models only, and the next export still works (and sweeps the dead run's temp files)."""
    from engine.partial_files import sweep_stale_partials

    library = tmp_path / "models"
    library.mkdir()
    rng = random.Random(23)
    for round_no in range(n_rounds):
        quantize = "Q8_0" if round_no % 2 else ""
        target = library / f"notes-merged-{round_no}.gguf"
        # Imports and loading the base take seconds, writing the f16 model and quantizing it
        # more: kill anywhere in the whole run, sometimes after it finished.
        out = _kill_child(MERGE_CHILD, [smollm2_path, str(peft_adapter), str(target), str(BASE_CACHE), quantize],
                          rng.uniform(0.0, 40.0))
        assert target.exists() == ("done" in out), "the final name appears only when the file is complete"
        _library_files_are_whole(library)
    leftovers = [p.name for p in library.iterdir() if p.name.startswith(".")]
    removed = sweep_stale_partials(library)
    assert sorted(p.name for p in removed) == sorted(leftovers)
    assert not [p for p in library.iterdir() if p.name.startswith(".")], "the dead runs' temp files are gone"
    final = library / "after-the-kills.gguf"
    finished = subprocess.run([sys.executable, "-c", MERGE_CHILD, smollm2_path, str(peft_adapter), str(final),
                               str(BASE_CACHE), "Q8_0"], cwd=REPO, capture_output=True, text=True)
    assert finished.returncode == 0 and finished.stdout.endswith("done\n"), finished.stderr[-3000:]
    assert "after-the-kills.gguf" in _library_files_are_whole(library)
    assert check_gguf(final).tensors


# ----- disk full ---------------------------------------------------------------------------------
def test_a_full_disk_during_a_write_loses_nothing_and_says_so(small_disk):
    disk = small_disk(4 * 1024 * 1024)
    store = Store(disk / "assistant.sqlite3", key=TEST_DATABASE_KEY)
    conversations = Conversations(store)
    conv = conversations.create("kept")
    saved = [conversations.add_message(conv.id, "user", f"message {i} " * 50).text for i in range(20)]
    filler = fill(disk, leave=16 * 1024)
    with pytest.raises(DiskFullError) as info:
        for i in range(1000):  # the WAL has some slack; keep writing until the disk is really full
            conversations.add_message(conv.id, "user", f"more {i} " * 4000)
    message = str(info.value)
    assert "full" in message and "intact" in message and "\n" not in message
    assert [m.text for m in conversations.messages(conv.id)][:20] == saved
    assert store.integrity_problems() == []
    filler.unlink()  # space again: the app goes on where it stopped
    conversations.add_message(conv.id, "assistant", "after the disk was freed")
    store.close()
    reopened = Store(disk / "assistant.sqlite3", key=TEST_DATABASE_KEY)
    try:
        texts = [m.text for m in Conversations(reopened).messages(conv.id)]
        assert texts[:20] == saved and texts[-1] == "after the disk was freed"
        assert reopened.integrity_problems() == []
    finally:
        reopened.close()


@pytest.mark.parametrize("fmt", ["json", "md"])
def test_a_full_disk_during_export_keeps_the_previous_export(small_disk, tmp_path, fmt):
    store = Store(tmp_path / "db.sqlite3", key=TEST_DATABASE_KEY)
    try:
        conversations = Conversations(store)
        conv = conversations.create("big")
        conversations.add_message(conv.id, "user", "small first")
        disk = small_disk(256 * 1024)
        target = disk / f"history.{fmt}"
        history = History(store)
        history.export(target, fmt)
        previous = target.read_bytes()
        conversations.add_message(conv.id, "user", "lorem ipsum " * 40_000)  # ~480 kB: more than the disk
        with pytest.raises(HistoryError) as info:
            history.export(target, fmt)
        assert "No space left on device" in str(info.value) and "Nothing was written" in str(info.value)
        assert target.read_bytes() == previous
        assert sorted(os.listdir(disk)) == [target.name], "no temp file is left behind"
    finally:
        store.close()


def test_a_full_disk_during_adapter_export_keeps_the_previous_adapter(small_disk, smollm2_path, peft_adapter,
                                                                     monkeypatch):
    from training.export import lora_gguf
    from training.export.common import ExportError
    from training.export.lora_gguf import export_lora_adapter

    disk = small_disk(8 * 1024 * 1024)  # the adapter is ~1.9 MB
    target = disk / "my-notes.gguf"
    export_lora_adapter(peft_adapter, smollm2_path, target)
    previous = target.read_bytes()
    filler = fill(disk, leave=512 * 1024)

    # Too little space: refused before a byte is written, with the figures.
    with pytest.raises(ExportError) as info:
        export_lora_adapter(peft_adapter, smollm2_path, target, dtype="f32")
    assert "Not enough disk space" in str(info.value) and "\n" not in str(info.value)
    assert target.read_bytes() == previous
    assert sorted(os.listdir(disk)) == sorted([target.name, filler.name])

    # The space went while writing (another program filled the disk after the check): the
    # kernel's ENOSPC mid-file is one clear error, the old adapter stays, no temp file is left.
    monkeypatch.setattr(lora_gguf, "check_free_space", lambda folder, needed: None)
    with pytest.raises(ExportError) as info:
        export_lora_adapter(peft_adapter, smollm2_path, target)
    assert "No space left on device" in str(info.value) and "\n" not in str(info.value)
    assert target.read_bytes() == previous
    assert sorted(os.listdir(disk)) == sorted([target.name, filler.name])
    check_gguf(target)


def test_a_full_disk_during_quantization_is_a_clear_error(small_disk, smollm2_path):
    from training.quantize import QuantizeError, quantize_gguf

    disk = small_disk(32 * 1024 * 1024)  # a Q8_0 SmolLM2 is ~140 MB
    target = disk / "smollm2-q8_0.gguf"
    with pytest.raises(QuantizeError) as info:
        quantize_gguf(smollm2_path, target, "Q8_0", threads=1)
    assert "\n" not in str(info.value)
    # llama.cpp itself only logs "iostream error"; the message must say what the user can fix.
    assert "is full" in str(info.value) and "free some space" in str(info.value)
    assert os.listdir(disk) == []


def test_sigkill_during_conversation_export_leaves_old_or_whole_file(tmp_path):
    store = Store(tmp_path / "db.sqlite3", key=TEST_DATABASE_KEY)
    conversations = Conversations(store)
    conv = conversations.create("export me")
    for i in range(300):
        conversations.add_message(conv.id, "user", f"line {i} " * 200)
    store.close()
    target = tmp_path / "out.json"
    code = ("import sys; from assistant.store import Store; from assistant.history.archive import History\n"
            "from tests.keyring_for_tests import TEST_DATABASE_KEY\nh = History(Store(sys.argv[1], key=TEST_DATABASE_KEY))\nprint('start', flush=True)\n"
            "while True:\n    h.export(sys.argv[2], 'json')\n    print('done', flush=True)\n")
    rng = random.Random(3)
    for _ in range(5):
        _kill_child(code, [str(tmp_path / "db.sqlite3"), str(target)], rng.uniform(0.0, 1.5))
        if target.exists():
            doc = json.loads(target.read_text(encoding="utf-8"))
            assert len(doc["conversations"][0]["messages"]) == 300
