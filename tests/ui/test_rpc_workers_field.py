"""Preferences → Workers shows an address as its example, not the stop strings' one."""

from __future__ import annotations

from PySide6.QtWidgets import QPlainTextEdit
from pytestqt.qtbot import QtBot

from preferences_helpers import find, make_dialog


def test_workers_and_stop_strings_each_show_their_own_example(qtbot: QtBot) -> None:
    dialog = make_dialog(qtbot)
    workers = find(dialog, "workersEdit")
    stop = find(dialog, "stopStringsEdit")
    assert isinstance(workers, QPlainTextEdit) and isinstance(stop, QPlainTextEdit)
    assert "192.168.1.20:50052" in workers.placeholderText()
    assert "###" not in workers.placeholderText()
    assert stop.placeholderText() == "One per line, e.g. ### User:   (\\n = new line)"
