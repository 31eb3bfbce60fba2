"""Preferences → Model & hardware → Workers: addresses are checked as typed and saved normalised."""

from __future__ import annotations

from PySide6.QtWidgets import QLabel, QPlainTextEdit
from pytestqt.qtbot import QtBot

from llamadesk.settings import RuntimeSettings, Settings
from preferences_helpers import find, make_dialog


def test_workers_are_checked_as_typed_and_saved(qtbot: QtBot) -> None:
    dialog = make_dialog(qtbot)
    edit = find(dialog, "workersEdit")
    error = find(dialog, "workersEditError")
    assert isinstance(edit, QPlainTextEdit) and isinstance(error, QLabel)
    edit.setPlainText("192.168.1.20:50052\ngpu-box")
    assert not dialog.ok_button.isEnabled()
    assert "'gpu-box' is not a worker address" in error.text() and not error.isHidden()
    edit.setPlainText("192.168.1.20:50052\nGPU-Box.lan:50052\n192.168.1.20:50052")
    assert dialog.ok_button.isEnabled() and error.isHidden()
    assert dialog.apply()
    assert dialog.result_settings().runtime.workers == ["192.168.1.20:50052", "gpu-box.lan:50052"]


def test_saved_workers_are_shown(qtbot: QtBot) -> None:
    dialog = make_dialog(qtbot, Settings(runtime=RuntimeSettings(workers=["a:1", "b:2"])))
    edit = find(dialog, "workersEdit")
    assert isinstance(edit, QPlainTextEdit) and edit.toPlainText() == "a:1\nb:2"
