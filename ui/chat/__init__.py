"""The Chat page: ``pane`` (the page itself), ``message_view`` (one message), ``widgets``
(composer, banner, source dialog)."""
