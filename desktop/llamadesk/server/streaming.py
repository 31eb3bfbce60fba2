"""From service jobs to HTTP: events across threads, server-sent events, disconnects, job errors.

The service calls back on its own thread; :class:`Events` hands those calls to the event loop with
at most one wake-up per batch, so a busy loop sends the pieces that piled up as one chunk instead
of falling behind token by token. :func:`wait_or_disconnect` stops a job whose client went away
before its response began; once a stream has started, Starlette cancels it when the client goes
away and the stream's cleanup stops the job, within a token.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
from collections.abc import Awaitable
from typing import Any, TypeVar

from starlette.types import Receive

from ..engine.service import Job
from .errors import APIError

__all__ = ["ClientGone", "Events", "job_error", "sse", "wait_or_disconnect"]

T = TypeVar("T")

DONE = b"data: [DONE]\n\n"


class ClientGone(Exception):
    """The client closed the connection before its answer was ready."""


class Events:
    """Events from the service thread (``put``), taken in batches on the event loop (``take``)."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._items: collections.deque[tuple[str, Any]] = collections.deque()
        self._ready = asyncio.Event()
        self._signalled = False

    def put(self, kind: str, value: Any) -> None:
        """Called on any thread."""
        self._items.append((kind, value))
        if not self._signalled:
            self._signalled = True
            with contextlib.suppress(RuntimeError):  # the loop closed: the request is gone
                self._loop.call_soon_threadsafe(self._ready.set)

    async def take(self) -> list[tuple[str, Any]]:
        """Every event that arrived since the last call (waits for at least one)."""
        while True:
            await self._ready.wait()
            self._ready.clear()
            self._signalled = False  # before draining: a put from now on wakes the loop again
            items = []
            while self._items:
                items.append(self._items.popleft())
            if items:
                return items


async def _disconnected(receive: Receive) -> None:
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return


async def wait_or_disconnect(receive: Receive, awaitable: Awaitable[T]) -> T:
    """``await awaitable``, or raise :class:`ClientGone` as soon as the client disconnects."""
    task = asyncio.ensure_future(awaitable)
    watcher = asyncio.ensure_future(_disconnected(receive))
    try:
        await asyncio.wait({task, watcher}, return_when=asyncio.FIRST_COMPLETED)
    except asyncio.CancelledError:
        task.cancel()
        raise
    finally:
        watcher.cancel()
    if task.done():
        return task.result()
    task.cancel()
    raise ClientGone


def sse(payload: Any) -> bytes:
    """One server-sent event carrying ``payload`` as JSON."""
    return (
        b"data: " + json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode("utf-8") + b"\n\n"
    )


def job_error(job: Job) -> APIError:
    """The HTTP answer for a job that ended with an error."""
    error = job.error
    message = str(error) if error is not None else "The request failed."
    kind = error.kind if error is not None else "failed"
    if kind == "too_long":
        return APIError(400, message, code="context_length_exceeded", param="messages")
    if kind == "invalid":
        return APIError(400, message, code="invalid_value")
    if kind == "cancelled":
        return APIError(503, message, type="server_error", code="cancelled")
    if "No model is loaded" in message:
        return APIError(503, message, type="server_error", code="model_not_loaded")
    if "template" in message.lower():
        return APIError(400, message, code="template_error", param="messages")
    return APIError(500, message, type="server_error", code="generation_failed")
