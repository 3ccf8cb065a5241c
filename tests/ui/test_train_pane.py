"""The Train pane with the real core: checks before a job starts, and a real LoRA run
(quick preset, SmolLM2 from the default pack) followed live, its result and "use in chat"."""

from __future__ import annotations

from pathlib import Path

PEPS = Path(__file__).resolve().parents[3] / "shared" / "data" / "documents" / "typing-peps"


def _window_pane(qtbot, window):
    qtbot.waitUntil(lambda: window.train is not None, timeout=30000)
    window.show_page("train")
    pane = window.train
    qtbot.waitUntil(lambda: pane.model_combo.count() > 0, timeout=30000)
    return pane


def test_only_trainable_models_are_offered_and_bad_choices_say_why(qtbot, window, tmp_path):
    pane = _window_pane(qtbot, window)
    labels = [pane.model_combo.itemText(i) for i in range(pane.model_combo.count())]
    paths = [pane.model_combo.itemData(i) for i in range(pane.model_combo.count())]
    assert any("SmolLM2" in label for label in labels) and all(p.endswith(".gguf") for p in paths)
    assert pane.collections.count() == 0
    pane.start()
    assert "Tick at least one document collection" in pane.status.text()
    assert not pane.busy

    memory = tmp_path / "tiny.tsv"
    memory.write_text("en\tfr\nhello\tbonjour\nthank you\tmerci\n", encoding="utf-8")
    pane.from_memory.setChecked(True)
    pane.memory_path.setText(str(memory))
    pane.start()
    qtbot.waitUntil(lambda: not pane.busy, timeout=60000)
    assert "at least 20 are needed" in pane.status.text(), pane.status.text()
    assert pane.start_button.isEnabled()


def _peps_collection_and_base_cache(services) -> None:
    """One PEP indexed as the collection "peps", and the dequantized SmolLM2 base linked in."""
    assert PEPS.is_dir(), f"the shared corpus is missing: {PEPS}"
    documents, _retriever = services.documents_core()
    # The smallest document that still makes enough blocks: the path matters here, not the epoch.
    files = [f for f in sorted(PEPS.glob("*.rst"), key=lambda f: f.stat().st_size) if f.stat().st_size > 12_000][:1]
    assert files, f"no .rst files in {PEPS}"
    list(documents.add_paths([str(f) for f in files], "peps"))

    # The dequantized base is the training tests' shared cache (built once per machine and
    # session), linked where this test's data folder keeps it.
    from engine import model_pack
    from tests.training.conftest import SHARED_CACHE
    from training.base_model import cached_base_dir

    smollm2_gguf = model_pack.locate(model_pack.SMOLLM2, services.paths.models_dir)
    SHARED_CACHE.mkdir(parents=True, exist_ok=True)
    cached_base_dir(Path(smollm2_gguf), SHARED_CACHE)
    (services.paths.data_dir / "training").mkdir(exist_ok=True)
    (services.paths.data_dir / "training" / "base-cache").symlink_to(SHARED_CACHE, target_is_directory=True)


def test_a_real_run_is_followed_live_and_its_adapter_is_used_in_chat(qtbot, window, services):
    from assistant.models.adapters import ActiveAdapters

    _peps_collection_and_base_cache(services)
    pane = _window_pane(qtbot, window)
    pane.refresh()
    qtbot.waitUntil(lambda: pane.collections.count() == 1, timeout=30000)
    smollm2 = next(i for i in range(pane.model_combo.count()) if "SmolLM2" in pane.model_combo.itemText(i))
    pane.model_combo.setCurrentIndex(smollm2)
    pane.preset_combo.setCurrentIndex(pane.preset_combo.findData("quick"))
    pane.max_steps.setValue(2)  # two optimizer steps: the whole path, not the whole epoch
    with qtbot.waitSignal(pane.sig_training_finished, timeout=1_800_000) as finished:
        pane.start()
        assert pane.busy and pane.cancel_button.isEnabled()
    result = finished.args[0]
    assert result, pane.status.text()
    kinds = [e.kind for e in pane.events]
    assert "start" in kinds and kinds.index("start") < kinds.index("step") and kinds[-1] == "done", kinds
    assert pane.chart.steps and len(pane.chart.steps) == len(pane.chart.losses)
    assert pane.result_box.isVisible() and "perplexity through llama.cpp" in pane.result_summary.text().lower()
    assert result["gguf_perplexity_before"] > 1 and result["gguf_perplexity_after"] > 1
    prompt = result["sample_prompt"]
    assert pane.sample_before.toPlainText().startswith(prompt) and pane.sample_after.toPlainText().startswith(prompt)
    assert result["adapter_gguf"] and Path(result["adapter_gguf"]).is_file()
    assert pane.runs.count() >= 1

    with qtbot.waitSignal(pane.sig_adapter_activated, timeout=120_000):
        pane.use_chat.click()
    assert ActiveAdapters(services.store).get("chat").path == str(Path(result["adapter_gguf"]).resolve())

    window.show_page("chat")
    window.chat.focus_composer()
    qtbot.keyClicks(window.chat.composer, "What is a type hint?")
    from PySide6.QtCore import Qt

    qtbot.keyClick(window.chat.composer, Qt.Key.Key_Return)
    qtbot.waitUntil(lambda: not window.chat.busy, timeout=300_000)
    reply = services.conversations.messages(window.chat.conversation_id)[-1]
    assert reply.role == "assistant" and reply.status == "complete", window.chat.banner.label.text()
    assert reply.adapter == str(Path(result["adapter_gguf"]).resolve()), "the reply was written with the adapter"


