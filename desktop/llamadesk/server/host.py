"""The server's side of the inference service: which model a request means, jobs awaited from asyncio.

Requests run as jobs of the shared :class:`~llamadesk.engine.service.InferenceService` under the
server's client tag, so the window's own chat takes turns with them. A request that names another
library model loads it when the configuration allows it; while a switch is pending, requests
for the model being replaced finish first and no request ever runs on a model it did not ask for.
The number of waiting API requests is bounded: one past the bound is answered 429 with a
Retry-After estimated from recent requests.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import threading
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..engine.service import InferenceService, Job, LoadedModel
from ..errors import LlamaDeskError
from ..settings import GenerationSettings, RuntimeSettings, Settings
from .config import ServerConfig
from .errors import APIError

log = logging.getLogger(__name__)

__all__ = ["ModelEntry", "ModelHost", "job_future"]

Library = Callable[[], Any]  # () -> ModelLibrary, or None when there is no library to offer


@dataclass(frozen=True)
class ModelEntry:
    """A model as /v1/models lists it."""

    id: str
    path: Path
    key: str
    loaded: bool
    created: int


def job_future(job: Job, loop: asyncio.AbstractEventLoop) -> asyncio.Future[Job]:
    """A future of ``loop`` that completes (with the job) when ``job`` ends on the service thread."""
    future: asyncio.Future[Job] = loop.create_future()

    def resolve(finished: Job) -> None:
        if not future.done():
            future.set_result(finished)

    def done(finished: Job) -> None:
        with contextlib.suppress(RuntimeError):  # the loop closed: nobody is waiting any more
            loop.call_soon_threadsafe(resolve, finished)

    job.add_done_callback(done)
    return future


def _same_file(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return os.path.realpath(a) == os.path.realpath(b)


class ModelHost:
    """Resolves model names, loads on request, bounds the queue and counts what was served."""

    def __init__(
        self,
        service: InferenceService,
        config: ServerConfig,
        *,
        settings: Callable[[], Settings] = Settings,
        library: Library | None = None,
        on_loaded: Callable[[LoadedModel], None] | None = None,
    ) -> None:
        """``on_loaded(model)`` is called (on the event loop's thread) after a request loaded a model."""
        self.service = service
        self.config = config
        self._settings = settings
        self._library = library
        self._on_loaded = on_loaded
        self._users = 0
        self._switching = False
        self._cond: asyncio.Condition | None = None
        self._admitted = 0
        self._lock = threading.Lock()
        self._mean_s = 1.0  # a running mean of how long an API request holds the model

    # -- settings and names

    def settings(self) -> Settings:
        return self._settings()

    def generation_defaults(self) -> GenerationSettings:
        loaded = self.service.loaded
        key = self._key_of(loaded.path) if loaded is not None else None
        return self.settings().for_model(key)[0] if key else self.settings().generation

    def model_id(self, path: Path) -> str:
        """The id clients use for the model file ``path``: its file name without ``.gguf``."""
        return path.name[:-5] if path.name.lower().endswith(".gguf") else path.name

    def _key_of(self, path: Path) -> str | None:
        if self._library is None:
            return None
        try:
            found = self._library().find(str(path))
        except LlamaDeskError:
            return None
        return str(found.key) if found is not None else None

    def loaded_id(self) -> str | None:
        loaded = self.service.loaded
        return self.model_id(loaded.path) if loaded is not None else None

    def list_models(self) -> list[ModelEntry]:
        """The loaded model first, then the library's other loadable models."""
        loaded = self.service.loaded
        entries: list[ModelEntry] = []
        seen: set[str] = set()
        if loaded is not None:
            entries.append(self._entry(loaded.path, "", True))
            seen.add(entries[0].id)
        if self._library is not None:
            try:
                models = self._library().list_cached()
            except (LlamaDeskError, OSError):
                models = []
            for model in models:
                if getattr(model, "kind", "model") != "model" or getattr(model, "state", "ok") in (
                    "broken",
                    "partial",
                ):
                    continue
                if loaded is not None and _same_file(Path(model.path), loaded.path):
                    continue
                entry = self._entry(Path(model.path), str(model.key), False)
                if entry.id in seen:
                    entry = ModelEntry(str(model.key), entry.path, entry.key, False, entry.created)
                seen.add(entry.id)
                entries.append(entry)
        return entries

    def _entry(self, path: Path, key: str, loaded: bool) -> ModelEntry:
        try:
            created = int(path.stat().st_mtime)
        except OSError:
            created = 0
        return ModelEntry(self.model_id(path), path, key, loaded, created)

    def _resolve(self, requested: str) -> tuple[Path, str] | None:
        """The file and library key ``requested`` names (an id, key, name or path), or None."""
        if self._library is None:
            return None
        library = self._library()
        try:
            found = library.find(requested)
        except LlamaDeskError as exc:  # several models match: say which
            raise APIError(400, str(exc), code="model_ambiguous", param="model") from None
        if found is None:
            for model in library.list_cached():
                if self.model_id(Path(model.path)) == requested:
                    found = model
                    break
        if found is None or getattr(found, "kind", "model") != "model":
            return None
        if getattr(found, "state", "ok") in ("broken", "partial"):
            raise APIError(
                400,
                f"The model '{requested}' cannot be loaded: {found.message or found.state}.",
                code="model_not_loadable",
                param="model",
            )
        return Path(found.path), str(found.key)

    def _matches_loaded(self, requested: str | None) -> LoadedModel | None:
        loaded = self.service.loaded
        if loaded is None:
            return None
        if not requested or requested in (self.model_id(loaded.path), loaded.path.name, str(loaded.path)):
            return loaded
        return None

    def _not_found(self, requested: str | None) -> APIError:
        current = self.loaded_id()
        if requested:
            if current:
                message = (
                    f"The model '{requested}' is not loaded; the loaded model is '{current}'. "
                    "Use that name, or allow loading models on request."
                )
            else:
                message = f"The model '{requested}' is not loaded, and no model is."
        else:
            message = "No model is loaded: load one in LlamaDesk, or name a model from GET /v1/models."
        return APIError(404, message, type="not_found_error", code="model_not_found", param="model")

    # -- admission and the model lease

    def admit(self) -> None:
        """Count one more request waiting for the model; 429 when too many already are."""
        with self._lock:
            if self._admitted >= self.config.max_queued:
                wait = max(1, min(120, math.ceil(self._mean_s * self._admitted)))
                raise APIError(
                    429,
                    f"{self._admitted} requests are already waiting for the model; try again in {wait} s.",
                    type="rate_limit_error",
                    code="queue_full",
                    headers={"Retry-After": str(wait)},
                )
            self._admitted += 1

    def release(self, held_s: float | None = None) -> None:
        with self._lock:
            self._admitted = max(0, self._admitted - 1)
            if held_s is not None:
                self._mean_s = 0.8 * self._mean_s + 0.2 * held_s

    @contextlib.asynccontextmanager
    async def admitted(self) -> AsyncIterator[None]:
        """Hold a place in the bounded queue for the duration of the block."""
        self.admit()
        start = time.monotonic()
        try:
            yield
        finally:
            self.release(time.monotonic() - start)

    def _condition(self) -> asyncio.Condition:
        if self._cond is None:
            self._cond = asyncio.Condition()
        return self._cond

    @contextlib.asynccontextmanager
    async def model(self, requested: str | None) -> AsyncIterator[LoadedModel]:
        """The model ``requested`` names, loaded (or 404), kept loaded until the block ends."""
        cond = self._condition()
        resolved: tuple[Path, str] | None = None
        async with cond:
            while True:
                loaded = self._matches_loaded(requested)
                if loaded is None and requested:
                    if resolved is None:
                        resolved = await asyncio.to_thread(self._resolve, requested)
                        if resolved is None:
                            raise self._not_found(requested)
                    current = self.service.loaded
                    if current is not None and _same_file(current.path, resolved[0]):
                        loaded = current
                if loaded is not None and not self._switching:
                    self._users += 1
                    break
                if loaded is None and resolved is None:
                    raise self._not_found(requested)
                if not self.config.load_on_request:
                    raise self._not_found(requested)
                if self._users == 0 and not self._switching:
                    self._switching = True
                    break
                await cond.wait()
        if resolved is not None and self._switching and loaded is None:
            try:
                loaded = await self._load(*resolved)
            finally:
                async with cond:
                    self._switching = False
                    cond.notify_all()
            async with cond:
                self._users += 1
        assert loaded is not None
        try:
            yield loaded
        finally:
            async with cond:
                self._users -= 1
                cond.notify_all()

    async def _load(self, path: Path, key: str) -> LoadedModel:
        settings = self.settings()
        runtime: RuntimeSettings = settings.for_model(key)[1]
        override = settings.template_overrides.get(key) or None
        job = self.service.load(path, runtime, template_override=override, client=self.config.client)
        finished = await self.wait(job)
        if finished.error is not None:
            raise APIError(
                500, f"Loading {path.name} failed: {finished.error}", type="server_error", code="load_failed"
            )
        result: LoadedModel = finished.result
        if self._on_loaded is not None:
            try:
                self._on_loaded(result)
            except Exception:  # whoever listens must not fail the request that loaded the model
                log.exception("a listener of model loads failed")
        return result

    async def wait(self, job: Job) -> Job:
        """Wait for ``job`` without blocking the event loop; cancelling the wait stops the job."""
        future = job_future(job, asyncio.get_running_loop())
        try:
            return await asyncio.shield(future)
        except asyncio.CancelledError:
            job.stop()
            raise
