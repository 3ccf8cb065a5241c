"""The `assistant` command line as a user runs it: a real process, the real default pack."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from tests.keyring_for_tests import data_key

ROOT = Path(__file__).resolve().parents[2]


def run_cli(*args: str, input_text: str | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ui.launcher", *args], cwd=ROOT, capture_output=True, text=True,
                          input=input_text, timeout=timeout, env=dict(os.environ))


def test_models_list_and_info():
    listing = run_cli("models", "list")
    assert listing.returncode == 0, listing.stderr
    assert "smollm2-135m-instruct" in listing.stdout and "gemma-3-270m" in listing.stdout
    assert "Q4_1" in listing.stdout and "Q4_K_M" in listing.stdout
    info = run_cli("models", "info", "gemma")
    assert info.returncode == 0 and "gemma3" in info.stdout and "Gemma" in info.stdout


def test_one_question_streams_an_answer_with_metrics():
    # A question whose answer takes several tokens (a one-word answer has no decode rate to show).
    result = run_cli("chat", "Write two sentences about Paris.", "--temperature", "0", "--max-tokens", "40")
    assert result.returncode == 0, result.stderr
    assert "Paris" in result.stdout
    assert "tokens/s" in result.stderr and "first token" in result.stderr


def test_interactive_chat_keeps_the_conversation():
    result = run_cli("chat", "--temperature", "0", "--max-tokens", "30", "-q",
                     input_text="My name is Ada.\nWhat is my name?\n/exit\n")
    assert result.returncode == 0, result.stderr
    assert "Ada" in result.stdout


def test_user_errors_are_one_clear_line(tmp_path):
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"PK\x03\x04 not a model")
    result = run_cli("models", "add", str(bad))
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "bad.gguf" in result.stderr
    missing = run_cli("models", "info", "no-such-model")
    assert missing.returncode == 2 and "No model called" in missing.stderr
    sampling = run_cli("chat", "hi", "--top-p", "9")
    assert sampling.returncode == 2 and "top-p" in sampling.stderr


def test_terminal_chats_are_kept_and_searchable():
    asked = run_cli("chat", "-q", "--temperature", "0", "--max-tokens", "20", "Tell me about lighthouses.")
    assert asked.returncode == 0, asked.stderr
    found = run_cli("history", "search", "lighthouses")
    assert found.returncode == 0, found.stderr
    assert "[lighthouses]" in found.stdout and "user" in found.stdout
    listing = run_cli("history", "list")
    assert "Tell me about lighthouses." in listing.stdout


def test_output_into_a_closed_pipe_is_not_an_error():
    # `assistant models list | head -0`: the reader is gone before the first line is written.
    process = subprocess.Popen([sys.executable, "-m", "ui.launcher", "models", "list"], cwd=ROOT,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=os.environ.copy())
    process.stdout.close()
    stderr = process.stderr.read().decode()
    assert process.wait(timeout=300) == 0, stderr
    assert "Broken pipe" not in stderr and "Traceback" not in stderr


def test_a_terminal_chat_is_kept_as_the_window_keeps_it(data_dir):
    """The terminal and the window reply through the same ChatSession: the persona is a setting
    of the conversation (not a stored message) and the title is cut as the sidebar cuts it."""
    from assistant.chat.prompt import AUTO_TITLE_CHARS, SETTING_SYSTEM_PROMPT
    from assistant.history.conversations import Conversations
    from assistant.store import Store

    question = "Please tell me, in a few words only, what a lighthouse keeper did on a stormy night long ago."
    asked = run_cli("chat", "-q", "-s", "Be terse.", "--temperature", "0", "--max-tokens", "8", question)
    assert asked.returncode == 0, asked.stderr
    store = Store(data_dir / "assistant.sqlite3", key=data_key(data_dir))
    try:
        conversations = Conversations(store)
        [conversation] = conversations.list()
        assert len(conversation.title) <= AUTO_TITLE_CHARS and question.startswith(conversation.title[:-1].rstrip())
        assert conversations.get_setting(conversation.id, SETTING_SYSTEM_PROMPT) == "Be terse."
        assert [m.role for m in conversations.messages(conversation.id)] == ["user", "assistant"]
    finally:
        store.close()


def test_regenerate_in_the_terminal_keeps_the_earlier_reply_as_a_variant(data_dir):
    from assistant.history.conversations import Conversations
    from assistant.store import Store

    result = run_cli("chat", "--temperature", "0", "--max-tokens", "8", "-q",
                     input_text="/regenerate\nSay hello.\n/regenerate\n/exit\n")
    assert result.returncode == 0, result.stderr
    assert "no question to answer" in result.stderr  # before anything was said: one line, no traceback
    assert "Traceback" not in result.stderr
    store = Store(data_dir / "assistant.sqlite3", key=data_key(data_dir))
    try:
        conversations = Conversations(store)
        [conversation] = conversations.list()
        messages = conversations.messages(conversation.id)
        assert [m.role for m in messages] == ["user", "assistant", "assistant"]
        assert [v.chosen for v in conversations.variants(messages[-1].id)] == [False, True]
    finally:
        store.close()


def test_an_incognito_terminal_chat_leaves_nothing_in_history(data_dir):
    from assistant.history.conversations import Conversations
    from assistant.store import Store

    asked = run_cli("chat", "--incognito", "-q", "--temperature", "0", "--max-tokens", "4", "Say zqincognitocli.")
    assert asked.returncode == 0, asked.stderr
    store = Store(data_dir / "assistant.sqlite3", key=data_key(data_dir))
    try:
        assert Conversations(store).list() == []
    finally:
        store.close()
    assert not [p for p in data_dir.rglob("*") if p.is_file() and b"zqincognitocli" in p.read_bytes()]


def test_train_discard_refuses_unknown_and_running_jobs_and_discards_a_stopped_one(data_dir):
    import uuid

    from tests.assistant.test_training_jobs import files_holding, stand_in_job_process, stopped_job

    marker = "zq" + uuid.uuid4().hex[:16]
    folder = stopped_job(data_dir / "training" / "runs", marker)
    listed = run_cli("train", "list")
    assert listed.returncode == 0, listed.stderr
    assert folder.name in listed.stdout and "stopped, can resume" in listed.stdout

    unknown = run_cli("train", "discard", "20990101-000000-nope-000000")
    assert unknown.returncode == 2 and "Traceback" not in unknown.stderr
    assert len(unknown.stderr.strip().splitlines()) == 1 and "No training job called" in unknown.stderr

    with stand_in_job_process(folder / "job.json"):
        running = run_cli("train", "discard", folder.name)
    assert running.returncode == 2 and len(running.stderr.strip().splitlines()) == 1
    assert "is running; stop it first" in running.stderr
    assert (folder / "documents.jsonl").is_file() and (folder / "checkpoints" / "latest").is_file()

    discarded = run_cli("train", "discard", folder.name)
    assert discarded.returncode == 0, discarded.stderr
    assert f"Discarded {folder.name}" in discarded.stdout
    assert not folder.exists() and files_holding(data_dir / "training", marker) == []
    assert folder.name not in run_cli("train", "list").stdout
