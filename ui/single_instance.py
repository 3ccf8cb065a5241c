"""One window per library: a second launch hands its arguments to the first and exits.

The first launch listens on a local socket (``QLocalServer``, a Unix socket readable by this
user only) whose name is derived from the user id and the data folder, so two libraries
(``ASSISTANT_DATA_DIR``) can each have their window, and a test never meets the user's.
A later launch connects, sends one JSON line ``{"files": [...]}`` with absolute paths
(a .gguf from "Open with" or the command line), waits for the first to answer ``ok`` and
exits; the first raises its window and imports the files.

A ``QLockFile`` around "is anyone listening? if not, listen" keeps two launches started at
the same moment from both becoming the first; a socket file left by a killed process is
removed before listening (``QLocalServer.removeServer``).

Threads: :meth:`SingleInstance.pass_to_running` blocks (it runs before the window exists,
on the main thread, and needs no event loop); the server side runs on the GUI thread from
the event loop and never blocks on a client (reads are signal-driven).

:func:`close_on_signals` makes SIGTERM and SIGINT (a session logging out, ``kill``, Ctrl+C
in a terminal) close the window as Quit does, so settings are saved and the engine worker
is stopped instead of being left behind.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import socket
import tempfile
from pathlib import Path

from PySide6.QtCore import QLockFile, QObject, QSocketNotifier, Signal
from PySide6.QtNetwork import QLocalServer, QLocalSocket

#: How long a second launch waits to connect and for the answer; a first instance that is
#: busy but alive answers within one event-loop turn, so this only bounds a hung one.
CONNECT_TIMEOUT_MS = 2000
REPLY_TIMEOUT_MS = 5000
#: Largest message accepted from a client (a few thousand paths); more is a misbehaving peer.
MAX_MESSAGE_BYTES = 1024 * 1024


def server_name(data_dir: str | os.PathLike) -> str:
    """The socket's name: this user and this library. Short: Unix socket paths are limited to 108 bytes."""
    digest = hashlib.sha256(str(Path(data_dir).expanduser().resolve()).encode("utf-8")).hexdigest()[:16]
    uid = os.getuid() if hasattr(os, "getuid") else 0
    return f"local-assistant-{uid}-{digest}"


