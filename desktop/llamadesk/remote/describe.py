"""What went wrong talking to a remote server, in words a user can act on (one :class:`RemoteError`)."""

from __future__ import annotations

import logging
import ssl
import time
from typing import Any

import httpx2
import openai

from .errors import RemoteError
from .transport import ResponseLimitError
from .urls import shown_url

log = logging.getLogger("llamadesk.remote.client")

__all__ = ["MAX_RETRY_AFTER_S", "describe_error", "not_openai"]

MAX_RETRY_AFTER_S = 24 * 3600.0  # a longer (or nonsensical) Retry-After is reported as "in a moment"


def not_openai(name: str, what: str) -> RemoteError:
    """The server answered, but not as an OpenAI-compatible API does (``what`` says how)."""
    return RemoteError(
        f"{name} answered with something that is not an OpenAI-compatible chat reply ({what}).",
        "not_openai",
        server=name,
    )


def _retry_after(response: Any) -> float | None:
    """Seconds from a Retry-After header (a number of seconds or an HTTP date)."""
    value = (response.headers.get("retry-after") or "").strip()
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        from email.utils import parsedate_to_datetime

        try:
            seconds = parsedate_to_datetime(value).timestamp() - time.time()
        except (TypeError, ValueError, OverflowError, IndexError):
            return None
    # Negative, infinite, NaN or absurd (1e30) waits say nothing useful: "try again in a moment".
    return seconds if 0.0 <= seconds <= MAX_RETRY_AFTER_S else None


def _server_message(exc: openai.APIStatusError) -> str:
    """The server's own words for an error status, shortened; empty when it gave none."""
    body = exc.body
    message: Any = None
    if isinstance(body, dict):
        message = body.get("message") or body.get("error") or body.get("detail")
        if isinstance(message, dict):
            message = message.get("message")
    if not isinstance(message, str):
        try:
            message = exc.response.text
        except Exception:
            message = ""
        if "<html" in message[:200].lower():
            message = ""
    message = " ".join(str(message).split())
    return message[:300]


def _limit_failure(exc: BaseException) -> str | None:
    """What went past a response limit when that is what ``exc`` (or its cause) was."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, ResponseLimitError):
            return str(current)
        current = current.__cause__ or current.__context__
    return None


def _ssl_failure(exc: BaseException) -> BaseException | None:
    """The TLS error behind ``exc``, if that is what it was."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, ssl.SSLError) or "CERTIFICATE_VERIFY_FAILED" in str(current):
            return current
        current = current.__cause__ or current.__context__
    return None


def describe_error(
    exc: BaseException, name: str, url: str, *, model: str = "", streaming: bool = False
) -> RemoteError:
    """Any failure talking to server ``name`` as a specific, readable RemoteError."""
    if isinstance(exc, RemoteError):
        return exc
    what = f"model {model!r}" if model else "model list at this address"
    shown = shown_url(url)
    limit = _limit_failure(exc)
    if limit is not None:
        return RemoteError(
            f"{name} sent {limit}: that is not an OpenAI-compatible answer, so it was cut off.",
            "not_openai",
            server=name,
        )
    if isinstance(exc, openai.APIStatusError):
        status = exc.status_code
        if 300 <= status < 400:
            target = shown_url(exc.response.headers.get("location", "")) or "another address"
            return RemoteError(
                f"{name} ({shown}) redirects to {target} ({status}). Redirects are not followed, so the "
                "API key and your messages go only where you said: if that address is right, use it as "
                "the server's address instead.",
                "refused",
                server=name,
            )
        said = _server_message(exc)
        said_text = f" The server said: {said}" if said else ""
        if status in (401, 403):
            return RemoteError(
                f"{name} refused the request ({status} {'Unauthorized' if status == 401 else 'Forbidden'}): "
                f"the API key is missing or wrong. Set the server's key in Preferences → Remote servers "
                f"(or --api-key).{said_text}",
                "auth",
                server=name,
            )
        if status == 404:
            return RemoteError(
                f"{name} has no {what} (404 Not Found): it was removed or renamed there, or the address "
                f"is not the server's base URL. Refresh the model list.{said_text}",
                "not_found",
                server=name,
            )
        if status == 429:
            wait = _retry_after(exc.response)
            when = f"try again in {wait:.0f} s" if wait is not None else "try again in a moment"
            return RemoteError(
                f"{name} is busy (429 Too Many Requests): {when}.{said_text}",
                "rate_limited",
                server=name,
                retry_after=wait,
            )
        kind = "server" if status >= 500 else "refused"
        return RemoteError(f"{name} answered {status} to the request ({what}).{said_text}", kind, server=name)
    tls = _ssl_failure(exc)
    if tls is not None:
        return RemoteError(
            f"The secure connection to {name} failed: {getattr(tls, 'reason', None) or tls}. "
            "Check that the address uses the right scheme (http or https) and that the server's "
            "certificate is valid for this machine.",
            "tls",
            server=name,
        )
    if isinstance(exc, openai.APIResponseValidationError):
        return not_openai(name, str(exc))
    if streaming and isinstance(exc, (httpx2.HTTPError, openai.APIConnectionError, OSError)):
        cause = exc.__cause__ or exc.__context__ or exc
        return RemoteError(
            f"The connection to {name} was cut during the reply ({type(cause).__name__}: {cause}).",
            "cut",
            server=name,
        )
    if isinstance(exc, openai.APIError) and streaming:  # an error event in the stream
        return RemoteError(f"{name} reported an error during the reply: {exc.message}", "server", server=name)
    if isinstance(exc, (openai.APIConnectionError, httpx2.HTTPError, OSError)):
        reason = exc.__cause__ or exc.__context__
        detail = f"{type(reason).__name__}: {reason}" if reason is not None else str(exc)
        timed_out = isinstance(exc, openai.APITimeoutError) or isinstance(reason, httpx2.TimeoutException)
        return RemoteError(
            f"{name} ({shown}) {'did not answer in time' if timed_out else 'cannot be reached'} ({detail}). "
            "Check that the server is running and the address is right.",
            "unreachable",
            server=name,
        )
    if isinstance(exc, (ValueError, TypeError, AttributeError, KeyError)):
        return not_openai(name, f"{type(exc).__name__}: {exc}")
    log.exception("unexpected failure talking to %s", name, exc_info=exc)
    return RemoteError(f"{name} could not be used: {type(exc).__name__}: {exc}", "server", server=name)