def test_without_pytorch_the_page_says_so_before_anything_is_chosen(qtbot, window, monkeypatch):
    """The self-contained bundle leaves PyTorch out: the page says so at once and cannot start."""
    import sys

    import ui.train_pane as train_pane
    from assistant.train.support import training_unavailable

    assert training_unavailable() is None  # this installation trains
    monkeypatch.setattr(sys, "frozen", True, raising=False)  # what a PyInstaller bundle sets
    message = training_unavailable()
    assert message and "PyTorch" in message and "make run" in message
    monkeypatch.setattr(train_pane, "training_unavailable", lambda: message)
    pane = train_pane.TrainPane(window.services, window.train.jobs)
    qtbot.addWidget(pane)
    try:
        assert pane.status.text() == message and not pane.start_button.isEnabled()
        qtbot.waitUntil(lambda: pane.model_combo.count() > 0, timeout=30000)  # the page filled in
        assert pane.status.text() == message and not pane.start_button.isEnabled()
        pane.start()
        assert pane.status.text() == message and not pane.busy
    finally:
        pane.shutdown()


def test_a_smaller_copy_is_made_from_documents_and_added_to_the_models(qtbot, window, services):
    """Goal "smaller copy": half of SmolLM2's layers kept by importance, a couple of distillation
    steps on a PEP, a GGUF (Q8_0) written, the card compares it with the original, and "Add to my
    models" puts it in the library."""
    _peps_collection_and_base_cache(services)
    pane = _window_pane(qtbot, window)
    pane.refresh()
    qtbot.waitUntil(lambda: pane.collections.count() == 1, timeout=30000)
    pane.goal_combo.setCurrentIndex(pane.goal_combo.findData("distill"))
    assert not pane.from_memory.isEnabled() and pane.from_documents.isChecked()
    assert pane.start_button.text() == "Make the smaller copy" and "pass over the documents" in pane.preset_text.text()
    smollm2 = next(i for i in range(pane.model_combo.count()) if "SmolLM2" in pane.model_combo.itemText(i))
    pane.model_combo.setCurrentIndex(smollm2)
    pane.preset_combo.setCurrentIndex(pane.preset_combo.findData("quick"))
    pane.max_steps.setValue(2)
    with qtbot.waitSignal(pane.sig_training_finished, timeout=1_800_000) as finished:
        pane.start()
    result = finished.args[0]
    assert result, pane.status.text()
    kinds = [e.kind for e in pane.events]
    assert "start" in kinds and "step" in kinds and kinds[-1] == "done", kinds
    assert result["prune"]["student_layers"] == 15 and result["prune"]["teacher_layers"] == 30
    summary = pane.result_summary.text()
    assert "15 of 30 layers kept" in summary and "Held-out perplexity: original" in summary, summary
    assert pane.add_student.isVisible() and not pane.use_chat.isVisible()
    quantized = Path(result["student_gguf_quantized"])
    assert quantized.is_file() and quantized.name == "student.Q8_0.gguf"
    assert any("smaller copy of" in pane.runs.item(i).text() for i in range(pane.runs.count()))

    before = {r.path for r in services.library.list()}
    with qtbot.waitSignal(pane.sig_student_added, timeout=300_000) as added:
        pane.add_student.click()
    record = added.args[0]
    assert record.path not in before and record.metadata["block_count"] == 15
    assert "is in your models" in pane.status.text()


