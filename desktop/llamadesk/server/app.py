"""The ASGI app: OpenAI's endpoints over the shared inference service.

``GET /v1/models``, ``GET /v1/models/{id}``, ``GET /health``, ``POST /v1/chat/completions``,
``POST /v1/completions``, ``POST /v1/embeddings``, ``POST /tokenize`` and ``POST /detokenize``.
Bodies are read within the size limit, parsed with ``safejson`` (bounded nesting, finite numbers)
and validated strictly; every refusal is an OpenAI error object, and the server goes on serving.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import struct
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from .. import safejson
from ..chat.reasoning import uses_channels
from ..engine.errors import EngineError
from ..engine.service import InferenceService, LoadedModel
from ..settings import Settings
from .chat import penalties, prepare_chat, sampling
from .config import ServerConfig
from .embeddings import EmbeddingService
from .errors import APIError, from_validation
from .generate import Answer, respond
from .guard import Guard
from .history import History
from .host import ModelHost
from .schemas import (
    ChatCompletionRequest,
    CompletionRequest,
    DetokenizeRequest,
    EmbeddingRequest,
    TokenizeRequest,
)
from .streaming import ClientGone, Events, job_error, wait_or_disconnect

log = logging.getLogger(__name__)

__all__ = ["ServerContext", "build_app"]

M = TypeVar("M", bound=BaseModel)
COMPLETION_MAX_TOKENS = 16  # OpenAI's default for /v1/completions


class ServerContext:
    """What the endpoints share: the configuration, the model host, embeddings and the history."""

    def __init__(
        self,
        service: InferenceService,
        config: ServerConfig,
        *,
        settings: Callable[[], Settings] = Settings,
        library: Callable[[], Any] | None = None,
        history: History | None = None,
        on_model_loaded: Callable[[LoadedModel], None] | None = None,
    ) -> None:
        self.config = config
        self.host = ModelHost(service, config, settings=settings, library=library, on_loaded=on_model_loaded)
        self.embeddings = EmbeddingService()
        self.history = history

    def close(self) -> None:
        self.embeddings.close()
        if self.history is not None:
            self.history.close()


async def read_json(request: Request, model: type[M], limit: int) -> M:
    """The body as ``model``: 413 past ``limit`` bytes, 400 for bad JSON or a refused field."""
    chunks: list[bytes] = []
    size = 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise APIError(
                    413, f"The request body is larger than {limit:,} bytes.", code="request_too_large"
                )
            chunks.append(chunk)
    except ClientDisconnect:
        raise APIError(400, "The client closed the connection while sending the body.") from None
    raw = b"".join(chunks)
    if not raw.strip():
        raise APIError(400, "The request has no body: send a JSON object.", code="invalid_json")
    try:
        data = safejson.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise APIError(
            400, f"We could not parse the JSON body of your request: {exc}", code="invalid_json"
        ) from None
    if not isinstance(data, dict):
        raise APIError(400, "The request body must be a JSON object.", code="invalid_json")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise from_validation(exc) from None


def _ctx(request: Request) -> ServerContext:
    context: ServerContext = request.app.state.context
    return context


async def health(request: Request) -> Response:
    loaded = _ctx(request).host.service.loaded is not None
    return JSONResponse({"status": "ok", "model_loaded": loaded})


def _model_object(entry: Any) -> dict[str, Any]:
    return {
        "id": entry.id,
        "object": "model",
        "created": entry.created,
        "owned_by": "llamadesk",
        "loaded": entry.loaded,
    }


async def list_models(request: Request) -> Response:
    entries = await asyncio.to_thread(_ctx(request).host.list_models)
    return JSONResponse({"object": "list", "data": [_model_object(e) for e in entries]})


async def get_model(request: Request) -> Response:
    wanted = request.path_params["model"]
    entries = await asyncio.to_thread(_ctx(request).host.list_models)
    for entry in entries:
        if wanted in (entry.id, entry.key):
            return JSONResponse(_model_object(entry))
    raise APIError(
        404, f"The model '{wanted}' does not exist.", type="not_found_error", code="model_not_found"
    )


async def chat_completions(request: Request) -> Response:
    ctx = _ctx(request)
    body = await read_json(request, ChatCompletionRequest, ctx.config.max_body_bytes)
    resources = contextlib.AsyncExitStack()
    try:
        await resources.enter_async_context(ctx.host.admitted())
        loaded = await wait_or_disconnect(
            request.receive, resources.enter_async_context(ctx.host.model(body.model))
        )
        prepared = prepare_chat(body, loaded.chat_format.template, ctx.host.generation_defaults())
        model_id = ctx.host.model_id(loaded.path)
        answer = Answer(
            chat=True,
            model=model_id,
            stream=body.stream,
            include_usage=bool(body.stream_options and body.stream_options.include_usage),
            tool_names=prepared.tool_names,
            channels=uses_channels(loaded.chat_format.template),
            schema=prepared.schema,
        )
        if ctx.history is not None and ctx.config.store_requests:
            history, sent = ctx.history, prepared.messages
            answer.on_finished = lambda text, stats, prompt: history.record(
                model_id, sent, text, stats.to_dict(), prompt=prompt, channels=answer.channels
            )

        def submit(events: Events) -> Any:
            return ctx.host.service.chat(
                prepared.messages,
                prepared.settings,
                on_fit=lambda fit: events.put("fit", fit),
                on_text=lambda piece: events.put("text", piece),
                client=ctx.config.client,
                grammar=prepared.grammar,
                variables=prepared.variables,
                penalties=prepared.penalties,
            )

    except BaseException:
        await resources.aclose()
        raise
    return await respond(request, answer, submit, resources)


async def completions(request: Request) -> Response:
    ctx = _ctx(request)
    body = await read_json(request, CompletionRequest, ctx.config.max_body_bytes)
    if body.suffix:
        raise APIError(
            400, "suffix (fill in the middle) is not supported.", code="unsupported_parameter", param="suffix"
        )
    if body.best_of not in (None, 1):
        raise APIError(400, "Only best_of=1 is supported.", code="unsupported_value", param="best_of")
    if body.logprobs is not None:
        raise APIError(
            400, "logprobs are not supported by this server.", code="unsupported_parameter", param="logprobs"
        )
    prompt: str | list[int]
    if isinstance(body.prompt, str):
        prompt = body.prompt
    elif isinstance(body.prompt[0], str):
        prompt = str(body.prompt[0])
    else:
        prompt = [int(t) for t in body.prompt]
    if body.echo and body.stream:
        raise APIError(400, "echo is supported without stream only.", code="unsupported_value", param="echo")
    resources = contextlib.AsyncExitStack()
    try:
        await resources.enter_async_context(ctx.host.admitted())
        loaded = await wait_or_disconnect(
            request.receive, resources.enter_async_context(ctx.host.model(body.model))
        )
        settings = sampling(body, ctx.host.generation_defaults(), body.max_tokens or COMPLETION_MAX_TOKENS)
        answer = Answer(
            chat=False,
            model=ctx.host.model_id(loaded.path),
            stream=body.stream,
            include_usage=bool(body.stream_options and body.stream_options.include_usage),
            prefix=prompt if body.echo and isinstance(prompt, str) else "",
        )

        def submit(events: Events) -> Any:
            return ctx.host.service.complete(
                prompt,
                settings,
                on_text=lambda piece: events.put("text", piece),
                client=ctx.config.client,
                penalties=penalties(body),
            )

    except BaseException:
        await resources.aclose()
        raise
    return await respond(request, answer, submit, resources)


def _embedding_path(ctx: ServerContext, requested: str | None) -> tuple[Path, str]:
    host = ctx.host
    loaded = host.service.loaded
    wanted = requested or ctx.config.embedding_model
    if loaded is not None and (not wanted or wanted in (host.model_id(loaded.path), str(loaded.path))):
        return loaded.path, host.model_id(loaded.path)
    if wanted:
        found = host._resolve(wanted)
        if found is not None:
            return found[0], host.model_id(found[0])
    raise host._not_found(requested)


async def embeddings(request: Request) -> Response:
    ctx = _ctx(request)
    body = await read_json(request, EmbeddingRequest, ctx.config.max_body_bytes)
    path, model_id = await asyncio.to_thread(_embedding_path, ctx, body.model)
    inputs: list[Any]
    if isinstance(body.input, str):
        inputs = [body.input]
    elif body.input and isinstance(body.input[0], int):
        inputs = [list(body.input)]
    else:
        inputs = list(body.input)
    async with ctx.host.admitted():
        try:
            result = await wait_or_disconnect(
                request.receive, asyncio.wrap_future(ctx.embeddings.embed(path, inputs))
            )
        except EngineError as exc:
            raise APIError(400, str(exc), code="invalid_value", param="input") from None
    dimension = len(result.vectors[0]) if result.vectors else 0
    if body.dimensions is not None and body.dimensions != dimension:
        raise APIError(
            400,
            f"This model's embeddings have {dimension} dimensions; dimensions={body.dimensions} "
            "is not supported.",
            code="unsupported_value",
            param="dimensions",
        )
    data = []
    for index, vector in enumerate(result.vectors):
        value: Any = vector
        if body.encoding_format == "base64":
            value = base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode("ascii")
        data.append({"object": "embedding", "index": index, "embedding": value})
    return JSONResponse(
        {
            "object": "list",
            "data": data,
            "model": model_id,
            "usage": {"prompt_tokens": result.tokens, "total_tokens": result.tokens},
        }
    )


async def _service_call(request: Request, model: str | None, call: Callable[[ServerContext], Any]) -> Any:
    ctx = _ctx(request)
    async with ctx.host.admitted(), ctx.host.model(model):
        job = call(ctx)
        finished = await wait_or_disconnect(request.receive, ctx.host.wait(job))
    if finished.error is not None:
        raise job_error(finished)
    return finished.result


async def tokenize(request: Request) -> Response:
    ctx = _ctx(request)
    body = await read_json(request, TokenizeRequest, ctx.config.max_body_bytes)
    tokens = await _service_call(
        request,
        body.model,
        lambda c: c.host.service.tokenize(body.content, add_bos=body.add_special, client=c.config.client),
    )
    return JSONResponse({"tokens": tokens})


async def detokenize(request: Request) -> Response:
    ctx = _ctx(request)
    body = await read_json(request, DetokenizeRequest, ctx.config.max_body_bytes)
    text = await _service_call(
        request, body.model, lambda c: c.host.service.detokenize(body.tokens, client=c.config.client)
    )
    return JSONResponse({"content": text})


async def _api_error(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, APIError)
    return Response(exc.body(), status_code=exc.status, media_type="application/json", headers=exc.headers)


async def _http_error(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if exc.status_code == 404:
        error = APIError(
            404,
            "There is no such endpoint: see /v1/models, /v1/chat/completions, /v1/completions, "
            "/v1/embeddings.",
            type="not_found_error",
            code="unknown_url",
        )
    elif exc.status_code == 405:
        error = APIError(405, "This endpoint does not take that method.", code="method_not_allowed")
    else:
        error = APIError(exc.status_code, str(exc.detail), code=None)
    return await _api_error(_request, error)


async def _client_gone(_request: Request, _exc: Exception) -> Response:
    return Response(status_code=499)  # nobody is there to read it; the log line says what happened


async def _server_error(_request: Request, exc: Exception) -> Response:
    log.exception("the API request failed unexpectedly", exc_info=exc)
    error = APIError(
        500, f"The server failed unexpectedly: {exc}", type="server_error", code="internal_error"
    )
    return await _api_error(_request, error)


def build_app(context: ServerContext, on_request: Callable[[int], None] | None = None) -> Guard:
    """The ASGI app for ``context``, behind its :class:`~.guard.Guard`."""
    routes = [
        Route("/health", health, methods=["GET"]),
        Route("/v1/models", list_models, methods=["GET"]),
        Route("/v1/models/{model:path}", get_model, methods=["GET"]),
        Route("/v1/chat/completions", chat_completions, methods=["POST"]),
        Route("/v1/completions", completions, methods=["POST"]),
        Route("/v1/embeddings", embeddings, methods=["POST"]),
        Route("/tokenize", tokenize, methods=["POST"]),
        Route("/detokenize", detokenize, methods=["POST"]),
    ]
    app = Starlette(
        routes=routes,
        exception_handlers={
            APIError: _api_error,
            ClientGone: _client_gone,
            HTTPException: _http_error,
            Exception: _server_error,
        },
    )
    app.state.context = context
    return Guard(app, context.config, on_request)
