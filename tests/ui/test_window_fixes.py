"""Window behaviour that needs no model: Preferences' data folder, "Export all", renaming, the log
folder, uncaught errors, the store's change events and "Delete all"."""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from PySide6.QtCore import QUrl
from PySide6.QtGui import QDesktopServices
from PySide6.QtWidgets import QInputDialog
from pytestqt.qtbot import QtBot

from llamadesk.app import create_main_window, report_uncaught_errors
from llamadesk.chat.store import ConversationStore
from llamadesk.logs import uninstall_excepthooks
from llamadesk.paths import get_paths
from llamadesk.ui.main_window import MainWindow
from llamadesk.ui.store_signals import StoreSignals

pytestmark = pytest.mark.qt_log_ignore("does not support propagateSizeHints")

MakeWindow = Callable[[], MainWindow]  # the make_window fixture (tests/ui/conftest.py)


def _conversation(window: MainWindow, title: str, text: str = "Hello") -> int:
    conversation = window.store.create_conversation(title=title)
    window.store.add_message(conversation.id, "user", text, parent_id=None)
    return conversation.id


def test_preferences_show_the_data_folder_of_the_home_the_window_was_built_for(
    qtbot: QtBot, tmp_path: Path
) -> None:
    other = tmp_path / "portable"  # not LLAMADESK_HOME: an explicit home, as a portable install has
    window = create_main_window(other)
    qtbot.addWidget(window)
    try:
        dialog = window.open_preferences()
        assert dialog.data_dir_edit.text() == str(get_paths(other).data_dir)
        dialog.close()
    finally:
        window.close()


def test_export_all_replaces_files_whole(qtbot: QtBot, make_window: MakeWindow, tmp_path: Path) -> None:
    window = make_window()
    conversation_id = _conversation(window, "Notes", "first version")
    folder = tmp_path / "exports"
    folder.mkdir()
    with qtbot.waitSignal(window.conversations.exportFinished, timeout=10_000):
        window.conversations.export_all(folder)
    (exported,) = folder.iterdir()
    # A backup tool that keeps copies as hard links: the copy must keep the old export.
    backup = tmp_path / "backup.md"
    os.link(exported, backup)
    user = window.store.active_path(conversation_id)[-1]
    window.store.add_message(conversation_id, "assistant", "second version", parent_id=user.id)
    with qtbot.waitSignal(window.conversations.exportFinished, timeout=10_000) as done:
        window.conversations.export_all(folder)
    assert done.args == [1]
    assert "second version" in exported.read_text(encoding="utf-8")
    assert "second version" not in backup.read_text(encoding="utf-8")


def test_rename_renames_the_conversation_open_when_it_was_asked_for(
    make_window: MakeWindow, monkeypatch: pytest.MonkeyPatch
) -> None:
    window = make_window()
    conversation_id = _conversation(window, "Old title")
    window.conversations.open_conversation(conversation_id)

    def ask(*_args: object, **_kwargs: object) -> tuple[str, bool]:
        # While the dialog is open, a reply that was too long takes its new chat back.
        window.conversations.switch_to(None, save_draft=False)
        return "New title", True

    monkeypatch.setattr(QInputDialog, "getText", ask)
    window.commands.rename_action.trigger()
    assert window.store.get_conversation(conversation_id).title == "New title"
    assert not window.banner.isVisible()


def test_help_menu_opens_the_log_folder(make_window: MakeWindow, monkeypatch: pytest.MonkeyPatch) -> None:
    window = make_window()
    opened: list[QUrl] = []
    monkeypatch.setattr(QDesktopServices, "openUrl", lambda url: opened.append(url) or True)
    help_menu = next(a.menu() for a in window.menuBar().actions() if a.text() == "&Help")
    action = next(a for a in help_menu.actions() if a.text() == "Open &log folder")
    action.trigger()
    assert [url.toLocalFile() for url in opened] == [str(window.paths.log_dir)]
    assert window.paths.log_dir.is_dir()


@pytest.fixture
def excepthooks() -> Iterator[None]:
    yield
    uninstall_excepthooks()


