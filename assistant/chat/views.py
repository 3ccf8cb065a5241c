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


@dataclass
class ConversationView:
    """One conversation (or a new one not yet stored), as the chat pane shows it."""

    conversation: "Conversation | None"
    messages: list  # visible Message objects, oldest first
    model_id: str | None
    system_prompt: str
    models: list  # ModelRecord objects that can chat
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


def new_conversation_view(services: "Services") -> ConversationView:
    return ConversationView(None, [], default_chat_model_id(services), services.settings.default_system_prompt,
                            chat_models(services))


def load_conversation(services: "Services", conversation_id: str, conversations=None) -> ConversationView:
    from assistant.chat.session import ChatSession

    conversations = conversations if conversations is not None else services.conversations
    conversation = conversations.get(conversation_id)
    session = ChatSession(services, conversation_id, conversations=conversations)
    messages = session.visible_messages()
    sources = {m.id: stored_sources(services, m.documents, m.metrics) for m in messages
               if m.role == "assistant" and m.documents}
    variants = {m.id: [v.id for v in conversations.variants(m.id)] for m in messages if m.variant_of}
    return ConversationView(conversation, messages, session.model_id or default_chat_model_id(services),
                            session.system_prompt, chat_models(services), documents=session.documents,
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
