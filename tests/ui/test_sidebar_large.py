"""A long history in the sidebar: opening an old conversation does not touch every row."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from PySide6.QtCore import QModelIndex, QPersistentModelIndex, Qt
from pytestqt.qtbot import QtBot

from llamadesk.chat.store import ConversationStore
from llamadesk.ui.sidebar import ID_ROLE, PAGE_SIZE, ConversationListModel, Sidebar

pytestmark = pytest.mark.qt_log_ignore("propagateSizeHints")
COUNT = 3000


class CountingModel(ConversationListModel):
    """The sidebar's model, counting how often the view asks it for data."""

    calls = 0

    def data(
        self, index: QModelIndex | QPersistentModelIndex, role: int = Qt.ItemDataRole.DisplayRole
    ) -> Any:
        CountingModel.calls += 1
        return super().data(index, role)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[ConversationStore]:
    with ConversationStore(tmp_path / "conversations.sqlite3") as opened:
        with opened.batch():
            for number in range(COUNT):
                conversation = opened.create_conversation()
                opened.add_message(
                    conversation.id, "user", f"question {number} about a rather long topic", parent_id=None
                )
        yield opened


def test_selecting_the_oldest_of_thousands_asks_only_for_visible_rows(
    qtbot: QtBot, store: ConversationStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("llamadesk.ui.sidebar.ConversationListModel", CountingModel)
    sidebar = Sidebar(store)
    qtbot.addWidget(sidebar)
    sidebar.resize(280, 600)
    sidebar.show()
    qtbot.waitExposed(sidebar)
    assert sidebar.model.rowCount() == PAGE_SIZE

    CountingModel.calls = 0
    sidebar.select(1)  # the oldest: at the very end of the list
    assert sidebar.view.currentIndex().data(ID_ROLE) == 1
    assert sidebar.model.rowCount() == COUNT
    assert CountingModel.calls < COUNT  # not a size query per row

    CountingModel.calls = 0
    sidebar.refresh()  # as after every reply: the oldest stays selected
    assert sidebar.view.currentIndex().data(ID_ROLE) == 1
    assert CountingModel.calls < COUNT


def test_search_hits_keep_their_snippet_line(qtbot: QtBot, store: ConversationStore) -> None:
    sidebar = Sidebar(store)
    qtbot.addWidget(sidebar)
    sidebar.resize(280, 600)
    sidebar.show()
    store.rename_conversation(1, "Zebra notes")
    store.add_message(
        2, "assistant", "Zebras sleep standing up.", parent_id=store.get_conversation(2).active_leaf_id
    )
    sidebar.search.setText("zebra")
    qtbot.keyClick(sidebar.search, Qt.Key.Key_Return)
    assert sidebar.model.rowCount() == 2
    title_hit, message_hit = (sidebar.view.sizeHintForIndex(sidebar.model.index(row)) for row in (0, 1))
    assert "\n" in sidebar.model.index(1).data()
    assert message_hit.height() > title_hit.height()  # the snippet has its own line
