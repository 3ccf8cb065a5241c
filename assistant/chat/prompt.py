"""What the model is sent for a chat turn, and the settings a conversation keeps.

Per-conversation settings (``Conversations.set_setting``):

* ``model``: the id of the model that answers in this conversation;
* ``system_prompt``: the conversation's persona / system prompt;
* ``hidden_messages``: ids of messages that were edited away (and, before replies kept
  variants, regenerated away). They stay in the store (and in exports) but leave the
  conversation as shown and as sent to the model. A regenerated reply is instead kept as a
  variant (``messages.variant_of``, ``chosen``): only the chosen variant is shown and sent;
* ``documents``: the documents attached to the conversation, ``{"collections": None (all) or
  [collection ids], "only": bool}``; absent or None when the chat does not use them.

Runs on worker threads or the CLI's main thread: grounding embeds and tokenizes through the engine.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Iterable

if TYPE_CHECKING:
    from assistant.app import Services
    from assistant.documents.grounded import GroundedChat
    from engine.settings import SamplingParams

SETTING_MODEL = "model"
SETTING_SYSTEM_PROMPT = "system_prompt"
SETTING_HIDDEN = "hidden_messages"
SETTING_DOCUMENTS = "documents"
#: Highest temperature for replies from documents: higher lets a small model wander off them.
GROUNDED_TEMPERATURE = 0.2
#: Longest automatic title taken from the first message: a sidebar line, not a paragraph.
AUTO_TITLE_CHARS = 60


def auto_title(text: str) -> str:
    """The title a new conversation takes from its first message."""
    line = " ".join(text.split())
    return line if len(line) <= AUTO_TITLE_CHARS else line[: AUTO_TITLE_CHARS - 1].rstrip() + "…"


def build_prompt(system_prompt: str, messages: Iterable) -> list[dict]:
    """The chat as the engine takes it: the persona first, then every non-empty turn."""
    prompt = [{"role": "system", "content": system_prompt}] if system_prompt and system_prompt.strip() else []
    for message in messages:
        # An empty interrupted reply says nothing; sending it would only confuse the model.
        if message.role in ("user", "assistant") and message.text.strip():
            prompt.append({"role": message.role, "content": message.text})
    return prompt


def grounded_sampling(sampling: "SamplingParams") -> "SamplingParams":
    """Answers from documents keep close to the passages: a low temperature (0.2 at most)."""
    return replace(sampling, temperature=min(float(sampling.temperature), GROUNDED_TEMPERATURE))


def grounded_chat(services: "Services", model_path: str, history_tokens: int = 0,
                  n_ctx: int | None = None) -> "GroundedChat":
    """The one way a :class:`GroundedChat` is built: the passages get the model's context less
    what the conversation already holds and the room kept for the reply (the reply's token
    limit, at most a quarter of the context). ``n_ctx``: the model's own context length (its
    settings), the app's when None."""
    from assistant.documents.grounded import GroundedChat

    _documents, retriever = services.documents_core()
    n_ctx = int(n_ctx or services.settings.engine.n_ctx)
    reply_tokens = int(services.settings.sampling.max_tokens or 256)
    return GroundedChat(retriever, services.engine, model_path, context_tokens=max(256, n_ctx - history_tokens),
                        reply_tokens=min(reply_tokens, n_ctx // 4))


def ground(services: "Services", prompt: list[dict], question: str, choice: dict, model_path: str,
           budget_tokens: int | None = None, n_ctx: int | None = None):
    """Put the passages that answer ``question`` into ``prompt`` (changed in place) within the
    token budget the conversation leaves; returns the :class:`~assistant.documents.grounded.Prepared`."""
    from assistant.documents.retrieval import Scope

    history = "\n".join(m["content"] for m in prompt[:-1])
    used_by_history = len(services.engine.tokenize(model_path, history, add_special=False)) if history else 0
    chat = grounded_chat(services, model_path, used_by_history, n_ctx)
    collections = choice.get("collections")
    prepared = chat.prepare(question, Scope(collections=list(collections)) if collections else None,
                            only_documents=bool(choice.get("only")), budget_tokens=budget_tokens)
    # GroundedChat's two messages: its instruction goes with the persona, its question with
    # the passages replaces the last user message (the same question).
    instruction, asked = prepared.messages[0]["content"], prepared.messages[-1]["content"]
    if prompt and prompt[0]["role"] == "system":
        prompt[0] = {"role": "system", "content": prompt[0]["content"].rstrip() + "\n\n" + instruction}
    else:
        prompt.insert(0, {"role": "system", "content": instruction})
    if prompt[-1]["role"] == "user":
        prompt[-1] = {"role": "user", "content": asked}
    else:
        prompt.append({"role": "user", "content": asked})
    return prepared
