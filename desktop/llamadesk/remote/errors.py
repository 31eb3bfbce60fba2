"""The error type of remote servers: what went wrong, on which server, in words a user can act on."""

from __future__ import annotations

from ..errors import LlamaDeskError

__all__ = ["KINDS", "RemoteError"]

KINDS = (
    "bad_url",  # the address is not an http(s) URL
    "unreachable",  # nothing answers there (refused, DNS, timeout)
    "tls",  # the TLS handshake or certificate check failed
    "auth",  # 401/403: no key, or a wrong one
    "not_found",  # 404: the model (or the API) is not there
    "rate_limited",  # 429: the server is busy; ``retry_after`` may say for how long
    "cut",  # the reply stream ended before the server said it was done
    "not_openai",  # the server answered, but not as an OpenAI-compatible API does
    "refused",  # another 4xx: the server refused the request as sent
    "server",  # a 5xx, or an error event in the stream
    "unknown_server",  # no server of that name in the settings
)


class RemoteError(LlamaDeskError):
    """A remote server could not be used. ``kind`` is one of ``KINDS``; ``server`` names it;
    ``retry_after`` (seconds) comes from a 429's Retry-After header when it had one."""

    def __init__(
        self, message: str, kind: str, *, server: str = "", retry_after: float | None = None
    ) -> None:
        super().__init__(message)
        self.kind = kind
        self.server = server
        self.retry_after = retry_after
