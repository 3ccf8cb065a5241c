"""Training jobs from the app's side: a job from document collections in the real store or a
translation memory, the checks before start, the process's typed events, cancel and resume, and
no copy of the user's text left behind once a job cannot resume (issue 24)."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest

from assistant.train import jobs as tj
from assistant.config import AppPaths
from assistant.documents.collections import Documents
from assistant.store import Store
from tests.keyring_for_tests import TEST_DATABASE_KEY

PEPS = Path(__file__).resolve().parents[3] / "shared" / "data" / "documents" / "typing-peps"
SMALL = {"rank": 4, "alpha": 8, "seq_len": 32, "batch_size": 2, "max_steps": 3, "eval_blocks": 2,
         "warmup_steps": 0, "checkpoint_every": 1000, "threads": 1}


def hashed_embed(texts):
    """Unit vectors from the text's hash: the store needs an embedding per chunk; training
    never reads them, so the engine's embedder is not needed here."""
    out = np.stack([np.random.default_rng(abs(hash(t)) % 2**32).standard_normal(8) for t in texts]).astype(np.float32)
    return out / np.linalg.norm(out, axis=1, keepdims=True)


@pytest.fixture
def store(tmp_path):
    s = Store(tmp_path / "db.sqlite3", key=TEST_DATABASE_KEY)
    yield s
    s.close()


@pytest.fixture
def jobs_(data_dir, store):
    paths = AppPaths(data_dir)
    service = tj.TrainingJobs(paths, store)
    # Share the test session's dequantized base cache instead of making a new one per test.
    shared = Path(__file__).resolve().parents[2] / ".pytest_cache" / "training-base-cache"
    shared.mkdir(parents=True, exist_ok=True)
    service.root.mkdir(parents=True, exist_ok=True)
    (service.root / "base-cache").symlink_to(shared)
    return service


def add_docs(store, names, collection="peps"):
    assert PEPS.is_dir(), f"the shared corpus {PEPS} is missing"
    docs = Documents(store, hashed_embed)
    progress = list(docs.add_paths([PEPS / n for n in names], collection))
    assert progress[-1].totals["errors"] == 0
    return docs


def private_document(store, tmp_path, collection="private") -> str:
    """A collection of one document only its owner has: PEP 526 with a marker before every
    eighth word (so that any passage of it holds one), indexed in the real (encrypted) store;
    returns the marker."""
    marker = "zq" + uuid.uuid4().hex[:16]
    notes = tmp_path / "notes"
    notes.mkdir()
    words = (PEPS / "pep-0526.rst").read_text(encoding="utf-8").split(" ")
    text = " ".join(f"{marker} {word}" if i % 8 == 0 else word for i, word in enumerate(words))
    (notes / "private.rst").write_text(text, encoding="utf-8")
    assert list(Documents(store, hashed_embed).add_paths([notes / "private.rst"], collection))[-1].totals["errors"] == 0
    return marker


def files_holding(folder: Path, marker: str) -> list[Path]:
    """Every file under ``folder`` whose bytes hold ``marker``, but the user's own notes."""
    return [p for p in folder.rglob("*") if p.is_file() and "notes" not in p.relative_to(folder).parts
            and marker.encode() in p.read_bytes()]


def test_stored_chunks_give_back_each_document_once(store):
    add_docs(store, ["pep-0526.rst", "pep-0593.rst"])
    docs = tj.collection_documents(store, ["peps"])
    assert [d["title"] for d in docs] and len(docs) == 2
    for doc in docs:
        paragraphs = [p for p in doc["text"].split("\n\n") if len(p) > 80]
        # the chunks' retrieval overlap is removed: no long paragraph appears twice in a row
        assert all(a != b for a, b in zip(paragraphs, paragraphs[1:]))
    with store.reading() as conn:
        stored = sum(len(r[0]) for r in conn.execute("SELECT text FROM doc_chunks"))
    assert sum(len(d["text"]) for d in docs) < stored  # overlap was there and is gone


def test_documents_job_runs_with_typed_events(jobs_, store, smollm2_gguf):
    add_docs(store, ["pep-0526.rst"])
    spec = jobs_.prepare_documents(["peps"], smollm2_gguf, "quick", SMALL, name="peps")
    assert spec.job_file.is_file() and (spec.folder / "documents.jsonl").is_file()
    job = json.loads(spec.job_file.read_text())
    assert job["dataset"]["collections"] == ["peps"] and job["preset"] == "quick"
    process = jobs_.start(spec)
    events = list(process.events())
    assert events[-1].kind == "done", events[-1].data
    steps = [e for e in events if isinstance(e, tj.StepEvent)]
    assert [s.step for s in steps] == [1, 2, 3] and all(s.tokens_per_s > 0 for s in steps)
    assert process.result["steps"] == 3 and Path(process.result["adapter_dir"]).is_dir()
    runs = jobs_.runs()
    assert runs[0]["result"]["steps"] == 3 and not runs[0]["resumable"]


