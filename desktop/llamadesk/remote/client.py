"""Talk to one OpenAI-compatible server: list its models, stream a chat reply, stop it.

Built on the ``openai`` client (it speaks the HTTP and parses the server-sent events); every failure
becomes a :class:`RemoteError` naming the server. The server applies its own chat template: it
gets the same ``messages`` a local model would (``chat.prompt.build_messages``), and the
generation settings as request fields (llama.cpp's extra samplers in the body, as llama-server
and LlamaDesk's own ``serve`` accept them; servers that do not know them ignore them).
"""

from __future__ import annotations

import logging
import socket
import ssl
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import httpx2
import openai

from .. import safejson
from ..engine.engine import GenerationStats, StopReason
from ..settings import GenerationSettings
from .errors import RemoteError
from .urls import api_base, normalize_url

log = logging.getLogger(__name__)

__all__ = ["RemoteClient", "RemoteReply", "RemoteStats", "request_fields"]

CONNECT_TIMEOUT_S = 10.0
READ_TIMEOUT_S = 600.0  # a long prompt on a slow server may take minutes before its first token
MAX_LIST_BYTES = 8 << 20  # a model list is a few KB; more is not one
THINK_OPEN, THINK_CLOSE = "<think>", "</think>"  # a reasoning field is handed on the way local thinking is


@dataclass
class RemoteStats(GenerationStats):
    """A remote reply's figures, plus which server and model wrote it and whether its stream was cut
    (``interrupted``: the part received is kept, ``error`` says why it ended)."""

    server: str = ""
    model: str = ""
    interrupted: bool = False


@dataclass(frozen=True)
class RemoteReply:
    """A finished (or stopped, or cut) remote reply: the text received and its stats."""

    text: str
    stats: RemoteStats


def request_fields(settings: GenerationSettings) -> tuple[dict[str, Any], dict[str, Any]]:
    """OpenAI request fields for ``settings``, and llama.cpp's samplers sent in the body as extras."""
    fields: dict[str, Any] = {
        "temperature": settings.temperature,
        "top_p": settings.top_p,
        "max_tokens": settings.max_tokens,
    }
    if settings.seed >= 0:
        fields["seed"] = settings.seed
    if settings.stop:
        fields["stop"] = list(settings.stop)[:4]  # OpenAI allows four; more are refused by strict servers
    for name in ("frequency_penalty", "presence_penalty"):
        value = getattr(settings, name, None)
        if value is not None:
            fields[name] = value
    extra = {"top_k": settings.top_k, "min_p": settings.min_p, "repeat_penalty": settings.repeat_penalty}
    return fields, extra


