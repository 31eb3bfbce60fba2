"""One generation request answered the OpenAI way, streamed (SSE) or whole: chat or text completion.

The job is submitted first and the response waits for its first event, so a request that fails
before any text (its prompt does not fit, the model went away) gets a proper error status and
body, not a stream that breaks. A stream sends what piled up since its last write as one chunk,
ends with ``data: [DONE]``, and stops the job when the client disconnects.

A chat reply's thinking (``<think>…</think>``, gpt-oss's analysis channel) comes back apart from its
answer, as llama-server and DeepSeek send it: ``message.reasoning_content`` in a whole reply,
``delta.reasoning_content`` chunks in a stream; ``content`` holds only the answer and no marker shows.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import anyio
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse

from .. import safejson
from ..chat.reasoning import ReasoningSplitter, starts_in_thinking
from ..engine.engine import GenerationStats, StopReason
from ..engine.service import ChatResult, Job
from .errors import APIError
from .schema_check import violations
from .streaming import DONE, ClientGone, Events, job_error, sse, wait_or_disconnect
from .tools import ToolStream, parse_tool_calls

log = logging.getLogger(__name__)

__all__ = ["Answer", "respond"]

STREAM_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


@dataclass
class Answer:
    """What the response needs besides the job: its shape and the request's choices."""

    chat: bool  # chat.completion (True) or text_completion
    model: str
    stream: bool
    include_usage: bool = False
    tool_names: list[str] = field(default_factory=list)  # tools the reply may call
    channels: bool = False  # the template writes gpt-oss channel markers
    schema: dict[str, Any] | None = None  # response_format's JSON schema: the reply is checked against it
    prefix: str = ""  # text completions with echo: the prompt, written before the reply
    # the reply, stored when asked: its raw text, stats and the prompt it continued
    on_finished: Callable[[str, GenerationStats, str], None] | None = None
    id: str = ""
    created: int = 0

    def __post_init__(self) -> None:
        self.id = ("chatcmpl-" if self.chat else "cmpl-") + secrets.token_hex(12)
        self.created = int(time.time())

    # -- shapes

    def _base(self, chunk: bool) -> dict[str, Any]:
        kind = "text_completion"
        if self.chat:
            kind = "chat.completion.chunk" if chunk else "chat.completion"
        return {"id": self.id, "object": kind, "created": self.created, "model": self.model}

    def chunk(self, delta: dict[str, Any] | str, finish: str | None = None) -> bytes:
        body = self._base(True)
        if self.chat:
            choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
        else:
            choice = {"index": 0, "text": delta, "logprobs": None, "finish_reason": finish}
        body["choices"] = [choice]
        if self.include_usage:
            body["usage"] = None
        return sse(body)

    def usage_chunk(self, stats: GenerationStats) -> bytes:
        body = self._base(True)
        body["choices"] = []
        body["usage"] = usage(stats)
        body["timings"] = timings(stats)
        return sse(body)

    def splitter(self, prompt: str) -> ReasoningSplitter:
        """A splitter for a chat reply to ``prompt`` (which may have opened ``<think>`` already)."""
        return ReasoningSplitter(start_in_thinking=starts_in_thinking(prompt), channels=self.channels)

    def schema_error(self, content: str, stats: GenerationStats) -> APIError | None:
        """The error for a complete JSON reply that breaks what the grammar could not enforce
        (number ranges, some lengths); None when it satisfies the schema or there is none."""
        if self.schema is None or finish_reason(stats) == "length":
            return None  # a reply cut short says so with finish_reason "length"
        try:
            value = safejson.loads(content)
        except ValueError:
            return None
        found = violations(value, self.schema)
        if not found:
            return None
        return APIError(
            422,
            f"The model's reply does not satisfy the JSON schema: {'; '.join(found)}. The grammar "
            "enforces the schema's shape and types; number ranges and some lengths can only be checked "
            f"afterwards. The reply was: {content[:2000]}",
            type="invalid_response_error",
            code="json_schema_violation",
            param="response_format.json_schema.schema",
        )

    def whole(self, text: str, stats: GenerationStats, prompt: str = "") -> dict[str, Any]:
        body = self._base(False)
        if self.chat:
            splitter = self.splitter(prompt)
            splitter.feed(text)
            splitter.finish()
            text = splitter.answer
            error = self.schema_error(text, stats)
            if error is not None:
                raise error
            message: dict[str, Any] = {"role": "assistant", "content": text, "refusal": None}
            if splitter.has_thinking:
                message["reasoning_content"] = splitter.thinking
            finish = finish_reason(stats)
            if self.tool_names:
                parsed = parse_tool_calls(text, self.tool_names)
                if parsed.tool_calls:
                    message["content"] = parsed.content
                    message["tool_calls"] = parsed.tool_calls
                    finish = "tool_calls"
            body["choices"] = [{"index": 0, "message": message, "logprobs": None, "finish_reason": finish}]
        else:
            choice = {"index": 0, "text": self.prefix + text, "logprobs": None}
            body["choices"] = [{**choice, "finish_reason": finish_reason(stats)}]
        body["usage"] = usage(stats)
        body["timings"] = timings(stats)
        return body


def finish_reason(stats: GenerationStats) -> str:
    if stats.stop_reason in (StopReason.MAX_TOKENS, StopReason.CONTEXT_FULL):
        return "length"
    return "stop"


