"""The thinking of a reasoning reply in the chat view and the composer's Think switch (real widgets,
a real store, and the real splitter fed a reply stream with markers)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from PySide6.QtCore import Qt
from PySide6.QtGui import QGuiApplication
from pytestqt.qtbot import QtBot

from llamadesk.chat.reasoning import ReasoningSplitter
from llamadesk.chat.store import ConversationStore, Message
from llamadesk.ui.chat_view import ChatView
from llamadesk.ui.composer import Composer
from llamadesk.ui.message_body import ThinkingBlock
from llamadesk.ui.message_widget import MessageCard

pytestmark = pytest.mark.qt_log_ignore("propagateSizeHints")

THINKING = "The user greets me.\nI should greet back."
REPLY = ["<th", "ink>\nThe user greets me", ".\nI should greet back.\n</thi", "nk>\n\nHello", " **there**!"]


@pytest.fixture
def view(qtbot: QtBot) -> Iterator[ChatView]:
    widget = ChatView()
    qtbot.addWidget(widget)
    widget.resize(700, 600)
    widget.show()
    qtbot.waitExposed(widget)
    yield widget


@pytest.fixture
def store(tmp_path: Path) -> Iterator[ConversationStore]:
    with ConversationStore(tmp_path / "c.sqlite3") as opened:
        yield opened


def _card(view: ChatView, message_id: int) -> MessageCard:
    for card in view.findChildren(MessageCard):
        if card.item.id == message_id and card.isVisible():
            return card
    raise AssertionError(f"no card for message {message_id}")


def _block(card: MessageCard) -> ThinkingBlock:
    assert card.thinking_block is not None and card.thinking_block.isVisibleTo(card)
    return card.thinking_block


def _start(store: ConversationStore, view: ChatView) -> tuple[Message, Message]:
    conversation = store.create_conversation()
    user = store.add_message(conversation.id, "user", "Hi", parent_id=None)
    reply = store.stream_reply(conversation.id, parent_id=user.id)
    message = store.get_message(reply.message_id)
    view.set_messages([user])
    view.begin_stream(message)
    return user, message


def _feed(view: ChatView, splitter: ReasoningSplitter, parts: list[tuple[str, str]]) -> None:
    for kind, text in parts:
        (view.append_thinking if kind == "thinking" else view.append_stream)(text)


def test_thinking_streams_live_collapsed_then_the_answer_below(
    qtbot: QtBot, view: ChatView, store: ConversationStore
) -> None:
    _, message = _start(store, view)
    splitter = ReasoningSplitter()
    for piece in REPLY[:3]:
        _feed(view, splitter, splitter.feed(piece))
    card = _card(view, message.id)
    block = _block(card)
    assert block.live and block.label().startswith("Thinking")
    assert block.toggle.property("live") is True
    assert not block.body.isVisible() and not block.expanded  # collapsed while it streams
    assert "The user greets me" not in view.rendered_text(message.id)

    qtbot.mouseClick(block.toggle, Qt.MouseButton.LeftButton)
    assert block.expanded and block.body.isVisible()
    assert block.text().startswith("The user greets me.\nI should greet back.")

    for piece in REPLY[3:]:
        _feed(view, splitter, splitter.feed(piece))
    _feed(view, splitter, splitter.finish())
    qtbot.waitUntil(lambda: "Hello there!" in view.rendered_text(message.id))
    assert not block.live and block.label().startswith("Thought for")
    body = card.body.toPlainText() + (card.tail.toPlainText() if card.tail is not None else "")
    assert "<think>" not in body and "greets" not in body


def test_finished_reply_shows_thought_for_n_seconds_and_copies_the_answer_only(
    qtbot: QtBot, view: ChatView, store: ConversationStore
) -> None:
    _, message = _start(store, view)
    reply = store.stream_reply(message.conversation_id, parent_id=message.parent_id)
    splitter = ReasoningSplitter()
    for piece in REPLY:
        for kind, text in splitter.feed(piece):
            (reply.append_thinking if kind == "thinking" else reply.append)(text)
    reply.set_thinking(splitter.thinking)
    final = reply.finish("complete", {"thinking_s": 3.2, "completion_tokens": 20, "stop_reason": "eos"})
    view.set_messages(store.active_path(final.conversation_id))
    card = _card(view, final.id)
    block = _block(card)
    assert block.label() == "Thought for 3 s" and not block.expanded
    collapsed = view.rendered_text(final.id)
    assert collapsed.startswith("Thought for 3 s\nHello there!") and THINKING not in collapsed

    block.set_expanded(True)
    expanded = view.rendered_text(final.id)
    assert expanded.startswith(f"Thought for 3 s\n{THINKING}\nHello there!")

    qtbot.mouseClick(card.copy_button, Qt.MouseButton.LeftButton)
    assert QGuiApplication.clipboard().text() == "Hello **there**!"


def test_a_reply_stopped_while_thinking_keeps_its_thinking(
    qtbot: QtBot, view: ChatView, store: ConversationStore
) -> None:
    _, message = _start(store, view)
    splitter = ReasoningSplitter(start_in_thinking=True)
    _feed(view, splitter, splitter.feed("Still weighing the options"))
    _feed(view, splitter, splitter.finish())
    assert _block(_card(view, message.id)).live
    stopped = Message(**{**message.__dict__, "status": "stopped", "thinking": splitter.thinking})
    view.end_stream(stopped)
    card = _card(view, message.id)
    block = _block(card)
    assert not block.live and block.label().startswith("Thought for ")  # the time it watched
    assert not card.bubble.isVisible()  # no answer: only the status line says it stopped
    lines = view.rendered_text(message.id).splitlines()
    assert lines[0].startswith("Thought for ") and lines[1:] == ["", "Stopped"]


def test_thinking_with_no_time_stored(view: ChatView, store: ConversationStore) -> None:
    conversation = store.import_json(
        [
            {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": "Hello", "reasoning_content": "Hm."},
        ]
    )
    path = store.active_path(conversation.id)
    view.set_messages(path)
    assert _block(_card(view, path[-1].id)).label() == "Thoughts"
    assert view.rendered_text(path[-1].id) == "Thoughts\nHello"


def test_messages_without_thinking_have_no_block(view: ChatView, store: ConversationStore) -> None:
    conversation = store.create_conversation()
    user = store.add_message(conversation.id, "user", "Hi", parent_id=None)
    answer = store.add_message(conversation.id, "assistant", "Hello", parent_id=user.id)
    view.set_messages([user, answer])
    assert _card(view, answer.id).thinking_block is None
    assert view.rendered_text(answer.id) == "Hello"


@pytest.mark.parametrize(
    ("control", "choice", "button", "combo", "chosen"),
    [
        ("", "", False, False, ""),
        ("enable_thinking", "", True, False, "on"),
        ("enable_thinking", "off", True, False, "off"),
        ("flag", "on", True, False, "on"),
        ("effort", "high", False, True, "high"),
        ("effort", "", False, True, "medium"),
    ],
)
def test_composer_offers_the_switch_the_template_has(
    qtbot: QtBot, control: str, choice: str, button: bool, combo: bool, chosen: str
) -> None:
    composer = Composer()
    qtbot.addWidget(composer)
    composer.show()
    composer.set_thinking_control(control, choice)
    assert composer.think_button.isVisible() is button
    assert composer.effort_combo.isVisible() is combo
    assert composer.thinking_choice() == chosen


def test_composer_toggle_tells_the_window(qtbot: QtBot) -> None:
    composer = Composer()
    qtbot.addWidget(composer)
    composer.show()
    composer.set_thinking_control("enable_thinking", "on")
    with qtbot.waitSignal(composer.thinkingChanged, timeout=1000) as blocker:
        qtbot.mouseClick(composer.think_button, Qt.MouseButton.LeftButton)
    assert blocker.args == ["off"] and composer.thinking_choice() == "off"
    composer.set_thinking_control("effort", "low")
    with qtbot.waitSignal(composer.thinkingChanged, timeout=1000) as blocker:
        composer.effort_combo.setCurrentIndex(2)
    assert blocker.args == ["high"]
    composer.set_thinking_control("")
    assert composer.thinking_choice() == "" and not composer.think_button.isVisible()