class SingleInstance(QObject):
    """Either the first launch (it listens) or a later one (it passes its files on)."""

    sig_files_received = Signal(list)  # absolute paths another launch asked us to open (may be empty)

    def __init__(self, data_dir: str | os.PathLike, parent: QObject | None = None):
        super().__init__(parent)
        self.name = server_name(data_dir)
        self.server: QLocalServer | None = None
        self._buffers: dict[QLocalSocket, bytes] = {}
        self._lock = QLockFile(str(Path(tempfile.gettempdir()) / f"{self.name}.lock"))
        # A launch that crashed while holding the lock must not block the next one for long.
        self._lock.setStaleLockTime(10_000)

    # ----- a later launch ----------------------------------------------------------------------
    def pass_to_running(self, files: list[str] | tuple[str, ...] = (), become_first: bool = True) -> bool:
        """True if a first instance took ``files`` (then this launch should exit). Blocks, main thread.

        With ``become_first`` (needs the QApplication) this launch listens if nobody answered;
        without it, it only asks, which works before any QApplication exists: the launcher
        asks first so that a second launch exits before loading the window's code.
        """
        if not become_first:
            return self._send(files)
        if not self._lock.tryLock(CONNECT_TIMEOUT_MS):
            # Someone holds the lock for longer than a launch takes: do not hang, start normally.
            return False
        try:
            if self._send(files):
                return True
            # Nobody is listening: become the first instance while still holding the lock.
            self.listen()
            return False
        finally:
            self._lock.unlock()

    def _send(self, files) -> bool:
        socket = QLocalSocket()
        socket.connectToServer(self.name)
        if not socket.waitForConnected(CONNECT_TIMEOUT_MS):
            return False
        payload = json.dumps({"files": [str(Path(f).expanduser().absolute()) for f in files]}).encode("utf-8")
        socket.write(payload + b"\n")
        socket.flush()
        answer = b""
        while b"\n" not in answer:
            if not socket.waitForReadyRead(REPLY_TIMEOUT_MS):
                break
            answer += bytes(socket.readAll().data())
        socket.disconnectFromServer()
        return answer.strip() == b"ok"

    # ----- the first launch --------------------------------------------------------------------
    def listen(self) -> bool:
        """Listen for later launches; False (and a single-window-less but working app) if the
        socket cannot be created, e.g. a temp folder that is not writable."""
        if self.server is not None:
            return True
        server = QLocalServer(self)
        server.setSocketOptions(QLocalServer.SocketOption.UserAccessOption)
        # A socket file left by a killed first instance: nobody answered on it, so it is stale.
        QLocalServer.removeServer(self.name)
        if not server.listen(self.name):
            server.deleteLater()
            return False
        server.newConnection.connect(self._on_new_connection)
        self.server = server
        return True

    def close(self) -> None:
        """Stop listening and drop the connections still open (GUI thread, at exit)."""
        for socket_ in list(self._buffers):
            self._forget(socket_)
            socket_.abort()
        if self.server is not None:
            self.server.close()
            self.server.deleteLater()
            self.server = None

    def _on_new_connection(self) -> None:
        assert self.server is not None
        while self.server.hasPendingConnections():
            socket = self.server.nextPendingConnection()
            self._buffers[socket] = b""
            socket.readyRead.connect(lambda s=socket: self._on_ready_read(s))
            socket.disconnected.connect(lambda s=socket: self._forget(s))
            if socket.bytesAvailable():
                self._on_ready_read(socket)

    def _forget(self, socket: QLocalSocket) -> None:
        if self._buffers.pop(socket, None) is None:
            return
        # No Python slot may run for a socket Qt is destroying (the server's children go with it).
        socket.readyRead.disconnect()
        socket.disconnected.disconnect()
        socket.deleteLater()

    def _on_ready_read(self, socket: QLocalSocket) -> None:
        if socket not in self._buffers:
            return
        data = self._buffers[socket] + bytes(socket.readAll().data())
        if len(data) > MAX_MESSAGE_BYTES:
            self._forget(socket)
            socket.abort()
            return
        if b"\n" not in data:
            self._buffers[socket] = data
            return
        line = data.split(b"\n", 1)[0]
        self._buffers[socket] = b""
        try:
            message = json.loads(line.decode("utf-8"))
            files = [str(f) for f in message.get("files", [])]
        except (ValueError, AttributeError, TypeError):
            socket.write(b"error\n")
            socket.flush()
            return
        socket.write(b"ok\n")
        socket.flush()
        self.sig_files_received.emit(files)


def serve_window(instance: SingleInstance, window) -> None:
    """Files from a later launch are imported by ``window`` (a MainWindow), which comes to the front."""

    def handed_over(files: list[str]) -> None:
        activate(window)
        window.drop_importer.import_files(files)

    instance.sig_files_received.connect(handed_over)


def activate(window) -> None:
    """Bring the window to the front (GUI thread). Window managers may still refuse focus
    stealing; the window is at least raised and un-minimized."""
    if window.isMinimized():
        window.showNormal()
    window.show()
    window.raise_()
    window.activateWindow()


def close_on_signals(window, signals=(signal.SIGTERM, signal.SIGINT)):
    """Close ``window`` on the GUI thread when the process gets one of ``signals``.

    Main thread only (Python sets signal handlers there). Python runs its handlers only when
    the interpreter gets control, which Qt's event loop may not give it for a long time; so
    the C-level handler's wake-up byte (``signal.set_wakeup_fd``) goes to a socket that a
    QSocketNotifier watches, and the window is closed from the event loop. Returns a
    function that puts the previous handlers back.
    """
    reader, writer = socket.socketpair()
    reader.setblocking(False)
    writer.setblocking(False)
    previous_fd = signal.set_wakeup_fd(writer.fileno())
    previous = {sig: signal.signal(sig, lambda *_: None) for sig in signals}
    notifier = QSocketNotifier(reader.fileno(), QSocketNotifier.Type.Read, window)

    def woken() -> None:
        try:
            reader.recv(64)
        except BlockingIOError:
            return
        window.close()

    notifier.activated.connect(woken)

    def restore() -> None:
        notifier.setEnabled(False)
        signal.set_wakeup_fd(previous_fd)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        reader.close()
        writer.close()

    return restore
