"""Every error a user can cause in the core, in one place (after Anki's ``pylib/anki/errors.py``).

Each class derives from :class:`UserError` (defined in ``engine/errors.py``, the layer every
process imports, so that the engine's own errors belong to the same family): ``str(exc)`` is
one sentence for people, and the window and the command line each show it through one
handler, without a traceback. Anything else that escapes is a bug, and only then is a
traceback written (to stderr, never to the screen).

Several classes also derive from the built-in exception they replaced (ValueError, OSError,
KeyError), so code that catches the built-in one still does. Any thread.
"""

from __future__ import annotations

from pathlib import Path

from sqlcipher3 import dbapi2 as _dbapi

from engine.errors import UserError

__all__ = [
    "UserError", "StoreError", "BackupError", "NewerSchemaError", "DiskFullError", "CorruptDatabaseError",
    "ConversationError", "ConversationNotFoundError", "HistoryError", "LibraryError", "AdapterError",
    "TaskInputError", "TranslationError", "SentimentError", "StudentError", "TrainingJobError",
    "DocumentsError", "IngestError", "ApiServerError", "SettingsError", "StudyError", "ChatError", "user_message",
]


# ----- the store -------------------------------------------------------------------------------
class StoreError(UserError):
    """A problem with the database that the user can act on."""


class BackupError(StoreError):
    """A backup that cannot be made, or a restore that cannot be done; nothing was changed."""


class NewerSchemaError(StoreError):
    """The database was written by a newer version of the app."""


class DiskFullError(StoreError, _dbapi.OperationalError):
    """A write found the disk full; it was rolled back and everything saved before is intact.
    Also an OperationalError, so code that already handled SQLite's own error still does."""


class CorruptDatabaseError(StoreError):
    """The database file is damaged; ``path`` is the file."""

    def __init__(self, message: str, path: Path):
        super().__init__(message)
        self.path = path


# ----- conversations and history ---------------------------------------------------------------
class ConversationError(UserError):
    """Something asked of a conversation cannot be done."""


class ConversationNotFoundError(ConversationError, KeyError):
    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0]) if self.args else "Conversation not found."


class HistoryError(UserError):
    """A search, export, import, backup or restore that cannot be done."""


class ChatError(UserError):
    """A chat turn that cannot be made (nothing to regenerate, a message that is not the user's)."""


# ----- models ----------------------------------------------------------------------------------
class LibraryError(UserError, ValueError):
    """A problem with a model file or the library."""


class AdapterError(UserError, ValueError):
    """An adapter choice that cannot be made."""


# ----- tasks -----------------------------------------------------------------------------------
class TaskInputError(LibraryError):
    """Input the user can fix (empty text, unsupported language, unreadable file)."""


class TranslationError(TaskInputError):
    pass


class SentimentError(TaskInputError):
    pass


class StudentError(SentimentError):
    """A sentiment student cannot be trained, saved or loaded."""


# ----- training, documents, settings, the API --------------------------------------------------
class TrainingJobError(UserError, ValueError):
    """A training job that cannot start or went wrong."""


class DocumentsError(UserError, ValueError):
    """A problem with the documents (unknown collection, nothing to add)."""


class IngestError(UserError):
    """A file that cannot be indexed."""


class StudyError(UserError):
    """A deck, a card or a review that cannot be made (nothing to study, a bad import file)."""


class SettingsError(UserError, ValueError):
    """A setting out of its range."""


class ApiServerError(UserError, OSError):
    """The API server cannot start (address refused, port in use...). An OSError too, like the
    socket errors it explains."""


def user_message(exc: BaseException) -> str:
    """The one sentence the window and the command line show for ``exc``.

    A :class:`UserError` says it itself. An OSError from the disk (permission denied, a file
    gone, disk full) is something the user can act on too, so it is put in words with its file.
    Anything else is a bug: the sentence says so, and that nothing was lost (every write of the
    app is atomic or committed as it goes).
    """
    if isinstance(exc, UserError) and str(exc):
        return str(exc)
    if isinstance(exc, OSError) and exc.strerror:
        where = f": {exc.filename}" if exc.filename else ""
        return f"{exc.strerror}{where}."
    return f"Something went wrong ({type(exc).__name__}: {exc}). Nothing you wrote was lost."


def is_expected(exc: BaseException) -> bool:
    """Whether ``exc`` is one the user caused (shown without a traceback) rather than a bug."""
    return isinstance(exc, UserError) or (isinstance(exc, OSError) and bool(exc.strerror))