def usage(stats: GenerationStats) -> dict[str, Any]:
    return {
        "prompt_tokens": stats.prompt_tokens,
        "completion_tokens": stats.completion_tokens,
        "total_tokens": stats.prompt_tokens + stats.completion_tokens,
        "prompt_tokens_details": {"cached_tokens": stats.cached_tokens},
    }


def timings(stats: GenerationStats) -> dict[str, Any]:
    """llama.cpp server's ``timings`` names: what the engine measured, without the HTTP layer."""
    return {
        "cache_n": stats.cached_tokens,
        "prompt_n": stats.prompt_tokens - stats.cached_tokens,
        "prompt_ms": round(stats.ttft_s * 1000, 3),
        "predicted_n": stats.completion_tokens,
        "predicted_ms": round((stats.total_s - stats.ttft_s) * 1000, 3),
        "predicted_per_second": round(stats.tokens_per_s, 3),
    }


async def respond(
    request: Request,
    answer: Answer,
    submit: Callable[[Events], Job],
    resources: contextlib.AsyncExitStack,
) -> Response:
    """Run the job ``submit`` starts and answer with it; ``resources`` close when the answer is done."""
    events = Events(asyncio.get_running_loop())
    job = submit(events)
    job.add_done_callback(lambda finished: events.put("done", finished))
    streaming = False
    try:
        first = await wait_or_disconnect(request.receive, events.take())
        headers = dict(STREAM_HEADERS) if answer.stream else {}
        for kind, value in first:
            if kind == "fit" and value.dropped:
                headers["X-LlamaDesk-Dropped-Messages"] = str(len(value.dropped))
        done = next((value for kind, value in first if kind == "done"), None)
        if done is not None and done.error is not None:
            raise job_error(done)
        if answer.stream:
            streaming = True
            return StreamingResponse(
                _stream(answer, job, events, first, resources),
                media_type="text/event-stream",
                headers=headers,
            )
        finished: Job = (
            done if done is not None else await wait_or_disconnect(request.receive, _until_done(events))
        )
        if finished.error is not None:
            raise job_error(finished)
        result: ChatResult = finished.result
        if result.stats.error:
            raise APIError(500, result.stats.error, type="server_error", code="generation_failed")
        if answer.on_finished is not None:
            answer.on_finished(result.text, result.stats, result.fit.prompt)
        return JSONResponse(answer.whole(result.text, result.stats, result.fit.prompt), headers=headers)
    except ClientGone:
        job.stop()
        return Response(status_code=499)
    finally:
        if not streaming:
            job.stop()
            await _close(resources)


async def _until_done(events: Events) -> Job:
    while True:
        for kind, value in await events.take():
            if kind == "done":
                job: Job = value
                return job


async def _stream(
    answer: Answer,
    job: Job,
    events: Events,
    first: list[tuple[str, Any]],
    resources: contextlib.AsyncExitStack,
) -> AsyncIterator[bytes]:
    tools = ToolStream() if answer.chat and answer.tool_names else None
    splitter: ReasoningSplitter | None = None
    said: list[str] = []  # the answer sent so far, checked against the schema at the end
    pending = first
    try:
        if answer.chat:
            yield answer.chunk({"role": "assistant", "content": ""})
        while True:
            text = "".join(value for kind, value in pending if kind == "text")
            done: Job | None = next((value for kind, value in pending if kind == "done"), None)
            if not answer.chat:
                if text:
                    yield answer.chunk(text)
            else:
                fit = next((value for kind, value in pending if kind == "fit"), None)
                if splitter is None:  # the fit comes before the reply's first piece
                    splitter = answer.splitter(fit.prompt if fit is not None else "")
                parts = splitter.feed(text) if text else []
                if done is not None and done.error is None:
                    parts += splitter.finish()
                for kind, piece in parts:
                    if kind == "thinking":
                        yield answer.chunk({"reasoning_content": piece})
                        continue
                    if tools is not None:
                        piece = tools.feed(piece)
                    if piece:
                        said.append(piece)
                        yield answer.chunk({"content": piece})
            if done is not None:
                break
            pending = await events.take()
        if done.error is not None:
            error = job_error(done)
            yield sse({"error": {"message": error.message, "type": error.type, "code": error.code}})
            yield DONE
            return
        result: ChatResult = done.result
        stats = result.stats
        if stats.error:
            yield sse(
                {"error": {"message": stats.error, "type": "server_error", "code": "generation_failed"}}
            )
            yield DONE
            return
        broken = answer.schema_error("".join(said), stats)
        if broken is not None:
            yield sse({"error": {"message": broken.message, "type": broken.type, "code": broken.code}})
            yield DONE
            return
        finish = finish_reason(stats)
        if tools is not None:
            rest, calls = tools.finish(answer.tool_names)
            if rest:
                yield answer.chunk({"content": rest})
            if calls:
                finish = "tool_calls"
                deltas = [{"index": i, **call} for i, call in enumerate(calls)]
                yield answer.chunk({"tool_calls": deltas})
        yield answer.chunk({} if answer.chat else "", finish)
        if answer.include_usage:
            yield answer.usage_chunk(stats)
        yield DONE
        if answer.on_finished is not None:
            answer.on_finished(result.text, stats, result.fit.prompt)
    finally:
        job.stop()  # the client went away (or the stream ended): the reply stops within a token
        await _close(resources)


async def _close(resources: contextlib.AsyncExitStack) -> None:
    # Shielded: a stream cancelled because its client left still gives back its place and its model.
    with anyio.CancelScope(shield=True):
        await resources.aclose()
