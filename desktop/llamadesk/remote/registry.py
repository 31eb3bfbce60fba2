"""The user's remote servers: adding and removing them, their keys, and checking what they offer.

The list (name + address) lives in the settings (``Settings.remote_servers``); each server's API key
is a secret of its own in :class:`~llamadesk.secrets.SecretStore` (the system keyring), named by
:func:`secret_name`. Checking a server lists its models over the network: callers run it off the
GUI thread (:func:`check_all` checks several at once).
"""

from __future__ import annotations

import hashlib
import unicodedata
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ..settings import RemoteServer
from .errors import RemoteError
from .urls import default_name, normalize_url

if TYPE_CHECKING:
    from ..secrets import SecretStore

__all__ = [
    "CHECK_TIMEOUT_S",
    "RemoteModel",
    "ServerStatus",
    "add_server",
    "check_all",
    "check_server",
    "find_server",
    "remove_server",
    "secret_name",
]

CHECK_TIMEOUT_S = 5.0  # listing models is quick; a server that takes longer is shown as unreachable


@dataclass(frozen=True)
class RemoteModel:
    """A model on a remote server, as the picker and the store name it."""

    server: str  # the server's name
    url: str
    model: str  # the model id the server gave

    @property
    def display_name(self) -> str:
        """How a reply records who wrote it: "model-id @ server-name"."""
        return f"{self.model} @ {self.server}"

    @property
    def key(self) -> str:
        """The key presets and the picker know it by."""
        return f"remote:{self.server}/{self.model}"


@dataclass(frozen=True)
class ServerStatus:
    """What checking one server found: its models, or why it could not be used."""

    server: RemoteServer
    reachable: bool
    models: list[str] = field(default_factory=list)
    error: str = ""
    kind: str = ""  # the RemoteError kind when not reachable

    @property
    def summary(self) -> str:
        if self.reachable:
            count = len(self.models)
            return f"reachable, {count} model{'s' if count != 1 else ''}"
        return f"not reachable: {self.error}"


def secret_name(server_name: str) -> str:
    """The secret that holds the API key of the server called ``server_name``."""
    digest = hashlib.sha256(server_name.encode("utf-8", "surrogatepass")).hexdigest()[:16]
    return f"remote_key.{digest}"


def find_server(servers: Sequence[RemoteServer], name_or_url: str) -> RemoteServer | None:
    """The server called ``name_or_url``, else the one at that address; None when there is none."""
    for server in servers:
        if server.name == name_or_url:
            return server
    try:
        url = normalize_url(name_or_url)
    except RemoteError:
        return None
    return next((s for s in servers if s.url == url), None)


def add_server(servers: Sequence[RemoteServer], url: str, name: str = "") -> list[RemoteServer]:
    """``servers`` with a new one at ``url`` (named ``name``, else its host:port) at the end.

    Raises :class:`RemoteError` for an address that is not one, or a name or address already listed.
    """
    url = normalize_url(url)
    name = " ".join(name.split()) or default_name(url)
    if len(name) > 64:
        raise RemoteError(f"a server name is at most 64 characters: {name[:70]!r}…", "bad_url")
    if not name.isprintable() or any(unicodedata.category(c) == "Cf" for c in name):
        # a right-to-left override or an invisible character would make the name lie about itself
        raise RemoteError(f"a server name holds only visible characters: {name!r}", "bad_url")
    for server in servers:
        if server.name == name:
            raise RemoteError(f"a server called {name!r} is already listed ({server.url})", "bad_url")
        if server.url == url:
            raise RemoteError(f"{url} is already listed as {server.name!r}", "bad_url")
    return [*servers, RemoteServer(name=name, url=url)]


def remove_server(
    servers: Sequence[RemoteServer], name_or_url: str
) -> tuple[list[RemoteServer], RemoteServer]:
    """``servers`` without the one called (or at) ``name_or_url``, and the one removed."""
    found = find_server(servers, name_or_url)
    if found is None:
        raise RemoteError(f"no remote server called {name_or_url!r} is listed", "unknown_server")
    return [s for s in servers if s is not found], found


def check_server(
    server: RemoteServer, api_key: str | None, *, timeout_s: float = CHECK_TIMEOUT_S
) -> ServerStatus:
    """List ``server``'s models (a network call: never on the GUI thread)."""
    from .client import RemoteClient

    try:
        with RemoteClient(
            server.url,
            name=server.name,
            api_key=api_key,
            connect_timeout_s=timeout_s,
            read_timeout_s=timeout_s,
        ) as client:
            models = client.list_models()
    except RemoteError as exc:
        return ServerStatus(server, False, error=str(exc), kind=exc.kind)
    return ServerStatus(server, True, models)


def check_all(
    servers: Sequence[RemoteServer],
    secrets: SecretStore | None,
    *,
    keys: Mapping[str, str | None] | None = None,
    timeout_s: float = CHECK_TIMEOUT_S,
) -> list[ServerStatus]:
    """Check every server at once (in threads); the answers come in ``servers``' order.

    Each server's key comes from ``keys`` (by name) when given, else from ``secrets``.
    """
    if not servers:
        return []
    if keys is None:
        keys = {s.name: secrets.get(secret_name(s.name)) if secrets is not None else None for s in servers}
    with ThreadPoolExecutor(max_workers=min(8, len(servers)), thread_name_prefix="remote-check") as pool:
        futures = [
            pool.submit(check_server, server, keys.get(server.name), timeout_s=timeout_s)
            for server in servers
        ]
        return [future.result() for future in futures]