def test_a_smaller_copy_of_a_model_too_large_for_memory_is_refused_before_it_starts(qtbot, window, services,
                                                                                    monkeypatch, tmp_path):
    import os

    _peps_collection_and_base_cache(services)
    pane = _window_pane(qtbot, window)
    pane.refresh()
    qtbot.waitUntil(lambda: pane.collections.count() == 1, timeout=30000)
    pane.goal_combo.setCurrentIndex(pane.goal_combo.findData("distill"))
    # The memory check runs in the check process (python -m training.run --check), not in this
    # one: a sitecustomize module on its path makes psutil report 200 MiB free there, and only there.
    hook = tmp_path / "little-memory"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(
        "import sys\n"
        "if '--check' in sys.argv:\n"
        "    import psutil\n"
        "    tiny = psutil.virtual_memory()._replace(available=200 * 1024 * 1024)\n"
        "    psutil.virtual_memory = lambda: tiny\n", encoding="utf-8")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(hook), os.environ.get("PYTHONPATH")])))
    runs_before = len(list((services.paths.data_dir / "training" / "runs").glob("*")))
    pane.start()
    qtbot.waitUntil(lambda: not pane.busy, timeout=60000)
    assert "memory" in pane.status.text().lower(), pane.status.text()
    assert len(list((services.paths.data_dir / "training" / "runs").glob("*"))) == runs_before, "no job folder left"


def test_a_job_process_is_followed_through_the_event_loop(qtbot, tmp_path):
    """The window follows a job's process with QProcess (no thread waits on its output): its
    lines arrive as typed events, the last one final, then the result (None: it failed)."""
    from ui.train_process import JobProcess

    job_file = tmp_path / "job.json"
    job_file.write_text('{"kind": "nonsense"}', encoding="utf-8")
    process = JobProcess(job_file)
    events = []
    process.sig_event_received.connect(events.append)
    with qtbot.waitSignal(process.sig_job_finished, timeout=120_000) as finished:
        process.start()
    assert finished.args[0] is None and not process.running
    assert [e.kind for e in events] == ["error"] and "kind one of" in events[0].data["message"]

    # A program that cannot start says so in the same way.
    missing = JobProcess(job_file, python=str(tmp_path / "no-such-python"))
    events.clear()
    missing.sig_event_received.connect(events.append)
    with qtbot.waitSignal(missing.sig_job_finished, timeout=30_000) as finished:
        missing.start()
    assert finished.args[0] is None
    assert [e.kind for e in events] == ["error"] and "could not start" in events[0].data["message"]


def test_the_loss_chart_has_sane_axes_with_one_point(qtbot):
    from ui.train_pane import LossChart, loss_chart_ranges

    chart = LossChart()
    qtbot.addWidget(chart)
    chart.resize(500, 300)
    chart.show()
    chart.add_step(1, 2.5)
    (x_low, x_high), (y_low, y_high) = chart.plot.getViewBox().viewRange()
    assert x_low <= 0 < 1 <= x_high <= 1.1, "steps from 0 to the one step, not a sliver around it"
    assert 0 <= y_low < 2.5 < y_high and y_high - y_low >= 0.4, "a tenth of the loss either side, at least"
    chart.add_step(2, 2.0)
    chart.add_eval(2, 2.2)
    (x_low, x_high), (y_low, y_high) = chart.plot.getViewBox().viewRange()
    assert x_high <= 2.1 and y_low < 2.0 and y_high > 2.5
    assert loss_chart_ranges([], []) == ((0.0, 1.0), (0.0, 1.0))
    assert loss_chart_ranges([3.0], [0.01])[1][0] == 0.0, "never below zero"


