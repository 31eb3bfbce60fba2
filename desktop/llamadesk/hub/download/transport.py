"""HTTP for downloads: urllib with certifi's CAs, checked redirects, cancellable calls, header parsing.

The token goes to the Hub's own origin only; redirects are followed to https:// (and to the
endpoint's own host over http:// for a local mirror) and nowhere else; every number read
from a header is checked before use.
"""

from __future__ import annotations

import contextlib
import functools
import http.client
import re
import socket
import ssl
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import urljoin, urlsplit

from ..errors import MAX_FILE_SIZE, OFFLINE_MESSAGE, HeaderLookup, HubError, header_int, refused_target

_T = TypeVar("_T")
_CONTENT_RANGE_RE = re.compile(r"bytes[ \t]+([0-9]{1,20})-([0-9]{1,20})/([0-9]{1,20}|\*)", re.ASCII)
_SHA256_RE = re.compile(r"[0-9a-f]{64}")
_SHA1_RE = re.compile(r"[0-9a-f]{40}")


class Stopped(Exception):
    """Internal: the user paused or cancelled."""


class Retry(Exception):
    """Internal: the transfer broke off; try again from the bytes on disk."""

    def __init__(self, reason: str, error: HubError | None = None, delay: float | None = None) -> None:
        super().__init__(reason)
        self.error = error
        self.delay = delay


@functools.lru_cache(maxsize=1)
def ssl_context() -> ssl.SSLContext:
    """Certificate checks with certifi's CA list (the same one huggingface_hub's client uses)."""
    try:
        import certifi
    except ImportError:  # pragma: no cover - certifi comes with huggingface_hub's HTTP client
        return ssl.create_default_context()
    return ssl.create_default_context(cafile=certifi.where())


def origin(url: str) -> tuple[str, str]:
    """(scheme, host:port) of ``url``: the token is sent only where this equals the endpoint's."""
    parts = urlsplit(url)
    return parts.scheme, parts.netloc.lower()


def close_quietly(thing: object) -> None:
    """Close a response (or an HTTPError holding one) nobody will read."""
    close = getattr(thing, "close", None)
    if callable(close):
        with contextlib.suppress(Exception):
            close()


class HubRedirects(urllib.request.HTTPRedirectHandler):
    """Follow redirects (the Hub sends file bytes from a CDN) but keep the token on the Hub.

    A target ``refused_target`` rejects (ftp://, another host over http://...) ends the request
    with a ``HubError`` naming it. A HEAD request stays on the Hub's origin: the Hub's answer to
    it already carries the file's size and hash, and the redirect itself is read as the answer.
    """

    def __init__(self, endpoint: str, authorization: str | None) -> None:
        super().__init__()
        self.endpoint = endpoint
        self.authorization = authorization

    def http_error_302(
        self, req: urllib.request.Request, fp: Any, code: int, msg: str, headers: http.client.HTTPMessage
    ) -> Any:
        """Check the target before urllib looks at it (it would follow ftp:// and refuse file:// vaguely)."""
        location = headers.get("location") or headers.get("uri")
        if location:
            refused = refused_target(urljoin(req.full_url, location), self.endpoint)
            if refused is not None:
                close_quietly(fp)
                raise refused
        return super().http_error_302(req, fp, code, msg, headers)

    http_error_301 = http_error_303 = http_error_307 = http_error_308 = http_error_302

    def redirect_request(
        self,
        req: urllib.request.Request,
        fp: Any,
        code: int,
        msg: str,
        headers: http.client.HTTPMessage,
        newurl: str,
    ) -> urllib.request.Request | None:
        if req.get_method() == "HEAD" and origin(newurl) != origin(self.endpoint):
            return None  # urllib raises HTTPError(code) with the redirect's headers
        new = super().redirect_request(req, fp, code, msg, headers, newurl)
        if new is not None and self.authorization and origin(newurl) == origin(self.endpoint):
            new.add_unredirected_header("Authorization", self.authorization)
        return new


def network_error(exc: BaseException) -> HubError:
    """A HubError for a connection that could not be made or broke."""
    reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
    if isinstance(reason, (TimeoutError, socket.timeout)):
        return HubError(
            "The Hugging Face Hub did not answer in time: check your connection and try again. "
            "The part already downloaded is kept.",
            kind="offline",
        )
    return HubError(OFFLINE_MESSAGE, kind="offline")


def start_offset(status: int, content_range: str | None, requested: int) -> int:
    """The byte offset the response body starts at (0 when the server ignored Range, -1 if unreadable)."""
    if status != 206:
        return 0
    match = _CONTENT_RANGE_RE.fullmatch((content_range or "").strip())
    if match:
        return int(match.group(1))
    return -1 if requested else 0


@dataclass(frozen=True)
class FileMetadata:
    """What the Hub's answer to HEAD says about a file; None where it said nothing usable."""

    commit: str | None
    size: int | None
    sha256: str | None
    git_sha1: str | None


def _etag(value: str | None) -> str:
    text = (value or "").strip()
    if text.startswith("W/"):
        text = text[2:]
    return text.strip('"').lower()


def parse_metadata(headers: HeaderLookup, *, redirected: bool, name: str) -> FileMetadata:
    """Read the commit, size and hashes from a HEAD answer (or the redirect the Hub answered with).

    For an LFS file the Hub sends ``X-Linked-Size`` and ``X-Linked-Etag`` (the SHA-256); for
    another file, ``Content-Length`` and an ``ETag`` holding its git blob SHA-1.
    """
    commit = _etag(headers.get("X-Repo-Commit"))
    linked = headers.get("X-Linked-Etag")
    etag = _etag(linked or headers.get("ETag"))
    text = headers.get("X-Linked-Size") or (None if redirected else headers.get("Content-Length"))
    size = header_int(text, limit=MAX_FILE_SIZE) if text is not None else None
    if text is not None and size is None:
        shown = "".join(c if c.isprintable() else "?" for c in text)[:40]
        raise HubError(
            f"The Hugging Face Hub gave an impossible size for {name} ({shown!r}); nothing was downloaded.",
            kind="server",
        )
    return FileMetadata(
        commit=commit if _SHA1_RE.fullmatch(commit) else None,
        size=size,
        sha256=etag if _SHA256_RE.fullmatch(etag) else None,
        git_sha1=etag if linked is None and _SHA1_RE.fullmatch(etag) else None,
    )


def interruptible(
    call: Callable[[], _T], *, check_stop: Callable[[], None], deadline: float | None, name: str
) -> _T:
    """Run a blocking network call on a helper thread so pause, cancel and a deadline need not wait for it.

    ``check_stop`` raises to abandon the call; past ``deadline`` (a ``time.monotonic`` value) the
    call is abandoned with ``TimeoutError``. A server that accepts the connection and never
    answers would otherwise hold the caller for the whole socket timeout, or forever if it
    trickles a byte now and then. An abandoned call's response is closed when it comes.
    """
    lock = threading.Lock()
    done = threading.Event()
    outcome: list[tuple[bool, Any]] = []
    abandoned = False

    def work() -> None:
        try:
            value: tuple[bool, Any] = (True, call())
        except BaseException as exc:
            value = (False, exc)
        with lock:
            if abandoned:
                close_quietly(value[1])
            else:
                outcome.append(value)
        done.set()

    threading.Thread(target=work, name=name, daemon=True).start()
    try:
        while not done.wait(0.05):
            check_stop()
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError("the server did not answer in time")
    except BaseException:
        with lock:
            abandoned = True
            for _ok, value in outcome:
                close_quietly(value)
        raise
    ok, value = outcome[0]
    if not ok:
        raise value
    return value
