"""Small operations the screens call, each one a few calls into the core.

Qt-free on purpose: every function here runs on a worker thread of :class:`ui.jobs.Jobs`
(never the GUI thread, because each one touches the database or the disk), and nothing here
needs Qt, so these can move into ``assistant/`` unchanged when the core grows a chat-session
API. Core modules are imported inside the functions: importing ``assistant.app`` pulls in
sqlite-utils, numpy and the GGUF reader, which must not delay the window's first paint.

Per-conversation settings (kept with ``Conversations.set_setting``):

* ``model``: the id of the model that answers in this conversation;
* ``system_prompt``: the conversation's persona / system prompt;
* ``hidden_messages``: ids of messages that were regenerated or edited away. The core has
  no way to delete one message, so they stay in the store (and in exports) but leave the
  conversation as shown and as sent to the model.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Iterable

if TYPE_CHECKING:  # only for annotations; see the module docstring for why not at run time
    from assistant.app import Services
    from assistant.conversations import Conversation, Message
    from assistant.history import SearchHit
    from assistant.models import ModelRecord
    from assistant.settings import SamplingParams

SETTING_MODEL = "model"
SETTING_SYSTEM_PROMPT = "system_prompt"
SETTING_HIDDEN = "hidden_messages"
#: Longest automatic title taken from the first message: a sidebar line, not a paragraph.
AUTO_TITLE_CHARS = 60


@dataclass
class ConversationView:
    """What the chat pane shows: one conversation (or a new one not yet stored)."""

    conversation: "Conversation | None"
    messages: list  # visible Message objects, oldest first
    model_id: str | None
    system_prompt: str
    models: list  # ModelRecord objects that can chat


@dataclass
class Turn:
    """Everything a reply needs, prepared on a worker thread before the engine is asked."""

    conversation: "Conversation"
    user_message: "Message | None"  # None when regenerating
    prompt: list  # [{"role", "content"}] as the engine takes it
    model: "ModelRecord"
    sampling: "SamplingParams"
    hidden: list = field(default_factory=list)  # message ids this turn took out of view


@dataclass
class LibraryView:
    models: list  # every ModelRecord
    routes: dict  # task -> model id the user chose
    effective: dict  # task -> model id that serves it now (None if none can)
    tasks: tuple


@dataclass
class ImportOutcome:
    added: list  # ModelRecord objects
    errors: list  # one clear message per refused file


# ----- models ------------------------------------------------------------------------------
def chat_models(services: "Services") -> list:
    return [m for m in services.library.list() if "chat" in m.tasks and m.is_gguf]


def _default_chat_model_id(services: "Services") -> str | None:
    from assistant.models import LibraryError

    try:
        return services.library.for_task("chat").id
    except LibraryError:
        return None


def _model_for(services: "Services", model_id: str | None) -> "ModelRecord":
    from assistant.models import LibraryError

    if model_id:
        try:
            return services.library.get(model_id)
        except LibraryError:
            pass  # removed since it was chosen: fall back to the model routed for chat
    return services.library.for_task("chat")


def library_view(services: "Services") -> LibraryView:
    from assistant.models import TASKS, LibraryError

    effective = {}
    for task in TASKS:
        try:
            effective[task] = services.library.for_task(task).id
        except LibraryError:
            effective[task] = None
    return LibraryView(services.library.list(), services.library.routes(), effective, tuple(TASKS))


def import_models(services: "Services", paths: Iterable[str]) -> ImportOutcome:
    """Add each file; a refused file leaves the library unchanged and gives one message."""
    from assistant.models import LibraryError

    outcome = ImportOutcome([], [])
    for path in paths:
        try:
            outcome.added.append(services.library.add(path, n_ctx=services.settings.engine.n_ctx))
        except LibraryError as exc:
            outcome.errors.append(str(exc))
    return outcome


def remove_model(services: "Services", model_id: str, delete_file: bool, confirmed: bool) -> "ModelRecord":
    return services.library.remove(model_id, delete_file=delete_file, confirmed=confirmed)


def set_route(services: "Services", task: str, model_id: str | None) -> LibraryView:
    services.library.set_route(task, model_id)
    return library_view(services)


# ----- conversations -------------------------------------------------------------------------
def list_conversations(services: "Services") -> list:
    return services.conversations.list()


def _hidden(services: "Services", conversation_id: str) -> list[str]:
    return list(services.conversations.get_setting(conversation_id, SETTING_HIDDEN, []) or [])


def _visible_messages(services: "Services", conversation_id: str) -> list:
    hidden = set(_hidden(services, conversation_id))
    return [m for m in services.conversations.messages(conversation_id) if m.id not in hidden]


def new_conversation_view(services: "Services") -> ConversationView:
    return ConversationView(None, [], _default_chat_model_id(services), services.settings.default_system_prompt,
                            chat_models(services))


def load_conversation(services: "Services", conversation_id: str) -> ConversationView:
    conversations = services.conversations
    conversation = conversations.get(conversation_id)
    model_id = conversations.get_setting(conversation_id, SETTING_MODEL) or _default_chat_model_id(services)
    system_prompt = conversations.get_setting(conversation_id, SETTING_SYSTEM_PROMPT)
    if system_prompt is None:
        system_prompt = services.settings.default_system_prompt
    return ConversationView(conversation, _visible_messages(services, conversation_id), model_id, system_prompt,
                            chat_models(services))


def build_prompt(system_prompt: str, messages: Iterable["Message"]) -> list[dict]:
    """The chat as the engine takes it: the persona first, then every non-empty turn."""
    prompt = [{"role": "system", "content": system_prompt}] if system_prompt and system_prompt.strip() else []
    for message in messages:
        # An empty interrupted reply says nothing; sending it would only confuse the model.
        if message.role in ("user", "assistant") and message.text.strip():
            prompt.append({"role": message.role, "content": message.text})
    return prompt


def _auto_title(text: str) -> str:
    line = " ".join(text.split())
    return line if len(line) <= AUTO_TITLE_CHARS else line[: AUTO_TITLE_CHARS - 1].rstrip() + "…"


def _hide(services: "Services", conversation_id: str, message_ids: list[str]) -> None:
    if message_ids:
        hidden = _hidden(services, conversation_id)
        services.conversations.set_setting(conversation_id, SETTING_HIDDEN, hidden + message_ids)


def start_turn(
    services: "Services",
    conversation_id: str | None,
    text: str,
    model_id: str | None,
    system_prompt: str,
    replace_from: str | None = None,
) -> Turn:
    """Store the user's message (creating the conversation if needed) and prepare the reply.

    ``replace_from``: the id of the user message being edited; it and everything after it
    leave the conversation before the edited text is added.
    """
    from assistant.conversations import DEFAULT_TITLE

    conversations = services.conversations
    model = _model_for(services, model_id)
    if conversation_id is None:
        conversation = conversations.create(_auto_title(text))
        conversation_id = conversation.id
        conversations.set_setting(conversation_id, SETTING_MODEL, model.id)
        conversations.set_setting(conversation_id, SETTING_SYSTEM_PROMPT, system_prompt)
    elif conversations.get(conversation_id).title == DEFAULT_TITLE:
        conversations.rename(conversation_id, _auto_title(text))
    hidden: list[str] = []
    if replace_from is not None:
        visible = _visible_messages(services, conversation_id)
        ids = [m.id for m in visible]
        if replace_from in ids:
            hidden = ids[ids.index(replace_from):]
            _hide(services, conversation_id, hidden)
    user_message = conversations.add_message(conversation_id, "user", text, model=model.id)
    return Turn(
        conversation=conversations.get(conversation_id),
        user_message=user_message,
        prompt=build_prompt(system_prompt, _visible_messages(services, conversation_id)),
        model=model,
        sampling=services.settings.sampling,
        hidden=hidden,
    )


def regenerate_turn(services: "Services", conversation_id: str, reply_id: str | None, model_id: str | None,
                    system_prompt: str) -> Turn:
    """Take the last reply out of view and prepare a new one for the same question."""
    model = _model_for(services, model_id)
    hidden = [reply_id] if reply_id else []
    _hide(services, conversation_id, hidden)
    return Turn(
        conversation=services.conversations.get(conversation_id),
        user_message=None,
        prompt=build_prompt(system_prompt, _visible_messages(services, conversation_id)),
        model=model,
        sampling=services.settings.sampling,
        hidden=hidden,
    )


def set_conversation_setting(services: "Services", conversation_id: str, key: str, value: Any) -> None:
    services.conversations.set_setting(conversation_id, key, value)


def rename_conversation(services: "Services", conversation_id: str, title: str) -> "Conversation":
    return services.conversations.rename(conversation_id, title)


def pin_conversation(services: "Services", conversation_id: str, pinned: bool) -> "Conversation":
    return services.conversations.pin(conversation_id, pinned)


def delete_conversation(services: "Services", conversation_id: str) -> "Conversation":
    """Move to the trash (recoverable: the sidebar offers Undo)."""
    return services.conversations.delete(conversation_id)


def restore_conversation(services: "Services", conversation_id: str) -> "Conversation":
    return services.conversations.restore(conversation_id)


def search_history(services: "Services", query: str, limit: int = 50) -> list["SearchHit"]:
    return services.history.search(query, limit=limit)


# ----- settings ----------------------------------------------------------------------------
def save_app_settings(services: "Services", values: dict) -> None:
    """Validate and store the settings pane's values; raises ValueError with the reason."""
    from assistant.settings import AppSettings, EngineSettings, SamplingParams

    current = services.settings.to_dict()
    engine = EngineSettings.from_dict({**current["engine"], **values.get("engine", {})})
    sampling = SamplingParams.from_dict({**current["sampling"], **values.get("sampling", {})})  # validates
    if int(engine.n_threads) < 1 or int(engine.n_ctx) < 256:
        raise ValueError("Threads must be at least 1 and the context at least 256 tokens.")
    rest = {k: v for k, v in values.items() if k not in ("engine", "sampling")}
    fresh = AppSettings(engine=engine, sampling=sampling,
                        **{k: rest.get(k, current[k]) for k in ("theme", "font_size", "suggestions_enabled",
                                                                  "default_system_prompt")})
    # Update in place: the engine client holds this same EngineSettings object, so the new
    # threads and context apply the next time the worker starts.
    for name, value in vars(fresh.engine).items():
        setattr(services.settings.engine, name, value)
    services.settings.sampling = fresh.sampling
    for name in ("theme", "font_size", "suggestions_enabled", "default_system_prompt"):
        setattr(services.settings, name, getattr(fresh, name))
    services.save_settings()
