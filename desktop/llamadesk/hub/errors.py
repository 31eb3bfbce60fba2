"""Errors raised by the hub package, and the translation of network failures into them."""

from __future__ import annotations

import logging
from typing import Protocol

from ..errors import LlamaDeskError

log = logging.getLogger(__name__)


class HeaderLookup(Protocol):
    """Response headers of either HTTP client (httpx or http.client)."""

    def get(self, name: str, /) -> str | None: ...


OFFLINE_MESSAGE = (
    "Can't reach the Hugging Face Hub: check your connection — your downloaded models still work."
)


class HubError(LlamaDeskError):
    """A Hub, download or library operation failed; ``str()`` says why and what to do.

    ``kind`` lets the interface offer the right next step (e.g. a token field for "gated"):
    "offline", "not_found", "gated", "auth", "rate_limited", "server", "disk", "checksum",
    "cancelled", "library" or "other". ``retry_after`` is in seconds when the Hub said so.
    """

    def __init__(
        self, message: str, *, kind: str = "other", retry_after: int | None = None, url: str | None = None
    ) -> None:
        super().__init__(message)
        self.kind = kind
        self.retry_after = retry_after
        self.url = url


def scrub(text: str, token: str | None) -> str:
    """``text`` with the access token blanked out, so it never reaches a log or a dialog."""
    if token:
        text = text.replace(token, "hf_***")
    return text


def retry_after_seconds(headers: HeaderLookup | None) -> int | None:
    """The Hub's Retry-After (or RateLimit reset) in seconds, if it sent one."""
    if headers is None:
        return None
    value = (headers.get("retry-after") or "").strip()
    if value.isdigit():
        return int(value)
    ratelimit = headers.get("ratelimit") or ""
    for piece in ratelimit.split(";"):
        key, _, number = piece.strip().partition("=")
        if key == "t" and number.isdigit():
            return int(number)
    return None


def status_error(
    status: int,
    *,
    repo_id: str | None,
    endpoint: str,
    token: str | None,
    error_code: str | None = None,
    server_message: str | None = None,
    headers: HeaderLookup | None = None,
    filename: str | None = None,
    revision: str | None = None,
) -> HubError:
    """A ``HubError`` for an HTTP error status answered by the Hub."""
    repo_url = f"{endpoint}/{repo_id}" if repo_id else endpoint
    server_message = server_message or ""
    if error_code == "GatedRepo" or (status == 403 and "gated" in server_message.lower()):
        if token:
            return HubError(
                f"Your access token does not give access to {repo_id} yet. Open {repo_url}, log in and "
                "accept the model's license (some authors approve requests by hand), then try again.",
                kind="gated",
                url=repo_url,
            )
        return HubError(
            f"{repo_id} is a gated model: open {repo_url}, log in and accept its license, then add a "
            "Hugging Face access token (Preferences → Hub) and try again.",
            kind="gated",
            url=repo_url,
        )
    refused = token or "invalid credentials" in server_message.lower()
    if status == 401 and error_code != "RepoNotFound" and refused:
        return HubError(
            "The Hugging Face Hub refused your access token (it is invalid or has expired). Create a new one "
            f"at {endpoint}/settings/tokens and update it in Preferences.",
            kind="auth",
            url=f"{endpoint}/settings/tokens",
        )
    if error_code == "EntryNotFound" or (
        status == 404 and filename and error_code != "RepoNotFound" and error_code != "RevisionNotFound"
    ):
        return HubError(
            f"{repo_id} has no file named {filename or 'like that'}. The repository may have changed: "
            "refresh its file list.",
            kind="not_found",
            url=repo_url,
        )
    if error_code == "RevisionNotFound":
        return HubError(
            f"{repo_id} has no revision named {revision or 'like that'}.", kind="not_found", url=repo_url
        )
    if error_code == "RepoNotFound" or status in (401, 404):
        return HubError(
            f"There is no model {repo_id} on the Hugging Face Hub. Check the name; a private model also "
            "needs an access token in Preferences.",
            kind="not_found",
            url=repo_url,
        )
    if status == 429:
        wait = retry_after_seconds(headers)
        when = f"in {wait} seconds" if wait is not None else "in a few minutes"
        return HubError(
            f"The Hugging Face Hub is limiting how many requests you can make: try again {when}.",
            kind="rate_limited",
            retry_after=wait,
        )
    if status >= 500:
        return HubError(
            f"The Hugging Face Hub had a server error (HTTP {status}): try again in a few minutes.",
            kind="server",
        )
    if status == 403:
        return HubError(
            f"The Hugging Face Hub refused access to {repo_id or 'this page'} (HTTP 403). "
            "Check that your access token has read permission.",
            kind="auth",
            url=repo_url,
        )
    detail = f": {server_message.strip().splitlines()[0]}" if server_message.strip() else ""
    return HubError(scrub(f"The Hugging Face Hub answered with HTTP {status}{detail}.", token), kind="other")


def translate(
    exc: BaseException,
    *,
    repo_id: str | None = None,
    endpoint: str,
    token: str | None = None,
    filename: str | None = None,
    revision: str | None = None,
) -> HubError:
    """Turn an exception from huggingface_hub or the HTTP client into a ``HubError``."""
    from huggingface_hub.errors import (
        DisabledRepoError,
        GatedRepoError,
        HfHubHTTPError,
        LocalTokenNotFoundError,
        OfflineModeIsEnabled,
        RemoteEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    from .catalog import httpx

    if isinstance(exc, HubError):
        return exc
    log.debug("Hub request failed: %s", type(exc).__name__)
    if isinstance(exc, OfflineModeIsEnabled):
        return HubError(
            "Hugging Face Hub access is switched off (HF_HUB_OFFLINE is set) — "
            "your downloaded models still work.",
            kind="offline",
        )
    if isinstance(exc, HfHubHTTPError):
        response = exc.response
        status = response.status_code if response is not None else 0
        headers = response.headers if response is not None else None
        code = headers.get("X-Error-Code") if headers is not None else None
        if isinstance(exc, GatedRepoError):
            code = "GatedRepo"
        elif isinstance(exc, RevisionNotFoundError):
            code = "RevisionNotFound"
        elif isinstance(exc, RemoteEntryNotFoundError):
            code = "EntryNotFound"
        elif isinstance(exc, RepositoryNotFoundError) and code is None and status != 401:
            code = "RepoNotFound"
        if isinstance(exc, DisabledRepoError):
            return HubError(f"{repo_id} has been disabled on the Hugging Face Hub.", kind="not_found")
        message = scrub(exc.server_message or "", token)
        return status_error(
            status,
            repo_id=repo_id,
            endpoint=endpoint,
            token=token,
            error_code=code,
            server_message=message,
            headers=headers,
            filename=filename,
            revision=revision,
        )
    if isinstance(exc, httpx.TimeoutException):
        return HubError(
            "The Hugging Face Hub did not answer in time: check your connection and try again.",
            kind="offline",
        )
    if isinstance(exc, (httpx.TransportError, ConnectionError)):
        return HubError(OFFLINE_MESSAGE, kind="offline")
    if isinstance(exc, LocalTokenNotFoundError):
        return HubError("This needs a Hugging Face access token: add one in Preferences.", kind="auth")
    if isinstance(exc, (ValueError, KeyError, TypeError)):
        return HubError(
            "The Hugging Face Hub sent an answer LlamaDesk could not understand; try again later.",
            kind="server",
        )
    return HubError(scrub(f"Hugging Face Hub request failed: {exc}", token), kind="other")
