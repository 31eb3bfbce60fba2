"""Fixtures shared by the window tests."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from pytestqt.qtbot import QtBot

from llamadesk.app import create_main_window
from llamadesk.ui.main_window import MainWindow

MakeWindow = Callable[[], MainWindow]


@pytest.fixture
def make_window(qtbot: QtBot, llamadesk_home: Path) -> Iterator[MakeWindow]:
    """Builds windows on the test's home; every window is closed at the end."""
    windows: list[MainWindow] = []

    def make() -> MainWindow:
        window = create_main_window(llamadesk_home)
        qtbot.addWidget(window)
        windows.append(window)
        return window

    yield make
    for window in windows:
        window.close()
