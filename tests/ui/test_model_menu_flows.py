"""Chat-template override and the Hub token check, driven through the real main window."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from PySide6.QtCore import Qt, QTimer
from PySide6.QtWidgets import QApplication
from pytestqt.qtbot import QtBot

from hub_server import FakeHub
from llamadesk.app import create_main_window
from llamadesk.paths import get_paths, starter_model_path
from llamadesk.settings import Settings, SettingsStore
from llamadesk.ui.main_window import MainWindow
from llamadesk.ui.template_dialog import TemplateDialog

pytestmark = pytest.mark.qt_log_ignore("does not support propagateSizeHints", "does not support raise")

PLAIN = "{% for m in messages %}{{ m.role }}: {{ m.content }}\n{% endfor %}assistant:"


@pytest.fixture
def window(qtbot: QtBot, llamadesk_home: Path) -> Iterator[MainWindow]:
    settings = Settings()
    settings.generation.max_tokens = 4
    settings.runtime.n_ctx = 512
    SettingsStore(get_paths(llamadesk_home).ensure().settings_file).save(settings)
    main = create_main_window(llamadesk_home)
    qtbot.addWidget(main)
    main.show()
    qtbot.waitUntil(lambda: main.library_ready, timeout=30_000)
    yield main
    main.close()


@pytest.mark.model
def test_template_override_reloads_and_persists(
    qtbot: QtBot, window: MainWindow, llamadesk_home: Path
) -> None:
    starter = starter_model_path()
    assert starter is not None
    if window.controller.loaded is None:
        with qtbot.waitSignal(window.controller.modelLoaded, timeout=60_000):
            window.load_model(starter)
    assert window.controller.loaded is not None
    assert window.controller.loaded.chat_format.template != PLAIN

    def edit() -> None:
        dialog = QApplication.activeModalWidget()
        assert isinstance(dialog, TemplateDialog)
        assert "<|im_start|>" in dialog.editor.toPlainText()  # the model's own template is shown
        dialog.editor.setPlainText(PLAIN)
        assert dialog.preview.toPlainText().endswith("assistant:")
        dialog.accept()

    QTimer.singleShot(0, edit)
    with qtbot.waitSignal(window.controller.modelLoaded, timeout=60_000) as reloaded:
        window.template_action.trigger()
    assert reloaded.args[0].chat_format.template == PLAIN
    saved = SettingsStore(get_paths(llamadesk_home).settings_file).load()
    assert list(saved.template_overrides.values()) == [PLAIN]

    with qtbot.waitSignal(window.controller.contextPrepared, timeout=60_000) as prepared:
        window.send("Hi")
    assert prepared.args[0].prompt.startswith("system: ")
    qtbot.waitUntil(lambda: not window.controller.busy, timeout=60_000)


def test_token_check_asks_the_hub(
    qtbot: QtBot, window: MainWindow, starter_model: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with FakeHub() as hub:
        monkeypatch.setenv("HF_ENDPOINT", hub.url)
        hub.valid_tokens.add("hf_good")
        dialog = window.open_preferences()
        for token, expected in (("hf_good", "signed in as test-user"), ("hf_bad", "token")):
            dialog.token_edit.setText(token)
            qtbot.mouseClick(dialog.test_token_button, Qt.MouseButton.LeftButton)
            qtbot.waitUntil(lambda: dialog.test_token_button.isEnabled(), timeout=20_000)
            assert expected in dialog.token_result.text()
        assert "✗" in dialog.token_result.text() and "hf_bad" not in dialog.token_result.text()
        dialog.close()
