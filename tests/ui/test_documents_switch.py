"""Choosing another chat while a question's documents are searched: real window, real llama.cpp on the
starter model, real index and SQLite. As during a reply, the window stays on the chat being answered
and says why; the question is then answered in its own chat, with its sources."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from PySide6.QtCore import QModelIndex
from pytestqt.qtbot import QtBot

from llamadesk.paths import get_paths
from llamadesk.settings import Settings, SettingsStore
from llamadesk.ui.main_window import MainWindow
from llamadesk.ui.sidebar import ID_ROLE

pytestmark = [pytest.mark.model, pytest.mark.qt_log_ignore("does not support propagateSizeHints")]

MakeWindow = Callable[[], MainWindow]
TIMEOUT = 120_000


def _cookbook(home: Path, tmp_path: Path) -> Path:
    """Short greedy replies in ``home``; a folder with one Markdown file about bread."""
    settings = Settings()
    settings.generation.max_tokens = 8
    settings.generation.temperature = 0.0
    settings.runtime.n_ctx = 1024
    SettingsStore(get_paths(home).ensure().settings_file).save(settings)
    folder = tmp_path / "cookbook"
    folder.mkdir()
    (folder / "bread.md").write_text(
        "# Bread\n\nBread rises because yeast ferments sugar into carbon dioxide gas.\n", encoding="utf-8"
    )
    return folder


def _index_and_load(qtbot: QtBot, window: MainWindow, folder: Path, starter_model: Path) -> None:
    """Index ``folder`` as "Cookbook", use it in the open chat and load the starter model."""
    documents = window.documents
    with qtbot.waitSignal(documents.panel.indexingFinished, timeout=TIMEOUT):
        documents.panel.add_paths("Cookbook", [folder])
    documents.set_used("Cookbook", True)
    with qtbot.waitSignal(window.controller.modelLoaded, timeout=TIMEOUT):
        window.models.load_model(starter_model)


def _row_of(window: MainWindow, conversation_id: int) -> QModelIndex:
    model = window.sidebar.view.model()
    for row in range(model.rowCount()):
        index = model.index(row, 0)
        if index.data(ID_ROLE) == conversation_id:
            return index
    raise AssertionError(f"conversation {conversation_id} is not listed")


def test_choosing_another_chat_during_the_search_keeps_the_question_answered_in_its_chat(
    qtbot: QtBot, make_window: MakeWindow, llamadesk_home: Path, starter_model: Path, tmp_path: Path
) -> None:
    folder = _cookbook(llamadesk_home, tmp_path)

    window = make_window()
    other = window.store.create_conversation(title="Another chat")
    window.store.add_message(other.id, "user", "Hello there", parent_id=None)
    _index_and_load(qtbot, window, folder, starter_model)
    qtbot.waitUntil(lambda: window.sidebar.view.model().rowCount() >= 1, timeout=TIMEOUT)

    with qtbot.waitSignal(window.controller.generationFinished, timeout=TIMEOUT):
        window.replies.send("Why does bread rise?")
        asked = window.conversation_id
        assert asked is not None and window.generating  # the search is under way: no reply yet
        assert window.store.active_path(asked)[-1].role == "user"
        qtbot.waitUntil(lambda: _row_of(window, other.id).isValid(), timeout=TIMEOUT)
        window.sidebar.view.setCurrentIndex(_row_of(window, other.id))  # the user picks the other chat
        assert window.conversation_id == asked  # refused, as during a reply
        assert "before switching conversations" in window.banner.text()

    question, answer = window.store.active_path(asked)
    assert question.content == "Why does bread rise?" and answer.role == "assistant"
    assert answer.status in ("complete", "length")
    sources = window.store.message_sources([question.id])[question.id]
    assert sources.sources and sources.sources[0].title == "bread.md"
    assert [m.content for m in window.store.active_path(other.id)] == ["Hello there"]  # left alone
    assert not window.generating
    # Once the reply is written the other chat opens as usual.
    window.sidebar.view.setCurrentIndex(_row_of(window, other.id))
    assert window.conversation_id == other.id


def test_a_question_whose_chat_was_closed_during_the_search_goes_back_to_its_box_and_can_be_sent_again(
    qtbot: QtBot, make_window: MakeWindow, llamadesk_home: Path, starter_model: Path, tmp_path: Path
) -> None:
    folder = _cookbook(llamadesk_home, tmp_path)
    window = make_window()
    other = window.store.create_conversation(title="Another chat")
    window.store.add_message(other.id, "user", "Hello there", parent_id=None)
    _index_and_load(qtbot, window, folder, starter_model)

    window.replies.send("Why does bread rise?")
    asked = window.conversation_id
    assert asked is not None and window.generating
    window.conversations.switch_to(other.id)  # what happens when the open chat is closed from elsewhere
    qtbot.waitUntil(lambda: not window.generating, timeout=TIMEOUT)

    assert window.conversation_id == other.id
    assert window.store.active_path(asked) == []  # not answered, and no question left without a reply
    assert window.store.conversation_collections(asked) == ["Cookbook"]  # it still searches its documents
    assert "back in that chat's message box" in window.banner.text()
    assert [m.content for m in window.store.active_path(other.id)] == ["Hello there"]

    window.conversations.switch_to(asked)
    assert window.composer.text() == "Why does bread rise?"
    with qtbot.waitSignal(window.controller.generationFinished, timeout=TIMEOUT):
        window.replies.send(window.composer.text())
    question, answer = window.store.active_path(asked)
    assert question.content == "Why does bread rise?" and answer.role == "assistant"
    assert window.store.message_sources([question.id])[question.id].sources[0].title == "bread.md"


def test_stop_during_the_search_leaves_a_stopped_reply_that_regenerate_answers(
    qtbot: QtBot, make_window: MakeWindow, llamadesk_home: Path, starter_model: Path, tmp_path: Path
) -> None:
    folder = _cookbook(llamadesk_home, tmp_path)
    window = make_window()
    _index_and_load(qtbot, window, folder, starter_model)

    window.replies.send("Why does bread rise?")
    asked = window.conversation_id
    assert asked is not None and window.generating  # searching the documents
    window.replies.stop()
    assert not window.generating
    question, stopped = window.store.active_path(asked)
    assert question.content == "Why does bread rise?"
    assert stopped.role == "assistant" and stopped.status == "stopped" and stopped.content == ""
    # Regenerate answers this question (not an earlier one), searching its documents.
    with qtbot.waitSignal(window.controller.generationFinished, timeout=TIMEOUT):
        window.replies.regenerate()
    question_again, answer = window.store.active_path(asked)
    assert question_again.id == question.id
    assert answer.id != stopped.id and answer.status in ("complete", "length")
    assert window.store.message_sources([question.id])[question.id].sources[0].title == "bread.md"
