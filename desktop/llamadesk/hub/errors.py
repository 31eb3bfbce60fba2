"""Errors raised by the hub package, the checks on what a Hub server sends, and the translation of
network failures into errors: repository names, file paths, sizes, headers and redirect targets
come from a server LlamaDesk does not control and are checked here before anything uses them.
"""

from __future__ import annotations

import logging
import re
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from types import ModuleType
from typing import Protocol
from urllib.parse import urlsplit

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


_ASCII_INT_RE = re.compile(r"[0-9]{1,20}")
MAX_RETRY_AFTER = 3600  # seconds: a server asking for longer is told "in an hour" and asked again then


def header_int(value: str | None, *, limit: int) -> int | None:
    """A whole number from a server's header: ASCII digits only, at most ``limit``; else None.

    ``"²".isdigit()`` is True yet ``int("²")`` raises, and ``int`` also accepts signs, spaces,
    underscores and other scripts' digits: a hostile header must not reach ``int`` unchecked.
    """
    text = (value or "").strip()
    if not _ASCII_INT_RE.fullmatch(text):
        return None
    number = int(text)
    return number if number <= limit else None


def _date_seconds(value: str) -> int | None:
    """Seconds from now until an HTTP date (0 if it has passed); None if ``value`` is not one."""
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return max(0, int((when - datetime.now(timezone.utc)).total_seconds()))


def retry_after_seconds(headers: HeaderLookup | None) -> int | None:
    """The Hub's Retry-After (seconds or an HTTP date) or RateLimit reset, at most an hour; None if absent."""
    if headers is None:
        return None
    value = (headers.get("retry-after") or "").strip()
    seconds = header_int(value, limit=10**9)
    if seconds is None and value.isascii() and value:
        seconds = _date_seconds(value)
    if seconds is None:
        for piece in (headers.get("ratelimit") or "").split(";"):
            key, _, number = piece.strip().partition("=")
            if key == "t":
                seconds = header_int(number, limit=10**9)
                break
    return None if seconds is None else min(seconds, MAX_RETRY_AFTER)


_REPO_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,95}(/[A-Za-z0-9][A-Za-z0-9_.\-]{0,95})?")
MAX_FILE_SIZE = 1 << 50  # 1 PiB: a listed size beyond this is a broken or hostile answer


def valid_repo_id(repo_id: object) -> bool:
    """True for a Hub model name: ``name`` or ``owner/name`` in ASCII letters, digits, ``-_.``, no ``..``."""
    return isinstance(repo_id, str) and bool(_REPO_ID_RE.fullmatch(repo_id)) and ".." not in repo_id


def check_repo_id(repo_id: str) -> str:
    """``repo_id`` when it is a model name (``owner/name``) safe in a URL and as a folder name; else HubError.

    Hub names are ASCII letters, digits, ``-``, ``_`` and ``.``, at most 96 of them per part, and
    never ``..``: anything else (``../x``, ``/abs``, ``a/b/c``, a NUL, a newline) is refused.
    """
    if not valid_repo_id(repo_id):
        shown = "".join(c if c.isprintable() else "?" for c in str(repo_id))[:100]
        raise HubError(
            f"“{shown}” is not a model name: use owner/name, e.g. bartowski/Llama-3.2-1B-Instruct-GGUF.",
            kind="not_found",
        )
    return repo_id


def valid_size(value: object) -> int | None:
    """A file size from the Hub when it is a whole number between 0 and 1 PiB; else None."""
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= MAX_FILE_SIZE:
        return value
    return None


def unsafe_repo_path(path: str) -> bool:
    """True for a file name from the Hub that could land outside the model's folder, or nowhere.

    Names are POSIX paths relative to the repo: ``..``, absolute paths, backslashes and
    drive letters (which Windows treats as separators or roots) are refused, and so is a name
    with a lone surrogate (an escaped ``"\\ud800"`` in a listing): it fits in no URL and no file name.
    """
    if not path or path.startswith("/") or any(c in path for c in "\\:\0") or not is_utf8(path):
        return True
    parts = [p for p in path.split("/") if p not in ("", ".")]
    return not parts or ".." in parts


def is_utf8(text: str) -> bool:
    """True when ``text`` can be written as UTF-8 (it holds no lone surrogate)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def check_revision(revision: str) -> str:
    """``revision`` (a branch, tag or commit) when it can go in a URL; else HubError."""
    if not isinstance(revision, str) or not revision.strip() or not is_utf8(revision) or len(revision) > 256:
        shown = "".join(c if c.isprintable() and is_utf8(c) else "?" for c in str(revision))[:100]
        raise HubError(f"“{shown}” is not a revision: use a branch, a tag or a commit.", kind="not_found")
    if any(not c.isprintable() for c in revision):
        raise HubError("A revision can't contain control characters.", kind="not_found")
    return revision


def shown_url(url: str, limit: int = 120) -> str:
    """A server's address fit for a message: no query (it may hold a signature), no control characters."""
    try:
        parts = urlsplit(url)
        text = f"{parts.scheme}://{parts.netloc}{parts.path}" if parts.scheme else url.split("?", 1)[0]
    except ValueError:
        text = url.split("?", 1)[0]
    text = "".join(c if c.isprintable() else "?" for c in text)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def refused_target(url: str, endpoint: str) -> HubError | None:
    """Why LlamaDesk must not follow the Hub to ``url`` (a redirect or a next-page link), or None.

    Only https:// addresses are followed, plus plain http:// to the configured endpoint's own
    host when that endpoint is itself http:// (a local mirror): never ftp://, file:// or a
    downgrade from https to http.
    """
    try:
        target, home = urlsplit(url), urlsplit(endpoint)
        host, home_host = target.hostname, home.hostname
    except ValueError:  # e.g. a broken IPv6 address
        return HubError(f"The Hugging Face Hub sent LlamaDesk to an invalid address ({shown_url(url)}).")
    scheme = target.scheme.lower()
    if host and scheme == "https":
        return None
    if host and scheme == "http" and home.scheme.lower() == "http" and host == home_host:
        return None
    return HubError(
        f"The Hugging Face Hub sent LlamaDesk to {shown_url(url)}, which it does not follow: only https:// "
        "addresses (and the Hub's own address) are allowed. Check the Hub address (HF_ENDPOINT).",
        kind="server",
    )


def http_client() -> ModuleType:
    """huggingface_hub's HTTP client module (``httpx2`` in huggingface_hub >= 2, else ``httpx``)."""
    try:
        import httpx2
    except ImportError:  # pragma: no cover - older releases
        import httpx

        return httpx
    return httpx2


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
        when = "in a few minutes" if wait is None else f"in {wait} seconds" if wait else "now"
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

    httpx = http_client()
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
