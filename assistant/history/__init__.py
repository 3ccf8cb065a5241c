"""Conversations and their messages, full-text search, export and import of the history."""
