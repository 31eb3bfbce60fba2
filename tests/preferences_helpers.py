"""Building a Preferences dialog in tests and finding its widgets by name."""

from __future__ import annotations

from PySide6.QtWidgets import QWidget
from pytestqt.qtbot import QtBot

from llamadesk.settings import Settings
from llamadesk.ui.preferences import PreferencesDialog


def make_dialog(qtbot: QtBot, settings: Settings | None = None, **kwargs: object) -> PreferencesDialog:
    dialog = PreferencesDialog(settings or Settings(), **kwargs)  # type: ignore[arg-type]
    qtbot.addWidget(dialog)
    return dialog


def find(dialog: QWidget, name: str) -> QWidget:
    widget = dialog.findChild(QWidget, name)
    assert widget is not None, f"no widget named {name}"
    return widget
