"""How a server instance is set up: address, key, origins and limits, checked before it binds."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

from ..errors import LlamaDeskError

__all__ = ["MAX_BODY_BYTES", "ServerConfig", "ServerError", "is_loopback"]

MAX_BODY_BYTES = 8 << 20  # far above a full context of text; a larger body is refused unread
MAX_MESSAGES = 4096
MAX_TOOLS = 128
MAX_STOP = 16
MAX_EMBEDDING_INPUTS = 2048


class ServerError(LlamaDeskError):
    """The server cannot start as configured (an address that needs a key, a port in use, ...)."""


def is_loopback(host: str) -> bool:
    """Whether ``host`` only accepts connections from this computer."""
    name = host.strip().strip("[]").lower()
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def is_wildcard(host: str) -> bool:
    """Whether ``host`` means every address of this computer (0.0.0.0, ::)."""
    name = host.strip().strip("[]")
    try:
        return ipaddress.ip_address(name).is_unspecified
    except ValueError:
        return name == ""


@dataclass
class ServerConfig:
    """One server's settings; :meth:`check` refuses an unsafe combination before anything binds."""

    host: str = "127.0.0.1"
    port: int = 8642
    api_key: str = ""
    allowed_origins: list[str] = field(default_factory=list)
    load_on_request: bool = False
    store_requests: bool = False
    embedding_model: str = ""
    max_queued: int = 16
    max_body_bytes: int = MAX_BODY_BYTES
    client: str = "api"  # the client tag of the server's jobs in the inference service

    def check(self) -> None:
        """Raise :class:`ServerError` when the address is exposed without a key, or a value is off."""
        if not self.host.strip():
            raise ServerError("The server needs an address to listen on (127.0.0.1 for this computer only).")
        if not 0 <= self.port <= 65535:
            raise ServerError(f"The port must be from 1 to 65535, not {self.port}.")
        if not is_loopback(self.host) and not self.api_key:
            raise ServerError(
                f"Listening on {self.host} lets other machines reach the API, so it requires an API key "
                "(--api-key, or the API key in Preferences → Server). Use 127.0.0.1 to serve this "
                "computer only."
            )
        for origin in self.allowed_origins:
            if origin != "*" and "://" not in origin:
                raise ServerError(
                    f"The allowed origin {origin!r} is not an origin: write it as scheme://host[:port], "
                    "e.g. http://localhost:3000."
                )

    def allows_origin(self, origin: str) -> bool:
        """Whether a web page from ``origin`` may call the API."""
        return "*" in self.allowed_origins or origin.rstrip("/") in {
            o.rstrip("/") for o in self.allowed_origins
        }

    def allowed_hosts(self) -> set[str] | None:
        """Host header names accepted (None: any, when listening on every address behind a key)."""
        if is_wildcard(self.host):
            return None
        names = {"localhost", "127.0.0.1", "::1", self.host.strip().strip("[]").lower()}
        return names