class RemoteClient:
    """One server at ``url`` (its ``/v1`` is added when missing), shown to the user as ``name``."""

    def __init__(
        self,
        url: str,
        *,
        name: str = "",
        api_key: str | None = None,
        connect_timeout_s: float = CONNECT_TIMEOUT_S,
        read_timeout_s: float = READ_TIMEOUT_S,
    ) -> None:
        self.url = normalize_url(url)
        self.name = name or self.url
        self._client = openai.OpenAI(
            base_url=api_base(self.url),
            api_key=api_key or "no-key",
            max_retries=0,  # a retry hides a 429's wait and doubles a dead server's timeout
            timeout=openai.Timeout(read_timeout_s, connect=connect_timeout_s),
        )
        self._lock = threading.Lock()
        self._streams: list[Any] = []

    def close(self) -> None:
        """Close the connections (stops any reply still streaming)."""
        self.abort()
        self._client.close()

    def __enter__(self) -> RemoteClient:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    # -- models

    def list_models(self) -> list[str]:
        """The ids of the server's models (``GET /v1/models``), in its order."""
        try:
            raw = self._client.models.with_raw_response.list()
            response = raw.http_response
            content = response.read()
        except Exception as exc:
            raise self._error(exc) from exc
        return self._parse_models(content, response.headers.get("content-type", ""))

    def _parse_models(self, content: bytes, content_type: str) -> list[str]:
        try:
            if len(content) > MAX_LIST_BYTES:
                raise ValueError("too large")
            data = safejson.loads(content)
            items = data["data"]
            ids = [item["id"] for item in items]
            if not all(isinstance(i, str) and i for i in ids):
                raise ValueError("a model id is not text")
        except (ValueError, KeyError, TypeError) as exc:
            sample = content[:80].decode("utf-8", "replace").strip()
            raise RemoteError(
                f"{self.name} answered GET /v1/models with something that is not an OpenAI-compatible "
                f"model list ({content_type or 'no content type'}: {sample!r}). Check the address: "
                "it should be the server's base URL, such as http://host:8080.",
                "not_openai",
                server=self.name,
            ) from exc
        return list(dict.fromkeys(ids))

    # -- chat

    def abort(self) -> None:
        """Close the streams in progress from any thread (the reading thread then ends at once)."""
        with self._lock:
            streams, self._streams = list(self._streams), []
        for stream in streams:
            # Closing the response from here would not wake a thread blocked reading it; shutting the
            # socket down does: the reader sees the end at once, ends the reply and closes the stream.
            try:
                network = stream.response.extensions.get("network_stream")
                sock = network.get_extra_info("socket") if network is not None else None
                if sock is not None:
                    sock.shutdown(socket.SHUT_RDWR)
                else:
                    stream.close()
            except Exception:  # already closed, or closing under a reader raised here
                log.debug("closing a stream of %s", self.name, exc_info=True)

    def chat(
        self,
        model: str,
        messages: Sequence[Mapping[str, Any]],
        settings: GenerationSettings,
        *,
        on_text: Callable[[str], None],
        stop: threading.Event | None = None,
    ) -> RemoteReply:
        """Stream ``model``'s reply to ``messages``, handing each piece to ``on_text`` as it arrives.

        Raises :class:`RemoteError` when nothing was received. Once text has arrived, a failure
        ends the reply instead: the text so far comes back with ``stats.error`` and
        ``stats.interrupted``. Setting ``stop`` (or :meth:`abort`) ends it as stopped by the user.
        """
        stop = stop or threading.Event()
        fields, extra = request_fields(settings)
        sent: list[Any] = [{"role": str(m["role"]), "content": str(m["content"])} for m in messages]
        started = time.monotonic()
        try:
            stream = self._client.chat.completions.create(
                model=model,
                messages=sent,
                stream=True,
                stream_options={"include_usage": True},
                extra_body={**fields, **extra},  # as plain JSON: llama.cpp's samplers are not OpenAI's
            )
        except Exception as exc:
            raise self._error(exc, model=model) from exc
        with self._lock:
            self._streams.append(stream)
        reading = _Reading(self, model, on_text, started)
        try:
            if stop.is_set():
                return reading.reply(StopReason.USER)
            content_type = stream.response.headers.get("content-type", "")
            if "text/event-stream" not in content_type:
                return reading.whole(stream.response, content_type)
            return reading.stream(stream, stop)
        finally:
            with self._lock:
                if stream in self._streams:
                    self._streams.remove(stream)
            try:
                stream.close()
            except Exception:
                log.debug("closing the stream of %s", self.name, exc_info=True)

    # -- errors

    def _error(self, exc: BaseException, *, model: str = "") -> RemoteError:
        """``exc`` (from the client or the transport) as a RemoteError naming the server."""
        return describe_error(exc, self.name, self.url, model=model)


