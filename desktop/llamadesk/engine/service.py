"""The inference service: the one owner of the loaded model, shared by every front end.

One thread runs the requests (load, chat, unload) one at a time, in the order they were
submitted, so the window, the CLI and later an HTTP server can all submit work without ever
touching the ``Llama`` object themselves. Each request is a :class:`Job`: stopping one job
(its own stop event) never touches another's. Callbacks (``on_progress``, ``on_fit``,
``on_text``, done callbacks) run on the service thread; front ends hand them on to their own
thread (the GUI through queued signals, the CLI through a queue).
"""

from __future__ import annotations

import collections
import logging
import queue
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..chat.context import ContextError, ContextFit
from ..chat.prompt import reply_reserve
from ..chat.reasoning import uses_channels
from ..chat.templates import ChatFormat, chat_format_for
from ..errors import LlamaDeskError
from ..settings import GenerationSettings, RuntimeSettings
from . import rpc
from .chat_cache import ChatCache
from .engine import Engine, Generation, GenerationStats
from .gguf_info import GGUFInfo
from .states import ConversationStates

log = logging.getLogger(__name__)

__all__ = ["ChatResult", "InferenceService", "Job", "JobError", "LoadedModel"]


@dataclass(frozen=True)
class LoadedModel:
    """The model the service has loaded, as front ends show it."""

    path: Path
    info: GGUFInfo
    n_ctx: int
    n_gpu_layers: int
    backend: str
    chat_format: ChatFormat
    ram_used: int = 0  # bytes of available RAM that loading took (given back when switching)


@dataclass(frozen=True)
class ChatResult:
    """A finished reply: the prompt it answered, its text and what it cost."""

    fit: ContextFit
    text: str
    stats: GenerationStats


class JobError(LlamaDeskError):
    """Why a job ended without a result. ``kind``: "failed", "too_long" (nothing generated:
    the newest message does not fit), "invalid" (a request the model cannot take, such as a token id
    outside its vocabulary), "cancelled" (stopped before it started or while loading) or "worker_lost"
    (an RPC worker went away mid-job: the reply streamed so far stands, the model must be reloaded)."""

    def __init__(self, message: str, kind: str = "failed") -> None:
        super().__init__(message)
        self.kind = kind


