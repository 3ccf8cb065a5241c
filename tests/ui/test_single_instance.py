"""One window per library: a second launch (a real process) hands its .gguf to the first and exits."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

from PySide6.QtCore import QDir

from tests.engine.gguf_corpus import write_valid_gguf
from ui.single_instance import SingleInstance, serve_window, server_name

ROOT = Path(__file__).resolve().parents[2]


def _launch(args: list[str], data_dir: Path) -> subprocess.Popen:
    """`assistant ARGS` as the desktop runs it, in its own process, for the same library."""
    env = dict(os.environ, ASSISTANT_DATA_DIR=str(data_dir), QT_QPA_PLATFORM="offscreen")
    return subprocess.Popen([sys.executable, "-m", "ui.launcher", *args], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _finish(qtbot, proc: subprocess.Popen, timeout_ms: int = 120000) -> tuple[int, str]:
    # Polled from the event loop: the first instance (this process) must answer meanwhile.
    qtbot.waitUntil(lambda: proc.poll() is not None, timeout=timeout_ms)
    _out, err = proc.communicate()
    return proc.returncode, err


def test_a_second_launch_hands_its_file_to_the_running_window(qtbot, window, services, data_dir, tmp_path):
    instance = SingleInstance(data_dir)
    assert instance.listen()
    serve_window(instance, window)
    window.show_page("chat")
    model = write_valid_gguf(tmp_path / "handed-over.gguf", name="Handed Over")
    try:
        with qtbot.waitSignal(window.models.sig_import_finished, timeout=120000) as done:
            proc = _launch([str(model)], data_dir)
            code, err = _finish(qtbot, proc)
            assert code == 0, err
        assert "already open" in err
        assert done.args == [1, 0]
        assert "handed-over" in {m.id for m in services.library.list()}
        # The first window came forward and shows where the file went.
        assert window.isVisible() and not window.isMinimized()
        assert window.current_page == "models"
    finally:
        instance.close()


def test_a_relative_path_is_resolved_in_the_second_launch_s_folder(qtbot, window, services, data_dir, tmp_path):
    """"Open with" passes absolute paths, a terminal may not: the file meant is the one next to the user."""
    instance = SingleInstance(data_dir)
    assert instance.listen()
    received: list[list[str]] = []
    instance.sig_files_received.connect(received.append)
    folder = tmp_path / "somewhere"
    folder.mkdir()
    write_valid_gguf(folder / "near.gguf", name="Near")
    env = dict(os.environ, ASSISTANT_DATA_DIR=str(data_dir), QT_QPA_PLATFORM="offscreen",
               PYTHONPATH=str(ROOT))
    proc = subprocess.Popen([sys.executable, "-m", "ui.launcher", "near.gguf"], cwd=folder, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        code, err = _finish(qtbot, proc)
        assert code == 0, err
        assert received == [[str(folder / "near.gguf")]]
    finally:
        instance.close()


def test_a_stale_socket_left_by_a_killed_window_does_not_block_the_next_start(qapp, tmp_path):
    library = tmp_path / "library"
    name = server_name(library)
    # What a killed first instance leaves: a socket file nobody listens on.
    path = Path(QDir.tempPath()) / name  # where QLocalServer puts a socket given a plain name
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(path))
    stale.close()
    assert path.exists()
    first = SingleInstance(library)
    try:
        assert first.pass_to_running([]) is False  # nobody answered: this launch is the first
        assert first.server is not None and first.server.isListening()
        assert first.server.fullServerName() == str(path)
    finally:
        first.close()


def test_each_library_has_its_own_window(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    assert server_name(a) != server_name(b)
    # The same folder, however it is spelled, is the same library.
    assert server_name(a) == server_name(str(a) + "/") == server_name(tmp_path / "b" / ".." / "a")
    # Unix socket paths are limited to 108 bytes; the name stays short whatever the folder.
    assert len(server_name(tmp_path / ("x" * 200))) < 60


def test_a_garbage_message_is_refused_and_nothing_is_opened(qtbot, qapp, tmp_path):
    first = SingleInstance(tmp_path / "library")
    assert first.listen()
    received: list = []
    first.sig_files_received.connect(received.append)
    client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        client.connect(first.server.fullServerName())
        client.sendall(b"this is not json\n")
        client.setblocking(False)
        answer = bytearray()

        def answered() -> bool:
            try:
                answer.extend(client.recv(64))
            except BlockingIOError:
                pass
            return b"\n" in answer

        qtbot.waitUntil(answered, timeout=10000)
        assert bytes(answer) == b"error\n"
        assert received == []
    finally:
        client.close()
        first.close()


def test_without_a_running_window_the_launch_becomes_the_first(qapp, tmp_path):
    library = tmp_path / "library"
    first = SingleInstance(library)
    try:
        assert first.pass_to_running(["/nowhere/model.gguf"]) is False
        assert first.server is not None and first.server.isListening()
        # The lock was released after listening: a later launch does not wait for it.
        later = SingleInstance(library)
        assert later._lock.tryLock(0)
        later._lock.unlock()
    finally:
        first.close()


def test_the_real_app_hands_over_imports_and_closes_cleanly_on_sigterm(qtbot, data_dir, tmp_path):
    """Two real `assistant` processes: the first shows the window; a plain second launch and an
    "Open with" launch both exit at once; SIGTERM closes the first as Quit would, engine included."""
    import psutil

    first = _launch([], data_dir)
    asking = SingleInstance(data_dir)
    try:
        qtbot.waitUntil(lambda: first.poll() is not None or asking.pass_to_running([], become_first=False),
                        timeout=180000)
        assert first.poll() is None, first.communicate()[1][-3000:]
        plain = _launch([], data_dir)
        code, err = _finish(qtbot, plain)
        assert code == 0 and "already open" in err, err
        model = write_valid_gguf(tmp_path / "open-with.gguf", name="Open With")
        code, err = _finish(qtbot, _launch([str(model)], data_dir))
        assert code == 0, err
        env = dict(os.environ, ASSISTANT_DATA_DIR=str(data_dir))

        def listed() -> bool:  # the import is a job in the first window; the CLI reads the same library
            return "open-with" in subprocess.run([sys.executable, "-m", "ui.launcher", "models", "list"], cwd=ROOT,
                                                 text=True, capture_output=True, env=env).stdout

        qtbot.waitUntil(listed, timeout=120000)
        workers = [p for p in psutil.Process(first.pid).children() if "engine.worker" in " ".join(p.cmdline())]
        first.terminate()
        code, err = _finish(qtbot, first)
        assert code == 0, err[-3000:]
        for worker in workers:
            qtbot.waitUntil(lambda w=worker: not w.is_running() or w.status() == psutil.STATUS_ZOMBIE, timeout=30000)
    finally:
        if first.poll() is None:
            first.kill()
            first.communicate()
