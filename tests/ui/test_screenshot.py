"""The real window on a real X server (Xvfb), saved as pictures in artifacts/screenshots/.

Look at them after a change to the window: offscreen tests check behaviour, these show what
a person sees. Xvfb comes from `make system-deps` (part of `make test`).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from PySide6.QtGui import QImage

from tests.ui.conftest import link_joined_models
from ui.theme import COLORS

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "artifacts" / "screenshots"

REPLY = """Here is a small Python function that reverses a string:

```python
def reverse(text: str) -> str:
    return text[::-1]
```

Why it works:

1. `text[::-1]` walks the string backwards.
2. Strings are immutable, so a **new** string is returned.

| call | result |
|---|---|
| `reverse("abc")` | `"cba"` |
| `reverse("")` | `""` |
"""


@pytest.fixture
def xvfb():
    binary = shutil.which("Xvfb")
    assert binary is not None, "Xvfb is not installed: `make test` installs it (make system-deps)"
    read_fd, write_fd = os.pipe()
    server = subprocess.Popen(
        [binary, "-displayfd", str(write_fd), "-screen", "0", "1280x800x24", "-nolisten", "tcp", "-noreset"],
        pass_fds=(write_fd,), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    os.close(write_fd)
    try:
        with os.fdopen(read_fd) as pipe:
            display = pipe.readline().strip()
        assert display, "Xvfb did not report a display"
        yield f":{display}"
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def _seed(services) -> str:
    conversations = services.conversations
    older = conversations.create("Holiday ideas for spring")
    conversations.add_message(older.id, "user", "Where should I go in April?")
    pinned = conversations.create("Reading list")
    conversations.pin(pinned.id)
    shown = conversations.create("Reverse a string in Python")
    conversations.add_message(shown.id, "user", "How do I reverse a string in Python?")
    conversations.add_message(shown.id, "assistant", REPLY, model="smollm2-135m-instruct",
                              metrics={"tokens_per_s": 15.2, "ttft_ms": 412.0, "completion_tokens": 96,
                                       "prompt_tokens": 41})
    conversations.add_message(shown.id, "user", "And reverse the words instead?")
    conversations.add_message(shown.id, "assistant", "Split, reverse, join: `' '.join(text.split()[::-1])`",
                              model="smollm2-135m-instruct", status="interrupted",
                              metrics={"tokens_per_s": 14.8, "ttft_ms": 390.0, "completion_tokens": 17})
    return shown.id


@pytest.mark.parametrize("theme", ["light", "dark"])
def test_screenshot_of_the_real_window(xvfb, services, data_dir, pack_template, theme):
    conversation_id = _seed(services)
    link_joined_models(pack_template, data_dir)
    services.settings.theme = theme
    services.save_settings()
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    out = ARTIFACTS / f"main-window-{theme}.png"
    out.unlink(missing_ok=True)
    env = dict(os.environ, DISPLAY=xvfb, QT_QPA_PLATFORM="xcb", ASSISTANT_DATA_DIR=str(data_dir))
    result = subprocess.run([sys.executable, "-m", "tests.ui.screenshot_app", str(out), conversation_id],
                            cwd=ROOT, env=env, capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, result.stderr[-3000:]
    assert out.is_file(), result.stderr[-3000:]

    image = QImage(str(out))
    assert image.width() >= 1000 and image.height() >= 700
    # The navigation column is painted in the theme's colours, and the picture is not blank.
    nav = image.pixelColor(5, image.height() // 2).name()
    assert nav == COLORS[theme]["alt_base"], nav
    colours = {image.pixelColor(x, y).name() for x in range(0, image.width(), 37) for y in range(0, image.height(), 23)}
    assert len(colours) > 8
