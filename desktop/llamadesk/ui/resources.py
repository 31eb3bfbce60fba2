"""Finds the bundled resources/ folder and loads its icons.

Toolbar icons are monochrome SVGs drawn with ``currentColor``; they are tinted with the
palette's text colour so they suit light and dark themes. Fetch them again after a theme change.
"""

from __future__ import annotations

import functools
import os
import sys
from pathlib import Path

from PySide6.QtCore import QByteArray, QRectF, Qt
from PySide6.QtGui import QColor, QGuiApplication, QIcon, QPainter, QPalette, QPixmap
from PySide6.QtSvg import QSvgRenderer

RESOURCES_ENV = "LLAMADESK_RESOURCES"
ICON_SIZES = (16, 20, 24, 32, 48, 64, 128, 256)


def resources_dir() -> Path:
    """The resources/ folder: the env override, a PyInstaller bundle's copy, or the source tree's."""
    override = os.environ.get(RESOURCES_ENV)
    if override:
        return Path(override)
    bundle = getattr(sys, "_MEIPASS", None)
    if bundle:
        return Path(bundle) / "resources"
    return Path(__file__).resolve().parents[3] / "resources"


def icon_path(name: str) -> Path:
    """Path of resources/icons/<name>.svg (it may not exist)."""
    return resources_dir() / "icons" / f"{name}.svg"


def style_sheet(name: str) -> str:
    """The text of resources/styles/<name>.qss, or empty when it is missing."""
    try:
        return (resources_dir() / "styles" / f"{name}.qss").read_text(encoding="utf-8")
    except OSError:
        return ""


def _palette_text_color() -> QColor:
    app = QGuiApplication.instance()
    if isinstance(app, QGuiApplication):
        return app.palette().color(QPalette.ColorRole.WindowText)
    return QColor("#1f2328")


def icon(name: str, color: QColor | str | None = None) -> QIcon:
    """The icon resources/icons/<name>.svg; monochrome ones tinted ``color`` (default: palette text).

    Returns a null QIcon when the file is missing.
    """
    path = icon_path(name)
    if not path.is_file():
        return QIcon()
    svg = path.read_text(encoding="utf-8")
    if "currentColor" not in svg:
        return QIcon(str(path))
    tint = QColor(color) if color is not None else _palette_text_color()
    return QIcon(_tinted_icon(svg, tint.name(QColor.NameFormat.HexRgb)))  # a copy: callers may change it


@functools.lru_cache(maxsize=256)
def _tinted_icon(svg: str, color: str) -> QIcon:
    """Renders the SVG at every common size so the icon stays sharp on HiDPI screens (once per
    icon and colour: a list of 200 models must not render 200 icons)."""
    renderer = QSvgRenderer(QByteArray(svg.replace("currentColor", color).encode("utf-8")))
    result = QIcon()
    for size in ICON_SIZES:
        pixmap = QPixmap(size, size)
        pixmap.fill(Qt.GlobalColor.transparent)
        painter = QPainter(pixmap)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        renderer.render(painter, QRectF(0, 0, size, size))
        painter.end()
        result.addPixmap(pixmap)
    return result
