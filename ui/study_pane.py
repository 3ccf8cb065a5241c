"""The Study page: cards proposed from a document collection (keep, edit or drop each), reviews
on the FSRS schedule with Again / Hard / Good / Easy (keys 1-4, Space shows the answer), the day's
count, the streak and a chart of reviews per day, Anki and CSV decks out and CSV decks in.

GUI thread only. Proposing (it embeds through the engine), every store read and write, and
exporting run on the window's :class:`ui.jobs.Jobs`, each through the core's
(:mod:`assistant.study`) calls; a card's source opens as a chat source does.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import TYPE_CHECKING

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QKeySequence, QShortcut
from PySide6.QtWidgets import (
    QComboBox,
    QFileDialog,
    QHBoxLayout,
    QInputDialog,
    QLabel,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QStackedWidget,
    QVBoxLayout,
    QWidget,
)

from assistant.chat.sources import collection_label, document_collections, open_source
from assistant.study.answers import check_answer
from assistant.study.decks import RATINGS, Decks
from assistant.wording import counted
from ui.chat.widgets import SourceDialog
from ui.compact_widgets import compact_combo

if TYPE_CHECKING:
    from assistant.app import Services
    from ui.jobs import Jobs

#: Colour of the bars of reviews per day (both themes read it).
BAR_COLOR = "#4c78a8"


def _card_line(card) -> str:
    options = f"  [{' / '.join(card.choices)}]" if card.choices else ""
    return f"{card.kind}: {card.front}{options}\n→ {card.back}   ({card.source.get('file', '')})"


class ReviewChart(QWidget):
    """Reviews per day over the last 30 days (pyqtgraph bars)."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        import pyqtgraph as pg

        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        self.plot = pg.PlotWidget(self)
        self.plot.setAccessibleName("Reviews per day, last 30 days")
        self.plot.setMinimumHeight(120)
        self.plot.setMaximumHeight(160)
        self.plot.setMouseEnabled(False, False)
        # A picture, not a control (the label above says the figures): no Tab stop that does nothing.
        self.plot.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self.plot.setBackground(None)  # the page's own background, in either theme
        self.plot.setLabel("left", "reviews")
        self.plot.setLabel("bottom", "days ago")
        layout.addWidget(self.plot)
        self.counts: list[int] = []

    def show_days(self, per_day: list) -> None:
        import pyqtgraph as pg

        self.counts = [n for _day, n in per_day]
        self.plot.clear()
        xs = list(range(-len(self.counts) + 1, 1))
        self.plot.addItem(pg.BarGraphItem(x=xs, height=self.counts, width=0.8, brush=BAR_COLOR))
        self.plot.setYRange(0, max(self.counts + [4]))


