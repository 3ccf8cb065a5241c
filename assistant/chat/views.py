"""What a chat screen shows of a conversation, read in one call. Worker threads (the store).

Each call that reads or changes a conversation takes ``conversations``: the store's
(``services.conversations``, the default) or an incognito chat's
(:class:`~assistant.chat.incognito.IncognitoConversations`, in memory only)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from assistant.chat import prompt as chat_prompt
from assistant.chat.sources import stored_sources
from assistant.errors import LibraryError

if TYPE_CHECKING:
    from assistant.app import Services
    from assistant.history.conversations import Conversation


@dataclass(frozen=True)
class Persona:
    """The system prompt a turn with the chosen model uses, as the chat's Persona… box shows it."""

    text: str
    # Where it comes from: one of model_settings' FROM_CONVERSATION (typed for this conversation),
    # FROM_MODEL_SETTINGS (Models -> Settings…), FROM_APP (the Settings page's default) or
    # FROM_MODEL_DEFAULTS (nothing chosen: the model's tuned default, often none).
    source: str


@dataclass
class ConversationView:
    """One conversation (or a new one not yet stored), as the chat pane shows it."""

    conversation: "Conversation | None"
    messages: list  # visible Message objects, oldest first
    model_id: str | None
    # The conversation's own choice as the session takes it (stored, or the app's default for a
    # new one); ``persona`` is what a turn with ``model_id`` actually uses, which may differ.
    system_prompt: str
    models: list  # ModelRecord objects that can chat
    persona: Persona
    documents: dict | None = None  # the attached documents (see assistant.chat.prompt)
    sources: dict = field(default_factory=dict)  # reply message id -> [source dicts]
    variants: dict = field(default_factory=dict)  # shown reply id -> ids of all its variants, oldest first


def chat_models(services: "Services") -> list:
    """The models that can chat: GGUF files whose tasks include chat."""
    return [m for m in services.library.list() if "chat" in m.tasks and m.is_gguf]


def default_chat_model_id(services: "Services") -> str | None:
    try:
        return services.library.for_task("chat").id
    except LibraryError:
        return None


def persona_for(services: "Services", model_id: str | None, chosen: str | None) -> Persona:
    """The persona a turn with ``model_id`` uses when the conversation chose ``chosen`` (None or
    empty: nothing), decided as the session decides it (``ChatSession._prepared``). Worker thread:
    reads the model's own settings from the store, also for an incognito chat (they are the
    model's, not the conversation's)."""
    from assistant.chat import model_defaults
    from assistant.models import model_settings

    own = model_settings.load(services.store, model_id) if model_id else model_settings.ModelSettings()
    app_default = services.settings.default_system_prompt
    text = model_settings.system_prompt_for(own, chosen, app_default) or ""
    source = model_settings.system_prompt_source(own, chosen, app_default)
    if not text and model_id:  # as the session falls back (`or`), so the box shows the same
        try:
            text = model_defaults.for_model(services.library.get(model_id)).system_prompt
        except LibraryError:
            pass  # removed meanwhile: the pane's next model list says so
    return Persona(text, source)


def new_conversation_view(services: "Services") -> ConversationView:
    model_id = default_chat_model_id(services)
    chosen = services.settings.default_system_prompt
    return ConversationView(None, [], model_id, chosen, chat_models(services), persona_for(services, model_id, chosen))


def load_conversation(services: "Services", conversation_id: str, conversations=None) -> ConversationView:
    from assistant.chat.session import ChatSession

    conversations = conversations if conversations is not None else services.conversations
    conversation = conversations.get(conversation_id)
    session = ChatSession(services, conversation_id, conversations=conversations)
    messages = session.visible_messages()
    sources = {m.id: stored_sources(services, m.documents, m.metrics) for m in messages
               if m.role == "assistant" and m.documents}
    variants = {m.id: [v.id for v in conversations.variants(m.id)] for m in messages if m.variant_of}
    model_id = session.model_id or default_chat_model_id(services)
    return ConversationView(conversation, messages, model_id, session.system_prompt, chat_models(services),
                            persona_for(services, model_id, session.system_prompt), documents=session.documents,
                            sources={k: v for k, v in sources.items() if v}, variants=variants)


def choose_variant(services: "Services", message_id: str, conversations=None) -> tuple:
    """Show the variant ``message_id`` of a regenerated reply from now on (and send it to the
    model on the next turn); returns that Message and its sources."""
    conversations = conversations if conversations is not None else services.conversations
    message = conversations.choose_variant(message_id)
    return message, stored_sources(services, message.documents, message.metrics) if message.documents else []


def set_conversation_setting(services: "Services", conversation_id: str, key: str, value,
                             conversations=None) -> None:
    """Keep one of the settings named in :mod:`assistant.chat.prompt` for the conversation."""
    if key not in (chat_prompt.SETTING_MODEL, chat_prompt.SETTING_SYSTEM_PROMPT, chat_prompt.SETTING_DOCUMENTS):
        raise ValueError(f"unknown conversation setting {key!r}")
    conversations = conversations if conversations is not None else services.conversations
    conversations.set_setting(conversation_id, key, value)