class _Reading:
    """The reply being received: its text, its timing, and how it ends."""

    def __init__(
        self, client: RemoteClient, model: str, on_text: Callable[[str], None], started: float
    ) -> None:
        self.client = client
        self.model = model
        self.on_text = on_text
        self.started = started
        self.first: float | None = None
        self.parts: list[str] = []
        self.thinking = False  # inside a reasoning field's text
        self.usage: Any = None
        self.pieces = 0

    def emit(self, text: str, reasoning: str = "") -> None:
        if reasoning:
            if not self.thinking:
                self.thinking = True
                reasoning = THINK_OPEN + reasoning
            self._hand(reasoning)
        if text:
            if self.thinking:
                self.thinking = False
                text = THINK_CLOSE + text
            self._hand(text)

    def _hand(self, text: str) -> None:
        if self.first is None:
            self.first = time.monotonic()
        self.parts.append(text)
        self.pieces += 1
        self.on_text(text)

    def stream(self, stream: Any, stop: threading.Event) -> RemoteReply:
        finish: str | None = None
        name = self.client.name
        try:
            for chunk in stream:
                if stop.is_set():
                    return self.reply(StopReason.USER)
                choices = getattr(chunk, "choices", None)
                if getattr(chunk, "usage", None) is not None:
                    self.usage = chunk.usage
                if not isinstance(choices, list):
                    raise _not_openai(name, "a stream event without choices")
                for choice in choices[:1]:
                    delta = getattr(choice, "delta", None)
                    text = getattr(delta, "content", None) or ""
                    extra = getattr(delta, "model_extra", None) or {}
                    reasoning = extra.get("reasoning_content") or extra.get("reasoning") or ""
                    if not isinstance(text, str) or not isinstance(reasoning, str):
                        raise _not_openai(name, "a stream event whose text is not text")
                    self.emit(text, reasoning)
                    finish = getattr(choice, "finish_reason", None) or finish
        except RemoteError as exc:
            return self.failed(exc)
        except Exception as exc:
            if stop.is_set():  # the stream was closed under the reader by Stop
                return self.reply(StopReason.USER)
            error = describe_error(exc, name, self.client.url, model=self.model, streaming=True)
            return self.failed(error)
        if stop.is_set():
            return self.reply(StopReason.USER)
        if finish is None:
            return self.failed(
                RemoteError(
                    f"The connection to {name} ended before the reply was finished.", "cut", server=name
                )
            )
        return self.reply(StopReason.MAX_TOKENS if finish == "length" else StopReason.EOS)

    def whole(self, response: Any, content_type: str) -> RemoteReply:
        """A server that answered a streaming request with one JSON completion (some proxies do)."""
        name = self.client.name
        try:
            body = response.read()
        except Exception as exc:
            raise describe_error(exc, name, self.client.url, model=self.model) from exc
        try:
            data = safejson.loads(body)
            choice = data["choices"][0]
            text = choice["message"]["content"] or ""
            if not isinstance(text, str):
                raise TypeError("content")
        except (ValueError, KeyError, TypeError, IndexError) as exc:
            sample = body[:80].decode("utf-8", "replace").strip()
            raise _not_openai(name, f"{content_type or 'no content type'}: {sample!r}") from exc
        self.usage = _Usage.of(data.get("usage"))
        self.emit(text)
        return self.reply(
            StopReason.MAX_TOKENS if choice.get("finish_reason") == "length" else StopReason.EOS
        )

    def failed(self, error: RemoteError) -> RemoteReply:
        """End with ``error``: raised when nothing came, else the text so far, marked interrupted."""
        if not self.parts:
            raise error
        if self.thinking:
            self.thinking = False
            self._hand(THINK_CLOSE)
        return self.reply(StopReason.ERROR, str(error))

    def reply(self, reason: StopReason, error: str | None = None) -> RemoteReply:
        now = time.monotonic()
        first = self.first if self.first is not None else now
        prompt = _count(getattr(self.usage, "prompt_tokens", None))
        completion = _count(getattr(self.usage, "completion_tokens", None))
        if completion is None or reason is StopReason.USER:
            completion = self.pieces  # servers send about one token per event
        decode_s = max(now - first, 1e-6)
        stats = RemoteStats(
            prompt_tokens=prompt or 0,
            cached_tokens=0,
            completion_tokens=completion,
            ttft_s=first - self.started,
            tokens_per_s=completion / decode_s if completion > 1 else 0.0,
            total_s=now - self.started,
            stop_reason=reason,
            error=error,
            server=self.client.name,
            model=self.model,
            interrupted=error is not None,
        )
        return RemoteReply("".join(self.parts), stats)


@dataclass(frozen=True)
class _Usage:
    prompt_tokens: Any = None
    completion_tokens: Any = None

    @staticmethod
    def of(value: Any) -> _Usage | None:
        if not isinstance(value, dict):
            return None
        return _Usage(value.get("prompt_tokens"), value.get("completion_tokens"))


def _count(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


def _not_openai(name: str, what: str) -> RemoteError:
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
        return max(0.0, float(value))
    except ValueError:
        pass
    from email.utils import parsedate_to_datetime

    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


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
    if isinstance(exc, openai.APIStatusError):
        status = exc.status_code
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
        return _not_openai(name, str(exc))
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
            f"{name} ({url}) {'did not answer in time' if timed_out else 'cannot be reached'} ({detail}). "
            "Check that the server is running and the address is right.",
            "unreachable",
            server=name,
        )
    if isinstance(exc, (ValueError, TypeError, AttributeError, KeyError)):
        return _not_openai(name, f"{type(exc).__name__}: {exc}")
    log.exception("unexpected failure talking to %s", name, exc_info=exc)
    return RemoteError(f"{name} could not be used: {type(exc).__name__}: {exc}", "server", server=name)