def test_a_finished_job_leaves_no_copy_of_the_text_it_read(jobs_, store, smollm2_gguf, tmp_path):
    """The job's copy of the documents is shredded when it finishes, before its last line; the
    before/after samples (held-out text and the model's continuations) reach the window in that
    line and no file. No file under the data folder or the job folder holds the marker."""
    marker = private_document(store, tmp_path)
    spec = jobs_.prepare_documents(["private"], smollm2_gguf, "quick", SMALL, name="private")
    copy = spec.folder / "documents.jsonl"
    assert spec.job["text_copies"] == [str(copy)] and marker.encode() in copy.read_bytes()
    process = jobs_.start(spec)
    events = list(process.events())
    assert events[-1].kind == "done", events[-1].data
    assert marker in process.result["sample_prompt"]  # the samples the window shows are the user's text
    assert Path(process.result["adapter_gguf"]).is_file() and not copy.exists()
    assert files_holding(tmp_path, marker) == []  # the data folder (job folder, base cache, models) and the store


def test_cancel_then_resume(jobs_, store, smollm2_gguf, tmp_path):
    """A stopped job keeps its copy of the documents for --resume; the resumed job shreds it
    when it finishes."""
    marker = private_document(store, tmp_path, "peps")
    spec = jobs_.prepare_documents(["peps"], smollm2_gguf, "quick", {**SMALL, "max_steps": 4})
    process = jobs_.start(spec)
    events = []
    for event in process.events():
        events.append(event)
        if isinstance(event, tj.StepEvent) and event.step == 1:
            process.cancel()
    assert events[-1].kind == "cancelled" and process.wait() == 3
    assert jobs_.runs()[0]["resumable"] and (spec.folder / "documents.jsonl").is_file()
    resumed = list(jobs_.resume(spec.folder).events())
    assert resumed[-1].kind == "done" and resumed[-1].data["result"]["steps"] == 4
    assert any(e.kind == "resumed" for e in resumed)
    assert files_holding(tmp_path, marker) == []


def test_a_job_that_fails_before_its_first_checkpoint_shreds_its_copy(jobs_, store, smollm2_gguf, tmp_path):
    """Failed for good: nothing to resume from (the app starts such a job afresh, in a new folder)."""
    marker = private_document(store, tmp_path)
    spec = jobs_.prepare_documents(["private"], smollm2_gguf, "quick", SMALL)
    job = json.loads(spec.job_file.read_text())
    job["base_gguf"] = str(tmp_path / "moved-away.gguf")  # the model went away after the check
    spec.job_file.write_text(json.dumps(job))
    events = list(jobs_.start(spec).events())
    assert events[-1].kind == "error" and "does not exist" in events[-1].data["message"]
    assert not (spec.folder / "documents.jsonl").exists() and files_holding(tmp_path, marker) == []


def test_a_stopped_job_given_up_keeps_no_copy_and_cannot_resume(jobs_, store, smollm2_gguf, tmp_path):
    marker = private_document(store, tmp_path)
    spec = jobs_.prepare_documents(["private"], smollm2_gguf, "quick", SMALL)
    (spec.folder / "checkpoints" / "step-0000001").mkdir(parents=True)  # as a stopped job leaves it
    (spec.folder / "checkpoints" / "latest").write_text("step-0000001")
    assert jobs_.runs()[0]["resumable"]
    jobs_.abandon(spec.folder)
    assert not spec.folder.exists() and jobs_.runs() == [] and files_holding(tmp_path, marker) == []
    with pytest.raises(tj.TrainingJobError, match="not a training job folder"):
        jobs_.resumable(spec.folder)
    with pytest.raises(tj.TrainingJobError, match="not a training job folder"):
        jobs_.abandon(tmp_path)


