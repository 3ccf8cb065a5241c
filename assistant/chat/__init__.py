"""The one chat session of the app: the window, ``assistant chat``, ``assistant ask``, the
Documents page and the API's ``/v1/chat/completions`` all build their replies here.

- :mod:`assistant.chat.session`: :class:`ChatSession` (``turn``, ``regenerate``,
  ``edit_and_resend``, ``reply``), a plain generator of typed events that owns the store writes
  of the reply;
- :mod:`assistant.chat.events`: those events;
- :mod:`assistant.chat.prompt`: the prompt (persona, turns, passages from the documents), the
  automatic title, the per-conversation settings;
- :mod:`assistant.chat.sources`: the documents a reply was given, as shown and as stored;
- :mod:`assistant.chat.views`: what a chat screen shows of a stored conversation.

Nothing is imported here, so that a screen importing the light modules (events, prompt)
does not pull in the store and the engine client before its first paint.
"""
