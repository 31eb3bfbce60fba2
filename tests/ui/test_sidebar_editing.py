"""The conversation sidebar with real widgets and a real SQLite file: rename in place, empty states."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QLineEdit
from pytestqt.qtbot import QtBot

from llamadesk.chat.store import ConversationStore
from llamadesk.ui.sidebar import Sidebar

pytestmark = pytest.mark.qt_log_ignore("propagateSizeHints")


@pytest.fixture
def store(tmp_path: Path) -> Iterator[ConversationStore]:
    with ConversationStore(tmp_path / "conversations.sqlite3") as opened:
        yield opened


@pytest.fixture
def sidebar(qtbot: QtBot, store: ConversationStore) -> Sidebar:
    widget = Sidebar(store)
    qtbot.addWidget(widget)
    widget.resize(280, 500)
    widget.show()
    qtbot.waitExposed(widget)
    return widget


def open_editor(qtbot: QtBot, sidebar: Sidebar, row: int) -> QLineEdit:
    """F2 on a row, as a user renames in place."""
    sidebar.view.setFocus()
    sidebar.view.setCurrentIndex(sidebar.model.index(row))
    qtbot.keyClick(sidebar.view, Qt.Key.Key_F2)
    editor = sidebar.view.focusWidget()
    assert isinstance(editor, QLineEdit)
    return editor


def test_confirming_the_same_title_keeps_it_automatic(
    qtbot: QtBot, store: ConversationStore, sidebar: Sidebar
) -> None:
    conversation = store.create_conversation()
    first = store.add_message(conversation.id, "user", "How do zebras sleep?", parent_id=None)
    sidebar.refresh()
    editor = open_editor(qtbot, sidebar, 0)
    assert editor.text() == "How do zebras sleep?"
    with qtbot.waitSignal(sidebar.view.itemDelegate().closeEditor):  # Enter commits from the event loop
        qtbot.keyClick(editor, Qt.Key.Key_Return)
    assert not store.get_conversation(conversation.id).title_is_custom
    store.edit_message(first.id, "Do giraffes sleep standing?")  # the title still follows the question
    assert store.get_conversation(conversation.id).title == "Do giraffes sleep standing?"


def test_escape_cancels_an_in_place_rename(qtbot: QtBot, store: ConversationStore, sidebar: Sidebar) -> None:
    conversation = store.create_conversation()
    store.add_message(conversation.id, "user", "Original question", parent_id=None)
    sidebar.refresh()
    editor = open_editor(qtbot, sidebar, 0)
    editor.selectAll()
    qtbot.keyClicks(editor, "Something else")
    with qtbot.waitSignal(sidebar.view.itemDelegate().closeEditor):
        qtbot.keyClick(editor, Qt.Key.Key_Escape)
    assert sidebar.model.data(sidebar.model.index(0)) == "Original question"
    saved = store.get_conversation(conversation.id)
    assert (saved.title, saved.title_is_custom) == ("Original question", False)


def test_empty_list_says_why(qtbot: QtBot, store: ConversationStore, sidebar: Sidebar) -> None:
    assert sidebar.empty_label.isVisible()
    assert "No conversations yet" in sidebar.empty_label.text()

    conversation = store.create_conversation()
    store.add_message(conversation.id, "user", "apples and pears", parent_id=None)
    sidebar.refresh()
    assert not sidebar.empty_label.isVisible()

    sidebar.search.setText("zebra")
    qtbot.keyClick(sidebar.search, Qt.Key.Key_Return)
    assert sidebar.model.rowCount() == 0
    assert sidebar.empty_label.isVisible()
    assert sidebar.empty_label.text() == "No conversation matches “zebra”."

    sidebar.search.clear()
    qtbot.keyClick(sidebar.search, Qt.Key.Key_Return)
    assert sidebar.model.rowCount() == 1
    assert not sidebar.empty_label.isVisible()

    sidebar.delete(conversation.id)
    assert sidebar.empty_label.isVisible()