class Job:
    """One request: stop it, wait for it, or be called back when it ends.

    ``result`` is set on success (a :class:`LoadedModel` for a load, a :class:`ChatResult` for a
    chat, None for an unload), ``error`` otherwise.
    """

    def __init__(self, kind: str, client: str) -> None:
        self.kind = kind
        self.client = client
        self.result: Any = None
        self.error: JobError | None = None
        self.stop_event = threading.Event()
        self._done = threading.Event()
        self._callbacks: list[Callable[[Job], None]] = []
        self._lock = threading.Lock()

    def stop(self) -> None:
        """Stop this job: a reply ends within a token, a load is cancelled, a queued job never runs."""
        self.stop_event.set()

    @property
    def stopped(self) -> bool:
        return self.stop_event.is_set()

    def done(self) -> bool:
        return self._done.is_set()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the job ended (True) or ``timeout`` seconds passed (False)."""
        return self._done.wait(timeout)

    def add_done_callback(self, callback: Callable[[Job], None]) -> None:
        """Call ``callback(job)`` when the job ends (at once if it already has)."""
        with self._lock:
            if not self._done.is_set():
                self._callbacks.append(callback)
                return
        _call(callback, self)

    def _finish(self, result: Any = None, error: JobError | None = None) -> None:
        with self._lock:
            if self._done.is_set():  # already ended (failed when its worker was lost)
                return
            self.result, self.error = result, error
            self._done.set()
            callbacks, self._callbacks = self._callbacks, []
        for callback in callbacks:
            _call(callback, self)


def _call(callback: Callable[..., Any], *args: Any) -> Any:
    try:
        return callback(*args)
    except Exception:  # a front end's bug must not take the service thread down
        log.exception("a callback of the inference service failed")
        return None


_Item = tuple[Job, Callable[[Job], Any]]


class _Turns:
    """The jobs waiting to run, served round-robin by client tag, so the window and the API server
    take turns instead of one waiting behind a pile of the other's; each client's jobs keep their order.

    Quacks like the ``queue.Queue`` it replaced: ``put(None)`` asks the thread to end once the jobs
    already waiting have been handed out."""

    def __init__(self) -> None:
        self._waiting: dict[str, collections.deque[_Item]] = {}
        self._order: collections.deque[str] = collections.deque()  # clients with jobs waiting, next first
        self._closing = False
        self._cond = threading.Condition()

    @property
    def queue(self) -> list[_Item]:
        """The waiting jobs, in the order they will run."""
        with self._cond:
            return [item for client in self._order for item in self._waiting[client]]

    def waiting(self, client: str) -> int:
        """How many of ``client``'s jobs are waiting."""
        with self._cond:
            return len(self._waiting.get(client, ()))

    def put(self, item: _Item | None) -> None:
        with self._cond:
            if item is None:
                self._closing = True
            else:
                client = item[0].client
                if client not in self._waiting:
                    self._waiting[client] = collections.deque()
                    self._order.append(client)
                self._waiting[client].append(item)
            self._cond.notify()

    def get(self) -> _Item | None:
        with self._cond:
            while not self._order and not self._closing:
                self._cond.wait()
            return self._pop()

    def get_nowait(self) -> _Item | None:
        with self._cond:
            if not self._order and not self._closing:
                raise queue.Empty
            return self._pop()

    def _pop(self) -> _Item | None:
        if not self._order:
            self._closing = False
            return None
        client = self._order.popleft()
        waiting = self._waiting[client]
        item = waiting.popleft()
        if waiting:
            self._order.append(client)  # its next job waits for the other clients' turns
        else:
            del self._waiting[client]
        return item


