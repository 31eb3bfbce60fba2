"""Documents in the window without a model: the panel's menu entry, a chat's collections, dropped files,
and citations that open their passage. Real SQLite, real files, real widgets."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from PySide6.QtCore import QMimeData, QPoint, Qt, QUrl
from PySide6.QtGui import QDragEnterEvent, QDropEvent, QGuiApplication, QKeySequence
from PySide6.QtWidgets import QApplication
from pytestqt.qtbot import QtBot

from llamadesk.chat.sources import CHAT_FILES_PREFIX, CITE_SCHEME
from llamadesk.chat.store import MessageSources, SourceRef
from llamadesk.ui.main_window import MainWindow
from llamadesk.ui.message_widget import MessageCard

pytestmark = pytest.mark.qt_log_ignore("does not support propagateSizeHints")

MakeWindow = Callable[[], MainWindow]
TIMEOUT = 60_000


def _card(window: MainWindow, message_id: int) -> MessageCard:
    card = next((c for c in window.chat_view.findChildren(MessageCard) if c.item.id == message_id), None)
    assert card is not None
    return card


def _drop_on_composer(window: MainWindow, path: Path) -> bool:
    editor = window.composer.editor
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(path))])
    actions = Qt.DropAction.CopyAction
    buttons, keys = Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier
    enter = QDragEnterEvent(QPoint(5, 5), actions, mime, buttons, keys)
    QApplication.sendEvent(editor.viewport(), enter)
    if not enter.isAccepted():
        return False
    drop = QDropEvent(QPoint(5, 5).toPointF(), actions, mime, buttons, keys)
    QApplication.sendEvent(editor.viewport(), drop)
    return drop.isAccepted()


def test_the_documents_panel_is_in_the_view_menu_with_a_shortcut(make_window: MakeWindow) -> None:
    window = make_window()
    action = window.documents.action
    assert action.shortcut() == QKeySequence("Ctrl+Shift+D")
    view = next(a.menu() for a in window.menuBar().actions() if a.text() == "&View")
    assert action in view.actions()  # type: ignore[union-attr]
    assert window.documents.dock.isHidden()
    action.trigger()
    assert not window.documents.dock.isHidden()


def test_a_chat_uses_the_collections_chosen_before_and_after_it_exists(
    qtbot: QtBot, make_window: MakeWindow
) -> None:
    window = make_window()
    documents = window.documents
    documents.panel.create_collection("Manuals")
    qtbot.waitUntil(lambda: documents.collections == ["Manuals"], timeout=TIMEOUT)
    assert window.composer.documents_menu.actions()[0].text() == "Manuals"

    # A new chat: the choice waits for the chat to be created by its first message.
    window.composer.documents_menu.actions()[0].trigger()
    assert documents.pending == ["Manuals"] and window.composer.chosen_documents() == ["Manuals"]
    conversation = window.store.create_conversation()
    documents.link_pending(conversation.id)
    assert window.store.conversation_collections(conversation.id) == ["Manuals"] and documents.pending == []

    # An open chat: "Use in this chat" links it in the store; unticking in the composer drops it.
    other = window.store.create_conversation()
    window.conversations.switch_to(other.id)
    documents.panel.select("Manuals")
    documents.panel.use_button.click()
    assert window.store.conversation_collections(other.id) == ["Manuals"]
    assert window.composer.documents_button.text() == "Docs: 1"
    window.composer.documents_menu.actions()[0].trigger()
    assert window.store.conversation_collections(other.id) == []
    assert window.composer.documents_button.text() == "Docs"

    # Removing the collection: no chat searches it any more.
    window.store.set_conversation_collections(other.id, ["Manuals"])
    with qtbot.waitSignal(documents.panel.collectionRemoved, timeout=TIMEOUT):
        documents.panel.remove_collection("Manuals")
    assert window.store.conversation_collections(other.id) == []
    assert window.store.conversation_collections(conversation.id) == []


def test_a_dropped_small_text_file_goes_into_the_message_whole(
    qtbot: QtBot, make_window: MakeWindow, tmp_path: Path
) -> None:
    window = make_window()
    notes = tmp_path / "shopping.md"
    notes.write_text("- flour\n- yeast\n", encoding="utf-8")
    window.composer.set_text("What can I bake with this?")
    assert _drop_on_composer(window, notes)
    qtbot.waitUntil(lambda: "- yeast" in window.composer.text(), timeout=TIMEOUT)
    assert window.composer.text() == "What can I bake with this?\n\nshopping.md:\n```\n- flour\n- yeast\n```"
    assert window.documents.pending == []  # nothing indexed


def test_a_dropped_large_file_is_indexed_into_a_collection_for_the_chat(
    qtbot: QtBot, make_window: MakeWindow, tmp_path: Path
) -> None:
    window = make_window()
    conversation = window.store.create_conversation(title="Baking")
    window.conversations.switch_to(conversation.id)
    book = tmp_path / "baking-book.txt"
    book.write_text(
        "\n\n".join(f"Recipe {i}: knead the dough and let it rise." for i in range(3000)), "utf-8"
    )
    with qtbot.waitSignal(window.documents.panel.indexingFinished, timeout=TIMEOUT) as finished:
        window.composer.filesAttached.emit([str(book)])
    name, report = finished.args
    assert name.startswith(CHAT_FILES_PREFIX + "Baking") and report.added == 1
    assert window.store.conversation_collections(conversation.id) == [name]
    assert window.composer.text() == ""  # too big to go in whole


def test_citations_and_the_sources_line_open_the_passage(
    qtbot: QtBot, make_window: MakeWindow, tmp_path: Path
) -> None:
    window = make_window()
    store = window.store
    conversation = store.create_conversation()
    question = store.add_message(conversation.id, "user", "How does bread rise?", parent_id=None)
    passage = "Bread is old. Yeast makes gas that lifts the dough. Salt adds taste."
    source = SourceRef(1, 7, "Baking", str(tmp_path / "gone.txt"), "bread.txt", "§ Rising", passage)
    store.set_message_sources(
        question.id, MessageSources("Answer using the sources below. [1] ...", (source,))
    )
    answer = store.add_message(
        conversation.id, "assistant", "Yeast makes gas in the dough [1]; see `a[1]`.", parent_id=question.id
    )
    window.conversations.switch_to(conversation.id)

    card = _card(window, answer.id)
    assert f'href="{CITE_SCHEME}:1"' in card.body.toHtml()
    assert card.sources_label is not None and card.sources_label.isVisibleTo(card)
    assert "bread.txt, § Rising" in window.chat_view.rendered_text(answer.id)
    assert _card(window, question.id).sources_label is None  # the question shows no sources line

    with qtbot.waitSignal(window.chat_view.citationOpened, timeout=TIMEOUT) as opened:
        card.body.anchorClicked.emit(QUrl(f"{CITE_SCHEME}:1"))
    assert opened.args == [answer.id, 1]
    dialog = window.chat_view.passage_dialog
    assert dialog is not None and dialog.isVisible()
    assert dialog.passage_text() == passage
    assert dialog.highlighted == "Yeast makes gas that lifts the dough."  # the sentence the claim came from
    assert "§ Rising" in dialog.location_label.text()
    assert not dialog.open_button.isEnabled() and "no longer there" in dialog.path_label.text()
    dialog.close()

    card.sources_label.linkActivated.emit(f"{CITE_SCHEME}:1")  # type: ignore[union-attr]
    assert window.chat_view.passage_dialog is not None
    assert window.chat_view.open_citation(answer.id, 9) is None  # no such source: nothing opens

    card.copy_button.click()
    assert QGuiApplication.clipboard().text() == "Yeast makes gas in the dough [1]; see `a[1]`."
