"""The Compress pane: a real quantization lab job (small settings) and adding a result to the library."""

from __future__ import annotations

from pathlib import Path

import pytest

from ui.compress_pane import GOALS, CompressPane, recommend

PEPS = Path(__file__).resolve().parents[3] / "shared" / "data" / "documents" / "typing-peps"


@pytest.fixture
def pane(qtbot, services, jobs):
    widget = CompressPane(services, jobs)
    qtbot.addWidget(widget)
    widget.show()
    yield widget
    assert widget.shutdown()


def test_controls_have_names(pane):
    from PySide6.QtWidgets import QComboBox, QPushButton

    for control in pane.findChildren(QPushButton) + pane.findChildren(QComboBox):
        assert control.accessibleName(), control
    assert pane.model_combo.count() >= 1 and [pane.goal_combo.itemText(i) for i in range(3)] == list(GOALS)


def test_run_without_text_is_a_clear_message(pane):
    pane.run_lab()
    assert "held-out text" in pane.status.text()


def test_lab_table_chart_recommendation_and_library(qtbot, pane, services):
    held_out = PEPS / "pep-0646.rst"
    assert held_out.is_file(), f"the shared corpus is missing: {held_out}"
    smollm2 = [i for i in range(pane.model_combo.count()) if "smollm2" in pane.model_combo.itemData(i).lower()]
    assert smollm2, "the default SmolLM2 model is not in the library"
    pane.model_combo.setCurrentIndex(smollm2[0])
    pane.set_text_files([str(held_out)])
    # Small figures: a shared 2-core CPU; benchmarks/quantization_lab.py measures properly.
    pane.lab_settings = {"max_eval_tokens": 64, "ctx": 64, "speed_tokens": 4, "speed_repeats": 1, "threads": 1}
    with qtbot.waitSignal(pane.sig_lab_finished, timeout=900000) as blocker:
        pane.run_lab()
    rows = blocker.args[0]["rows"]
    assert pane.table.rowCount() == len(rows) == 6 and pane.chart.rows == rows
    assert pane.table.item(0, 0).text() == "F16"
    # The goal picks a row: "Smaller" is the smallest file within 5% of F16's perplexity.
    pane.goal_combo.setCurrentText("Smaller")
    best = recommend(rows, "Smaller")
    assert best is not None and pane.selected_row()["label"] == best
    qtbot.waitUntil(lambda: pane.run_button.isEnabled(), timeout=30000)
    with qtbot.waitSignal(pane.sig_model_added, timeout=120000) as added:
        pane.add_selected()
    assert Path(added.args[0].path).name == Path(pane.selected_row()["path"]).name
    assert any(Path(m.path).name == Path(added.args[0].path).name for m in services.library.list())


def test_stop_ends_the_lab_process_and_keeps_its_finished_files(qtbot, pane):
    """The lab's process is followed through the event loop (QProcess); Stop sends SIGTERM, the
    job says it was cancelled and exits, and the files it finished stay for a later run."""
    held_out = PEPS / "pep-0646.rst"
    smollm2 = [i for i in range(pane.model_combo.count()) if "smollm2" in pane.model_combo.itemData(i).lower()]
    pane.model_combo.setCurrentIndex(smollm2[0])
    pane.set_text_files([str(held_out)])
    pane.lab_settings = {"max_eval_tokens": 64, "ctx": 64, "speed_tokens": 4, "speed_repeats": 1, "threads": 1}
    pane.run_lab()
    assert pane.busy and not pane.run_button.isEnabled() and pane.stop_button.isEnabled()
    # The first step is the F16 reference (a few seconds); the bar shows it.
    qtbot.waitUntil(lambda: pane.progress.maximum() > 0 and pane.progress.value() >= 1, timeout=300000)
    pane.stop()
    qtbot.waitUntil(lambda: not pane.busy, timeout=120000)
    assert pane.status.text() == "Stopped; finished files are kept.", pane.status.text()
    assert pane.run_button.isEnabled() and not pane.stop_button.isEnabled()
    runs = pane.services.paths.data_dir / "training" / "runs"
    assert list(runs.glob("*-compress-*/lab/*.F16.gguf")), "the finished F16 reference is kept"


def test_in_the_bundle_the_page_says_at_once_why_it_cannot_compress(services):
    """The self-contained bundle leaves the training package out (packaging/assistant.spec): the
    page says so as soon as it is built, Run stays off, and nothing imports ``training``
    (simulated as in tests/test_layers.py: importing it raises ImportError)."""
    import os
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[2]
    code = (
        "import sys\n"
        "for name in ('training', 'torch', 'transformers', 'peft', 'accelerate'):\n"
        "    sys.modules[name] = None  # as absent as in the bundle: importing it raises ImportError\n"
        "sys.frozen = True  # what PyInstaller sets\n"
        "from PySide6.QtWidgets import QApplication\n"
        "app = QApplication([])\n"
        "from pathlib import Path\n"
        "from assistant.app import build_services\n"
        "from assistant.config import AppPaths\n"
        "from ui.compress_pane import CompressPane\n"
        "from ui.jobs import Jobs\n"
        f"services = build_services(AppPaths(Path({str(services.paths.data_dir)!r})), sync_pack=False)\n"
        "jobs = Jobs()\n"
        "pane = CompressPane(services, jobs)\n"
        "message = pane.status.text()\n"
        "assert 'bundle leaves it out' in message and 'make run' in message, message\n"
        "assert not pane.run_button.isEnabled() and pane.model_combo.count() > 0\n"
        f"pane.set_text_files([{str(PEPS / 'pep-0646.rst')!r}])\n"
        "pane.run_lab()\n"
        "assert pane.status.text() == message and not pane.busy, pane.status.text()\n"
        "assert pane.shutdown() and jobs.shutdown()\n"
        "services.close()\n"
        "print('said at once')\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, timeout=300,
                            env={**os.environ, "QT_QPA_PLATFORM": "offscreen"})
    assert result.returncode == 0 and "said at once" in result.stdout, result.stdout + result.stderr


def test_the_held_out_text_dialog_starts_in_home_or_beside_the_chosen_files(pane, tmp_path, monkeypatch):
    asked = []
    monkeypatch.setattr("ui.compress_pane.QFileDialog.getOpenFileNames", lambda *a: (asked.append(a[2]), ([], ""))[1])
    pane._choose_text()
    held_out = tmp_path / "held-out.txt"
    held_out.write_text("Some text.\n", encoding="utf-8")
    pane.set_text_files([str(held_out)])
    pane._choose_text()
    assert asked == [str(Path.home()), str(tmp_path)]
