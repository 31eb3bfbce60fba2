"""The Server tab of Preferences: the local API server's settings and its API key.

Generated from ``ServerSettings`` like the other tabs; the API key is edited here but kept in the
secret store (the system keyring), never in settings.json. Changes apply with Apply or OK.
"""

from __future__ import annotations

import secrets as random_secrets
from collections.abc import Callable
from typing import Any

from pydantic import ValidationError
from PySide6.QtWidgets import (
    QCheckBox,
    QFrame,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPlainTextEdit,
    QPushButton,
    QScrollArea,
    QVBoxLayout,
    QWidget,
)

from ..settings import ServerSettings
from .settings_form import SettingsForm, field_specs

__all__ = ["ServerTab", "attach_server_tab"]

INTRO = (
    "Other programs (editors, scripts, agent tools) can use the model loaded in this window through an "
    "OpenAI-compatible API at http://ADDRESS:PORT/v1 while LlamaDesk is open."
)

PLACEHOLDERS = {
    "server.allowed_origins": "One per line, e.g. http://localhost:3000",
    "server.embedding_model": "Empty: the loaded model",
}


class ServerTab(QWidget):
    """The server fields and the API key; ``result()`` validates them."""

    def __init__(self, settings: ServerSettings, api_key: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("serverTab")
        layout = QVBoxLayout(self)
        intro = QLabel(INTRO, self)
        intro.setWordWrap(True)
        layout.addWidget(intro)
        self.form = SettingsForm(field_specs(ServerSettings, "server", "server"), self)
        self.form.set_values("server", settings.model_dump())
        self._label_editors()
        layout.addWidget(self.form)
        box = QGroupBox("API key", self)
        inner = QVBoxLayout(box)
        row = QHBoxLayout()
        self.key_edit = QLineEdit(api_key, box)
        self.key_edit.setObjectName("serverApiKeyEdit")
        self.key_edit.setAccessibleName("API key")
        self.key_edit.setEchoMode(QLineEdit.EchoMode.Password)
        self.key_edit.setPlaceholderText("No key: any program on this computer may use the API")
        self.key_edit.setToolTip(
            "Clients send it as 'Authorization: Bearer KEY'. Required when the address is not 127.0.0.1. "
            "Kept in your system's keyring, not in the settings file."
        )
        show = QCheckBox("Show", box)
        show.setObjectName("serverShowKeyCheck")
        show.setAccessibleName("Show the API key")
        show.setToolTip("Show the API key in plain text")
        show.toggled.connect(
            lambda shown: self.key_edit.setEchoMode(
                QLineEdit.EchoMode.Normal if shown else QLineEdit.EchoMode.Password
            )
        )
        generate = QPushButton("Generate", box)
        generate.setObjectName("serverGenerateKeyButton")
        generate.setToolTip("Make a new random key")
        generate.setAccessibleName("Generate a new API key")
        generate.clicked.connect(lambda: self.key_edit.setText("ld-" + random_secrets.token_urlsafe(24)))
        row.addWidget(self.key_edit, 1)
        row.addWidget(show)
        row.addWidget(generate)
        inner.addLayout(row)
        layout.addWidget(box)
        self.error_label = QLabel(self)
        self.error_label.setObjectName("serverSettingsError")
        self.error_label.setProperty("role", "error")
        self.error_label.setWordWrap(True)
        self.error_label.hide()
        layout.addWidget(self.error_label)
        layout.addStretch(1)

    def _label_editors(self) -> None:
        """Screen readers hear each field's title (not its object name), and the list and text fields
        show an example of what they take instead of the generic one."""
        for editor in self.form.editors.values():
            editor.widget.setAccessibleName(editor.spec.title)
        for key, example in PLACEHOLDERS.items():
            widget = self.form.editors[key].widget
            if isinstance(widget, QLineEdit | QPlainTextEdit):
                widget.setPlaceholderText(example)

    def result(self) -> tuple[ServerSettings | None, str]:
        """The validated settings and key, or None (and the reason shown in the tab)."""
        values, errors = self.form.values()
        key = self.key_edit.text().strip()
        problem = "; ".join(errors.values())
        settings: ServerSettings | None = None
        if not problem:
            try:
                settings = ServerSettings.model_validate(values.get("server", {}))
            except ValidationError as exc:
                problem = "; ".join(f"{item['loc'][0]}: {item['msg']}" for item in exc.errors())
        if settings is not None and any(char.isspace() for char in key):
            problem = "The API key cannot contain spaces."
        if settings is not None and not problem:
            from ..server.config import ServerConfig, ServerError

            try:
                ServerConfig(
                    host=settings.host,
                    port=settings.port,
                    api_key=key,
                    allowed_origins=settings.allowed_origins,
                ).check()
            except ServerError as exc:
                problem = str(exc)
        self.error_label.setText(problem)
        self.error_label.setVisible(bool(problem))
        return (None, key) if problem else (settings, key)


def attach_server_tab(
    dialog: Any, settings: ServerSettings, api_key: str, on_apply: Callable[[ServerSettings, str], None]
) -> ServerTab:
    """Add the Server tab to a ``PreferencesDialog``; ``on_apply`` gets its values on Apply and OK."""
    tab = ServerTab(settings, api_key, dialog)
    area = QScrollArea()
    area.setWidgetResizable(True)
    area.setFrameShape(QFrame.Shape.NoFrame)
    area.setWidget(tab)
    dialog.tabs.addTab(area, "Server")
    applied = [settings.model_dump(), api_key]

    def apply() -> None:
        result, key = tab.result()
        if result is None or [result.model_dump(), key] == applied:
            return
        applied[:] = [result.model_dump(), key]
        on_apply(result, key)

    tab.form.changed.connect(lambda: dialog.apply_button.setEnabled(True))
    tab.key_edit.textChanged.connect(lambda _text: dialog.apply_button.setEnabled(True))
    dialog.apply_button.clicked.connect(apply)
    dialog.accepted.connect(apply)
    dialog.reset_button.clicked.connect(tab.form.reset_defaults)
    return tab
