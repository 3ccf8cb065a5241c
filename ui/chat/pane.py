"""The chat: messages rendered as Markdown, a composer, Stop, regenerate, edit, copy.

GUI thread only. Everything that touches the store or the engine goes through
:class:`ui.jobs.Jobs`: the core's small calls on a pool thread, and each reply as the events of
:class:`assistant.chat.ChatSession` streamed from one, so typing, scrolling and Stop stay
responsive while a reply streams. Every message is stored as it happens, so a crash or a dead engine loses nothing:
a reply cut short is kept and marked "interrupted".

Incognito: :meth:`ChatPane.new_incognito_conversation` starts a chat kept only in memory
(:mod:`assistant.chat.incognito`): a banner and a tinted header and composer say so, it never
reaches the conversation list or the history search, and it is forgotten when the user leaves
it (another conversation, a new chat, the window closed), with a notice saying so. There is no
undo and no confirmation: forgetting it is the point, and the banner says it from the start.

Why one module of ~900 lines: the page's controller; its message views and smaller widgets
live beside it (message_view.py, widgets.py), what remains shares the conversation shown.
"""


from __future__ import annotations

from typing import TYPE_CHECKING, Any

from PySide6.QtCore import QSize, Qt, QTimer, Signal
from PySide6.QtGui import QKeySequence, QShortcut
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFrame,
    QHBoxLayout,
    QLabel,
    QPlainTextEdit,
    QPushButton,
    QScrollArea,
    QSizePolicy,
    QVBoxLayout,
    QWidget,
)

from assistant.chat import prompt as chat_prompt
from assistant.chat import sources as chat_sources
from assistant.chat import views as chat_views
from assistant.chat.events import (
    ModelLoading,
    Reasoning,
    ReplyDone,
    ReplyFailed,
    ReplyStarted,
    Token,
    TurnPrepared,
)
from assistant.wording import passages_line
from ui.chat.message_view import MAX_COLUMN_WIDTH, MessageView
from ui.chat.widgets import Banner, Composer, IncognitoBanner, SourceDialog
from ui.compact_widgets import ElidedLabel, compact_combo
from ui.suggesting_edit import SuggestionController
from ui.theme import COLORS

if TYPE_CHECKING:
    from assistant.app import Services
    from assistant.chat.incognito import IncognitoConversations
    from assistant.chat.session import ChatSession
    from assistant.chat.views import ConversationView, Persona
    from ui.jobs import Job, Jobs

#: The empty chat's hint, in a normal and in an incognito chat.
EMPTY_HINT = "Ask anything. Everything you write stays on this computer."
EMPTY_INCOGNITO_HINT = "Incognito: nothing you write here is saved, searched or listed. Leaving the chat forgets it."
#: Said once an incognito chat was left (another conversation, a new chat).
INCOGNITO_FORGOTTEN = "The incognito chat was closed and forgotten: nothing of it was saved."


def persona_caption(source: str) -> str:
    """Under the Persona… box: where the system prompt shown comes from (a ``Persona.source``)."""
    # Imported here: the model settings module brings the store, which must not delay the first paint.
    from assistant.models import model_settings

    return {
        model_settings.FROM_CONVERSATION: "Chosen for this conversation.",
        model_settings.FROM_MODEL_SETTINGS: "From this model's settings (Models → Settings…).",
        model_settings.FROM_APP: "The app's default (Settings → Default system prompt).",
        model_settings.FROM_MODEL_DEFAULTS: "None chosen: the model's own default applies.",
    }.get(source, "")


