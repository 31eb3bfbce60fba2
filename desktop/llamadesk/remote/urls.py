"""Server addresses: what a user may type, and the API base the client talks to."""

from __future__ import annotations

import re
from urllib.parse import urlsplit, urlunsplit

from .errors import RemoteError

__all__ = ["api_base", "default_name", "normalize_url", "shown_url"]

MAX_URL = 2048
_HOST = re.compile(r"[a-z0-9._~%:-]+")  # a name, an IPv4 address, or an IPv6 one (brackets removed)


def normalize_url(text: str) -> str:
    """``text`` as a server address: http(s), a host, no query or fragment, no trailing slash.

    "localhost:8080" gets http:// in front. Raises :class:`RemoteError` ("bad_url") otherwise.
    """
    value = text.strip()
    if value and "://" not in value:
        value = "http://" + value
    quoted = repr(shown_url(value))  # what the messages below show: never a password, never 10 KB
    try:
        parts = urlsplit(value)
        port = parts.port  # raises on a port that is not a number or out of range
    except ValueError as exc:
        raise RemoteError(f"{quoted} is not a server address: {exc}", "bad_url") from exc
    del port
    if parts.password is not None:
        raise RemoteError(
            f"{quoted}: a server address holds no password (it would be stored and shown with the "
            "address). Give the server's key as its API key instead.",
            "bad_url",
        )
    host = parts.hostname or ""
    if len(value) > MAX_URL or parts.scheme.lower() not in ("http", "https") or not _HOST.fullmatch(host):
        raise RemoteError(
            f"{quoted} is not a server address; give one like http://192.168.1.20:8080 "
            "or https://llm.example.com",
            "bad_url",
        )
    if parts.query or parts.fragment:
        raise RemoteError(f"a server address has no '?' or '#' part: {quoted}", "bad_url")
    return urlunsplit((parts.scheme.lower(), parts.netloc, parts.path.rstrip("/"), "", ""))


def api_base(url: str) -> str:
    """The OpenAI base URL of a server: its address with ``/v1`` added unless it ends with it."""
    url = url.rstrip("/")
    return url if url.rsplit("/", 1)[-1].lower() == "v1" else url + "/v1"


def default_name(url: str) -> str:
    """A name for a server when the user gives none: its host and port."""
    parts = urlsplit(normalize_url(url))
    return parts.netloc.rsplit("@", 1)[-1]


def shown_url(url: str) -> str:
    """``url`` as messages and logs may show it: no user name or password, no query, printable, short."""
    text = "".join(c if c.isprintable() else "\ufffd" for c in str(url)[:MAX_URL])
    try:
        parts = urlsplit(text)
    except ValueError:
        return text.split("@")[-1][:100]
    netloc = parts.netloc.rsplit("@", 1)[-1]
    shown = urlunsplit((parts.scheme, netloc, parts.path, "", "")) if parts.scheme else text.split("@")[-1]
    return shown if len(shown) <= 100 else shown[:99] + "…"
