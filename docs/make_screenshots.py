"""Screenshots of the real window for the user guide: docs/images/<page>.png.

Usage: .venv/bin/python docs/make_screenshots.py [--out docs/images] [--theme light|dark]

Starts a virtual X server (Xvfb, from `make system-deps`) unless $DISPLAY is set, and the
app itself (``ui.app.run``) in a child process on a fresh library in a temporary folder, with
the default model pack. The child then uses the window as a person would: it asks the chat a
question and waits for the real reply, translates a sentence, analyses the sentiment of a
small CSV of reviews, imports a short document and asks about it, teaches the translator a
few steps of an adapter on a small English-French memory (Train), opens the Models and
Settings pages, and saves the screen's pixels of the window after each step. Everything runs
on this computer with the default models, so the pictures show what a user really gets (the
small models' answers included).

Each step waits for its result up to STEP_TIMEOUT_S; a step that does not finish still gets its
picture, and the script says so and exits 1.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
#: Longest wait for one step's result (a reply on a slow, shared machine included).
STEP_TIMEOUT_S = 240.0
#: The Train page's run: steps of the balanced preset, and how long it may take in all.
TRAIN_STEPS = 8
TRAIN_TIMEOUT_S = 900.0
#: The development data sets (../shared/data): the Train page learns from a part of one.
DATA = Path(os.environ.get("ASSISTANT_SHARED_DATA", ROOT / ".." / "shared" / "data")).resolve()
#: Used for the Train page's memory when the shared data is not beside the checkout.
MEMORY_FALLBACK = [
    ("Where is the station?", "Où est la gare ?"),
    ("I would like a coffee, please.", "Je voudrais un café, s'il vous plaît."),
    ("The shop opens at nine.", "Le magasin ouvre à neuf heures."),
    ("We are leaving tomorrow morning.", "Nous partons demain matin."),
    ("Can you help me?", "Pouvez-vous m'aider ?"),
    ("It is raining again.", "Il pleut encore."),
    ("My sister lives in Lyon.", "Ma sœur habite à Lyon."),
    ("The meeting was cancelled.", "La réunion a été annulée."),
    ("I forgot my keys at home.", "J'ai oublié mes clés à la maison."),
    ("How much does it cost?", "Combien ça coûte ?"),
]
#: The window's size in the pictures: the app's default size.
WINDOW_SIZE = (1180, 760)

REVIEWS = """review
The battery lasts two days and the screen is gorgeous. Best phone I have owned.
Stopped working after a week and support never answered. Avoid.
"It does what it says. Nothing special, nothing wrong."
"Absolutely love the camera, my photos have never looked better!"
The case cracked on the first drop and the charger is slow.
Delivery was on time.
"""

NOTE = """# Moving house checklist

