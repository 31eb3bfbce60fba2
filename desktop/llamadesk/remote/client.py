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
import threading
import time
import unicodedata
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeGuard

import httpx2
import openai

from .. import safejson
from ..engine.engine import GenerationStats, StopReason
from ..settings import GenerationSettings
from .describe import describe_error, not_openai
from .errors import RemoteError
from .transport import GuardedTransport
from .urls import api_base, normalize_url, shown_url

log = logging.getLogger(__name__)

__all__ = ["RemoteClient", "RemoteReply", "RemoteStats", "request_fields"]

CONNECT_TIMEOUT_S = 10.0
READ_TIMEOUT_S = 600.0  # a long prompt on a slow server may take minutes before its first token
MAX_LIST_BYTES = 8 << 20  # a model list is a few KB; more is not one
MAX_MODELS = 2000  # more would make the model picker unusable; the rest are left out (and logged)
MAX_MODEL_ID = 256  # ids are names like "org/model-7b-q4"; longer ones are left out
MAX_REPLY_CHARS = 16_000_000  # a reply longer than a few books is a server that never stops: cut there
MAX_MESSAGE = 1000  # an error message longer than this is cut (a server's words are part of it)
_HIDDEN = ("Cc", "Cf", "Zl", "Zp", "Cs", "Co")  # characters that hide, move or reorder text
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
        self.name = name or shown_url(self.url)
        timeout = openai.Timeout(read_timeout_s, connect=connect_timeout_s)
        self._transport = GuardedTransport(
            head_timeout_s=connect_timeout_s + read_timeout_s, body_timeout_s=read_timeout_s
        )
        # Redirects are not followed: the key and the conversation go only to the address the user gave.
        http_client = httpx2.Client(transport=self._transport, timeout=timeout, follow_redirects=False)
        self._client = openai.OpenAI(
            base_url=api_base(self.url),
            api_key=api_key or "no-key",
            max_retries=0,  # a retry hides a 429's wait and doubles a dead server's timeout
            timeout=timeout,
            http_client=http_client,
        )
        self._key = api_key or ""
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
            with self._client.models.with_streaming_response.list() as raw:
                response = raw.http_response
                content = bytearray()
                for block in response.iter_bytes():  # read in parts: a hostile server may send gigabytes
                    content += block
                    if len(content) > MAX_LIST_BYTES:
                        raise RemoteError(
                            f"{self.name} answered GET /v1/models with more than {MAX_LIST_BYTES >> 20} MB: "
                            "that is not a model list. Check the address: it should be the server's base "
                            "URL, such as http://host:8080.",
                            "not_openai",
                            server=self.name,
                        )
        except Exception as exc:
            raise self._error(exc) from exc
        try:
            return self._parse_models(bytes(content), response.headers.get("content-type", ""))
        except RemoteError as exc:  # its sample of the answer may echo the key
            raise self.redacted(exc) from exc

    def _parse_models(self, content: bytes, content_type: str) -> list[str]:
        try:
            data = safejson.loads(content)
            items = data["data"]
            if not isinstance(items, list):
                raise TypeError("data is not a list")
            ids = [item.get("id") if isinstance(item, dict) else None for item in items]
            usable = [i for i in ids if _usable_id(i)]
            if ids and not usable:
                raise ValueError("no model id is usable text")
        except (ValueError, KeyError, TypeError) as exc:
            sample = content[:80].decode("utf-8", "replace").strip()
            raise RemoteError(
                f"{self.name} answered GET /v1/models with something that is not an OpenAI-compatible "
                f"model list ({content_type or 'no content type'}: {sample!r}). Check the address: "
                "it should be the server's base URL, such as http://host:8080.",
                "not_openai",
                server=self.name,
            ) from exc
        if len(usable) < len(ids):
            log.warning(
                "%s lists %d model ids that are not usable names; they are left out",
                self.name,
                len(ids) - len(usable),
            )
        models = list(dict.fromkeys(usable))
        if len(models) > MAX_MODELS:
            log.warning("%s lists %d models; the first %d are offered", self.name, len(models), MAX_MODELS)
        return models[:MAX_MODELS]

    # -- chat

    def abort(self) -> None:
        """Close the streams in progress from any thread (the reading thread then ends at once)."""
        self._transport.abort()  # also a request still waiting for the server's first byte
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
        self._transport.reopen()
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
            if stop.is_set():  # Stop while waiting for the server's answer
                return _Reading(self, model, on_text, started).reply(StopReason.USER)
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

    def _error(self, exc: BaseException, *, model: str = "", streaming: bool = False) -> RemoteError:
        """``exc`` (from the client or the transport) as a RemoteError naming the server; a server that
        echoes the API key in its error message does not get it shown."""
        return self.redacted(describe_error(exc, self.name, self.url, model=model, streaming=streaming))

    def redacted(self, error: RemoteError) -> RemoteError:
        """``error`` as it may be shown: without this client's API key (a server may echo it), without
        control or bidi characters (a server's words could hide or reorder text), and not too long."""
        text = str(error)
        if len(self._key) >= 4:
            text = text.replace(self._key, "[API key]")
        text = "".join(" " if unicodedata.category(c) in _HIDDEN else c for c in text)
        if len(text) > MAX_MESSAGE:
            text = text[: MAX_MESSAGE - 1] + "…"
        if text == str(error):
            return error
        return RemoteError(text, error.kind, server=error.server, retry_after=error.retry_after)


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
        self.length = 0  # characters received

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

    def _hand(self, text: str, *, limited: bool = True) -> None:
        if self.first is None:
            self.first = time.monotonic()
        self.length += len(text)
        if limited and self.length > MAX_REPLY_CHARS:
            name = self.client.name
            raise RemoteError(
                f"{name} sent more than {MAX_REPLY_CHARS:,} characters without ending the reply; it was "
                "cut there (the text so far is kept).",
                "cut",
                server=name,
            )
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
                    raise not_openai(name, "a stream event without choices")
                for choice in choices[:1]:
                    delta = getattr(choice, "delta", None)
                    text = getattr(delta, "content", None) or ""
                    extra = getattr(delta, "model_extra", None) or {}
                    reasoning = extra.get("reasoning_content") or extra.get("reasoning") or ""
                    if not isinstance(text, str) or not isinstance(reasoning, str):
                        raise not_openai(name, "a stream event whose text is not text")
                    self.emit(text, reasoning)
                    finish = getattr(choice, "finish_reason", None) or finish
        except RemoteError as exc:
            return self.failed(self.client.redacted(exc))
        except Exception as exc:
            if stop.is_set():  # the stream was closed under the reader by Stop
                return self.reply(StopReason.USER)
            return self.failed(self.client._error(exc, model=self.model, streaming=True))
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
            raise self.client._error(exc, model=self.model) from exc
        try:
            data = safejson.loads(body)
            choice = data["choices"][0]
            text = choice["message"]["content"] or ""
            if not isinstance(text, str):
                raise TypeError("content")
        except (ValueError, KeyError, TypeError, IndexError) as exc:
            sample = body[:80].decode("utf-8", "replace").strip()
            error = not_openai(name, f"{content_type or 'no content type'}: {sample!r}")
            raise self.client.redacted(error) from exc
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
            self._hand(THINK_CLOSE, limited=False)
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


def _usable_id(value: Any) -> TypeGuard[str]:
    """A model id that can be shown and stored: text of sane length, no control or bidi characters."""
    return (
        isinstance(value, str)
        and 0 < len(value) <= MAX_MODEL_ID
        and value.strip() == value
        and not any(unicodedata.category(c) in (*_HIDDEN, "Cn") for c in value)
    )


def _count(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None
