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
  conversation as shown and as sent to the model;
* ``documents``: the documents attached to the conversation, ``{"collections": None (all)
  or [collection ids], "only": bool}``; absent or None when the chat does not use them.
  Each reply then keeps the ids of the passages it was given (``Message.documents``, as
  ``"chunk:<id>"``) so its sources show again when the conversation is reopened, and the
  sentence quoted from them as ``"quote:<n>:<sentence>"`` (n: the source's number).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Iterable

from assistant.wording import counted

if TYPE_CHECKING:  # only for annotations; see the module docstring for why not at run time
    from assistant.app import Services
    from assistant.history.conversations import Conversation, Message
    from assistant.history.archive import SearchHit
    from assistant.models.library import ModelRecord
    from assistant.settings import SamplingParams

SETTING_MODEL = "model"
SETTING_SYSTEM_PROMPT = "system_prompt"
SETTING_HIDDEN = "hidden_messages"
SETTING_DOCUMENTS = "documents"
#: Prefix of a passage id in ``Message.documents``.
CHUNK_REF = "chunk:"
QUOTE_REF = "quote:"
#: Highest temperature for replies from documents: higher lets a small model wander off them.
GROUNDED_TEMPERATURE = 0.2
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
    documents: dict | None = None  # the attached documents (see SETTING_DOCUMENTS)
    sources: dict = field(default_factory=dict)  # reply message id -> [source dicts]


@dataclass
class Turn:
    """Everything a reply needs, prepared on a worker thread before the engine is asked."""

    conversation: "Conversation"
    user_message: "Message | None"  # None when regenerating
    prompt: list  # [{"role", "content"}] as the engine takes it
    model: "ModelRecord"
    sampling: "SamplingParams"
    hidden: list = field(default_factory=list)  # message ids this turn took out of view
    sources: list = field(default_factory=list)  # source dicts of the passages in the prompt
    budget: dict | None = None  # {"used", "total"} prompt tokens of passages, with documents
    refuse: bool = False  # "only from my documents" and nothing relevant: no model call


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
    from assistant.models.library import LibraryError

    try:
        return services.library.for_task("chat").id
    except LibraryError:
        return None


def _model_for(services: "Services", model_id: str | None) -> "ModelRecord":
    from assistant.models.library import LibraryError

    if model_id:
        try:
            return services.library.get(model_id)
        except LibraryError:
            pass  # removed since it was chosen: fall back to the model routed for chat
    return services.library.for_task("chat")


def library_view(services: "Services") -> LibraryView:
    from assistant.models.library import TASKS, LibraryError

    effective = {}
    for task in TASKS:
        try:
            effective[task] = services.library.for_task(task).id
        except LibraryError:
            effective[task] = None
    return LibraryView(services.library.list(), services.library.routes(), effective, tuple(TASKS))


def import_models(services: "Services", paths: Iterable[str]) -> ImportOutcome:
    """Add each file; a refused file leaves the library unchanged and gives one message."""
    from assistant.models.library import LibraryError

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
    messages = _visible_messages(services, conversation_id)
    sources = {m.id: stored_sources(services, m.documents) for m in messages if m.role == "assistant" and m.documents}
    return ConversationView(conversation, messages, model_id, system_prompt, chat_models(services),
                            documents=conversations.get_setting(conversation_id, SETTING_DOCUMENTS),
                            sources={k: v for k, v in sources.items() if v})


# ----- documents in the chat ---------------------------------------------------------------------
def collection_label(collection: dict) -> str:
    """A collection as the lists show it: its name and how many files it holds."""
    return f"{collection['name']} ({counted(int(collection['files']), 'file')})"


def document_collections(services: "Services") -> list[dict]:
    """The collections the chat can attach: id, name, files, chunks."""
    from assistant.documents.collections import Documents

    return Documents(services.store, None).collections()


def _source_dict(number: int, chunk: dict) -> dict:
    page, heading = chunk.get("page"), chunk.get("heading") or ""
    location = f"page {page}" + (f", {heading}" if heading else "") if page else (heading or "(beginning)")
    return {"number": number, "chunk_id": int(chunk["id"]), "path": chunk["path"], "file": os.path.basename(chunk["path"]),
            "location": location, "passage": chunk["text"]}


def stored_sources(services: "Services", refs: list) -> list[dict]:
    """The sources of a stored reply, numbered as they were in its prompt; passages since
    removed from the index are left out."""
    from assistant.documents.collections import Documents

    documents = Documents(services.store, None)
    found = []
    quotes: dict[int, str] = {}
    for number, ref in enumerate(refs or [], start=1):
        text = str(ref)
        if text.startswith(CHUNK_REF) and text[len(CHUNK_REF):].isdigit():
            chunk = documents.chunk(int(text[len(CHUNK_REF):]))
            if chunk is not None:
                found.append(_source_dict(number, chunk))
        elif text.startswith(QUOTE_REF):
            quoted_number, _, sentence = text[len(QUOTE_REF):].partition(":")
            if quoted_number.isdigit():
                quotes[int(quoted_number)] = sentence
    for source in found:
        if source["number"] in quotes:
            source["quote"] = quotes[source["number"]]
    return found


def source_refs(sources: list[dict]) -> list[str]:
    """What a reply keeps of its sources (see the module docstring); the quote goes last so the
    chunk refs keep the numbers they had in the prompt."""
    refs = [f"{CHUNK_REF}{source['chunk_id']}" for source in sources]
    refs += [f"{QUOTE_REF}{source['number']}:{source['quote']}" for source in sources if source.get("quote")]
    return refs


def open_source(services: "Services", chunk_id: int) -> dict:
    """One passage with its file and place, for the source viewer."""
    from assistant.documents.collections import Documents

    chunk = Documents(services.store, None).chunk(int(chunk_id))
    if chunk is None:
        raise LookupError("This passage is no longer in your documents (the file was removed or re-indexed).")
    return _source_dict(0, chunk)


def _ground(services: "Services", prompt: list[dict], question: str, choice: dict, model: "ModelRecord") -> dict:
    """Put the passages that answer ``question`` into the prompt's system message, within
    the token budget left by the conversation itself. Worker thread (engine and store)."""
    from assistant.documents.grounded import GroundedChat
    from assistant.documents.retrieval import Scope

    _documents, retriever = services.documents_core()
    engine = services.engine
    n_ctx = int(services.settings.engine.n_ctx)
    history = "\n".join(m["content"] for m in prompt[:-1])
    used_by_history = len(engine.tokenize(model.path, history, add_special=False)) if history else 0
    reply_tokens = int(services.settings.sampling.max_tokens or 256)
    chat = GroundedChat(retriever, engine, model.path, context_tokens=max(256, n_ctx - used_by_history),
                        reply_tokens=min(reply_tokens, n_ctx // 4))
    collections = choice.get("collections")
    prepared = chat.prepare(question, Scope(collections=list(collections)) if collections else None,
                            only_documents=bool(choice.get("only")))
    # GroundedChat's two messages: its instruction goes with the persona, its question with
    # the passages replaces the last user message (the same question).
    instruction, asked = prepared.messages[0]["content"], prepared.messages[-1]["content"]
    if prompt and prompt[0]["role"] == "system":
        prompt[0] = {"role": "system", "content": prompt[0]["content"].rstrip() + "\n\n" + instruction}
    else:
        prompt.insert(0, {"role": "system", "content": instruction})
    prompt[-1] = {"role": "user", "content": asked}
    sources = [{"number": s.number, "chunk_id": s.chunk_id, "path": s.path, "file": os.path.basename(s.path),
                "location": s.location, "passage": s.passage} for s in prepared.sources]
    # The sentence that most likely answers, shown above the reply (see assistant/documents/grounded.py).
    if prepared.quote is not None:
        sources[prepared.quote.number - 1]["quote"] = prepared.quote.text
    return {"sources": sources, "budget": prepared.budget, "refuse": prepared.refuse}


def _grounded_sampling(sampling: "SamplingParams") -> "SamplingParams":
    """Answers from documents keep close to the passages: a low temperature (0.2 at most)."""
    from dataclasses import replace

    return replace(sampling, temperature=min(float(sampling.temperature), GROUNDED_TEMPERATURE))


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
    documents: dict | None = None,
) -> Turn:
    """Store the user's message (creating the conversation if needed) and prepare the reply.

    ``replace_from``: the id of the user message being edited; it and everything after it
    leave the conversation before the edited text is added. ``documents``: the attached
    documents (see ``SETTING_DOCUMENTS``); the passages that answer the message go into the
    prompt.
    """
    from assistant.history.conversations import DEFAULT_TITLE

    conversations = services.conversations
    model = _model_for(services, model_id)
    if conversation_id is None:
        conversation = conversations.create(_auto_title(text))
        conversation_id = conversation.id
        conversations.set_setting(conversation_id, SETTING_MODEL, model.id)
        conversations.set_setting(conversation_id, SETTING_SYSTEM_PROMPT, system_prompt)
        if documents:
            conversations.set_setting(conversation_id, SETTING_DOCUMENTS, documents)
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
    prompt = build_prompt(system_prompt, _visible_messages(services, conversation_id))
    grounded = _ground(services, prompt, text, documents, model) if documents else {}
    sampling = services.settings.sampling
    return Turn(
        conversation=conversations.get(conversation_id),
        user_message=user_message,
        prompt=prompt,
        model=model,
        sampling=_grounded_sampling(sampling) if grounded else sampling,
        hidden=hidden,
        **grounded,
    )


def regenerate_turn(services: "Services", conversation_id: str, reply_id: str | None, model_id: str | None,
                    system_prompt: str) -> Turn:
    """Take the last reply out of view and prepare a new one for the same question."""
    model = _model_for(services, model_id)
    hidden = [reply_id] if reply_id else []
    _hide(services, conversation_id, hidden)
    visible = _visible_messages(services, conversation_id)
    prompt = build_prompt(system_prompt, visible)
    documents = services.conversations.get_setting(conversation_id, SETTING_DOCUMENTS)
    question = next((m.text for m in reversed(visible) if m.role == "user"), "")
    grounded = _ground(services, prompt, question, documents, model) if documents and question else {}
    sampling = services.settings.sampling
    return Turn(
        conversation=services.conversations.get(conversation_id),
        user_message=None,
        prompt=prompt,
        model=model,
        sampling=_grounded_sampling(sampling) if grounded else sampling,
        hidden=hidden,
        **grounded,
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
