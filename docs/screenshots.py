"""The user guide's pictures, taken from a real run of the window under Xvfb.

    xvfb-run -a -s "-screen 0 1280x900x24" .venv/bin/python docs/screenshots.py [--size 1180x760] [--out docs/images]

Prepares a fresh data folder as set-up does (``assistant models prepare``), starts the real
app (``ui.app.run``) on it, does on each page what a new user does first (a chat question, a
translation, a sentence scored, the typing PEPs added to Documents and a question asked of
them), then saves one picture of each page. ``--size
1024x640`` takes the same pictures at the smallest size the layout promises, for looking at,
not for the guide. Nothing is downloaded: the default model pack and ../shared/data are used.
Runs on the GUI thread of its own process; each step waits for the page to be idle.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
SHARED = Path(os.environ.get("ASSISTANT_SHARED_DATA", ROOT.parent / "shared" / "data"))
PEPS = SHARED / "documents" / "typing-peps"

#: Longest wait for one step (a reply, an answer, indexing) before the picture is taken anyway.
STEP_LIMIT_S = 240.0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--size", default="1180x760")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "images")
    args = parser.parse_args(argv)
    width, height = (int(n) for n in args.size.split("x"))
    args.out.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("ASSISTANT_DATA_DIR", tempfile.mkdtemp(prefix="assistant-shots-"))
    # What set-up (`make run`) leaves in a new user's data folder: the joined pack and the
    # default sentiment student.
    import subprocess

    subprocess.run([sys.executable, "-m", "assistant", "models", "prepare"], cwd=ROOT, check=True)

    from engine import privacy

    privacy.install()
    from PySide6.QtCore import QTimer

    from ui.app import run

    steps: list[tuple[str, Callable, Callable]] = []  # (page, start, done?)
    taken: list[str] = []

    def plan(window) -> None:
        chat, documents, translate, sentiment = window.chat, window.documents, window.translate, window.sentiment

        def ask_documents():
            documents.collection.setText("typing-peps")
            documents.add_paths([str(PEPS / name) for name in ("pep-0526.rst", "pep-0586.rst", "pep-0589.rst")])

        steps.extend([
            ("chat", lambda: chat.send("Write a four-line poem about autumn rain."), lambda: chat.ready and not chat.busy),
            ("translate", lambda: (translate.source_edit.setPlainText(
                "The meeting is moved to Thursday morning. Please bring the signed forms."), translate.translate()),
             lambda: not translate.busy),
            ("sentiment", lambda: (sentiment.text_edit.setText("The battery lasts all day and the screen is lovely."),
                                   sentiment.analyse_text()), lambda: not sentiment.busy),
            # The page's own state: indexing runs while _busy, an answer while _asking is set.
            ("documents", ask_documents, lambda: not documents._busy),
            ("documents", lambda: documents.ask("What does TypedDict give a dictionary?"),
             lambda: documents._asking is None),
            ("study", lambda: None, lambda: True),
            ("train", lambda: None, lambda: True),
            ("models", lambda: None, lambda: True),
            ("settings", lambda: None, lambda: True),
        ])

    def next_step(window, started: float = 0.0) -> None:
        if not steps:
            window.close()
            return
        page, start, done = steps[0]
        if not started:
            window.show_page(page)
            start()
            QTimer.singleShot(1500, window, lambda: next_step(window, time.monotonic()))
            return
        if not done() and time.monotonic() - started < STEP_LIMIT_S:
            QTimer.singleShot(500, window, lambda: next_step(window, started))
            return
        steps.pop(0)
        if not steps or steps[0][0] != page:  # the last step on this page: its picture
            window.repaint()
            window.grab().save(str(args.out / f"{page}.png"))
            taken.append(page)
        QTimer.singleShot(300, window, lambda: next_step(window))

    def milestone(name: str, window) -> None:
        if name == "first_paint":
            window.resize(width, height)
        elif name == "services_ready":
            plan(window)

            def when_engine_ready():
                if window.engine_state != "ready":
                    QTimer.singleShot(250, window, when_engine_ready)
                    return
                next_step(window)

            when_engine_ready()
        elif name == "services_failed":
            window.close()

    code = run([sys.argv[0]], on_milestone=milestone)
    print(f"pictures of {', '.join(taken)} in {args.out}")
    return code


if __name__ == "__main__":
    raise SystemExit(main())
