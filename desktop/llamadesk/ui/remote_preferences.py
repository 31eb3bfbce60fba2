"""The Remote servers tab of Preferences: add a server by its address, with an optional API key.

The list is kept in the settings; each key goes to the system keyring (never settings.json).
A server is checked (its models listed) in the background as soon as it is added; changes apply
with Apply or OK, like the other tabs.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QFormLayout,
    QFrame,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QScrollArea,
    QVBoxLayout,
    QWidget,
)

from ..remote.errors import RemoteError
from ..remote.registry import ServerStatus, add_server, check_server, secret_name
from ..settings import RemoteServer

if TYPE_CHECKING:
    from .main_window import MainWindow

__all__ = ["RemoteServersTab", "attach_remote_tab", "open_remote_tab"]

INTRO = (
    "Use the models of another machine: a llama.cpp llama-server, vLLM, Ollama, LM Studio, "
    "text-generation-webui, or LlamaDesk running `llamadesk serve`. Its models appear in the model "
    "picker under the server's name; the server applies its own chat template."
)
CheckFunction = Callable[[RemoteServer, "str | None", Callable[[ServerStatus], None]], None]


class RemoteServersTab(QWidget):
    """The servers (with what checking them found), and the fields to add one.

    ``check(server, key, done)`` lists a server's models in the background and calls ``done`` with
    the result on the GUI thread.
    """

    def __init__(
        self, servers: list[RemoteServer], check: CheckFunction, parent: QWidget | None = None
    ) -> None:
        super().__init__(parent)
        self.setObjectName("remoteServersTab")
        self.servers = list(servers)
        self.keys: dict[str, str] = {}  # new keys by server name ("" forgets the key)
        self.removed: list[str] = []  # servers removed: their keys are forgotten
        self.statuses: dict[str, ServerStatus] = {}
        self._check = check
        layout = QVBoxLayout(self)
        intro = QLabel(INTRO, self)
        intro.setWordWrap(True)
        layout.addWidget(intro)

        self.list = QListWidget(self)
        self.list.setObjectName("remoteServerList")
        self.list.setAccessibleName("Remote servers")
        self.list.currentRowChanged.connect(lambda _row: self._update_buttons())
        layout.addWidget(self.list, 1)
        self.empty_label = QLabel("No servers yet: add one below.", self)
        self.empty_label.setObjectName("remoteEmptyLabel")
        layout.addWidget(self.empty_label)
        buttons = QHBoxLayout()
        self.remove_button = QPushButton("Remove", self)
        self.remove_button.setObjectName("remoteRemoveButton")
        self.remove_button.setToolTip("Remove the selected server (its API key is forgotten)")
        self.remove_button.setAccessibleName("Remove the selected server")
        self.remove_button.clicked.connect(self.remove_selected)
        self.check_button = QPushButton("Check again", self)
        self.check_button.setObjectName("remoteCheckButton")
        self.check_button.setToolTip("List each server's models again")
        self.check_button.setAccessibleName("Check the servers again")
        self.check_button.clicked.connect(self.check_all)
        buttons.addWidget(self.remove_button)
        buttons.addWidget(self.check_button)
        buttons.addStretch(1)
        layout.addLayout(buttons)

        box = QGroupBox("Add a server", self)
        form = QFormLayout(box)
        self.url_edit = QLineEdit(box)
        self.url_edit.setObjectName("remoteUrlEdit")
        self.url_edit.setPlaceholderText("http://192.168.1.20:8080")
        self.url_edit.setToolTip("The server's base URL; /v1 is added when it is missing.")
        self.url_edit.setAccessibleName("Server address")
        self.name_edit = QLineEdit(box)
        self.name_edit.setObjectName("remoteNameEdit")
        self.name_edit.setPlaceholderText("Shown in the model picker (default: host:port)")
        self.name_edit.setToolTip("The name the model picker lists the server's models under")
        self.name_edit.setAccessibleName("Server name")
        self.key_edit = QLineEdit(box)
        self.key_edit.setObjectName("remoteKeyEdit")
        self.key_edit.setEchoMode(QLineEdit.EchoMode.Password)
        self.key_edit.setPlaceholderText("Optional; kept in your system's keyring")
        self.key_edit.setToolTip("Sent as 'Authorization: Bearer KEY'; kept in your system's keyring")
        self.key_edit.setAccessibleName("Server API key")
        self.add_button = QPushButton("Add", box)
        self.add_button.setObjectName("remoteAddButton")
        self.add_button.setToolTip("Add the server and list its models")
        self.add_button.setAccessibleName("Add the server")
        self.add_button.clicked.connect(self.add_from_fields)
        self.url_edit.returnPressed.connect(self.add_from_fields)
        form.addRow("Address:", self.url_edit)
        form.addRow("Name:", self.name_edit)
        form.addRow("API key:", self.key_edit)
        self.set_key_button = QPushButton("Use this key for the selected server", box)
        self.set_key_button.setObjectName("remoteSetKeyButton")
        self.set_key_button.setToolTip("Replace (or, left empty, forget) the selected server's API key")
        self.set_key_button.clicked.connect(self.set_key_of_selected)
        row = QHBoxLayout()
        row.addWidget(self.add_button)
        row.addWidget(self.set_key_button)
        row.addStretch(1)
        form.addRow("", row)
        layout.addWidget(box)
        self.error_label = QLabel(self)
        self.error_label.setObjectName("remoteServerError")
        self.error_label.setProperty("role", "error")
        self.error_label.setWordWrap(True)
        self.error_label.hide()
        layout.addWidget(self.error_label)
        self.changed: Callable[[], None] = lambda: None
        self._refill()

    # -- editing

    def add_from_fields(self) -> bool:
        """Add the server in the fields (its address checked first); False (and why) when refused."""
        key = self.key_edit.text().strip()
        if any(char.isspace() for char in key):
            self._show_error("An API key has no spaces or line breaks.")
            return False
        try:
            self.servers = add_server(self.servers, self.url_edit.text(), self.name_edit.text())
        except RemoteError as exc:
            self._show_error(str(exc))
            return False
        added = self.servers[-1]
        if added.name in self.removed:
            self.removed.remove(added.name)
        self.keys[added.name] = key
        self._show_error("")
        for edit in (self.url_edit, self.name_edit, self.key_edit):
            edit.clear()
        self._refill()
        self._start_check(added)
        self.changed()
        return True

    def set_key_of_selected(self) -> bool:
        """Give the selected server the key in the field (empty: none), then check it with that key."""
        row = self.list.currentRow()
        key = self.key_edit.text().strip()
        if not 0 <= row < len(self.servers):
            self._show_error("Select a server first.")
            return False
        if any(char.isspace() for char in key):
            self._show_error("An API key has no spaces or line breaks.")
            return False
        server = self.servers[row]
        self.keys[server.name] = key
        self.key_edit.clear()
        self._show_error("")
        self._start_check(server)
        self.changed()
        return True

    def remove_selected(self) -> None:
        row = self.list.currentRow()
        if not 0 <= row < len(self.servers):
            return
        removed = self.servers.pop(row)
        self.keys.pop(removed.name, None)
        self.statuses.pop(removed.name, None)
        self.removed.append(removed.name)
        self._refill()
        self.changed()

    def check_all(self) -> None:
        for server in self.servers:
            self._start_check(server)

    # -- showing

    def _start_check(self, server: RemoteServer) -> None:
        self.statuses[server.name] = ServerStatus(server, False, error="checking…", kind="checking")
        self._refill()
        key = self.keys.get(server.name)

        def done(status: ServerStatus) -> None:
            if any(s.name == server.name and s.url == server.url for s in self.servers):
                self.statuses[server.name] = status
                self._refill()

        self._check(server, key, done)

    def status_text(self, server: RemoteServer) -> str:
        status = self.statuses.get(server.name)
        if status is None:
            return ""
        if status.kind == "checking":
            return "checking…"
        return status.summary

    def _refill(self) -> None:
        row = self.list.currentRow()
        self.list.clear()
        for server in self.servers:
            state = self.status_text(server)
            text = f"{server.name} — {server.url}" + (f"\n    {state}" if state else "")
            item = QListWidgetItem(text)
            item.setData(Qt.ItemDataRole.UserRole, server.name)
            status = self.statuses.get(server.name)
            if status is not None and status.models:
                item.setToolTip("Models: " + ", ".join(status.models))
            elif status is not None and status.error:
                item.setToolTip(status.error)
            self.list.addItem(item)
        if self.servers:
            self.list.setCurrentRow(min(max(row, 0), len(self.servers) - 1))
        self._update_buttons()

    def _update_buttons(self) -> None:
        selected = 0 <= self.list.currentRow() < len(self.servers)
        self.remove_button.setEnabled(selected)
        self.set_key_button.setEnabled(selected)
        self.check_button.setEnabled(bool(self.servers))
        self.empty_label.setVisible(not self.servers)

    def _show_error(self, text: str) -> None:
        self.error_label.setText(text)
        self.error_label.setVisible(bool(text))


def attach_remote_tab(
    dialog: Any,
    servers: list[RemoteServer],
    check: CheckFunction,
    on_apply: Callable[[list[RemoteServer], dict[str, str], list[str]], None],
) -> RemoteServersTab:
    """Add the Remote servers tab to a ``PreferencesDialog``; ``on_apply(servers, keys, removed)``
    gets the list, the keys set (by name; "" forgets one) and the names removed, on Apply and OK."""
    tab = RemoteServersTab(servers, check, dialog)
    area = QScrollArea()
    area.setWidgetResizable(True)
    area.setFrameShape(QFrame.Shape.NoFrame)
    area.setWidget(tab)
    dialog.tabs.addTab(area, "Remote servers")
    applied = [list(servers)]

    def apply() -> None:
        if tab.servers == applied[0] and not tab.keys and not tab.removed:
            return
        applied[0] = list(tab.servers)
        keys, removed = dict(tab.keys), list(tab.removed)
        tab.keys.clear()
        tab.removed.clear()
        on_apply(list(tab.servers), keys, removed)

    tab.changed = lambda: dialog.apply_button.setEnabled(True)
    dialog.apply_button.clicked.connect(apply)
    dialog.accepted.connect(apply)
    return tab


def open_remote_tab(window: MainWindow, dialog: Any) -> RemoteServersTab:
    """Add the Remote servers tab to the window's Preferences dialog."""
    catalog = window.models.remote

    def check(server: RemoteServer, key: str | None, done: Callable[[ServerStatus], None]) -> None:
        secrets = window.secrets

        def op() -> ServerStatus:
            # A server added just now has its key in hand; a listed one reads it from the keyring here.
            found = key if key is not None else secrets.get(secret_name(server.name))
            return check_server(server, found or None)

        window.tasks.run(op, done, channel=f"remote-preferences:{server.name}")

    def on_apply(servers: list[RemoteServer], keys: dict[str, str], removed: list[str]) -> None:
        window.settings = window.settings.model_copy(update={"remote_servers": servers})
        window.save_settings()
        for name, key in keys.items():
            catalog.forget_key(name, key or None)
        secrets = window.secrets

        def write() -> None:
            for name in removed:
                secrets.delete(secret_name(name))
            for name, key in keys.items():
                secrets.set(secret_name(name), key)

        def failed(error: Any) -> None:
            window.show_error(f"An API key could not be saved in the keyring: {error}")
            catalog.refresh()

        window.tasks.run(write, lambda _none: catalog.refresh(), failed)
        controller = window.controller
        in_use = controller.remote
        if in_use is not None and not controller.busy and all(s.name != in_use.server for s in servers):
            controller.unload()  # its server is gone from the list

    return attach_remote_tab(dialog, list(window.settings.remote_servers), check, on_apply)