def test_the_translation_memory_dialog_starts_in_home_or_beside_the_chosen_file(qtbot, services, jobs, tmp_path,
                                                                                monkeypatch):
    from ui.train_pane import TrainPane

    pane = TrainPane(services, jobs)
    qtbot.addWidget(pane)
    asked = []
    monkeypatch.setattr("ui.train_pane.QFileDialog.getOpenFileName", lambda *a: (asked.append(a[2]), ("", ""))[1])
    pane._choose_memory()
    memory = tmp_path / "pairs.tsv"
    memory.write_text("en\tfr\nhello\tbonjour\n", encoding="utf-8")
    pane.memory_path.setText(str(memory))
    pane._choose_memory()
    assert asked == [str(Path.home()), str(tmp_path)]
    assert pane.shutdown()


def test_a_stopped_run_can_be_discarded_after_a_confirmation(qtbot, services, jobs):
    """Discard… shows for a run that did not finish, never for a finished one; it asks first, and
    once confirmed the run's folder is gone from the disk and the run from the list."""
    from PySide6.QtCore import Qt
    from PySide6.QtWidgets import QMessageBox

    from tests.assistant.test_training_jobs import stopped_job
    from ui.train_pane import TrainPane

    runs_dir = services.paths.data_dir / "training" / "runs"
    stopped = stopped_job(runs_dir, "my notes", "20260102-000000-documents-aaaaaa")
    finished = stopped_job(runs_dir, "my notes", "20260101-000000-documents-bbbbbb", result={"steps": 3})
    pane = TrainPane(services, jobs)
    qtbot.addWidget(pane)
    pane.show()
    qtbot.waitUntil(lambda: pane.runs.count() == 2, timeout=30000)
    rows = {pane.runs.item(i).data(Qt.ItemDataRole.UserRole)["folder"]: i for i in range(pane.runs.count())}

    pane.runs.setCurrentRow(rows[str(finished)])
    assert pane.discard_button.isHidden()
    pane.runs.setCurrentRow(rows[str(stopped)])
    assert pane.discard_button.isVisible() and pane.discard_button.isEnabled() and pane.resume_button.isEnabled()
    assert pane.discard_button.accessibleName() and pane.discard_button.focusPolicy() & Qt.FocusPolicy.TabFocus
    assert type(pane.discard_button) is type(pane.resume_button) and not pane.discard_button.styleSheet()
    assert pane.resume_button.nextInFocusChain() is pane.discard_button, "Tab goes from Resume to Discard…"

    # "Cancel" (also what Enter picks) deletes nothing.
    box = pane.ask_discard()
    text = box.informativeText()
    for words in ("checkpoints", "copies of your text", "cannot be undone", "finished runs are not touched"):
        assert words in text, text
    assert box.defaultButton() is box.button(QMessageBox.StandardButton.Cancel)
    box.button(QMessageBox.StandardButton.Cancel).click()
    qtbot.wait(200)
    assert (stopped / "documents.jsonl").is_file() and pane.runs.count() == 2

    box = pane.ask_discard()
    next(b for b in box.buttons() if b.text() == "Discard").click()
    qtbot.waitUntil(lambda: pane.runs.count() == 1, timeout=30000)
    assert not stopped.exists() and (finished / "adapter.gguf").is_file()
    assert pane.runs.item(0).data(Qt.ItemDataRole.UserRole)["folder"] == str(finished)
    assert "Discarded" in pane.status.text() and pane.discard_button.isHidden()
    assert pane.shutdown()


def test_resume_can_be_tried_again_after_it_fails_to_start(qtbot, services, jobs, monkeypatch):
    """A resume that fails before its process starts says why and leaves the run's buttons usable
    (they were greyed out for good before)."""
    from engine.errors import UserError
    from tests.assistant.test_training_jobs import stopped_job
    from ui import train_operations
    from ui.train_pane import TrainPane

    stopped_job(services.paths.data_dir / "training" / "runs", "my notes", "20260102-000000-documents-aaaaaa")

    def refuse(*_args):
        raise UserError("Not enough free disk space to resume (needs 2.0 GB).")

    monkeypatch.setattr(train_operations, "resume_job", refuse)
    pane = TrainPane(services, jobs)
    qtbot.addWidget(pane)
    pane.show()
    qtbot.waitUntil(lambda: pane.runs.count() == 1, timeout=30000)
    pane.runs.setCurrentRow(0)
    assert pane.resume_button.isEnabled()
    pane.resume_button.click()
    qtbot.waitUntil(lambda: "disk space" in pane.status.text(), timeout=30000)
    assert not pane.busy
    assert pane.resume_button.isEnabled() and pane.discard_button.isEnabled()
    assert pane.shutdown()