def test_an_error_nobody_caught_in_any_thread_is_logged_and_shown(
    qtbot: QtBot, make_window: MakeWindow, excepthooks: None, caplog: pytest.LogCaptureFixture
) -> None:
    window = make_window()
    report_uncaught_errors(window)

    def broken() -> None:
        raise ValueError("a bug in a background thread")

    with caplog.at_level(logging.CRITICAL, logger="llamadesk.logs"):
        worker = threading.Thread(target=broken, name="helper")
        worker.start()
        worker.join()
        qtbot.waitUntil(lambda: "a bug in a background thread" in window.banner.text(), timeout=5000)
    assert window.banner.kind == "error" and "Unexpected error in thread helper" in window.banner.text()
    assert any(r.exc_info and r.exc_info[0] is ValueError for r in caplog.records)


def test_the_list_follows_changes_made_on_another_thread(qtbot: QtBot, make_window: MakeWindow) -> None:
    window = make_window()
    assert window.sidebar.model.rowCount() == 0
    writer = threading.Thread(target=lambda: window.store.create_conversation(title="From the API"))
    writer.start()
    writer.join()
    qtbot.waitUntil(lambda: window.sidebar.model.rowCount() == 1, timeout=5000)
    assert window.sidebar.model.data(window.sidebar.model.index(0)) == "From the API"


def test_store_signals_stop_after_close(qtbot: QtBot, tmp_path: Path) -> None:
    with ConversationStore(tmp_path / "conversations.sqlite3") as store:
        signals = StoreSignals(store)
        with qtbot.waitSignal(signals.conversationsChanged, timeout=1000):
            store.create_conversation()
        signals.close()
        with (
            qtbot.assertNotEmitted(signals.conversationsChanged),
            qtbot.assertNotEmitted(signals.conversationChanged),
        ):
            conversation = store.create_conversation()
            store.rename_conversation(conversation.id, "Quiet")


def test_delete_all_compacts_off_the_gui_thread(
    qtbot: QtBot, make_window: MakeWindow, monkeypatch: pytest.MonkeyPatch
) -> None:
    window = make_window()
    first = _conversation(window, "One")
    _conversation(window, "Two")
    window.conversations.open_conversation(first)
    window.composer.set_text("still typing")
    threads: list[threading.Thread] = []
    delete_all = window.store.delete_all

    def watched() -> None:
        threads.append(threading.current_thread())
        delete_all()

    monkeypatch.setattr(window.store, "delete_all", watched)
    with qtbot.waitSignal(window.conversations.allDeleted, timeout=10_000):
        window.conversations.delete_all()
    assert threads and threads[0] is not threading.main_thread()
    assert window.store.count_conversations() == 0 and window.sidebar.model.rowCount() == 0
    assert window.conversation_id is None and window.composer.text() == "still typing"


def test_applying_general_preferences_keeps_the_api_server_settings(
    qtbot: QtBot, make_window: MakeWindow, llamadesk_home: Path
) -> None:
    """The Server tab applies its own section and the Think switch its own map: a temperature change in
    Preferences must reset neither."""
    from llamadesk.settings import Settings, SettingsStore

    settings = Settings()
    settings.server.port = 9999
    settings.server.allowed_origins = ["http://localhost:5173"]
    settings.thinking_defaults = {"some-model": "off"}  # the composer's Think switch, kept per model
    SettingsStore(get_paths(llamadesk_home).ensure().settings_file).save(settings)
    window = make_window()
    dialog = window.open_preferences()
    dialog.editor_widget("generation.temperature").setValue(0.3)
    dialog.apply_button.click()
    assert window.settings.generation.temperature == pytest.approx(0.3)
    assert window.settings.server.port == 9999
    assert window.settings.server.allowed_origins == ["http://localhost:5173"]
    assert window.settings.thinking_defaults == {"some-model": "off"}
    saved = SettingsStore(get_paths(llamadesk_home).settings_file).load()
    assert saved.server.port == 9999
    assert saved.thinking_defaults == {"some-model": "off"}
    dialog.close()