- Book the removal van at least three weeks before the move: vans are scarce at the end of the month.
- Tell the electricity and water companies the moving date two weeks ahead and read the meters on the day.
- The spare keys are in the blue box in the kitchen drawer.
- The new flat's internet is installed by the building on the 14th; the router stays in the hallway cupboard.
"""


# ----- the parent: X server, temporary library, child ---------------------------------------------
def _start_xvfb() -> tuple[subprocess.Popen, str]:
    binary = shutil.which("Xvfb")
    if binary is None:
        raise SystemExit("Xvfb is not installed: run `make system-deps`")
    read_fd, write_fd = os.pipe()
    server = subprocess.Popen([binary, "-displayfd", str(write_fd), "-screen", "0", "1280x800x24", "-nolisten", "tcp",
                               "-noreset"], pass_fds=(write_fd,), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    os.close(write_fd)
    with os.fdopen(read_fd) as pipe:
        display = pipe.readline().strip()
    if not display:
        server.kill()
        raise SystemExit("Xvfb did not start")
    return server, f":{display}"


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default=str(ROOT / "docs" / "images"), help="folder for the PNG files")
    parser.add_argument("--theme", default="system", choices=("light", "dark", "system"))
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        return _child(Path(args.out), args.theme)

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    server = None
    display = os.environ.get("DISPLAY")
    if not display:
        server, display = _start_xvfb()
    try:
        with tempfile.TemporaryDirectory(prefix="assistant-screens-") as tmp:
            env = dict(os.environ, DISPLAY=display, QT_QPA_PLATFORM="xcb", ASSISTANT_DATA_DIR=str(Path(tmp) / "data"),
                       PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
            (Path(tmp) / "reviews.csv").write_text(REVIEWS, encoding="utf-8")
            (Path(tmp) / "moving-checklist.md").write_text(NOTE, encoding="utf-8")
            memory = DATA / "translation" / "parallel" / "eng-fra.tsv"
            if memory.is_file():  # the first pairs of the shared development set
                lines = memory.read_text(encoding="utf-8").splitlines()[:601]
            else:
                lines = ["eng\tfra"] + [f"{en}\t{fr}" for en, fr in MEMORY_FALLBACK] * 40
            (Path(tmp) / "my-translations.tsv").write_text("\n".join(lines) + "\n", encoding="utf-8")
            env["SCREENSHOT_INPUTS"] = tmp
            result = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--child", "--out", str(out),
                                     "--theme", args.theme], cwd=ROOT, env=env)
            return result.returncode
    finally:
        if server is not None:
            server.terminate()
            server.wait(timeout=10)


# ----- the child: the real app, driven step by step -----------------------------------------------
def _child(out: Path, theme: str) -> int:
    from PySide6.QtCore import QTimer
    from PySide6.QtGui import QGuiApplication

    from ui.app import run

    inputs = Path(os.environ["SCREENSHOT_INPUTS"])
    problems: list[str] = []
    state: dict = {}

    def shoot(window, name: str) -> None:
        QGuiApplication.processEvents()
        geometry = window.frameGeometry()
        picture = QGuiApplication.primaryScreen().grabWindow(0, geometry.x(), geometry.y(), geometry.width(),
                                                            geometry.height())
        target = out / f"{name}.png"
        if not picture.save(str(target)):
            problems.append(f"could not save {target}")
        else:
            print(f"saved {target.relative_to(ROOT) if target.is_relative_to(ROOT) else target}", flush=True)

    def wait(window, done, then, what: str, timeout: float = STEP_TIMEOUT_S) -> None:
        """Poll ``done()`` from the event loop; call ``then()`` when true or after the time limit."""
        started = time.monotonic()

        def check() -> None:
            try:
                finished = bool(done())
            except Exception as exc:  # a pane that changed under us: say so, go on
                problems.append(f"{what}: {type(exc).__name__}: {exc}")
                finished = True
            if finished:
                then()
            elif time.monotonic() - started > timeout:
                problems.append(f"{what}: not finished after {timeout:.0f} s")
                then()
            else:
                QTimer.singleShot(250, window, check)

        check()

    def steps(window):
        """The tour, one step after another (each a function that starts the next when done)."""
        chat = window.chat

        def step_chat():
            window.show_page("chat")
            chat.new_conversation()
            wait(window, lambda: chat.ready and window.engine_state == "ready", ask_chat, "the engine")

        def ask_chat():
            chat.send("Give me three short tips for sleeping well.")
            wait(window, lambda: not chat.busy, lambda: settle(lambda: (shoot(window, "chat"), step_translate())),
                 "the chat reply")

        def step_translate():
            window.show_page("translate")
            pane = window.translate
            pane.source_edit.setPlainText("The train to the airport leaves every twenty minutes from platform 3.")
            pane.target_combo.setCurrentIndex(pane.target_combo.findData("fr"))
            state["translated"] = False
            pane.sig_translation_finished.connect(lambda _r: state.__setitem__("translated", True))
            pane.translate()
            wait(window, lambda: state["translated"], lambda: settle(lambda: (shoot(window, "translate"),
                                                                               step_sentiment())), "the translation")

        def step_sentiment():
            window.show_page("sentiment")
            pane = window.sentiment
            state["batch"] = False
            pane.sig_batch_finished.connect(lambda _r: state.__setitem__("batch", True))
            pane.text_edit.setText("The battery lasts all day and the screen is gorgeous.")
            pane.analyse_text()
            wait(window, lambda: not pane.busy, lambda: load_reviews(pane), "the sentiment of one text")

        def load_reviews(pane):
            pane.load_file(str(inputs / "reviews.csv"))
            wait(window, lambda: not pane.busy and pane.run_button.isEnabled(), lambda: run_reviews(pane),
                 "opening the reviews")

        def run_reviews(pane):
            pane.run_batch()
            wait(window, lambda: state["batch"], lambda: settle(lambda: (shoot(window, "sentiment"),
                                                                          step_documents())), "the reviews")

        def step_documents():
            window.show_page("documents")
            pane = window.documents
            state["docs"] = False
            pane.sig_documents_changed.connect(lambda: state.__setitem__("docs", True))
            pane.add_paths([str(inputs / "moving-checklist.md")])
            wait(window, lambda: state["docs"] and not pane._busy, lambda: ask_documents(pane), "the document import")

        def ask_documents(pane):
            state["answer"] = False
            pane.sig_answer_shown.connect(lambda _a: state.__setitem__("answer", True))
            question = "Where are the spare keys?"
            pane.question.setText(question)
            pane.only_documents.setChecked(True)
            pane.ask(question)
            wait(window, lambda: state["answer"], lambda: settle(lambda: (shoot(window, "documents"), step_study())),
                 "the answer from the documents")

        def step_study():
            # Cards from the same note, kept in a deck, and the first review with its answer shown.
            window.show_page("study")
            pane = window.study
            state["proposed"] = False
            pane.sig_cards_proposed.connect(lambda _n: state.__setitem__("proposed", True))
            pane.refresh()
            wait(window, lambda: pane.propose_button.isEnabled(), lambda: (pane.propose(), wait(
                window, lambda: state["proposed"], lambda: keep_cards(pane), "the proposed cards")), "the Study page")

        def keep_cards(pane):
            state["shown"] = False
            pane.sig_review_shown.connect(lambda _c: state.__setitem__("shown", True))
            pane.keep_proposals()
            wait(window, lambda: pane.deck_combo.count() > 0 and pane.review_button.isEnabled(),
                 lambda: (pane.start_review(), wait(window, lambda: state["shown"], lambda: (
                     pane.show_answer(), settle(lambda: (shoot(window, "study"), pane.end_review(), step_train()))),
                     "the first card")), "the deck")

        def step_train():
            # A short real run: an adapter of the translator's model on a small English-French
            # memory, so the picture shows the chart and a real result card.
            window.show_page("train")
            pane = window.train
            state["trained"] = False
            pane.sig_training_finished.connect(lambda _r: state.__setitem__("trained", True))
            wait(window, lambda: pane.model_combo.count() > 0, lambda: train(pane), "the Train page")

        def train(pane):
            pane.from_memory.setChecked(True)
            pane.memory_path.setText(str(inputs / "my-translations.tsv"))
            for index in range(pane.model_combo.count()):
                if "gemma" in pane.model_combo.itemText(index).lower():
                    pane.model_combo.setCurrentIndex(index)
            pane.max_steps.setValue(TRAIN_STEPS)
            pane.start()
            wait(window, lambda: state["trained"], lambda: settle(lambda: (shoot(window, "train"), step_models())),
                 "the training run", timeout=TRAIN_TIMEOUT_S)

        def step_models():
            window.show_page("models")
            models = window.models
            wait(window, lambda: models.list.count() >= 3, lambda: pick_model(models), "the model list")

        def pick_model(models):
            for row in range(models.list.count()):
                if "SmolLM2" in models.list.item(row).text():
                    models.list.setCurrentRow(row)
            settle(lambda: (shoot(window, "models"), step_settings()))

        def step_settings():
            window.show_page("settings")
            settle(lambda: (shoot(window, "settings"), settings_api()))

        def settings_api():
            from PySide6.QtWidgets import QScrollArea

            pane = window.settings_pane
            scroll = pane.findChild(QScrollArea)
            api = getattr(pane, "api_status", None)
            if scroll is None or api is None:
                problems.append("the Settings page has no local API section to show")
                finish()
                return
            scroll.ensureWidgetVisible(api, 0, 40)
            settle(lambda: (shoot(window, "settings-api"), finish()))

        def finish():
            window.show_page("chat")
            window.close()

        def settle(then):
            # A moment for the last layout and paint after a result arrived.
            QTimer.singleShot(700, window, then)

        return step_chat

    def milestone(name: str, window) -> None:
        if name == "services_ready":
            window.resize(*WINDOW_SIZE)
            services = window.services
            # Replies of a readable length that end within the step's time on a slow machine;
            # a fixed seed makes the pictures repeatable.
            services.settings.sampling = dataclasses.replace(services.settings.sampling, max_tokens=160, seed=7)
            if theme != "system":
                window.settings_pane.set_theme(theme)
            steps(window)()
        elif name == "services_failed":
            problems.append("the library could not be opened")
            window.close()

    code = run(["make_screenshots"], on_milestone=milestone)
    for problem in problems:
        print(f"make_screenshots: {problem}", file=sys.stderr)
    return 1 if problems or code else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