class InferenceService:
    """Owns one :class:`Engine` on its own thread and runs submitted jobs one at a time."""

    def __init__(self, engine: Engine | None = None, *, states: ConversationStates | None = None) -> None:
        """``states``: where conversation states are kept (default: the data folder, 2 GB)."""
        self.engine = engine or Engine()
        self.cache = ChatCache(states)
        self._queue = _Turns()
        self._format: ChatFormat | None = None
        self._loaded: LoadedModel | None = None
        self._current: Job | None = None
        self._closed = False
        self._lost_engines: list[Engine] = []  # abandoned when their worker went (never freed)
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="llamadesk-inference", daemon=True)
        self._thread.start()

    # -- what front ends read

    @property
    def loaded(self) -> LoadedModel | None:
        """The model loaded now (None while nothing is)."""
        return self._loaded

    @property
    def current(self) -> Job | None:
        """The job running now, if any."""
        return self._current

    # -- submitting work

    def load(
        self,
        path: str | Path,
        runtime: RuntimeSettings,
        *,
        template_override: str | None = None,
        on_progress: Callable[[float], None] | None = None,
        client: str = "",
    ) -> Job:
        """Load ``path`` (replacing the current model); ``job.stop()`` cancels the load."""
        job = Job("load", client)
        return self._submit(job, lambda j: self._load(j, Path(path), runtime, template_override, on_progress))

    def chat(
        self,
        messages: Sequence[Mapping[str, Any]],
        settings: GenerationSettings,
        *,
        on_fit: Callable[[ContextFit], None] | None = None,
        on_text: Callable[[str], None] | None = None,
        client: str = "",
        grammar: Any = None,
        variables: Mapping[str, Any] | None = None,
        conversation: str | None = None,
        penalties: tuple[float, float] = (0.0, 0.0),
    ) -> Job:
        """Reply to ``messages`` (ending with the user's turn), streaming pieces to ``on_text``.

        The conversation is fitted into the context first (``on_fit`` tells which messages were
        left out); ``job.stop()`` ends the reply within a token, keeping what was written.
        ``grammar`` (a ``llama_cpp.LlamaGrammar``) constrains the reply; ``variables`` reach the
        chat template (``tools``, say). ``conversation`` names the conversation whose saved cache may
        serve the reply (default: one derived from how ``messages`` start). ``penalties``: OpenAI's
        frequency and presence penalties (-2..2 each, 0 = off).
        """
        job = Job("chat", client)
        copied = [dict(m) for m in messages]
        extra = dict(variables or {})
        return self._submit(
            job,
            lambda j: self._chat(
                j, copied, settings, on_fit, on_text, grammar, extra, conversation, penalties
            ),
        )

    def complete(
        self,
        prompt: str | Sequence[int],
        settings: GenerationSettings,
        *,
        on_text: Callable[[str], None] | None = None,
        grammar: Any = None,
        client: str = "",
        penalties: tuple[float, float] = (0.0, 0.0),
    ) -> Job:
        """Continue a raw ``prompt`` (text, or token ids) with no chat template; the result is a
        :class:`ChatResult` whose fit holds the prompt as sent. ``penalties`` as for :meth:`chat`."""
        job = Job("complete", client)
        source = prompt if isinstance(prompt, str) else list(prompt)
        return self._submit(job, lambda j: self._complete(j, source, settings, on_text, grammar, penalties))

    def tokenize(self, text: str, *, add_bos: bool = False, special: bool = True, client: str = "") -> Job:
        """The loaded model's token ids for ``text`` (the result, a list of ints)."""
        job = Job("tokenize", client)
        return self._submit(job, lambda _j: self.engine.tokenize(text, add_bos=add_bos, special=special))

    def detokenize(self, tokens: Sequence[int], *, client: str = "") -> Job:
        """The text of ``tokens`` in the loaded model's vocabulary (the result, a str)."""
        job = Job("detokenize", client)
        ids = [int(t) for t in tokens]
        return self._submit(job, lambda _j: self._detokenize(ids))

    def run(self, kind: str, work: Callable[[Job], Any], *, client: str = "") -> Job:
        """Run ``work(job)`` on the service thread in turn with the other jobs; its return value is the
        result. For long work that decodes with its own engine (the model lab): llama.cpp decodes
        best from one long-lived thread. ``work`` should watch ``job.stop_event``."""
        return self._submit(Job(kind, client), work)

    def waiting(self, client: str) -> int:
        """How many of ``client``'s jobs wait to run (the running one not counted)."""
        return self._queue.waiting(client)

    def unload(self, *, client: str = "") -> Job:
        """Free the model."""
        return self._submit(Job("unload", client), self._unload)

    def stop_all(self, client: str | None = None) -> None:
        """Stop the running job and every queued one (of ``client`` only, when given)."""
        with self._lock:
            pending = [item[0] for item in list(self._queue.queue) if item is not None]
            current = self._current
        for job in [*pending, *([current] if current else [])]:
            if client is None or job.client == client:
                job.stop()

    def close(self, timeout: float = 2.0) -> bool:
        """Stop everything, free the model on the service thread and end it; True if it ended in time."""
        with self._lock:
            if self._closed:
                return not self._thread.is_alive()
            self._closed = True
        self.stop_all()
        self._queue.put(None)
        self._thread.join(timeout)
        if self._thread.is_alive():
            log.error("the inference thread did not stop within %.1f s", timeout)
            return False
        return True

    def _submit(self, job: Job, run: Callable[[Job], Any]) -> Job:
        with self._lock:
            if self._closed:
                job._finish(error=JobError("LlamaDesk is closing.", "cancelled"))
                return job
            self._queue.put((job, run))
        return job

    # -- the service thread

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                break
            job, run = item
            if job.stopped:
                job._finish(error=JobError("Cancelled before it started.", "cancelled"))
                continue
            self._current = job
            try:
                result = run(job)
            except JobError as exc:
                job._finish(error=exc)
            except LlamaDeskError as exc:
                job._finish(error=JobError(str(exc)))
            except Exception as exc:  # a bug or an unexpected llama.cpp failure: a message, never a crash
                log.exception("%s job failed", job.kind)
                job._finish(error=JobError(f"{job.kind.capitalize()} failed unexpectedly: {exc}"))
            else:
                job._finish(result)
            finally:
                self._park_if_replaced()
                self._current = None
        try:
            self._free()
        except Exception:
            log.exception("freeing the model failed")
        # Jobs submitted while closing never run; their owners still hear that they ended.
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if item is not None:
                item[0]._finish(error=JobError("LlamaDesk is closing.", "cancelled"))

    def _unload(self, _job: Job) -> None:
        self._free()

    # -- a lost RPC worker (engine/rpc.py): the engine is abandoned, the queue goes on with a new one

    def _worker_lost(self, workers: tuple[str, ...], _detail: str) -> None:
        """Called on llama.cpp's connection thread, which then parks: the rest runs on a thread of its own."""
        replace = threading.Thread(target=self._replace_engine, args=(workers,), daemon=True)
        replace.start()

    def _replace_engine(self, workers: tuple[str, ...]) -> None:
        lost = rpc.find_lost(workers)
        with self._lock:
            job, engine = self._current, self.engine
            rpc.abandon_model(engine.llama if engine.is_loaded else None)  # never freed: see rpc.py
            self.engine, self._format, self._loaded = Engine(), None, None
            self.cache.abandon()
            self._lost_engines.append(engine)  # with the callbacks llama.cpp still holds
            if job is not None:  # its thread waits inside llama.cpp for good: a new one serves the queue
                self._thread = threading.Thread(target=self._run, name="llamadesk-inference", daemon=True)
                self._thread.start()
        names = ", ".join(lost)
        log.error("lost RPC worker %s; the model was abandoned", names)
        if job is not None:
            doing = "while loading" if job.kind == "load" else "mid-reply; the reply so far was kept"
            job._finish(
                error=JobError(
                    f"Lost the connection to worker {names} {doing}. Reload the model without "
                    f"{'it' if len(lost) == 1 else 'them'} to go on.",
                    "worker_lost",
                )
            )

    def _park_if_replaced(self) -> None:
        """A service thread that got out of llama.cpp after its engine was abandoned stops here for good."""
        if self._thread is not threading.current_thread():
            threading.Event().wait()

    def _free(self) -> None:
        self.cache.unloading(self.engine)
        self.engine.unload()
        self._format = None
        self._loaded = None

    def _load(
        self,
        job: Job,
        path: Path,
        runtime: RuntimeSettings,
        template_override: str | None,
        on_progress: Callable[[float], None] | None,
    ) -> LoadedModel:
        last = -1.0

        def progress(value: float) -> bool:
            nonlocal last
            if on_progress is not None and (value - last >= 0.01 or value >= 1.0):
                last = value
                on_progress(value)
            return not job.stopped

        self._free()
        if runtime.workers:
            rpc.set_lost_handler(self._worker_lost)
        try:
            self.engine.load(path, runtime, progress=progress)
            info = self.engine.info
            assert info is not None
            fmt = chat_format_for(
                info.chat_template, info.bos_token, info.eos_token, override=template_override or None
            )
        except BaseException as exc:
            self._free()
            if job.stopped and isinstance(exc, LlamaDeskError):
                raise JobError("Loading was cancelled.", "cancelled") from exc
            raise
        self._format = fmt
        self._loaded = LoadedModel(
            path=path,
            info=info,
            n_ctx=self.engine.n_ctx,
            n_gpu_layers=self.engine.n_gpu_layers,
            backend=self.engine.backend,
            chat_format=fmt,
            ram_used=self.engine.ram_used,
        )
        return self._loaded

    def _chat(
        self,
        job: Job,
        messages: list[dict[str, Any]],
        settings: GenerationSettings,
        on_fit: Callable[[ContextFit], None] | None,
        on_text: Callable[[str], None] | None,
        grammar: Any = None,
        variables: Mapping[str, Any] | None = None,
        conversation: str | None = None,
        penalties: tuple[float, float] = (0.0, 0.0),
    ) -> ChatResult:
        fmt = self._format
        if not self.engine.is_loaded or fmt is None:
            raise JobError("No model is loaded. Choose a model first.")
        if variables:
            fmt = _WithVariables.of(fmt, variables)
        n_ctx = self.engine.n_ctx
        reserve = reply_reserve(n_ctx, settings.max_tokens)
        try:
            budget = n_ctx - reserve
            overflow = settings.context_overflow
            fit = self.cache.fit(self.engine, fmt, messages, budget, max_tokens=reserve, overflow=overflow)
        except ContextError as exc:
            raise JobError(str(exc), "too_long") from exc
        if on_fit is not None:
            _call(on_fit, fit)
        prepared = self.cache.prepare(self.engine, fmt, messages, fit, conversation, fresh=settings.seed >= 0)
        generation = self.engine.generate(
            fit.prompt_tokens,
            settings,
            stop_event=job.stop_event,
            extra_stop=fmt.stop_strings,
            grammar=grammar,
            frequency_penalty=penalties[0],
            presence_penalty=penalties[1],
            # gpt-oss marks its thinking with special tokens: they must reach the reply's reader.
            special=uses_channels(fmt.template),
        )
        try:
            return self._stream(job, fit, generation, on_text)
        finally:
            self.cache.finished(prepared, generation.stats)

    def _complete(
        self,
        job: Job,
        prompt: str | list[int],
        settings: GenerationSettings,
        on_text: Callable[[str], None] | None,
        grammar: Any,
        penalties: tuple[float, float] = (0.0, 0.0),
    ) -> ChatResult:
        if not self.engine.is_loaded:
            raise JobError("No model is loaded. Choose a model first.")
        tokens = self.engine.tokenize(prompt, add_bos=True) if isinstance(prompt, str) else prompt
        if not tokens:
            raise JobError("The prompt is empty.", "invalid")
        n_ctx = self.engine.n_ctx
        if len(tokens) >= n_ctx:
            raise JobError(
                f"The prompt is {len(tokens):,} tokens but the context holds {n_ctx:,}.", "too_long"
            )
        text = prompt if isinstance(prompt, str) else self.engine.detokenize(tokens)
        fit = ContextFit(prompt=text, prompt_tokens=list(tokens), kept=[], dropped=[])
        self.cache.prepare_raw(self.engine)
        generation = self.engine.generate(
            fit.prompt_tokens,
            settings,
            stop_event=job.stop_event,
            grammar=grammar,
            frequency_penalty=penalties[0],
            presence_penalty=penalties[1],
        )
        return self._stream(job, fit, generation, on_text)

    def _detokenize(self, tokens: list[int]) -> str:
        llm = self.engine.llama
        vocab_size = int(llm.n_vocab())
        bad = next((t for t in tokens if not 0 <= t < vocab_size), None)
        if bad is not None:
            raise JobError(
                f"Token {bad} is not in the model's vocabulary (0 to {vocab_size - 1}).", "invalid"
            )
        return self.engine.detokenize(tokens)

    def _stream(
        self, job: Job, fit: ContextFit, generation: Generation, on_text: Callable[[str], None] | None
    ) -> ChatResult:
        for piece in generation:
            self._park_if_replaced()
            if on_text is not None:
                try:
                    on_text(piece)
                except Exception:  # the reader went away (a closed pipe, say): stop, keep what was written
                    log.exception("the reply's reader failed; stopping the reply")
                    job.stop()
        assert generation.stats is not None
        return ChatResult(fit=fit, text=generation.text, stats=generation.stats)


@dataclass
class _WithVariables(ChatFormat):
    """A chat format that passes extra variables (``tools``, say) to its template at every render."""

    variables: Mapping[str, Any] | None = None

    @classmethod
    def of(cls, fmt: ChatFormat, variables: Mapping[str, Any]) -> _WithVariables:
        return cls(**{k: getattr(fmt, k) for k in fmt.__dataclass_fields__}, variables=dict(variables))

    def render(
        self, messages: Sequence[Mapping[str, Any]], add_generation_prompt: bool = True, **variables: Any
    ) -> str:
        return super().render(messages, add_generation_prompt, **{**(self.variables or {}), **variables})
