"""The Hub's HTTP layer: bounded GET with checked redirects, one deadline per call, errors translated.

Requests go through huggingface_hub's HTTP session, with LlamaDesk's own limits: redirects
only where ``refused_target`` allows, one overall deadline per call, bounded answers, and the
access token sent only to the endpoint's origin and never logged.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urljoin, urlsplit

from huggingface_hub import constants
from huggingface_hub.errors import HfHubHTTPError, OfflineModeIsEnabled
from huggingface_hub.utils import build_hf_headers, get_session

from .. import safejson
from .errors import HubError, refused_target, scrub, status_error, translate

try:  # huggingface_hub >= 2 ships its HTTP client as httpx2
    import httpx2 as httpx
except ImportError:  # pragma: no cover - older releases
    import httpx  # type: ignore[no-redef]

# Errors the HTTP stack and huggingface_hub raise for a failed or garbled request.
HUB_EXCEPTIONS: tuple[type[BaseException], ...] = (
    HfHubHTTPError,
    OfflineModeIsEnabled,
    httpx.HTTPError,
    OSError,
    ValueError,
    KeyError,
    TypeError,
)
_MAX_ANSWER = 32 * 1024 * 1024  # bytes in one API answer (a 1000-file tree page is about 300 KB)
_MAX_CARD = 8 * 1024 * 1024
_MAX_REDIRECTS = 10
_REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})


def resolve_endpoint(endpoint: str | None = None) -> str:
    """The Hub's base URL: ``endpoint``, else ``$HF_ENDPOINT`` now, else huggingface_hub's default."""
    return (endpoint or os.environ.get("HF_ENDPOINT") or constants.ENDPOINT).rstrip("/")


def hub_headers(token: str | None) -> dict[str, str]:
    """Request headers with our token only (never a token found elsewhere on the machine)."""
    return build_hf_headers(token=token or False, library_name="llamadesk")


def _same_origin(url: str, endpoint: str) -> bool:
    a, b = urlsplit(url), urlsplit(endpoint)
    return (a.scheme, a.netloc) == (b.scheme, b.netloc)


@dataclass(frozen=True)
class _Answer:
    """A complete HTTP answer read within the deadline."""

    status: int
    headers: Any  # the client's case-insensitive headers
    body: bytes
    next_url: str | None  # the Link header's rel="next", made absolute


class HubHTTP:
    """The HTTP calls a Hub client makes, given ``endpoint``, token, ``timeout`` and ``deadline``."""

    endpoint: str
    _token: str | None
    timeout: float
    deadline: float

    def _deadline(self) -> float:
        return time.monotonic() + self.deadline

    def _followable(self, url: str) -> str:
        """``url`` (a link the Hub sent) if LlamaDesk may follow it; HubError naming it otherwise."""
        refused = refused_target(url, self.endpoint)
        if refused is not None:
            raise refused
        return url

    def _get(
        self, url: str, params: dict[str, Any] | None, deadline: float, *, limit: int = _MAX_ANSWER
    ) -> _Answer:
        """GET ``url`` and read the whole answer before ``deadline`` (a ``time.monotonic`` value).

        Redirects are followed here, one at a time, only where ``refused_target`` allows, and the
        token is sent to the endpoint's origin only. An answer larger than ``limit`` is refused.
        """
        client = get_session()
        for _hop in range(_MAX_REDIRECTS + 1):
            headers = hub_headers(self._token if _same_origin(url, self.endpoint) else None)
            wait = min(self.timeout, deadline - time.monotonic())
            if wait <= 0:
                raise self._too_slow()
            with client.stream(
                "GET", url, params=params, headers=headers, timeout=wait, follow_redirects=False
            ) as response:
                location = response.headers.get("Location")
                if response.status_code in _REDIRECT_STATUSES and location:
                    url, params = self._followable(urljoin(str(response.url), location)), None
                    continue
                body = bytearray()
                for chunk in response.iter_bytes():
                    body += chunk
                    if len(body) > limit:
                        raise HubError(
                            f"The Hugging Face Hub sent an answer larger than {limit // 1024 // 1024} MB; "
                            "LlamaDesk stopped reading it. Try again later.",
                            kind="server",
                        )
                    if time.monotonic() > deadline:
                        raise self._too_slow()
                link = response.links.get("next", {}).get("url")
                next_url = urljoin(str(response.url), link) if isinstance(link, str) and link else None
                return _Answer(response.status_code, response.headers, bytes(body), next_url)
        raise HubError("The Hugging Face Hub redirected LlamaDesk too often; try again later.", kind="server")

    def _too_slow(self) -> HubError:
        seconds = f"{self.deadline:g} second" + ("" if self.deadline == 1 else "s")
        return HubError(
            f"The Hugging Face Hub took more than {seconds} to answer: check your connection and try again.",
            kind="offline",
        )

    def _check(self, answer: _Answer, *, repo_id: str | None = None, revision: str | None = None) -> None:
        """Raise the ``HubError`` for an error status (4xx, 5xx, or a redirect with nowhere to go)."""
        if answer.status < 300:
            return
        message = answer.headers.get("X-Error-Message") or ""
        if not message:
            try:
                data = safejson.loads(answer.body[:65536])
            except ValueError:
                data = None
            error = data.get("error") if isinstance(data, dict) else None
            message = error if isinstance(error, str) else ""
        if message == "Access to this resource is disabled.":
            raise HubError(f"{repo_id} has been disabled on the Hugging Face Hub.", kind="not_found")
        raise status_error(
            answer.status,
            repo_id=repo_id,
            endpoint=self.endpoint,
            token=self._token,
            error_code=answer.headers.get("X-Error-Code"),
            server_message=scrub(message, self._token),
            headers=answer.headers,
            revision=revision,
        )

    def _error(
        self, exc: BaseException, *, repo_id: str | None = None, revision: str | None = None
    ) -> HubError:
        return translate(exc, repo_id=repo_id, endpoint=self.endpoint, token=self._token, revision=revision)
