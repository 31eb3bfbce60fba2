"""Light and dark themes: the Fusion style, a matching palette and a small style sheet."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtGui import QColor, QPalette
from PySide6.QtWidgets import QApplication

from .resources import style_sheet

THEMES = ("system", "light", "dark")

_Role = QPalette.ColorRole
_Group = QPalette.ColorGroup

_LIGHT = {
    _Role.Window: "#f3f3f5",
    _Role.WindowText: "#1f2328",
    _Role.Base: "#ffffff",
    _Role.AlternateBase: "#f6f7f9",
    _Role.ToolTipBase: "#ffffff",
    _Role.ToolTipText: "#1f2328",
    _Role.PlaceholderText: "#6b7280",
    _Role.Text: "#1f2328",
    _Role.Button: "#f8f8fa",
    _Role.ButtonText: "#1f2328",
    _Role.BrightText: "#d1242f",
    _Role.Light: "#ffffff",
    _Role.Midlight: "#e9e9ec",
    _Role.Mid: "#c8c8cd",
    _Role.Dark: "#a0a0a8",
    _Role.Shadow: "#6e6e78",
    _Role.Highlight: "#2f6fed",
    _Role.HighlightedText: "#ffffff",
    _Role.Link: "#1f5fd6",
    _Role.LinkVisited: "#7a3fd1",
}

_DARK = {
    _Role.Window: "#1e1f22",
    _Role.WindowText: "#e6e7e9",
    _Role.Base: "#2b2d31",
    _Role.AlternateBase: "#313338",
    _Role.ToolTipBase: "#2b2d31",
    _Role.ToolTipText: "#e6e7e9",
    _Role.PlaceholderText: "#8b9099",
    _Role.Text: "#e6e7e9",
    _Role.Button: "#33353a",
    _Role.ButtonText: "#e6e7e9",
    _Role.BrightText: "#ff6b6b",
    _Role.Light: "#3a3c41",
    _Role.Midlight: "#323439",
    _Role.Mid: "#45474d",
    _Role.Dark: "#141517",
    _Role.Shadow: "#000000",
    _Role.Highlight: "#3d7eff",
    _Role.HighlightedText: "#ffffff",
    _Role.Link: "#6ea8ff",
    _Role.LinkVisited: "#b18cff",
}

_DISABLED = {"light": "#9a9ca3", "dark": "#6c6f76"}


def build_palette(dark: bool) -> QPalette:
    """The LlamaDesk palette for a light or dark theme."""
    palette = QPalette()
    for role, color in (_DARK if dark else _LIGHT).items():
        palette.setColor(role, QColor(color))
    disabled = QColor(_DISABLED["dark" if dark else "light"])
    for role in (_Role.WindowText, _Role.Text, _Role.ButtonText, _Role.PlaceholderText):
        palette.setColor(_Group.Disabled, role, disabled)
    palette.setColor(_Group.Disabled, _Role.Highlight, QColor("#55585f" if dark else "#c5c8ce"))
    return palette


def system_prefers_dark(app: QApplication) -> bool:
    """Whether the desktop asks for a dark colour scheme."""
    return app.styleHints().colorScheme() == Qt.ColorScheme.Dark


def apply_theme(app: QApplication, theme: str) -> bool:
    """Apply "system", "light" or "dark" to the whole app; returns whether the result is dark."""
    if theme not in THEMES:
        theme = "system"
    dark = system_prefers_dark(app) if theme == "system" else theme == "dark"
    app.setStyle("Fusion")
    app.setPalette(build_palette(dark))
    app.setStyleSheet(style_sheet("dark" if dark else "light"))
    return dark


def current_is_dark(app: QApplication) -> bool:
    """Whether the app's current palette is a dark one (window darker than its text)."""
    palette = app.palette()
    return palette.color(_Role.Window).lightness() < palette.color(_Role.WindowText).lightness()