class ChatPane(QWidget):
    """One conversation at a time; see the module docstring for threading."""

    sig_conversation_changed = Signal(str)  # the conversation now shown ("" for a new one or an incognito one)
    sig_incognito_changed = Signal(bool)  # an incognito chat is now shown (True) or was left (False)
    sig_conversations_changed = Signal()  # titles or activity changed: the sidebar refreshes
    sig_reply_finished = Signal(str)  # status of the reply that just ended

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.setObjectName("ChatPane")
        self.setAccessibleName("Chat")
        self.services: Services | None = None
        self.jobs: Jobs | None = None
        self.colors = COLORS["light"]
        self.conversation_id: str | None = None
        self.model_id: str | None = None
        self.suggestions: SuggestionController | None = None  # built with the services
        self.documents_choice: dict | None = None  # see assistant.chat.prompt
        self.collections: list[dict] = []
        self.source_dialog: SourceDialog | None = None
        # The conversation's own choice, handed to the session (stored with the first turn);
        # ``persona`` is what a turn with ``model_id`` uses, which the Persona… box shows.
        self.system_prompt = ""
        self.persona: Persona | None = None
        self.persona_model_id: str | None = None  # the model ``persona`` was read for
        self.models: list = []
        self.views: list[MessageView] = []
        # The incognito chat's in-memory conversation while one is shown; None for a stored one.
        self.incognito: IncognitoConversations | None = None
        self.reply: Job | None = None  # the streaming reply's job
        self.session: ChatSession | None = None  # its session
        self.streaming_view: MessageView | None = None
        self.editing_message_id: str | None = None
        self._busy = False
        self._stop_requested = False
        self._generation = 0  # bumps on every switch: results for a conversation left behind are dropped
        self._loading = False
        self._build()

    # ----- layout ----------------------------------------------------------------------
    def _build(self) -> None:
        outer = QVBoxLayout(self)
        outer.setContentsMargins(0, 0, 0, 0)
        outer.setSpacing(0)

        # Above everything while a chat is incognito, so it cannot be missed.
        self.incognito_banner = IncognitoBanner(self)
        outer.addWidget(self.incognito_banner)

        header = QFrame(self)
        header.setObjectName("ChatHeader")
        row = QHBoxLayout(header)
        row.setContentsMargins(14, 8, 10, 8)
        # Elided: a 200-character title must not widen the window (issue 19, point 2).
        self.title_label = ElidedLabel("New conversation", min_chars=10)
        self.title_label.setObjectName("ConversationTitle")
        self.title_label.setAccessibleName("Conversation title")
        row.addWidget(self.title_label, 1)
        model_caption = QLabel("Model")
        model_caption.setObjectName("MutedLabel")
        row.addWidget(model_caption)
        self.model_combo = QComboBox(self)
        self.model_combo.setAccessibleName("Model for this conversation")
        self.model_combo.setToolTip("The model that answers in this conversation")
        compact_combo(self.model_combo)
        self.model_combo.currentIndexChanged.connect(self._on_model_chosen)
        model_caption.setBuddy(self.model_combo)
        row.addWidget(self.model_combo)
        self.persona_button = QPushButton("Persona…")
        self.persona_button.setCheckable(True)
        self.persona_button.setAccessibleName("Show the system prompt of this conversation")
        self.persona_button.setToolTip("The system prompt (persona) of this conversation")
        self.persona_button.toggled.connect(self._toggle_persona)
        row.addWidget(self.persona_button)
        outer.addWidget(header)

        # Documents attached to the conversation: the passages that answer each message go
        # into the prompt, and the reply cites them.
        documents_bar = QFrame(self)
        documents_bar.setObjectName("ChatHeader")
        documents_row = QHBoxLayout(documents_bar)
        documents_row.setContentsMargins(14, 0, 10, 6)
        documents_caption = QLabel("Documents")
        documents_caption.setObjectName("MutedLabel")
        documents_row.addWidget(documents_caption)
        self.documents_combo = QComboBox(self)
        self.documents_combo.setAccessibleName("Documents used in this conversation")
        self.documents_combo.setToolTip("Answer from your own documents (imported on the Documents page)")
        compact_combo(self.documents_combo)
        self.documents_combo.addItem("None", None)
        self.documents_combo.currentIndexChanged.connect(self._on_documents_chosen)
        documents_caption.setBuddy(self.documents_combo)
        documents_row.addWidget(self.documents_combo)
        self.only_documents = QCheckBox("Only from my documents")
        self.only_documents.setAccessibleName("Answer only from my documents")
        self.only_documents.setToolTip("The assistant says it does not know when your documents do not cover the question")
        self.only_documents.setEnabled(False)
        self.only_documents.toggled.connect(lambda _on: self._on_documents_chosen())
        documents_row.addWidget(self.only_documents)
        self.budget_label = ElidedLabel("")
        self.budget_label.setObjectName("MutedLabel")
        self.budget_label.setAccessibleName("Passages in the prompt")
        documents_row.addWidget(self.budget_label, 1)
        outer.addWidget(documents_bar)

        self.persona_panel = QFrame(self)
        self.persona_panel.setObjectName("ChatHeader")
        persona = QVBoxLayout(self.persona_panel)
        persona.setContentsMargins(14, 6, 10, 8)
        caption = QLabel("System prompt for this conversation")
        caption.setObjectName("MutedLabel")
        persona.addWidget(caption)
        self.persona_edit = QPlainTextEdit(self.persona_panel)
        self.persona_edit.setAccessibleName("System prompt")
        self.persona_edit.setPlaceholderText("For example: You are a concise assistant who answers in plain English.")
        self.persona_edit.setFixedHeight(70)
        self.persona_edit.setTabChangesFocus(True)
        caption.setBuddy(self.persona_edit)
        persona.addWidget(self.persona_edit)
        buttons = QHBoxLayout()
        self.persona_source_label = QLabel("", self.persona_panel)
        self.persona_source_label.setObjectName("MutedLabel")
        self.persona_source_label.setAccessibleName("Where this system prompt comes from")
        self.persona_source_label.setWordWrap(True)
        buttons.addWidget(self.persona_source_label, 1)
        self.persona_save = QPushButton("Use this prompt")
        self.persona_save.setAccessibleName("Save the system prompt")
        self.persona_save.clicked.connect(self._save_persona)
        buttons.addWidget(self.persona_save)
        persona.addLayout(buttons)
        self.persona_panel.hide()
        outer.addWidget(self.persona_panel)

        banners = QVBoxLayout()
        banners.setContentsMargins(12, 6, 12, 0)
        banners.setSpacing(4)
        self.banner = Banner("Chat notice", self)
        self.edit_banner = Banner("Editing notice", self)
        self.edit_banner.sig_banner_closed.connect(self.cancel_edit)
        banners.addWidget(self.banner)
        banners.addWidget(self.edit_banner)
        outer.addLayout(banners)

        self.scroll = QScrollArea(self)
        self.scroll.setObjectName("MessageScroll")
        self.scroll.setAccessibleName("Messages")
        self.scroll.setWidgetResizable(True)
        self.scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        # The messages sit in a column of readable width, centred in whatever space there is.
        self.column = QWidget()
        self.column.setObjectName("MessageColumn")
        centring = QHBoxLayout(self.column)
        centring.setContentsMargins(0, 0, 0, 0)
        centring.addStretch(1)
        self.inner_column = QWidget(self.column)
        self.inner_column.setObjectName("MessageColumn")
        self.inner_column.setMaximumWidth(MAX_COLUMN_WIDTH)
        self.inner_column.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Preferred)
        centring.addWidget(self.inner_column, 100)
        centring.addStretch(1)
        self.column_layout = QVBoxLayout(self.inner_column)
        self.column_layout.setContentsMargins(16, 14, 16, 14)
        self.column_layout.setSpacing(10)
        self.empty_label = QLabel(EMPTY_HINT)
        self.empty_label.setObjectName("EmptyChat")
        self.empty_label.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.empty_label.setWordWrap(True)
        self.column_layout.addStretch(1)
        self.column_layout.addWidget(self.empty_label)
        self.column_layout.addStretch(1)
        self.scroll.setWidget(self.column)
        self.scroll.verticalScrollBar().rangeChanged.connect(self._follow_bottom)
        outer.addWidget(self.scroll, 1)

        bar = QFrame(self)
        bar.setObjectName("ComposerBar")
        composer_row = QHBoxLayout(bar)
        composer_row.setContentsMargins(12, 8, 12, 10)
        self.composer = Composer(bar)
        self.composer.sig_send_requested.connect(self.send)
        self.composer.textChanged.connect(self._update_buttons)
        composer_row.addWidget(self.composer, 1)
        self.send_button = QPushButton("Send")
        self.send_button.setObjectName("PrimaryButton")
        self.send_button.setAccessibleName("Send message")
        self.send_button.setToolTip("Send (Enter)")
        self.send_button.clicked.connect(self.send)
        self.stop_button = QPushButton("Stop")
        self.stop_button.setObjectName("StopButton")
        self.stop_button.setAccessibleName("Stop the reply")
        self.stop_button.setToolTip("Stop the reply (Esc)")
        self.stop_button.clicked.connect(self.stop)
        self.stop_button.hide()
        composer_row.addWidget(self.send_button, 0, Qt.AlignmentFlag.AlignBottom)
        composer_row.addWidget(self.stop_button, 0, Qt.AlignmentFlag.AlignBottom)
        outer.addWidget(bar)
        # What takes the incognito tint (the style sheet's [incognito="true"]).
        self._tinted = (header, documents_bar, self.persona_panel, bar)

        self.escape_shortcut = QShortcut(QKeySequence(Qt.Key.Key_Escape), self)
        self.escape_shortcut.setContext(Qt.ShortcutContext.WidgetWithChildrenShortcut)
        self.escape_shortcut.activated.connect(self._on_escape)
        self._at_bottom = True
        self.scroll.verticalScrollBar().valueChanged.connect(self._remember_position)
        self._update_buttons()

    # ----- services --------------------------------------------------------------------
    def set_services(self, services: "Services", jobs: "Jobs") -> None:
        from assistant.tasks.suggestions import Suggester

        self.services = services
        self.jobs = jobs
        # Suggestions continue the text with the conversation's own model: it is the one the
        # engine has loaded, so asking costs no model switch.
        suggester = Suggester(lambda: services.engine, self._suggestion_model_path,
                              lambda: bool(services.settings.suggestions_enabled))
        self.suggestions = SuggestionController(self.composer, suggester, self)
        self.refresh_collections()
        self.new_conversation()

    def _suggestion_model_path(self) -> str:
        """Any thread: the file of the conversation's model (the chat default if none is chosen)."""
        services = self.services
        model_id = self.model_id
        if model_id:
            try:
                return services.library.get(model_id).path
            except Exception:
                pass  # removed meanwhile: the default chat model is the sensible fallback
        return services.library.for_task("chat").path

    def shutdown_suggestions(self) -> None:
        """GUI thread, at close: no more suggestions; wait for the one being asked."""
        if self.suggestions is not None:
            self.suggestions.shutdown()

    def set_colors(self, colors: dict) -> None:
        self.colors = colors
        for view in self.views:
            view.set_colors(colors)

    @property
    def ready(self) -> bool:
        """A message can be sent: the services and the list of chat models are loaded."""
        return self.services is not None and bool(self.models) and not self._loading and not self._busy

    @property
    def busy(self) -> bool:
        """True from Send until the reply is stored (finished, stopped or failed)."""
        return self._busy

    # ----- opening conversations ---------------------------------------------------------
    def new_conversation(self) -> None:
        self._start_new(incognito=False)

    def new_incognito_conversation(self) -> None:
        """Start a chat kept in memory only (see the module docstring)."""
        self._start_new(incognito=True)

    def _start_new(self, incognito: bool) -> None:
        if self.services is None or self.jobs is None:
            return
        self._leave_current()
        self.conversation_id = None
        if incognito:
            # Imported here, like the session: nothing of the core before the first paint.
            from assistant.chat.incognito import IncognitoConversations

            self._set_incognito(IncognitoConversations())
        generation = self._generation
        self.jobs.run(chat_views.new_conversation_view, self.services,
                      on_done=lambda view: self._show_view(view, generation),
                      on_error=self._show_error)
        self.sig_conversation_changed.emit("")
        self.focus_composer()

    def open_conversation(self, conversation_id: str, message_id: str | None = None) -> None:
        if self.services is None or self.jobs is None:
            return
        if conversation_id == self.conversation_id and not self._loading:
            if message_id:  # already showing: a second click on a hit only scrolls
                self.reveal_message(message_id)
            return
        self._leave_current()
        self.conversation_id = conversation_id
        self._loading = True
        generation = self._generation
        self.jobs.run(chat_views.load_conversation, self.services, conversation_id,
                      on_done=lambda view: self._show_view(view, generation, message_id),
                      on_error=self._show_error)
        self.sig_conversation_changed.emit(conversation_id)

    def _leave_current(self) -> None:
        # A reply keeps being saved by its job; leaving stops it (kept, marked interrupted).
        if self._busy:
            self.stop()
        self._generation += 1
        self._set_busy(False)
        self.reply = None
        self.session = None
        self.streaming_view = None
        self.cancel_edit()
        self.banner.hide()
        if self.forget_incognito():
            self._clear_views()  # its text leaves the screen now, not when the next view loads
            self.banner.show_message(INCOGNITO_FORGOTTEN, "info")

    def forget_incognito(self) -> bool:
        """Discard the incognito chat shown, if any (GUI thread; the window calls it at close);
        True when there was one. A reply still streaming finishes into nothing."""
        if self.incognito is None:
            return False
        self.incognito.discard()
        self._set_incognito(None)
        return True

    def _set_incognito(self, conversations: "IncognitoConversations | None") -> None:
        self.incognito = conversations
        on = conversations is not None
        self.incognito_banner.setVisible(on)
        self.empty_label.setText(EMPTY_INCOGNITO_HINT if on else EMPTY_HINT)
        for widget in self._tinted:
            widget.setProperty("incognito", on)
            widget.style().unpolish(widget)
            widget.style().polish(widget)
        self.sig_incognito_changed.emit(on)

    def _title_text(self, title: str | None) -> str:
        if self.incognito is not None:
            return f"Incognito · {title}" if title else "Incognito chat"
        return title or "New conversation"

    def _show_view(self, view: "ConversationView", generation: int, message_id: str | None = None) -> None:
        if generation != self._generation:
            return
        self._loading = False
        self.conversation_id = view.conversation.id if view.conversation else None
        self.title_label.setText(self._title_text(view.conversation.title if view.conversation else None))
        self.system_prompt = view.system_prompt or ""
        self._show_persona(view.persona, view.model_id, replace_text=True)
        self._fill_models(view.models, view.model_id)
        self._set_documents_choice(view.documents)
        self.budget_label.setText("")
        self._clear_views()
        for message in view.messages:
            if message.role in ("user", "assistant"):
                message_view = self._add_view(message.role)
                message_view.set_message(message)
                message_view.set_sources(view.sources.get(message.id, []))
                message_view.set_variants(view.variants.get(message.id, []))
        self._refresh_actions()
        if message_id:
            self.reveal_message(message_id)
        else:
            self._at_bottom = True
            QTimer.singleShot(0, self, self._scroll_to_bottom)

    def refresh_models(self) -> None:
        """Reload the model list after the library changed (GUI thread; the list comes from a job)."""
        if self.services is None or self.jobs is None:
            return
        self.jobs.run(chat_views.chat_models, self.services,
                      on_done=lambda models: self._fill_models(models, self.model_id))

    def _fill_models(self, models: list, selected: str | None) -> None:
        self.models = list(models)
        self.model_combo.blockSignals(True)
        self.model_combo.clear()
        for model in self.models:
            self.model_combo.addItem(model.display_name, model.id)
        index = self.model_combo.findData(selected) if selected else -1
        if index < 0 and self.models:
            index = 0
        self.model_combo.setCurrentIndex(index)
        self.model_combo.blockSignals(False)
        self.model_id = self.model_combo.currentData() if index >= 0 else selected
        if self.model_id != self.persona_model_id:  # the chosen model is gone: another one answers
            self._refresh_persona()
        if not self.models:
            self.banner.show_message("No chat model is installed. Import a GGUF model on the Models page.", "warning")
        self._update_buttons()

    # ----- documents ----------------------------------------------------------------------------
    def refresh_collections(self) -> None:
        """Reload the document collections (after the Documents page changed them)."""
        if self.services is None or self.jobs is None:
            return
        self.jobs.run(chat_sources.document_collections, self.services, on_done=self._fill_collections)

    def _fill_collections(self, collections: list[dict]) -> None:
        self.collections = list(collections)
        self._set_documents_choice(self.documents_choice)

    def _set_documents_choice(self, choice: dict | None) -> None:
        """Fill the chooser and select ``choice`` without saving it again."""
        self.documents_choice = dict(choice) if choice else None
        combo = self.documents_combo
        combo.blockSignals(True)
        self.only_documents.blockSignals(True)
        combo.clear()
        combo.addItem("None", None)
        combo.addItem("All my documents", "all")
        for collection in self.collections:
            combo.addItem(chat_sources.collection_label(collection), collection["id"])
        index = 0
        if choice:
            wanted = choice.get("collections")
            index = 1 if not wanted else max(0, combo.findData(wanted[0]))
        combo.setCurrentIndex(index)
        self.only_documents.setChecked(bool(choice and choice.get("only")))
        self.only_documents.setEnabled(index > 0)
        self.only_documents.blockSignals(False)
        combo.blockSignals(False)

    def _on_documents_chosen(self, *_: Any) -> None:
        data = self.documents_combo.currentData()
        self.only_documents.setEnabled(data is not None)
        if data is None:
            choice = None
        else:
            choice = {"collections": None if data == "all" else [int(data)], "only": self.only_documents.isChecked()}
        if choice == self.documents_choice:
            return
        self.documents_choice = choice
        if self.conversation_id and self.services and self.jobs:
            self.jobs.run(chat_views.set_conversation_setting, self.services, self.conversation_id,
                          chat_prompt.SETTING_DOCUMENTS, choice, self.incognito, on_error=self._show_error)

    def open_source(self, chunk_id: int) -> None:
        """Show a cited passage with its file and place (read on a worker thread)."""
        if self.services is None or self.jobs is None:
            return
        self.jobs.run(chat_sources.open_source, self.services, chunk_id, on_done=self._show_source,
                      on_error=self._show_error)

    def _show_source(self, source: dict) -> None:
        if self.source_dialog is None:
            self.source_dialog = SourceDialog(self)
        self.source_dialog.show_source(source)

    def _on_model_chosen(self, index: int) -> None:
        model_id = self.model_combo.itemData(index)
        if not model_id or model_id == self.model_id:
            return
        self.model_id = model_id
        if self.conversation_id and self.services and self.jobs:
            self.jobs.run(chat_views.set_conversation_setting, self.services, self.conversation_id,
                          chat_prompt.SETTING_MODEL, model_id, self.incognito, on_error=self._show_error)
        self._refresh_persona()  # the new model may have a persona of its own

    # ----- persona ------------------------------------------------------------------------
    def _toggle_persona(self, shown: bool) -> None:
        self.persona_panel.setVisible(shown)
        if shown:
            if self.persona is not None:  # an edit closed unsaved was not kept
                self.persona_edit.setPlainText(self.persona.text)
            self.persona_edit.setFocus()
            # Read again on every opening: the model's settings or the app's default may have
            # changed on another page since. Not forced: what the user starts typing meanwhile stays.
            self._refresh_persona()

    def _refresh_persona(self, replace_text: bool = False) -> None:
        """Read the persona a turn with the chosen model uses (pool thread) and show it."""
        if self.services is None or self.jobs is None:
            return
        generation, model_id, chosen = self._generation, self.model_id, self.system_prompt

        def show(persona: "Persona") -> None:
            # Dropped when the conversation, the model or the choice changed while it was read.
            if (generation, model_id, chosen) == (self._generation, self.model_id, self.system_prompt):
                self._show_persona(persona, model_id, replace_text)

        self.jobs.run(chat_views.persona_for, self.services, model_id, chosen, on_done=show,
                      on_error=self._show_error)

    def _show_persona(self, persona: "Persona", model_id: str | None, replace_text: bool = False) -> None:
        """Show ``persona`` in the box, unless the user is editing it (``replace_text`` to show it anyway)."""
        edited = self.persona is not None and self.persona_edit.toPlainText().strip() != self.persona.text.strip()
        self.persona = persona
        self.persona_model_id = model_id
        if replace_text or not edited:
            self.persona_edit.setPlainText(persona.text)
        self.persona_source_label.setText(persona_caption(persona.source))

    def _save_persona(self) -> None:
        text = self.persona_edit.toPlainText().strip()
        self.persona_button.setChecked(False)
        if self.persona is not None and text == self.persona.text.strip():
            # Unchanged: an inherited persona (the model's, the app's) stays inherited, so a later
            # change of the model's settings still applies; the conversation's own is kept already.
            return
        self.system_prompt = text
        if self.conversation_id and self.services and self.jobs:
            self.jobs.run(chat_views.set_conversation_setting, self.services, self.conversation_id,
                          chat_prompt.SETTING_SYSTEM_PROMPT, self.system_prompt, self.incognito,
                          on_error=self._show_error)
        # Emptied, or set to the app's default, it inherits again: the box says what applies now.
        self._refresh_persona(replace_text=True)

    # ----- message views -------------------------------------------------------------------
    def _clear_views(self) -> None:
        for view in self.views:
            self.column_layout.removeWidget(view)
            view.deleteLater()
        self.views = []
        self._show_empty(True)

    def _add_view(self, role: str) -> MessageView:
        view = MessageView(role, self.colors, self.inner_column)
        view.sig_edit_requested.connect(self.edit_message)
        view.sig_regenerate_requested.connect(self.regenerate)
        view.sig_variant_requested.connect(self.choose_variant)
        view.sig_source_opened.connect(self.open_source)
        # Before the trailing stretch, so messages stack from the top.
        self.column_layout.insertWidget(self.column_layout.count() - 1, view)
        self.views.append(view)
        self._show_empty(False)
        return view

    def _show_empty(self, empty: bool) -> None:
        # Empty: the hint sits in the middle. Otherwise messages stack from the top.
        self.empty_label.setVisible(empty)
        self.column_layout.setStretch(0, 1 if empty else 0)

    def _remove_views(self, message_ids: list[str]) -> None:
        for view in [v for v in self.views if v.message_id in set(message_ids)]:
            self.views.remove(view)
            self.column_layout.removeWidget(view)
            view.deleteLater()
        if not self.views:
            self._show_empty(True)

    def view_for(self, message_id: str) -> MessageView | None:
        return next((v for v in self.views if v.message_id == message_id), None)

    def _refresh_actions(self) -> None:
        last_user = next((v for v in reversed(self.views) if v.role == "user" and v.message_id), None)
        last = self.views[-1] if self.views else None
        for view in self.views:
            can_act = not self._busy
            view.set_actions(edit=can_act and view is last_user,
                             regenerate=can_act and view is last and view.role == "assistant" and bool(view.message_id),
                             switch=can_act)

    def reveal_message(self, message_id: str) -> bool:
        """Scroll to a message and mark it (a search hit); False if it is not shown."""
        view = self.view_for(message_id)
        for other in self.views:
            other.set_found(other is view)
        if view is None:
            return False
        self._at_bottom = False
        # After the layout has placed the new widgets, or the position is stale.
        QTimer.singleShot(0, view, lambda: self.scroll.ensureWidgetVisible(view, 0, 40))
        QTimer.singleShot(50, view, lambda: self.scroll.ensureWidgetVisible(view, 0, 40))
        return True

    def _remember_position(self, value: int) -> None:
        bar = self.scroll.verticalScrollBar()
        self._at_bottom = value >= bar.maximum() - 8

    def _follow_bottom(self, _min: int, _max: int) -> None:
        if self._at_bottom:
            self._scroll_to_bottom()

    def _scroll_to_bottom(self) -> None:
        bar = self.scroll.verticalScrollBar()
        bar.setValue(bar.maximum())

    # ----- sending ------------------------------------------------------------------------
    def focus_composer(self) -> None:
        self.composer.setFocus(Qt.FocusReason.ShortcutFocusReason)

    def _update_buttons(self) -> None:
        ready = self.services is not None and not self._busy and bool(self.models)
        self.send_button.setEnabled(ready and bool(self.composer.toPlainText().strip()))
        self.send_button.setVisible(not self._busy)
        self.stop_button.setVisible(self._busy)
        self.model_combo.setEnabled(not self._busy)

    def _set_busy(self, busy: bool) -> None:
        self._busy = busy
        self._update_buttons()
        self._refresh_actions()

    def _model_label(self) -> str:
        return self.model_id or ""

    def _session(self) -> ChatSession:
        """A session over the conversation as the screen shows it (no store access: GUI thread)."""
        # Imported here: the session's store and engine modules must not delay the first paint.
        from assistant.chat.session import ChatSession

        return ChatSession(self.services, self.conversation_id, model_id=self.model_id,
                           system_prompt=self.system_prompt, documents=self.documents_choice,
                           conversations=self.incognito)

    def send(self, text: str | None = None) -> bool:
        """Send the composer's text (or ``text``); False if nothing was sent."""
        if text is None or not isinstance(text, str):
            text = self.composer.toPlainText()
        text = text.strip()
        if not text or self._busy or self.services is None or self.jobs is None or not self.models:
            return False
        self.composer.clear()
        self.banner.hide()
        replace_from = self.editing_message_id
        self.editing_message_id = None
        self.edit_banner.hide()
        user_view = self._add_view("user")
        user_view.set_text(text)
        session = self._session()
        events = session.edit_and_resend(replace_from, text) if replace_from else session.turn(text)
        self._start_reply(session, events, user_view, text)
        return True

    def regenerate(self, message_id: str = "") -> bool:
        if self._busy or self.conversation_id is None or self.services is None or self.jobs is None:
            return False
        last = self.views[-1] if self.views else None
        reply_id = message_id or (last.message_id if last and last.role == "assistant" else None)
        self.banner.hide()
        old = self.view_for(reply_id) if reply_id else None
        if old is not None:
            old.setEnabled(False)  # it goes when the new reply starts
        # The reply being replaced stays a variant of the new one (assistant.chat.session).
        variants = (old.variant_ids or [old.message_id]) if old is not None and old.message_id else []
        session = self._session()
        self._start_reply(session, session.regenerate(reply_id), None, None, variants)
        return True

    def choose_variant(self, message_id: str) -> None:
        """Show another variant of a regenerated reply in its place; the choice is stored, so the
        next turn and a reopened conversation see it."""
        view = next((v for v in self.views if message_id in v.variant_ids), None)
        if view is None or self._busy or self.services is None or self.jobs is None:
            return
        generation = self._generation

        def show(result) -> None:
            if generation != self._generation or view not in self.views:
                return
            message, sources = result
            view.set_message(message)
            view.set_sources(sources)

        self.jobs.run(chat_views.choose_variant, self.services, message_id, self.incognito, on_done=show,
                      on_error=self._show_error)

    def _start_reply(self, session: ChatSession, events, user_view: "MessageView | None", text: str | None,
                     variants_before: list[str] | None = None) -> None:
        """Stream ``events`` (a ChatSession generator) on the pool into a new reply view;
        ``variants_before``: the variants of the reply this one is written again for."""
        self._stop_requested = False
        self._set_busy(True)
        self.budget_label.setText("")  # the previous turn's passages are not this one's
        reply_view = self._add_view("assistant")
        reply_view.set_placeholder("…")
        reply_view.set_streaming(self._model_label())
        self.streaming_view = reply_view
        self._at_bottom = True
        generation = self._generation
        state = {"prepared": False, "ended": False}
        views = [v for v in (user_view, reply_view) if v is not None]

        def on_event(event) -> None:
            if generation != self._generation:
                return
            if isinstance(event, TurnPrepared):
                state["prepared"] = True
                self._turn_ready(event, user_view)
            elif isinstance(event, ReplyStarted):
                reply_view.message_id = event.message_id
                if variants_before:
                    reply_view.set_variants(list(variants_before) + [event.message_id])
            elif isinstance(event, Token):
                self._token(event.text, reply_view)
            elif isinstance(event, Reasoning):
                if reply_view is not None:
                    reply_view.append_reasoning(event.text)
            elif isinstance(event, ReplyDone):
                state["ended"] = True
                if event.sources and reply_view is not None:
                    reply_view.set_sources(list(event.sources))  # with the agreement verdict
                self._reply_ended(event.message, reply_view, "complete", "")
            elif isinstance(event, ReplyFailed):
                state["ended"] = True
                if reply_view is not None and reply_view.sources:
                    # Stopped before the check: the partial wording is not vouched for.
                    reply_view.set_sources(chat_sources.with_verdict(reply_view.sources, False))
                self._reply_ended(event.message, reply_view, event.kind, event.text)
            elif isinstance(event, ModelLoading):
                pass  # the status bar follows the engine's own status reports

        def on_error(message: str, _exc: BaseException) -> None:
            if generation != self._generation or state["ended"]:
                return
            if state["prepared"]:
                self._reply_ended(None, reply_view, "error", message)
            else:
                self._turn_failed(message, views, text)

        self.session = session
        self.reply = self.jobs.stream(lambda: events, on_event=on_event, on_error=on_error, cancel=session.cancel)

    def edit_message(self, message_id: str) -> None:
        """Put the last user message back in the composer; sending replaces it and what followed."""
        view = self.view_for(message_id)
        if view is None or self._busy:
            return
        self.editing_message_id = message_id
        self.composer.setPlainText(view.text)
        cursor = self.composer.textCursor()
        cursor.movePosition(cursor.MoveOperation.End)
        self.composer.setTextCursor(cursor)
        self.edit_banner.show_message("Editing your last message: Send replaces it and the reply after it. "
                                      "Esc cancels.", "info")
        self.focus_composer()

    def cancel_edit(self) -> None:
        if self.editing_message_id is not None:
            self.editing_message_id = None
            self.composer.clear()
        self.edit_banner.hide()

    def stop(self) -> None:
        """Stop the reply; what arrived so far is kept and marked interrupted."""
        if not self._busy:
            return
        self._stop_requested = True
        if self.reply is not None:
            self.reply.cancel()
        self.stop_button.setEnabled(False)  # until the job confirms: a second click changes nothing

    def _on_escape(self) -> None:
        if self._busy:
            self.stop()
        elif self.editing_message_id is not None:
            self.cancel_edit()

    def _turn_ready(self, turn: TurnPrepared, user_view: "MessageView | None") -> None:
        self._remove_views(list(turn.hidden))
        if user_view is not None and turn.user_message is not None:
            user_view.set_message(turn.user_message)
        new = self.conversation_id is None
        if turn.conversation is not None:
            self.conversation_id = turn.conversation.id
            self.title_label.setText(self._title_text(turn.conversation.title))
            # An incognito chat is in no list: the sidebar keeps showing nothing selected.
            if new and self.incognito is None:
                self.sig_conversation_changed.emit(turn.conversation.id)
        if self.incognito is None:
            self.sig_conversations_changed.emit()
        view = self.streaming_view
        if view is not None:
            view.set_sources(list(turn.sources))
        if turn.budget:
            self.budget_label.setText(passages_line(len(turn.sources), int(turn.budget.get("used") or 0),
                                                    int(turn.budget.get("total") or 0)))

    def _turn_failed(self, message: str, views: list[MessageView], text: str | None) -> None:
        for view in views:
            if view in self.views:
                self.views.remove(view)
                self.column_layout.removeWidget(view)
                view.deleteLater()
        for view in self.views:
            view.setEnabled(True)
        if not self.views:
            self._show_empty(True)
        if text and not self.composer.toPlainText():
            self.composer.setPlainText(text)  # nothing typed is lost
        self.streaming_view = None
        self._set_busy(False)
        self.stop_button.setEnabled(True)
        self.banner.show_message(message, "error")

    def _token(self, text: str, view: MessageView | None) -> None:
        if view is None:
            return
        if not view.text:
            view.body.clear()
        view.append_text(text)

    def _reply_ended(self, message, view: MessageView | None, kind: str, text: str) -> None:
        self.reply = None
        self.session = None
        self.streaming_view = None
        self.stop_button.setEnabled(True)
        if view is not None:
            if message is not None:
                view.set_message(message)
            elif not view.text and view in self.views:
                self.views.remove(view)
                self.column_layout.removeWidget(view)
                view.deleteLater()
        self._set_busy(False)
        if kind not in ("complete", "cancelled"):
            kept = " The partial reply was kept and marked interrupted." if message is not None and message.text \
                else ""
            self.banner.show_message(f"{text}{kept}", "error")
        if self.incognito is None:
            self.sig_conversations_changed.emit()
        self.sig_reply_finished.emit(message.status if message is not None else kind)
        self._refresh_actions()

    def _show_error(self, message: str, _exc: BaseException | None = None) -> None:
        self._loading = False
        self.banner.show_message(message, "error")

    def conversation_deleted(self, conversation_id: str) -> None:
        """The sidebar moved this conversation to the trash: show a fresh chat instead."""
        if conversation_id == self.conversation_id:
            self.new_conversation()

    def sizeHint(self) -> QSize:  # noqa: N802
        return QSize(720, 600)
