"""Fixes from a review of the new screens as a newcomer sees them: the Hub's Type column in view, the
fit summary wrapped, labelled Server and Remote servers fields, the Documents panel's empty state and
skip reasons, and the Think switch saying its state. Real widgets, real files, real HTTP on 127.0.0.1."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QPlainTextEdit, QPushButton, QVBoxLayout, QWidget
from pytestqt.qtbot import QtBot

from hub_server import FakeHub, make_gguf
from llamadesk.settings import ServerSettings
from llamadesk.ui.composer import Composer
from llamadesk.ui.documents_panel import EMPTY_HINT, DocumentsPanel
from llamadesk.ui.hub_browser import HubBrowser
from llamadesk.ui.hub_worker import DownloadManager
from llamadesk.ui.remote_preferences import RemoteServersTab
from llamadesk.ui.server_preferences import ServerTab

pytestmark = pytest.mark.qt_log_ignore("does not support propagateSizeHints", "does not support raise")

TIMEOUT = 60_000


@pytest.fixture
def browser(qtbot: QtBot, tmp_path: Path) -> Iterator[HubBrowser]:
    tiny = make_gguf(tmp_path / "served" / "tiny.gguf", data_bytes=2048)
    with FakeHub() as hub:
        for repo, tags in (
            ("someone/chat-GGUF", ["gguf"]),
            ("someone/bge-small-GGUF", ["gguf", "embeddings"]),
        ):
            hub.add_repo(repo, downloads=10, tags=tags)
            hub.add_file(repo, "model-Q8_0.gguf", tiny)
        downloads = DownloadManager(tmp_path / "models", endpoint=hub.url)
        window = HubBrowser(downloads, token=lambda: "", endpoint=hub.url)
        qtbot.addWidget(window)
        window.resize(1100, 700)
        with qtbot.waitSignal(window.searchFinished, timeout=TIMEOUT):
            window.search()
        yield window
        window.shutdown()
        downloads.shutdown()


def test_the_hub_type_column_is_next_to_the_model_name_and_in_view(browser: HubBrowser) -> None:
    view, column = browser.results_view, browser.results.TYPE_COLUMN
    assert view.horizontalHeader().visualIndex(column) == 1
    browser.show()
    right_edge = view.columnViewportPosition(column) + view.columnWidth(column)
    assert 0 < right_edge <= view.viewport().width()  # seen without scrolling sideways


def test_the_hub_fit_summary_wraps_instead_of_being_cut_off(browser: HubBrowser) -> None:
    assert browser.file_hint.wordWrap()


def test_server_tab_fields_are_named_for_screen_readers_and_show_fitting_examples(qtbot: QtBot) -> None:
    tab = ServerTab(ServerSettings(), "")
    qtbot.addWidget(tab)
    origins = tab.form.editors["server.allowed_origins"].widget
    assert isinstance(origins, QPlainTextEdit)
    assert "http://localhost:3000" in origins.placeholderText() and "###" not in origins.placeholderText()
    for key, editor in tab.form.editors.items():
        assert editor.widget.accessibleName() == editor.spec.title, key
    assert tab.key_edit.accessibleName() == "API key"
    unnamed = [b.text() for b in tab.findChildren(QPushButton) if not b.toolTip()]
    assert unnamed == []


def test_remote_servers_tab_controls_have_tooltips_names_and_an_empty_state(qtbot: QtBot) -> None:
    tab = RemoteServersTab([], lambda server, key, done: None)
    qtbot.addWidget(tab)
    assert not tab.empty_label.isHidden()
    for button in (tab.remove_button, tab.check_button, tab.add_button, tab.set_key_button):
        assert button.toolTip(), button.text()
    for edit, name in (
        (tab.url_edit, "Server address"),
        (tab.name_edit, "Server name"),
        (tab.key_edit, "Server API key"),
    ):
        assert edit.accessibleName() == name and edit.toolTip()
    tab.url_edit.setText("http://127.0.0.1:9")
    assert tab.add_from_fields()
    assert tab.empty_label.isHidden()


def test_documents_panel_says_how_to_start_and_why_a_file_was_skipped(qtbot: QtBot, tmp_path: Path) -> None:
    panel = DocumentsPanel(tmp_path / "data")
    qtbot.addWidget(panel)
    with qtbot.waitSignal(panel.collectionsChanged, timeout=TIMEOUT):
        panel.reload()
    assert panel.status_label.text() == EMPTY_HINT
    with qtbot.waitSignal(panel.collectionsChanged, timeout=TIMEOUT):
        panel.create_collection("Notes")
    broken = tmp_path / "broken.pdf"
    broken.write_bytes(b"not a pdf at all")
    with qtbot.waitSignal(panel.indexingFinished, timeout=TIMEOUT):
        assert panel.add_paths("Notes", [broken])
    qtbot.waitUntil(lambda: panel.file_tree.topLevelItemCount() == 1, timeout=TIMEOUT)
    item = panel.file_tree.topLevelItem(0)
    assert item is not None and item.text(1) == "skipped" and item.text(3)
    assert item.text(3) in item.toolTip(1) and item.toolTip(1).startswith("<span>Skipped: ")
    panel.shutdown(10.0)


def test_the_think_switch_says_its_state_and_is_as_wide_as_send(qtbot: QtBot) -> None:
    holder = QWidget()
    QVBoxLayout(holder).addWidget(composer := Composer(holder))
    qtbot.addWidget(holder)
    holder.resize(700, 150)
    composer.set_thinking_control("flag", "on")
    holder.show()
    assert composer.think_button.text() == "Think: on"
    qtbot.mouseClick(composer.think_button, Qt.MouseButton.LeftButton)
    assert composer.thinking_choice() == "off" and composer.think_button.text() == "Think: off"
    composer.set_thinking_control("enable_thinking", "")
    assert composer.think_button.text() == "Think: on"
    assert composer.think_button.width() == composer.send_button.width()
