"""The remote servers' models as the window knows them: checked in the background, shown in the picker.

Checking lists each server's models over the network and reads its API key from the keyring, both
on a worker (``window.tasks``), never on the GUI thread. The keys found are kept in memory so that
choosing a remote model does not touch the keyring again.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

from PySide6.QtCore import QObject, Signal

from ..errors import LlamaDeskError
from ..remote.registry import RemoteModel, ServerStatus, check_all, secret_name

if TYPE_CHECKING:
    from ..settings import RemoteServer
    from .main_window import MainWindow

log = logging.getLogger(__name__)

__all__ = ["RECHECK_AFTER_S", "RemoteCatalog"]

RECHECK_AFTER_S = 30.0  # opening the picker checks the servers again when the last check is older


class RemoteCatalog(QObject):
    """What each remote server offered when last checked.

    Signals:
        changed(list): the new ``ServerStatus`` list (also emitted, empty of models, while checking).
    """

    changed = Signal(list)

    def __init__(self, window: MainWindow) -> None:
        super().__init__(window)
        self.window = window
        self.statuses: list[ServerStatus] = []
        self._keys: dict[str, str | None] = {}
        self._checked_at = 0.0
        self._checking = False

    @property
    def checking(self) -> bool:
        return self._checking

    def refresh(self) -> None:
        """Check every server in the settings again (in the background)."""
        window = self.window
        servers = list(window.settings.remote_servers)
        if not servers:
            self._checking = False
            self._set([], {})
            return
        secrets = window.secrets
        self._checking = True
        if not self.statuses:  # first time: list the servers at once, their models follow
            self._set([ServerStatus(s, False, error="checking…", kind="checking") for s in servers], {})

        def check() -> tuple[list[ServerStatus], dict[str, str | None]]:
            keys = {server.name: secrets.get(secret_name(server.name)) for server in servers}
            return check_all(servers, None, keys=keys), keys

        def done(result: tuple[list[ServerStatus], dict[str, str | None]]) -> None:
            self._checking = False
            self._checked_at = time.monotonic()
            self._set(*result)

        def failed(error: LlamaDeskError) -> None:
            self._checking = False
            log.warning("checking the remote servers failed: %s", error)

        window.tasks.run(check, done, failed, channel="remote-servers")

    def refresh_if_stale(self) -> None:
        """Check again when the last check is older than ``RECHECK_AFTER_S`` (the picker is opening)."""
        stale = time.monotonic() - self._checked_at > RECHECK_AFTER_S
        if self.window.settings.remote_servers and not self._checking and stale:
            self.refresh()

    def model(self, server: str, model: str) -> RemoteModel | None:
        """The remote model ``model`` of the server called ``server``, if that server is listed."""
        found = self.server(server)
        return RemoteModel(found.name, found.url, model) if found is not None else None

    def server(self, name: str) -> RemoteServer | None:
        return next((s for s in self.window.settings.remote_servers if s.name == name), None)

    def api_key(self, server: str) -> str | None:
        """The server's API key as read at the last check (None: none, or not checked yet)."""
        return self._keys.get(server)

    def forget_key(self, server: str, key: str | None) -> None:
        """Use ``key`` for ``server`` from now on (just set in Preferences)."""
        self._keys[server] = key

    def _set(self, statuses: list[ServerStatus], keys: dict[str, str | None]) -> None:
        self.statuses = statuses
        self._keys.update(keys)
        self.changed.emit(statuses)
