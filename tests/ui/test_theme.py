"""Themes, icons and the resources folder."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from PySide6.QtCore import Qt
from PySide6.QtGui import QPalette
from PySide6.QtWidgets import QApplication

from llamadesk.ui.resources import RESOURCES_ENV, icon, resources_dir, style_sheet
from llamadesk.ui.theme import apply_theme, current_is_dark

ICONS = ["llamadesk", "send", "stop", "new-chat", "settings", "regenerate"]
ICONS += ["copy", "edit", "search", "download", "model"]


@pytest.fixture
def app(qapp: QApplication) -> Iterator[QApplication]:
    """The test QApplication, with its palette and style sheet restored afterwards."""
    palette, sheet = qapp.palette(), qapp.styleSheet()
    yield qapp
    qapp.setStyleSheet(sheet)
    qapp.setPalette(palette)


def test_dark_and_light_change_the_palette(app: QApplication) -> None:
    assert apply_theme(app, "dark") is True
    window = app.palette().color(QPalette.ColorRole.Window)
    assert window.lightness() < 60
    assert app.palette().color(QPalette.ColorRole.WindowText).lightness() > 200
    assert current_is_dark(app)
    assert "reloadNotice" in app.styleSheet()

    assert apply_theme(app, "light") is False
    assert app.palette().color(QPalette.ColorRole.Window).lightness() > 200
    assert not current_is_dark(app)


def test_system_theme_follows_the_color_scheme(app: QApplication) -> None:
    expected = app.styleHints().colorScheme() == Qt.ColorScheme.Dark
    assert apply_theme(app, "system") is expected
    assert current_is_dark(app) is expected
    assert apply_theme(app, "no-such-theme") is expected  # unknown names fall back to the system


def test_icons_load(app: QApplication) -> None:
    for name in ICONS:
        loaded = icon(name)
        assert not loaded.isNull(), name
        pixmap = loaded.pixmap(32, 32)
        assert not pixmap.isNull() and pixmap.width() == 32, name
        # A shape a user can see: neither an empty square nor a filled one.
        image = pixmap.toImage()
        drawn = sum(1 for x in range(32) for y in range(32) if image.pixelColor(x, y).alpha() > 128)
        assert 0.05 * 32 * 32 < drawn < 0.95 * 32 * 32, name
    assert icon("no-such-icon").isNull()


def test_toolbar_icons_follow_the_theme(app: QApplication) -> None:
    apply_theme(app, "dark")
    dark = icon("stop").pixmap(32, 32).toImage().pixelColor(16, 16)
    apply_theme(app, "light")
    light = icon("stop").pixmap(32, 32).toImage().pixelColor(16, 16)
    assert dark.lightness() > 180 and light.lightness() < 80


def test_resources_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    assert (resources_dir() / "icons" / "llamadesk.svg").is_file()
    assert (resources_dir() / "styles" / "dark.qss").is_file()
    assert style_sheet("light")
    monkeypatch.setenv(RESOURCES_ENV, str(tmp_path))
    assert resources_dir() == tmp_path
    assert style_sheet("light") == ""
    monkeypatch.delenv(RESOURCES_ENV)
    monkeypatch.setattr("sys._MEIPASS", str(tmp_path), raising=False)
    assert resources_dir() == tmp_path / "resources"
