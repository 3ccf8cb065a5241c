"""Settings → Backups and the damaged-database banner (issue 24): the backups listed newest first
with date and size, "Back up now", "Restore…" (confirmed, the panes refilled from the restored
data, the replaced database kept), and a damaged database restored from the newest backup in
one click (or the words that there is none)."""

from __future__ import annotations

import os
import shutil

from assistant.backups import REPLACED_PREFIX, list_backups
from assistant.config import AppPaths
from tests.ui.test_lock import _seed_conversation


def _backups(qtbot, window):
    window.show_page("settings")
    section = window.settings_pane.backups
    qtbot.waitUntil(lambda: bool(section.rows), timeout=30000)
    return section


def test_backups_are_listed_made_and_restored(qtbot, window, services):
    kept_id = _seed_conversation(services, "kept in the backup")
    section = _backups(qtbot, window)
    before = len(section.rows)  # the automatic one of the day, made at start
    assert before >= 1 and "A backup is made automatically each day" in section.findChild(type(section.status)).text()

    section.back_up_button.click()
    qtbot.waitUntil(lambda: len(section.rows) == before + 1, timeout=30000)
    assert "Backed up to" in section.status.text()
    newest = section.rows[0]
    assert newest.path == list_backups(services.paths.backups_dir)[-1]  # newest first
    assert [row.made for row in section.rows] == sorted((row.made for row in section.rows), reverse=True)
    text = section.list.item(0).text()
    assert newest.when in text and ("KB" in text or "MB" in text or "kB" in text or "B" in text)

    later_id = _seed_conversation(services, "written after the backup")
    window.sidebar.refresh()
    qtbot.waitUntil(lambda: window.sidebar.item_for(later_id) is not None, timeout=10000)
    asked = []
    section.confirm = lambda row: asked.append(row) or False  # "Cancel": nothing happens
    section.list.setCurrentRow(0)
    section.restore_button.click()
    assert asked == [newest] and window.state == "open" and window.services is services

    section.confirm = lambda row: True
    section.restore_button.click()
    qtbot.waitUntil(lambda: window.state == "open" and "Restored the backup" in window.settings_pane.backups.status.text(),
                    timeout=60000)
    assert window.current_page == "settings"
    qtbot.waitUntil(lambda: window.sidebar.item_for(kept_id) is not None, timeout=10000)
    assert window.sidebar.item_for(later_id) is None
    assert {c.id for c in services.conversations.list()} == {kept_id}
    kept = [p for p in services.paths.backups_dir.iterdir() if p.name.startswith(REPLACED_PREFIX)]
    assert kept, "the replaced database is kept in the backups folder"


def _damage(database) -> None:
    for suffix in ("-wal", "-shm"):
        try:
            os.unlink(f"{database}{suffix}")
        except FileNotFoundError:
            pass
    with open(database, "r+b") as handle:
        handle.write(os.urandom(4096))  # the first page: no key reads it any more


def _window_over_damaged_data(qtbot, theme, paths):
    from ui.app import create_window

    window = create_window(theme=theme)
    window.show()
    qtbot.waitExposed(window)
    window.open_library(paths)
    qtbot.waitUntil(lambda: window.state == "failed", timeout=60000)
    return window


def test_a_damaged_database_is_restored_from_the_newest_backup_in_one_click(qtbot, theme, services):
    paths = AppPaths(services.paths.data_dir)
    conversation_id = _seed_conversation(services, "saved by the backup")
    services.backups.backup()
    services.close()
    _damage(paths.database)

    window = _window_over_damaged_data(qtbot, theme, paths)
    try:
        banner = window.window_banner
        qtbot.waitUntil(lambda: banner.action_button.isVisible(), timeout=30000)
        assert "damaged" in banner.label.text() and "The newest backup was made" in banner.label.text()
        assert banner.action_button.text() == "Restore the newest backup"
        banner.action_button.click()
        qtbot.waitUntil(lambda: window.state == "open", timeout=60000)
        assert "Restored the backup" in banner.label.text() and not banner.action_button.isVisible()
        qtbot.waitUntil(lambda: window.sidebar.item_for(conversation_id) is not None, timeout=30000)
        assert any(p.name.startswith(REPLACED_PREFIX) for p in paths.backups_dir.iterdir())  # damaged file kept
    finally:
        window.shutdown()
        window.close()


def test_a_damaged_database_without_a_backup_says_so(qtbot, theme, services):
    paths = AppPaths(services.paths.data_dir)
    services.close()
    shutil.rmtree(paths.backups_dir)
    _damage(paths.database)

    window = _window_over_damaged_data(qtbot, theme, paths)
    try:
        banner = window.window_banner
        qtbot.waitUntil(lambda: "There is no backup to restore." in banner.label.text(), timeout=30000)
        assert not banner.action_button.isVisible() and window.services is None
    finally:
        window.shutdown()
        window.close()
