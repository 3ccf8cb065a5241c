"""Atomic file writes now live in :mod:`engine.atomic` (the lowest shared base, which training
uses too); these names stay importable from here until every caller imports them from there."""

from engine.atomic import (  # noqa: F401
    WriteFailedError,
    atomic_write,
    atomic_write_bytes,
    atomic_write_text,
    fsync_dir,
)

__all__ = ["WriteFailedError", "atomic_write", "atomic_write_bytes", "atomic_write_text", "fsync_dir"]
