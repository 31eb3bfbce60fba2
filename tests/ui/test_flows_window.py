"""Window behaviour that needs no model: drafts across restarts, the banner, drops, the status bar."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from PySide6.QtCore import QMimeData, QPoint, Qt, QUrl
from PySide6.QtGui import QDragEnterEvent, QDropEvent
from PySide6.QtWidgets import QApplication, QToolButton
from pytestqt.qtbot import QtBot

from llamadesk.paths import get_paths
from llamadesk.ui.banner import Banner
from llamadesk.ui.main_window import MainWindow
from llamadesk.ui.status_bar import StatusBar

pytestmark = pytest.mark.qt_log_ignore("does not support propagateSizeHints")

MakeWindow = Callable[[], MainWindow]  # the make_window fixture (tests/ui/conftest.py)


def test_new_chat_draft_survives_restart(make_window: MakeWindow) -> None:
    window = make_window()
    assert window.conversation_id is None
    window.composer.set_text("a question I have not sent yet")
    window.close()

    again = make_window()
    assert again.conversation_id is None
    assert again.composer.text() == "a question I have not sent yet"


def test_banner_brings_back_an_unread_problem(qtbot: QtBot) -> None:
    banner = Banner()
    qtbot.addWidget(banner)
    banner.show_message("The model file is damaged.", "error", topic="model")
    banner.show_message("Saved notes.md.", "info")  # a passing notice arrives before it was read
    assert banner.text() == "Saved notes.md." and banner.kind == "info"
    close = banner.findChild(QToolButton, "bannerClose")
    assert close is not None
    qtbot.mouseClick(close, Qt.MouseButton.LeftButton)
    assert not banner.isHidden() and banner.kind == "error"
    assert banner.text() == "The model file is damaged."
    banner.dismiss()
    assert banner.isHidden()

    # A problem solved meanwhile is taken back, shown or waiting.
    banner.show_message("The model file is damaged.", "error", topic="model")
    banner.show_message("The disk is full.", "warning")
    banner.show_message("Loading was cancelled.", "info", topic="model")
    banner.retract("model")
    assert not banner.isHidden() and banner.text() == "The disk is full."
    banner.dismiss()
    assert banner.isHidden() and banner.held_count() == 0


def _drop(window: MainWindow, path: Path) -> bool:
    """Drag ``path`` over the window and drop it; True when the window took the drag."""
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(path))])
    actions = Qt.DropAction.CopyAction
    enter = QDragEnterEvent(
        QPoint(10, 10), actions, mime, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier
    )
    QApplication.sendEvent(window, enter)
    if not enter.isAccepted():
        return False
    drop = QDropEvent(
        QPoint(10, 10).toPointF(), actions, mime, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier
    )
    QApplication.sendEvent(window, drop)
    return drop.isAccepted()


def test_dropping_a_file_that_is_not_a_model_says_why(
    make_window: MakeWindow, llamadesk_home: Path, tmp_path: Path
) -> None:
    database = get_paths(llamadesk_home).ensure().database_file
    database.mkdir()  # the conversations can't be saved: a warning the user must not lose
    window = make_window()
    warning = window.banner.text()
    assert window.banner.kind == "warning" and "only until LlamaDesk closes" in warning

    notes = tmp_path / "notes.txt"
    notes.write_text("not a model", encoding="utf-8")
    assert _drop(window, notes)
    assert window.banner.kind == "error" and "notes.txt is not a GGUF model file" in window.banner.text()
    window.banner.dismiss()
    assert window.banner.isVisibleTo(window) and window.banner.text() == warning


def test_new_default_system_prompt_reaches_the_unsent_new_chat(make_window: MakeWindow) -> None:
    window = make_window()
    assert window.conversation_id is None
    assert window.system_prompt_edit.toPlainText() == window.settings.app.default_system_prompt
    new = window.settings.model_copy(deep=True)
    new.app.default_system_prompt = "Answer like a pirate."
    window.apply_settings(new)  # what Preferences does on OK
    assert window.system_prompt_edit.toPlainText() == "Answer like a pirate."

    window.system_prompt_edit.setPlainText("My own instructions.")  # typed by the user: kept
    newer = window.settings.model_copy(deep=True)
    newer.app.default_system_prompt = "Answer in French."
    window.apply_settings(newer)
    assert window.system_prompt_edit.toPlainText() == "My own instructions."


def test_status_bar_says_all_gpu_layers_and_no_speed_without_tokens(qtbot: QtBot) -> None:
    status = StatusBar()
    qtbot.addWidget(status)
    status.set_model("Qwen", backend="CUDA", n_gpu_layers=-1, n_ctx=4096, block_count=28)
    assert status.layers_label.text() == "GPU layers: all"
    status.set_model("Qwen", backend="CUDA", n_gpu_layers=12, n_ctx=4096, block_count=28)
    assert status.layers_label.text() == "GPU layers: 12 of 28"
    status.set_model("Qwen", backend="CPU", n_gpu_layers=0, n_ctx=4096, block_count=28)
    assert status.layers_label.text() == "GPU layers: 0"

    # Stopped before the first token: the prompt used the context, but there was no speed.
    status.set_stats({"prompt_tokens": 23, "completion_tokens": 0, "tokens_per_s": 0.0})
    assert status.context_meter.format() == "23 / 4096"
    assert status.speed_text() == ""