class StudyPane(QWidget):
    """See the module docstring. Built with the services and the window's jobs."""

    sig_review_shown = Signal(object)  # the StudyCard now asked
    sig_cards_proposed = Signal(int)  # how many proposals are listed

    def __init__(self, services: "Services", jobs: "Jobs", parent: QWidget | None = None):
        super().__init__(parent)
        self.setAccessibleName("Study")
        self.services = services
        self.jobs = jobs
        self.decks = Decks(services.store)
        self.proposals: list = []
        self.queue: list = []
        self.current = None
        self.answer_shown = False
        self._cancel = threading.Event()
        self._closed = False
        self.source_dialog: SourceDialog | None = None
        self._build()
        self.refresh()

    # ----- layout ------------------------------------------------------------------------------
    def _build(self) -> None:
        layout = QVBoxLayout(self)
        layout.setContentsMargins(28, 24, 28, 24)
        title = QLabel("Study")
        title.setObjectName("PaneTitle")
        layout.addWidget(title)
        intro = QLabel("Flashcards and quizzes from your own documents. Cards come due on the FSRS schedule "
                       "Anki uses; nothing leaves this computer.")
        intro.setWordWrap(True)
        layout.addWidget(intro)

        decks_row = QHBoxLayout()
        self.deck_combo = QComboBox(self)
        self.deck_combo.setAccessibleName("Deck")
        compact_combo(self.deck_combo)  # deck and collection names are the user's, of any length
        self.deck_combo.currentIndexChanged.connect(lambda _i: self._show_stats())
        decks_row.addWidget(QLabel("Deck:"))
        decks_row.addWidget(self.deck_combo, 1)
        self.review_button = QPushButton("Review due cards")
        self.review_button.setAccessibleName("Review due cards")
        self.review_button.clicked.connect(self.start_review)
        self.export_button = QPushButton("Export…")
        self.export_button.setAccessibleName("Export the deck")
        self.export_button.clicked.connect(self.export_deck)
        self.import_button = QPushButton("Import CSV…")
        self.import_button.setAccessibleName("Import a CSV deck")
        self.import_button.clicked.connect(self.import_deck)
        for button in (self.review_button, self.export_button, self.import_button):
            decks_row.addWidget(button)
        layout.addLayout(decks_row)
        self.stats_label = QLabel("")
        self.stats_label.setAccessibleName("Today's reviews and streak")
        layout.addWidget(self.stats_label)
        self.chart = ReviewChart(self)
        layout.addWidget(self.chart)

        self.stack = QStackedWidget(self)
        layout.addWidget(self.stack, 1)
        self.stack.addWidget(self._build_make())
        self.stack.addWidget(self._build_review())
        self.status = QLabel("")
        self.status.setWordWrap(True)
        self.status.setAccessibleName("Study status")
        layout.addWidget(self.status)

    def _build_make(self) -> QWidget:
        page = QWidget(self)
        layout = QVBoxLayout(page)
        layout.setContentsMargins(0, 8, 0, 0)
        row = QHBoxLayout()
        self.collection_combo = QComboBox(page)
        self.collection_combo.setAccessibleName("Collection to learn from")
        compact_combo(self.collection_combo)
        row.addWidget(QLabel("Make cards from:"))
        row.addWidget(self.collection_combo, 1)
        self.propose_button = QPushButton("Propose cards")
        self.propose_button.setAccessibleName("Propose cards")
        self.propose_button.clicked.connect(self.propose)
        row.addWidget(self.propose_button)
        layout.addLayout(row)
        self.empty_label = QLabel("Add files on the Documents page first; then the cards are made from them here.")
        self.empty_label.setWordWrap(True)
        layout.addWidget(self.empty_label)
        self.proposal_list = QListWidget(page)
        self.proposal_list.setAccessibleName("Proposed cards: untick to drop, double-click to edit")
        self.proposal_list.setWordWrap(True)
        self.proposal_list.itemDoubleClicked.connect(self.edit_proposal)
        layout.addWidget(self.proposal_list, 1)
        keep_row = QHBoxLayout()
        self.deck_name = QLineEdit(page)
        self.deck_name.setPlaceholderText("Deck name")
        self.deck_name.setAccessibleName("Deck for the kept cards")
        self.keep_button = QPushButton("Keep ticked cards")
        self.keep_button.setAccessibleName("Keep the ticked cards in the deck")
        self.keep_button.clicked.connect(self.keep_proposals)
        self.keep_button.setEnabled(False)
        keep_row.addWidget(self.deck_name, 1)
        keep_row.addWidget(self.keep_button)
        layout.addLayout(keep_row)
        return page

    def _build_review(self) -> QWidget:
        page = QWidget(self)
        layout = QVBoxLayout(page)
        layout.setContentsMargins(0, 8, 0, 0)
        self.progress_label = QLabel("")
        layout.addWidget(self.progress_label)
        self.front_label = QLabel("")
        self.front_label.setObjectName("StudyFront")
        self.front_label.setWordWrap(True)
        self.front_label.setAccessibleName("Question")
        font = self.front_label.font()
        font.setPointSizeF(font.pointSizeF() * 1.35)  # a card is read, not skimmed
        self.front_label.setFont(font)
        self.front_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        layout.addWidget(self.front_label)
        self.typed = QLineEdit(page)
        self.typed.setPlaceholderText("Type your answer (optional), Enter to check")
        self.typed.setAccessibleName("Your answer")
        self.typed.returnPressed.connect(self.show_answer)
        layout.addWidget(self.typed)
        self.show_button = QPushButton("Show answer (Space)")
        self.show_button.setAccessibleName("Show the answer")
        self.show_button.clicked.connect(self.show_answer)
        layout.addWidget(self.show_button)
        self.answer_label = QLabel("")
        self.answer_label.setWordWrap(True)
        self.answer_label.setAccessibleName("Answer")
        layout.addWidget(self.answer_label)
        self.source_label = QLabel("")
        self.source_label.setWordWrap(True)
        self.source_label.setAccessibleName("Source of the card")
        self.source_label.linkActivated.connect(lambda _link: self.open_card_source())
        layout.addWidget(self.source_label)
        ratings = QHBoxLayout()
        self.rating_buttons = []
        for value, name in RATINGS.items():
            button = QPushButton(f"{value} {name}")
            button.setAccessibleName(f"Rate {name}")
            button.clicked.connect(lambda _c=False, v=value: self.rate(v))
            ratings.addWidget(button)
            self.rating_buttons.append(button)
        done = QPushButton("Done")
        done.setAccessibleName("End the review")
        done.clicked.connect(self.end_review)
        ratings.addWidget(done)
        layout.addLayout(ratings)
        layout.addStretch(1)
        for value in RATINGS:
            shortcut = QShortcut(QKeySequence(str(value)), page)
            shortcut.setContext(Qt.ShortcutContext.WidgetWithChildrenShortcut)
            shortcut.activated.connect(lambda v=value: self._key_rating(v))
        space = QShortcut(QKeySequence(Qt.Key.Key_Space), page)
        space.setContext(Qt.ShortcutContext.WidgetWithChildrenShortcut)
        space.activated.connect(self._key_space)
        self._set_rating_enabled(False)
        return page

    # ----- decks and stats ---------------------------------------------------------------------
    def refresh(self) -> None:
        """Reload the decks and the collections (worker thread)."""
        def load():
            return self.decks.list(), document_collections(self.services)

        self.jobs.run(load, on_done=self._fill, on_error=self._failed)

    def _fill(self, loaded) -> None:
        decks, collections = loaded
        current = self.deck_combo.currentData()
        self.deck_combo.blockSignals(True)
        self.deck_combo.clear()
        for deck in decks:
            self.deck_combo.addItem(f"{deck['name']} ({deck['cards']} cards, {deck['due']} due)", deck["id"])
        index = self.deck_combo.findData(current)
        self.deck_combo.setCurrentIndex(index if index >= 0 else 0)
        self.deck_combo.blockSignals(False)
        has_decks = bool(decks)
        for button in (self.review_button, self.export_button):
            button.setEnabled(has_decks)
        self.collection_combo.clear()
        self.collection_combo.addItem("All my documents", None)
        for collection in collections:
            self.collection_combo.addItem(collection_label(collection), collection["id"])
        has_documents = any(c["chunks"] for c in collections)
        self.empty_label.setVisible(not has_documents)
        self.propose_button.setEnabled(has_documents)
        self._show_stats()

    def _show_stats(self) -> None:
        deck_id = self.deck_combo.currentData()
        self.jobs.run(self.decks.stats, deck_id, on_done=self._stats_shown, on_error=self._failed)

    def _stats_shown(self, stats) -> None:
        self.stats_label.setText(f"Today: {stats.reviewed_today} reviewed · streak {stats.streak_days} "
                                 f"day{'' if stats.streak_days == 1 else 's'} · {stats.due_now} due now "
                                 f"of {stats.cards} cards")
        self.chart.show_days(stats.per_day)

    def _failed(self, message: str, _exc: BaseException | None = None) -> None:
        self.status.setText(message)

    # ----- proposing ---------------------------------------------------------------------------
    def propose(self) -> None:
        from assistant.study.sources import propose_for

        collection = self.collection_combo.currentData()
        self.propose_button.setEnabled(False)
        self.status.setText("Reading the documents and choosing what is worth learning…")
        self._cancel.clear()
        if not self.deck_name.text().strip():
            self.deck_name.setText(self.collection_combo.currentText().split(" (")[0])
        self.jobs.run(propose_for, self.services, [collection] if collection is not None else None,
                      cancel=self._cancel, on_done=self._proposed, on_error=self._propose_failed)

    def _propose_failed(self, message: str, _exc: BaseException) -> None:
        self.propose_button.setEnabled(True)
        self.status.setText(message)

    def _proposed(self, proposal) -> None:
        self.propose_button.setEnabled(True)
        self.proposals = list(proposal.kept)
        self.proposal_list.clear()
        for card in self.proposals:
            item = QListWidgetItem(_card_line(card))
            item.setFlags(item.flags() | Qt.ItemFlag.ItemIsUserCheckable)
            item.setCheckState(Qt.CheckState.Checked)
            item.setToolTip(f"{card.source.get('file', '')}, {card.source.get('location', '')}: "
                            f"{card.source.get('sentence', '')}")
            self.proposal_list.addItem(item)
        self.keep_button.setEnabled(bool(self.proposals))
        self.status.setText(f"{counted(len(self.proposals), 'card')} proposed; {len(proposal.dropped)} more made and "
                            "dropped because the answer was not in its sentence, the blank was not a term, or the card "
                            "needs the text around it. Untick to drop, double-click to edit." if self.proposals else
                            "No card could be made: these documents have no sentence that reads on its own.")
        self.sig_cards_proposed.emit(len(self.proposals))

    def edit_proposal(self, item: QListWidgetItem) -> None:
        card = self.proposals[self.proposal_list.row(item)]
        front, ok = QInputDialog.getMultiLineText(self, "Edit the question", "Question:", card.front)
        if not ok:
            return
        back, ok = QInputDialog.getText(self, "Edit the answer", "Answer:", text=card.back)
        if ok and front.strip() and back.strip():
            card.front, card.back = front.strip(), back.strip()
            item.setText(_card_line(card))

    def keep_proposals(self) -> None:
        kept = [card for i, card in enumerate(self.proposals)
                if self.proposal_list.item(i).checkState() == Qt.CheckState.Checked]
        name = self.deck_name.text().strip() or "My documents"

        def save():
            return self.decks.add_cards(self.decks.create(name), kept)

        def saved(added: int) -> None:
            self.status.setText(f"{added} cards kept in the deck {name!r}.")
            self.proposals = []
            self.proposal_list.clear()
            self.keep_button.setEnabled(False)
            self.refresh()

        self.jobs.run(save, on_done=saved, on_error=self._failed)

    # ----- reviewing ---------------------------------------------------------------------------
    def start_review(self) -> None:
        deck_id = self.deck_combo.currentData()
        if deck_id is None:
            return
        self.jobs.run(self.decks.due, deck_id, on_done=self._review_loaded, on_error=self._failed)

    def _review_loaded(self, cards: list) -> None:
        if not cards:
            self.status.setText("Nothing is due in this deck. Come back later.")
            return
        self.queue = list(cards)
        self.status.setText("")
        self.stack.setCurrentIndex(1)
        self._next_card()

    def _next_card(self) -> None:
        if not self.queue:
            self.end_review()
            self.status.setText("All due cards reviewed. Well done.")
            return
        self.current = self.queue.pop(0)
        card = self.current
        options = "".join(f"\n  {chr(97 + i)}) {c}" for i, c in enumerate(card.choices))
        self.front_label.setText(card.front + options)
        self.progress_label.setText(f"{len(self.queue) + 1} left")
        self.answer_label.setText("")
        self.source_label.setText("")
        self.typed.clear()
        self.answer_shown = False
        self._set_rating_enabled(False)
        self.show_button.setEnabled(True)
        self.typed.setFocus()
        self.sig_review_shown.emit(card)

    def show_answer(self) -> None:
        card = self.current
        if card is None or self.answer_shown:
            return
        self.answer_shown = True
        typed = self.typed.text().strip()
        self.answer_label.setText(f"Answer: {card.back}")
        source = card.source
        where = ", ".join(x for x in (source.get("file", ""), source.get("location", "")) if x)
        self.source_label.setText(f'<a href="source">{where}</a>: \u201c{source.get("sentence", "")}\u201d' if where else "")
        self._set_rating_enabled(True)
        self.show_button.setEnabled(False)
        self.rating_buttons[2].setFocus()
        if typed:
            if card.choices and len(typed) == 1 and typed.isalpha() and ord(typed.lower()) - 97 < len(card.choices):
                typed = card.choices[ord(typed.lower()) - 97]
            def judge():
                return check_answer(card.back, typed, self.services.documents_core()[1].embed)

            self.jobs.run(judge, on_done=lambda verdict: self.answer_label.setText(
                f"Answer: {card.back} — {'right' if verdict.right else 'not quite'} ({verdict.how})"),
                on_error=self._failed)

    def rate(self, rating: int) -> None:
        card = self.current
        if card is None or not self.answer_shown:
            return
        self._set_rating_enabled(False)
        self.jobs.run(self.decks.review, card.id, rating, on_done=lambda _c: (self._show_stats(), self._next_card()),
                      on_error=self._failed)

    def end_review(self) -> None:
        self.queue = []
        self.current = None
        self.stack.setCurrentIndex(0)
        self.refresh()

    def _set_rating_enabled(self, enabled: bool) -> None:
        for button in self.rating_buttons:
            button.setEnabled(enabled)

    def _key_rating(self, value: int) -> None:
        if self.typed.hasFocus() and not self.answer_shown:
            self.typed.insert(str(value))  # a digit typed as part of the answer
            return
        self.rate(value)

    def _key_space(self) -> None:
        if self.typed.hasFocus() and self.typed.text():
            self.typed.insert(" ")
            return
        self.show_answer()

    def open_card_source(self) -> None:
        card = self.current
        chunk_id = card.source.get("chunk_id") if card is not None else None
        if chunk_id is None:
            return
        self.jobs.run(open_source, self.services, int(chunk_id), on_done=self._show_source, on_error=self._failed)

    def _show_source(self, source: dict) -> None:
        if self.source_dialog is None:
            self.source_dialog = SourceDialog(self)
        self.source_dialog.show_source(source)

    # ----- decks in and out --------------------------------------------------------------------
    def export_deck(self) -> None:
        from assistant.study.exchange import export_apkg, export_csv

        deck_id = self.deck_combo.currentData()
        if deck_id is None:
            return
        name = self.deck_combo.currentText().split(" (")[0]
        path, _filter = QFileDialog.getSaveFileName(self, "Export the deck", str(Path.home() / f"{name}.apkg"),
                                                    "Anki package (*.apkg);;CSV (*.csv)")
        if not path:
            return
        writer = export_csv if path.lower().endswith(".csv") else export_apkg
        self.jobs.run(writer, self.decks, deck_id, path,
                      on_done=lambda n: self.status.setText(f"{n} cards written to {path} (not encrypted)."),
                      on_error=self._failed)

    def import_deck(self) -> None:
        from assistant.study.exchange import import_csv

        path, _filter = QFileDialog.getOpenFileName(self, "Import a CSV deck", str(Path.home()),
                                                    "CSV or text (*.csv *.tsv *.txt)")
        if not path:
            return
        name = Path(path).stem
        self.jobs.run(import_csv, self.decks, path, name, on_done=lambda result: (
            self.status.setText(f"{result[0]} cards added to {name!r}" + (f", {result[1]} already there." if result[1]
                                                                           else ".")), self.refresh()),
            on_error=self._failed)

    def shutdown(self) -> None:
        """GUI thread, at close: stop a proposal in progress (the window's Jobs waits for it)."""
        self._closed = True
        self._cancel.set()