def stopped_job(runs_dir: Path, marker: str, name: str = "20260101-000000-documents-abcdef",
                result: dict | None = None) -> Path:
    """A job folder as a job stopped after its first checkpoint leaves it (or, with ``result``, as
    a finished one): job.json, the copies of the user's text holding ``marker``, a checkpoint and
    a log. Made on the disk, without a model: what is given up is the folder, not a run."""
    folder = runs_dir / name
    (folder / "checkpoints" / "step-0000002").mkdir(parents=True)
    (folder / "checkpoints" / "step-0000002" / "adapter_model.safetensors").write_bytes(b"\x01" * 64)
    (folder / "checkpoints" / "latest").write_text("step-0000002")
    copies = [folder / name for name in ("documents.jsonl", "labels.jsonl", "teacher_texts.jsonl")]
    for copy in copies:
        copy.write_text(json.dumps({"title": "notes", "text": f"my notes {marker}"}) + "\n", encoding="utf-8")
    (folder / "stderr.log").write_text("step 2 saved\n")
    job = {"kind": "lora", "name": "documents", "output_dir": str(folder), "preset": "quick",
           "dataset": {"type": "documents", "path": str(copies[0]), "collections": ["private"]},
           "text_copies": [str(copies[0])], "created_at": 1767225600.0}
    (folder / "job.json").write_text(json.dumps(job), encoding="utf-8")
    if result is not None:
        (folder / "adapter.gguf").write_bytes(b"GGUF")
        (folder / "result.json").write_text(json.dumps(result), encoding="utf-8")
    return folder


@contextmanager
def stand_in_job_process(job_file: Path, cwd: Path | None = None):
    """A process whose command line is a running job's (``... -m training.run JOB.json``) but that
    only sleeps: what the process table shows while a job runs, without loading a model."""
    process = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)", "-m", "training.run",
                                str(job_file)], cwd=cwd)
    try:
        yield process
    finally:
        process.kill()
        process.wait()


def test_discarding_shreds_every_copy_of_the_text_then_removes_the_folder(jobs_, tmp_path, monkeypatch):
    marker = "zq" + uuid.uuid4().hex[:16]
    folder = stopped_job(jobs_.runs_dir, marker)
    import engine.job_files

    shredded = []
    real_shred = engine.job_files.shred_file
    monkeypatch.setattr(engine.job_files, "shred_file", lambda path: (shredded.append(Path(path).name),
                                                                      real_shred(path)))
    assert jobs_.job_folder(folder.name) == folder and jobs_.runs()[0]["resumable"]
    jobs_.abandon(jobs_.job_folder(folder.name))
    # Overwritten before deleted (engine.shred), not merely unlinked: every copy the folder held.
    assert sorted(set(shredded)) == ["documents.jsonl", "labels.jsonl", "teacher_texts.jsonl"]
    assert not folder.exists() and jobs_.runs() == [] and files_holding(tmp_path, marker) == []


def test_discarding_refuses_a_running_job_a_finished_one_and_names_that_are_not_jobs(jobs_, tmp_path):
    marker = "zq" + uuid.uuid4().hex[:16]
    folder = stopped_job(jobs_.runs_dir, marker)
    before = (folder / "documents.jsonl").read_bytes()
    # Started with the job file's full path (the window, the CLI) or one relative to its folder.
    for job_file, cwd in ((folder / "job.json", None), (Path(folder.name) / "job.json", jobs_.runs_dir)):
        with stand_in_job_process(job_file, cwd) as process:
            assert tj.job_process_ids(folder / "job.json") == [process.pid]
            with pytest.raises(tj.TrainingJobError, match="is running; stop it first"):
                jobs_.abandon(folder)
            assert (folder / "documents.jsonl").read_bytes() == before and tj.has_checkpoint(folder)
    assert tj.job_process_ids(folder / "job.json") == []

    finished = stopped_job(jobs_.runs_dir, marker, "20260102-000000-documents-fedcba", result={"steps": 3})
    with pytest.raises(tj.TrainingJobError, match="finished; what it made stays"):
        jobs_.abandon(finished)
    assert (finished / "adapter.gguf").read_bytes() == b"GGUF" and (finished / "result.json").is_file()

    for name in ("nope", "../runs/" + folder.name, str(folder), "", ".."):
        with pytest.raises(tj.TrainingJobError, match="No training job called"):
            jobs_.job_folder(name)
    jobs_.abandon(folder)  # stopped for good now: it goes
    assert not folder.exists() and [Path(run["folder"]) for run in jobs_.runs()] == [finished]


def test_runs_finished_before_issue_24_lose_their_copies_when_listed(jobs_, tmp_path):
    """Earlier versions kept documents.jsonl, held_out.jsonl and the samples in result.json after
    a job finished; the Train page's list of runs shreds them."""
    marker = "zq" + uuid.uuid4().hex[:16]
    folder = jobs_.runs_dir / "20260101-000000-documents-abcdef"
    folder.mkdir(parents=True)
    (folder / "job.json").write_text(json.dumps({"kind": "lora", "output_dir": str(folder)}))
    for name in ("documents.jsonl", "held_out.jsonl"):
        (folder / name).write_text(json.dumps({"text": f"my notes {marker}"}) + "\n")
    (folder / "result.json").write_text(json.dumps({"steps": 3, "sample_before": f"my notes {marker}"}))
    (run,) = jobs_.runs()
    assert run["result"] == {"steps": 3} and json.loads((folder / "result.json").read_text()) == {"steps": 3}
    assert files_holding(tmp_path, marker) == []


