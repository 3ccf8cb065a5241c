"""A training job's output as the app reads it (assistant.train.process), without starting a job."""

from __future__ import annotations

import json

import pytest

from assistant.errors import TrainingJobError
from assistant.train.process import PROJECT_ROOT, ProgressReader, StepEvent, check_job, check_launch, job_launch


def _line(**fields) -> str:
    return json.dumps(fields) + "\n"


def test_lines_split_anywhere_become_the_same_events():
    output = (_line(event="start", total_steps=2) + "a library's warning\n"
              + _line(event="step", step=1, total_steps=2, loss=2.5, tokens_per_s=10.0, eta_s=3)
              + _line(event="message", text="Writing the adapter… ✓")
              + _line(event="done", result={"adapter_gguf": "a.gguf"}))
    for size in (1, 7, len(output)):
        reader = ProgressReader()
        events = []
        for start in range(0, len(output), size):
            events += reader.feed(output[start:start + size])
        events += reader.finish(0)
        assert [e.kind for e in events] == ["start", "step", "message", "done"], size
        assert isinstance(events[1], StepEvent) and events[1].loss == 2.5
        assert events[2].data["text"].endswith("✓")
        assert reader.result == {"adapter_gguf": "a.gguf"} and reader.final is events[-1]


def test_a_job_that_dies_without_a_final_line_ends_with_an_error_that_quotes_its_log(tmp_path):
    log = tmp_path / "stderr.log"
    log.write_text("Traceback (most recent call last):\nMemoryError\n", encoding="utf-8")
    reader = ProgressReader(log)
    events = reader.feed(_line(event="step", step=1, total_steps=9) + '{"event": "st')
    events += reader.finish(-9)
    assert [e.kind for e in events] == ["step", "error"] and reader.result is None
    message = events[-1].data["message"]
    assert "killed by signal 9" in message and "resumed" in message and message.endswith("MemoryError")
    assert "was killed before" in ProgressReader().finish(None)[0].data["message"]


def test_the_job_runs_from_the_project_with_it_on_the_path(tmp_path):
    launch = job_launch(tmp_path / "job.json", resume=True, python="/usr/bin/python3")
    assert (PROJECT_ROOT / "training" / "run.py").is_file()
    assert launch.command == ["/usr/bin/python3", "-m", "training.run", str(tmp_path / "job.json"), "--resume"]
    assert launch.working_dir == PROJECT_ROOT and str(PROJECT_ROOT) in launch.environment["PYTHONPATH"]
    assert launch.environment["PYTHONUNBUFFERED"] == "1" and launch.log_path == tmp_path / "stderr.log"


def test_the_check_runs_like_the_job_and_a_check_that_cannot_answer_is_one_clear_error(tmp_path):
    """The check child's refusals and answers are tested in tests/training/test_run.py; here,
    what the app says when the child does not answer at all."""
    launch = check_launch(python="/usr/bin/python3")
    assert launch.command == ["/usr/bin/python3", "-m", "training.run", "--check"]
    assert launch.working_dir == PROJECT_ROOT and str(PROJECT_ROOT) in launch.environment["PYTHONPATH"]
    with pytest.raises(TrainingJobError, match="could not start"):
        check_job({"kind": "lora"}, python=str(tmp_path / "no-such-python"))
    silent = tmp_path / "silent-python"
    silent.write_text("#!/bin/sh\necho 'Traceback: something broke' >&2\nexit 1\n", encoding="utf-8")
    silent.chmod(0o755)
    with pytest.raises(TrainingJobError, match="exited with code 1 without an answer") as info:
        check_job({"kind": "lora"}, python=str(silent))
    assert str(info.value).endswith("Traceback: something broke")
