"""Backups that happen (issue 24): at most daily at start, before every schema migration,
the last 7 kept, encrypted like the database, listed by the CLI."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from assistant.app import build_services
from assistant.backups import DEFAULT_KEEP_BACKUPS, Backups, list_backups
from assistant.config import AppPaths
from assistant.history.conversations import Conversations
from assistant.store import Store, schema_version
from assistant.vault.cipher import is_plaintext_database
from tests.keyring_for_tests import TEST_DATABASE_KEY, open_test_db

ROOT = Path(__file__).resolve().parents[2]


def test_a_start_takes_a_backup_at_most_daily_and_keeps_the_last_seven(data_dir):
    paths = AppPaths(data_dir).ensure()
    services = build_services(paths, sync_pack=False)
    try:
        [first] = list_backups(paths.backups_dir)
        assert not is_plaintext_database(first)  # encrypted like the database
        assert services.backups.backup_if_due() is None  # the same day: none
        day_later = time.time() + 25 * 3600
        made = services.backups.backup_if_due(now=day_later)
        assert made is not None and len(list_backups(paths.backups_dir)) == 2
        for _ in range(DEFAULT_KEEP_BACKUPS + 2):
            services.backups.backup()
        assert len(list_backups(paths.backups_dir)) == DEFAULT_KEEP_BACKUPS == 7
    finally:
        services.close()


def test_a_backup_is_taken_before_a_schema_migration(data_dir, monkeypatch):
    from assistant import store as store_module

    path = data_dir / "assistant.sqlite3"
    with monkeypatch.context() as older:  # the database as the previous version left it
        older.setattr(store_module, "MIGRATIONS", store_module.MIGRATIONS[:-1])
        store = Store(path, key=TEST_DATABASE_KEY)
        Conversations(store).create("before the update")
        store.close()
    taken = []
    backups_dir = data_dir / "backups"
    Store(path, key=TEST_DATABASE_KEY,
          before_migration=lambda opened: taken.append(Backups(opened, backups_dir).backup())).close()
    assert len(taken) == 1 and taken[0].is_file()
    copy = open_test_db(taken[0])
    assert copy.execute("PRAGMA user_version").fetchone()[0] == schema_version() - 1
    assert copy.execute("SELECT title FROM conversations").fetchall() == [("before the update",)]
    copy.close()
    Store(path, key=TEST_DATABASE_KEY,
          before_migration=lambda opened: taken.append("again")).close()
    assert len(taken) == 1  # an up-to-date file is not backed up on every open


def test_the_cli_lists_the_backups_newest_first(data_dir):
    build_services(AppPaths(data_dir).ensure(), sync_pack=False).close()
    result = subprocess.run([sys.executable, "-m", "ui.launcher", "history", "backups"], cwd=ROOT,
                            capture_output=True, text=True, timeout=120, env=dict(os.environ))
    assert result.returncode == 0, result.stderr
    assert "assistant-" in result.stdout and str(data_dir / "backups") in result.stdout
