"""ChatView: rendering, per-message actions, streaming throttling and lazy loading, with real widgets."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, TypeVar

import pytest
from PySide6.QtCore import QObject, QPoint, Qt, QTimer, QUrl, Slot
from PySide6.QtGui import QDesktopServices, QGuiApplication, QTextCursor
from PySide6.QtWidgets import QFrame, QLabel, QPushButton, QScrollArea, QScrollBar, QTextBrowser, QToolButton
from pytestqt.qtbot import QtBot

from llamadesk.ui import markdown as markdown_module
from llamadesk.ui.chat_view import INITIAL_CARDS, INTERRUPTED_TEXT, NOT_IN_CONTEXT, ChatView, format_stats

# The offscreen platform cannot resize native windows; that notice is not a problem of the view.
pytestmark = pytest.mark.qt_log_ignore("propagateSizeHints")


@dataclass
class Msg:
    """Same fields as llamadesk.chat.store.Message (the view only duck-types it)."""

    id: int
    role: str
    content: str
    status: str = "complete"
    model: str | None = "test-model.gguf"
    stats: dict[str, Any] | None = None
    conversation_id: int = 1
    parent_id: int | None = None
    created_at: float = 0.0
    sibling_index: int = 1
    sibling_count: int = 1
    extra: dict[str, Any] = field(default_factory=dict)


CODE = "def add(a: int, b: int) -> int:\n    return a + b"
STATS = {
    "prompt_tokens": 20,
    "cached_tokens": 0,
    "completion_tokens": 128,
    "ttft_s": 0.25,
    "tokens_per_s": 42.0,
    "stop_reason": "eos",
}


@pytest.fixture
def view(qtbot: QtBot) -> Iterator[ChatView]:
    widget = ChatView()
    qtbot.addWidget(widget)
    widget.resize(700, 600)
    widget.show()
    qtbot.waitExposed(widget)
    yield widget


def card_for(view: ChatView, message_id: int) -> QFrame:
    for card in view.findChildren(QFrame, "messageCard"):
        if card.property("messageId") == message_id and card.isVisible():
            return card
    raise AssertionError(f"no card for message {message_id}")


T = TypeVar("T", bound=QObject)


def child(parent: QObject, kind: type[T], name: str | None = None) -> T:
    found = parent.findChild(kind, name) if name else parent.findChild(kind)
    assert found is not None, (kind, name)
    return found


def scroll_bar(view: ChatView) -> QScrollBar:
    return child(view, QScrollArea).verticalScrollBar()


def button(card: QFrame, accessible_name: str) -> QToolButton:
    for b in card.findChildren(QToolButton):
        if b.accessibleName() == accessible_name:
            return b
    raise AssertionError(accessible_name)


def click_anchor(qtbot: QtBot, view: ChatView, message_id: int, href: str) -> None:
    """Click the real link inside a message body, as a user would."""
    body = child(card_for(view, message_id), QTextBrowser, "messageBody")
    doc = body.document()
    cursor = QTextCursor(doc)
    positions = []
    for pos in range(1, doc.characterCount()):
        cursor.setPosition(pos)
        if cursor.charFormat().anchorHref() == href:
            positions.append(pos)
    assert positions, f"no link {href}"
    area = child(view, QScrollArea)
    area.ensureWidgetVisible(body, 0, 200)
    cursor.setPosition(positions[len(positions) // 2])
    point: QPoint = body.cursorRect(cursor).center()
    qtbot.mouseClick(body.viewport(), Qt.MouseButton.LeftButton, pos=point)


def conversation() -> list[Msg]:
    return [
        Msg(1, "system", "You are helpful."),
        Msg(2, "user", "How do I add?", sibling_index=2, sibling_count=3),
        Msg(3, "assistant", f"Like this:\n\n```python\n{CODE}\n```\n\nDone.", stats=STATS),
        Msg(4, "user", "And **again**?"),
        Msg(5, "assistant", "Sure, see [docs](https://example.com/docs).", stats=STATS, sibling_count=2),
    ]


def test_renders_markdown_and_skips_system_messages(view: ChatView) -> None:
    view.set_messages(conversation())
    assert view.message_count() == 4
    text = view.rendered_text(3)
    assert "Like this:" in text and "return a + b" in text and "```" not in text
    assert "You are helpful." not in "".join(view.rendered_text(i) for i in (2, 3, 4, 5))
    body = child(card_for(view, 3), QTextBrowser, "messageBody")
    assert "#008000" in body.toHtml().lower()  # pygments keyword colour survived Qt's HTML import
    assert view.last_reply_text() == "Sure, see [docs](https://example.com/docs)."


def test_code_block_copy_link_copies_exactly_that_block(qtbot: QtBot, view: ChatView) -> None:
    view.set_messages(conversation())
    QGuiApplication.clipboard().setText("")
    click_anchor(qtbot, view, 3, "copy-code:0")
    qtbot.waitUntil(lambda: QGuiApplication.clipboard().text() == CODE)


def test_copy_message_copies_raw_markdown(qtbot: QtBot, view: ChatView) -> None:
    view.set_messages(conversation())
    qtbot.mouseClick(button(card_for(view, 4), "Copy message"), Qt.MouseButton.LeftButton)
    assert QGuiApplication.clipboard().text() == "And **again**?"


class _UrlCatcher(QObject):
    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []

    @Slot(QUrl)
    def handle(self, url: QUrl) -> None:
        self.urls.append(url.toString())


def test_links_open_in_the_system_browser_not_the_view(qtbot: QtBot, view: ChatView) -> None:
    view.set_messages(conversation())
    catcher = _UrlCatcher()
    QDesktopServices.setUrlHandler("https", catcher, "handle")  # type: ignore[arg-type]
    try:
        click_anchor(qtbot, view, 5, "https://example.com/docs")
        qtbot.waitUntil(lambda: catcher.urls == ["https://example.com/docs"])
    finally:
        QDesktopServices.unsetUrlHandler("https")
    assert "Sure, see docs." in view.rendered_text(5)  # the view itself did not navigate


def test_edit_regenerate_and_branch_signals(qtbot: QtBot, view: ChatView) -> None:
    view.set_messages(conversation())
    with qtbot.waitSignal(view.editRequested, check_params_cb=lambda i: i == 4):
        qtbot.mouseClick(button(card_for(view, 4), "Edit message"), Qt.MouseButton.LeftButton)
    assert not button(card_for(view, 3), "Regenerate reply").isVisible()  # only the last reply
    with qtbot.waitSignal(view.regenerateRequested, check_params_cb=lambda i: i == 5):
        qtbot.mouseClick(button(card_for(view, 5), "Regenerate reply"), Qt.MouseButton.LeftButton)
    user = card_for(view, 2)
    label = next(lbl for lbl in user.findChildren(QLabel) if lbl.objectName() == "branchLabel")
    assert label.isVisible() and label.text() == "2/3"
    with qtbot.waitSignal(view.branchStepRequested, check_params_cb=lambda i, d: (i, d) == (2, -1)):
        qtbot.mouseClick(button(user, "Previous version"), Qt.MouseButton.LeftButton)
    with qtbot.waitSignal(view.branchStepRequested, check_params_cb=lambda i, d: (i, d) == (2, 1)):
        qtbot.mouseClick(button(user, "Next version"), Qt.MouseButton.LeftButton)
    reply = card_for(view, 5)
    assert not button(reply, "Previous version").isEnabled()  # 1/2: nothing before the first version
    assert button(reply, "Next version").isEnabled()
    single = card_for(view, 4)  # only one version: no switcher shown
    assert not any(b.isVisible() for b in single.findChildren(QToolButton) if "version" in b.accessibleName())


def test_excluded_messages_are_marked(view: ChatView) -> None:
    view.set_messages(conversation())
    view.set_excluded({2, 3})

    def tag_shown(message_id: int) -> bool:
        tag = card_for(view, message_id).findChild(QLabel, "notInContext")
        return tag is not None and tag.isVisible() and tag.text() == NOT_IN_CONTEXT

    assert [tag_shown(i) for i in (2, 3, 4, 5)] == [True, True, False, False]
    view.set_excluded({5})
    assert [tag_shown(i) for i in (2, 3, 4, 5)] == [False, False, False, True]


def test_streaming_renders_throttled_and_ends_with_the_full_text(
    qtbot: QtBot, view: ChatView, monkeypatch: pytest.MonkeyPatch
) -> None:
    view.set_messages(conversation()[:4])
    rendered_lengths: list[int] = []  # one entry per Markdown render of (part of) this reply
    real_render = markdown_module.render_markdown

    def counting_render(text: str, **kwargs: Any) -> markdown_module.RenderedMarkdown:
        rendered_lengths.append(len(text))
        return real_render(text, **kwargs)

    monkeypatch.setattr(markdown_module, "render_markdown", counting_render)
    reply = Msg(10, "assistant", "", status="streaming")
    view.begin_stream(reply)
    pieces = [f"word{i} " if i % 50 else "\n\n" for i in range(2000)]
    fed = 0

    def feed() -> None:
        nonlocal fed
        view.append_stream(pieces[fed])
        fed += 1
        if fed in (1000, len(pieces)):
            timer.stop()

    timer = QTimer()
    timer.setInterval(0)
    timer.timeout.connect(feed)
    timer.start()
    qtbot.waitUntil(lambda: fed == 1000)
    # the reply shows up while it streams (a throttled render ran), without waiting for the end
    card = card_for(view, 10)
    qtbot.waitUntil(lambda: "word998" in " ".join(b.toPlainText() for b in card.findChildren(QTextBrowser)))
    assert view.last_reply_text() == "".join(pieces[:1000])
    timer.start()
    qtbot.waitUntil(lambda: fed == len(pieces))
    full = "".join(pieces)
    view.end_stream(Msg(10, "assistant", full, status="complete", stats=STATS))
    assert len(rendered_lengths) < 200, len(rendered_lengths)  # throttled: not one render per piece
    # finished text is rendered once; re-rendering the whole reply per tick would be O(n²)
    assert sum(rendered_lengths[:-1]) < 3 * len(full), (sum(rendered_lengths), len(full))
    assert rendered_lengths[-1] == len(full)  # one exact whole-message render at the end
    expected = QTextBrowser()
    expected.setHtml(real_render(full).html)
    assert view.rendered_text(10) == expected.toPlainText().rstrip() + "\n" + format_stats(STATS)
    assert view.last_reply_text() == full
    assert button(card_for(view, 10), "Regenerate reply").isVisible()
    assert not button(card_for(view, 3), "Regenerate reply").isVisible()


def test_streaming_follows_the_bottom_unless_the_user_scrolled_up(qtbot: QtBot, view: ChatView) -> None:
    view.set_messages(conversation())
    view.begin_stream(Msg(11, "assistant", "", status="streaming"))
    bar = scroll_bar(view)
    for i in range(60):
        view.append_stream(f"line {i}\n\n")
    qtbot.waitUntil(lambda: bar.maximum() > 300 and bar.value() == bar.maximum())
    bar.setValue(10)  # the user scrolls up to reread
    maximum = bar.maximum()
    for i in range(60):
        view.append_stream(f"more {i}\n\n")
    qtbot.waitUntil(lambda: bar.maximum() > maximum + 300)
    assert bar.value() == 10
    view.end_stream(Msg(11, "assistant", view.last_reply_text(), status="stopped", stats=None))


def test_reloading_while_streaming_keeps_the_streamed_text(qtbot: QtBot, view: ChatView) -> None:
    messages = conversation()[:4]
    view.set_messages(messages)
    view.begin_stream(Msg(12, "assistant", "", status="streaming"))
    view.append_stream("Partial **bold** reply")
    # the window reloads the active path (the stored reply still has no text) mid-stream
    view.set_messages([*messages, Msg(12, "assistant", "", status="streaming")])
    view.append_stream(" continues")
    qtbot.waitUntil(lambda: "reply continues" in view.rendered_text(12))
    assert view.last_reply_text() == "Partial **bold** reply continues"
    view.end_stream(Msg(12, "assistant", "Partial **bold** reply continues", status="complete", stats=STATS))
    assert view.rendered_text(12).startswith("Partial bold reply continues\n")


@pytest.mark.parametrize(
    ("reason", "label"),
    [
        ("eos", "finished"),
        ("stop_string", "finished"),
        ("max_tokens", "max tokens"),
        ("context_full", "context full"),
        ("user_stop", "stopped"),
    ],
)
def test_stats_line_for_each_stop_reason(view: ChatView, reason: str, label: str) -> None:
    view.set_messages(conversation()[:2])
    view.begin_stream(Msg(20, "assistant", "", status="streaming"))
    view.append_stream("Hello")
    assert view.rendered_text(20).endswith("Writing…")
    status = "stopped" if reason == "user_stop" else "complete"
    view.end_stream(Msg(20, "assistant", "Hello", status=status, stats={**STATS, "stop_reason": reason}))
    stats_line = f"128 tokens · 42.0 tok/s · first token 0.25 s · {label}"
    assert view.rendered_text(20).endswith(stats_line)
    assert ("Stopped" in view.rendered_text(20)) is (status == "stopped")


def test_failed_and_interrupted_replies_are_marked(view: ChatView) -> None:
    view.set_messages(
        [
            Msg(1, "user", "hi"),
            Msg(2, "assistant", "Half a rep", status="interrupted"),
            Msg(3, "user", "again"),
        ]
    )
    assert view.rendered_text(2) == "Half a rep\n" + INTERRUPTED_TEXT
    view.begin_stream(Msg(4, "assistant", "", status="streaming"))
    error = {"error": "The model could not be loaded.", "stop_reason": "error"}
    view.end_stream(Msg(4, "assistant", "", status="failed", stats=error))
    assert "Failed: The model could not be loaded." in view.rendered_text(4)
    assert view.rendered_text(4).endswith("failed")


def test_large_conversation_builds_few_cards_and_loads_older_on_scroll(qtbot: QtBot, view: ChatView) -> None:
    text = "Message number {}\n\n- item\n- item"
    view.set_messages([Msg(i, "user" if i % 2 else "assistant", text.format(i)) for i in range(1, 2001)])
    assert view.message_count() == 2000
    assert view.rendered_message_count() == INITIAL_CARDS
    assert len(view.findChildren(QFrame, "messageCard")) <= INITIAL_CARDS
    assert "Message number 5" in view.rendered_text(5)  # text of a message not built yet
    bar = scroll_bar(view)
    qtbot.waitUntil(lambda: bar.maximum() > 0 and bar.value() == bar.maximum())
    bar.setValue(0)  # the user scrolls to the top
    assert view.rendered_message_count() > INITIAL_CARDS
    qtbot.waitUntil(lambda: bar.value() > 0)  # what was on screen stays on screen
    built = view.rendered_message_count()
    load = child(view, QPushButton, "loadEarlier")
    assert load.isVisible()
    qtbot.mouseClick(load, Qt.MouseButton.LeftButton)
    assert view.rendered_message_count() > built
    assert card_for(view, 2000).isVisible()


def test_reloading_the_same_conversation_reuses_cards(view: ChatView) -> None:
    view.set_messages(conversation())
    card = card_for(view, 3)
    view.set_messages([*conversation(), Msg(6, "user", "next question")])
    assert card_for(view, 3) is card
    assert view.message_count() == 5


def test_theme_and_font_rerender(view: ChatView) -> None:
    view.set_messages(conversation())
    view.set_dark(True)
    assert "#0d1117" in child(card_for(view, 3), QTextBrowser).toHtml().lower()
    view.set_font(("", 15, "DejaVu Sans Mono"))
    assert view.font().pointSize() == 15
    assert "DejaVu Sans Mono" in child(card_for(view, 3), QTextBrowser).toHtml()
    assert "return a + b" in view.rendered_text(3)


def test_format_stats_handles_enum_reasons_and_missing_values() -> None:
    class Reason:
        value = "context_full"

    assert format_stats({"completion_tokens": 1, "stop_reason": Reason()}) == "1 token · context full"
    assert format_stats(None) == ""


def test_line_breaks_in_messages_are_kept(view: ChatView) -> None:
    # Shift+Enter in the composer starts a new line; the sent message must keep it, and so must replies.
    view.set_messages(
        [
            Msg(1, "user", "Dear team,\nthe build is red.\nThanks"),
            Msg(2, "assistant", "Roses are red,\nviolets are blue.\n\n- one\n- two"),
        ]
    )
    assert view.rendered_text(1) == "Dear team,\nthe build is red.\nThanks"
    assert view.rendered_text(2).startswith("Roses are red,\nviolets are blue.\n")


def test_reply_stopped_before_its_first_token_claims_no_first_token(view: ChatView) -> None:
    view.set_messages(conversation()[:2])
    view.begin_stream(Msg(30, "assistant", "", status="streaming"))
    stats = {**STATS, "completion_tokens": 0, "tokens_per_s": 0.0, "ttft_s": 2.5, "stop_reason": "user_stop"}
    view.end_stream(Msg(30, "assistant", "", status="stopped", stats=stats))
    assert view.rendered_text(30) == "\nStopped\n0 tokens · stopped"


def test_reply_that_failed_without_text_shows_no_empty_bubble(view: ChatView) -> None:
    view.set_messages(conversation()[:2])
    view.begin_stream(Msg(31, "assistant", "", status="streaming"))
    card = card_for(view, 31)
    assert child(card, QFrame, "bubble").isVisible()  # the "Writing…" reply has its place
    view.end_stream(Msg(31, "assistant", "", status="failed", stats={"error": "Out of memory."}))
    assert not child(card, QFrame, "bubble").isVisible()
    label = child(card, QLabel, "messageStatus")
    assert label.isVisible() and label.text() == "Failed: Out of memory."


def test_a_table_too_wide_for_the_window_scrolls_sideways(qtbot: QtBot, view: ChatView) -> None:
    columns = 40  # more than fit even with every cell squeezed to a letter or two
    table = (
        "| " + " | ".join(f"column{i}" for i in range(columns)) + " |\n"
        "|" + "---|" * columns + "\n"
        "| " + " | ".join(f"value{i}" for i in range(columns)) + " |"
    )
    view.set_messages([Msg(1, "user", "Compare them"), Msg(2, "assistant", f"{table}\n\nDone.")])
    body = child(card_for(view, 2), QTextBrowser, "messageBody")
    bar = body.horizontalScrollBar()
    qtbot.waitUntil(lambda: bar.isVisible())
    assert bar.maximum() > 0  # the last columns can be reached, not cut off at the edge
    assert body.viewport().height() >= body.document().size().height()  # and no line is cut off
    narrow = child(card_for(view, 1), QTextBrowser, "messageBody")
    assert not narrow.horizontalScrollBar().isVisible()
