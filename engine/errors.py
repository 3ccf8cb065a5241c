"""The base class of every error a user can cause. Any thread, any process.

It lives in ``engine/`` because that is the lowest layer every process imports: the engine's
own user-facing errors (a malformed model file, a model too large for memory, a failed
request) derive from it as well as the core's, which ``assistant/errors.py`` collects.
The window and the command line each show such an error through one handler: ``str(exc)``
is the sentence for people, and no traceback is printed, because nothing went wrong in the
program itself.
"""

from __future__ import annotations


class UserError(Exception):
    """Something the user asked for cannot be done; ``str()`` says why, in words, for people."""