def test_a_killed_job_is_reported_not_hidden(jobs_, store, smollm2_gguf):
    add_docs(store, ["pep-0526.rst"])
    spec = jobs_.prepare_documents(["peps"], smollm2_gguf, "quick", {**SMALL, "max_steps": 50})
    process = jobs_.start(spec)
    events = []
    for event in process.events():
        events.append(event)
        if event.kind == "start":
            process.kill()
    assert events[-1].kind == "error" and "killed by signal 9" in events[-1].data["message"]


def test_clear_errors_before_the_job_starts(jobs_, store, smollm2_gguf, tmp_path):
    with pytest.raises(tj.TrainingJobError, match="No document collection called 'nope'"):
        jobs_.prepare_documents(["nope"], smollm2_gguf)
    with pytest.raises(tj.TrainingJobError, match="at least one document collection"):
        jobs_.prepare_documents([], smollm2_gguf)
    Documents(store, hashed_embed).collection_id("empty", create=True)
    with pytest.raises(tj.TrainingJobError, match="no indexed documents"):
        jobs_.prepare_documents(["empty"], smollm2_gguf)
    short = tmp_path / "short.txt"
    short.write_text("A single short note.", encoding="utf-8")
    list(Documents(store, hashed_embed).add_paths([short], "short"))
    with pytest.raises(tj.TrainingJobError, match="Too little text"):
        jobs_.prepare_documents(["short"], smollm2_gguf)

    add_docs(store, ["pep-0526.rst"])
    with pytest.raises(tj.TrainingJobError, match="Not enough memory"):
        jobs_.prepare_documents(["peps"], smollm2_gguf, settings={"batch_size": 100000, "seq_len": 32})
    with pytest.raises(tj.TrainingJobError, match="Unknown preset"):
        jobs_.prepare_documents(["peps"], smollm2_gguf, "fastest")

    import gguf

    bert = tmp_path / "bert.gguf"
    writer = gguf.GGUFWriter(str(bert), "bert")
    writer.add_tensor("token_embd.weight", np.zeros((4, 8), dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    with pytest.raises(tj.TrainingJobError, match="'bert' model"):
        jobs_.prepare_documents(["peps"], bert)

    memory = tmp_path / "memory.tsv"
    memory.write_text("eng\tfra\nhello\tbonjour\n", encoding="utf-8")
    with pytest.raises(tj.TrainingJobError, match="1 usable pairs"):
        jobs_.prepare_translation(memory, smollm2_gguf)
    assert not list(jobs_.runs_dir.glob("*")) if jobs_.runs_dir.exists() else True  # nothing half-made


def test_translation_memory_job_is_prepared(jobs_, smollm2_gguf, tmp_path):
    memory = tmp_path / "memory.tsv"
    memory.write_text("eng\tfra\n" + "".join(f"I see {i} birds.\tJe vois {i} oiseaux.\n" for i in range(200)),
                      encoding="utf-8")
    spec = jobs_.prepare_translation(memory, smollm2_gguf, "en", "fr", "quick", SMALL)
    assert spec.job["dataset"] == {"type": "translation_memory", "path": str(memory.resolve()),
                                   "source": "en", "target": "fr"}
    with pytest.raises(tj.TrainingJobError, match="not en->de"):
        jobs_.prepare_translation(memory, smollm2_gguf, "en", "de")


def test_progress_lines_parse_to_typed_events():
    step = tj.parse_event('{"event": "step", "step": 3, "total_steps": 9, "loss": 2.5, "tokens_per_s": 120.0, "eta_s": 30}')
    assert isinstance(step, tj.StepEvent) and (step.step, step.total_steps, step.loss, step.eta_s) == (3, 9, 2.5, 30.0)
    assert tj.parse_event('{"event": "done", "result": {}}').final
    assert tj.parse_event("Warning: something printed by a library") is None
    assert tj.parse_event("[1, 2]") is None


def test_importing_the_job_core_does_not_import_torch_or_training():
    code = ("import sys, assistant.train.jobs; bad = [m for m in ('torch', 'transformers', 'peft', 'training') "
            "if m in sys.modules]; print(bad); raise SystemExit(1 if bad else 0)")
    result = subprocess.run([sys.executable, "-c", code], cwd=Path(__file__).resolve().parents[2],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
