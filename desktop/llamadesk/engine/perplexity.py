"""Perplexity of a model on a text, by the method of llama.cpp's ``llama-perplexity``.

The tokenized text is cut into windows of ``n_ctx`` tokens; each window is evaluated from an
empty cache (its first token replaced by BOS when the model adds one) and only the second half
is scored, so every scored token sees at least ``n_ctx / 2`` tokens before it. The result is
``exp(mean negative log-likelihood)`` with its standard error, as llama.cpp reports it.

It is fast because llama.cpp is asked for logits only at the scored positions (a ``llama_batch``
whose logit flags are set there alone) and the log-softmax is one NumPy pass over the vocabulary
per scored token: nothing is sorted and no Python loop runs over the vocabulary.
"""

from __future__ import annotations

import ctypes
import math
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..files import FileTooLargeError, read_regular_bytes
from ..settings import RuntimeSettings
from . import runtime
from .engine import Engine
from .errors import EngineError
from .lab_results import LabProgress, LabRecord, ProgressClock, current_version, file_size

MAX_TEXT_BYTES = 64 << 20
MIN_WINDOW = 16


@dataclass(frozen=True)
class PerplexityResult:
    """Perplexity with its standard error, and what was scored."""

    perplexity: float
    stderr: float
    nll: float  # mean negative log-likelihood per scored token (nats)
    tokens_scored: int
    windows: int
    n_ctx: int
    text_tokens: int
    seconds: float

    @property
    def tokens_per_s(self) -> float:
        """Tokens evaluated (whole windows) per second."""
        return self.windows * self.n_ctx / self.seconds if self.seconds > 0 else 0.0

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["tokens_per_s"] = self.tokens_per_s
        return data


def read_text_file(path: Path | str) -> str:
    """The text of ``path`` for scoring; EngineError for a missing, empty, binary or non-UTF-8 file."""
    path = Path(path)
    try:
        data = read_regular_bytes(path, limit=MAX_TEXT_BYTES)
    except FileNotFoundError:
        raise EngineError(f"The text file {path} does not exist.") from None
    except FileTooLargeError:
        raise EngineError(f"The text file {path} is larger than {MAX_TEXT_BYTES >> 20} MB.") from None
    except OSError as exc:
        raise EngineError(f"Can't read the text file {path}: {exc.strerror or exc}") from exc
    if not data.strip():
        raise EngineError(f"The text file {path.name} is empty: perplexity needs some text to score.")
    if b"\x00" in data[:65536]:
        raise EngineError(f"{path.name} is a binary file, not text: choose a plain-text file.")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise EngineError(
            f"{path.name} is not UTF-8 text (a bad byte at offset {exc.start:,}): choose a plain-text file."
        ) from exc


def check_context(n_ctx: int, trained: int | None, model_name: str) -> None:
    """EngineError when a window of ``n_ctx`` tokens is too small or longer than the model was trained for."""
    if n_ctx < MIN_WINDOW:
        raise EngineError(
            f"A context of {n_ctx} tokens is too small to measure perplexity (at least {MIN_WINDOW})."
        )
    if trained and n_ctx > trained:
        raise EngineError(
            f"A context of {n_ctx:,} tokens is larger than {model_name} was trained for "
            f"({trained:,} tokens). Choose a smaller context."
        )


def text_tokens(engine: Engine, text: str) -> list[int]:
    """``text`` tokenized as llama-perplexity does: with BOS when the model adds one, no special tokens."""
    module = runtime.llama_cpp()
    llm = engine.llama
    add_bos = bool(module.llama_vocab_get_add_bos(llm._model.vocab))
    return engine.tokenize(text, add_bos=add_bos, special=False)


def windows_of(tokens: Sequence[int], n_ctx: int) -> list[tuple[int, int]]:
    """(start, end) of every whole window of ``n_ctx`` tokens; EngineError when not even one fits."""
    count = len(tokens) // n_ctx
    if count < 1:
        raise EngineError(
            f"The text is {len(tokens):,} tokens, shorter than one window of {n_ctx:,}: "
            "use a longer text or a smaller context."
        )
    return [(i * n_ctx, (i + 1) * n_ctx) for i in range(count)]


def token_nll(logits: np.ndarray, targets: np.ndarray, *, block: int = 16) -> np.ndarray:
    """Negative log-probability of each target under its row of logits (float64), by a stable
    log-softmax; ``block`` rows at a time, so the work stays in the CPU's cache."""
    rows = np.asarray(logits, dtype=np.float32)
    out = np.empty(rows.shape[0], dtype=np.float64)
    scratch = np.empty((min(block, rows.shape[0]), rows.shape[1]), dtype=np.float32)
    for lo in range(0, rows.shape[0], block):
        part = rows[lo : lo + block]
        work = scratch[: part.shape[0]]
        top = part.max(axis=1)
        np.subtract(part, top[:, None], out=work)
        np.exp(work, out=work)
        sums = work.sum(axis=1, dtype=np.float64)
        chosen = part[np.arange(part.shape[0]), targets[lo : lo + block]].astype(np.float64)
        out[lo : lo + block] = np.log(sums) + top.astype(np.float64) - chosen
    return out


def summarize(
    nll: np.ndarray, *, windows: int, n_ctx: int, text_tokens: int, seconds: float
) -> PerplexityResult:
    """Perplexity and its standard error from per-token NLLs, as llama-perplexity computes them."""
    count = int(nll.size)
    mean = float(nll.mean())
    mean_sq = float(np.square(nll).mean())
    ppl = math.exp(mean)
    var = mean_sq - mean * mean
    stderr = math.sqrt(var / (count - 1)) * ppl if var > 0 and count > 1 else 0.0
    return PerplexityResult(ppl, stderr, mean, count, windows, n_ctx, text_tokens, seconds)


class _Batch:
    """A reusable ``llama_batch`` for one sequence."""

    def __init__(self, module: Any, size: int) -> None:
        self._low = module.llama_cpp
        self.size = size
        self.batch = self._low.llama_batch_init(size, 0, 1)

    def fill(self, tokens: Sequence[int], first_pos: int, want: Callable[[int], bool]) -> list[int]:
        """Load ``tokens`` at positions from ``first_pos``, with logits only where ``want(pos)``;
        returns the batch indexes that have logits."""
        b = self.batch
        wanted = []
        for i, token in enumerate(tokens):
            pos = first_pos + i
            b.token[i] = int(token)
            b.pos[i] = pos
            b.n_seq_id[i] = 1
            b.seq_id[i][0] = 0
            flag = want(pos)
            b.logits[i] = flag
            if flag:
                wanted.append(i)
        b.n_tokens = len(tokens)
        return wanted

    def free(self) -> None:
        self._low.llama_batch_free(self.batch)


def _rows(low: Any, ctx: Any, indexes: list[int], n_vocab: int) -> np.ndarray:
    """The logits of batch ``indexes`` as one (len, n_vocab) array: a view of llama.cpp's buffer when the
    rows are contiguous (read it before the next decode), else a copy."""
    first = low.llama_get_logits_ith(ctx, indexes[0])
    last = low.llama_get_logits_ith(ctx, indexes[-1])
    start = ctypes.cast(first, ctypes.c_void_p).value or 0
    end = ctypes.cast(last, ctypes.c_void_p).value or 0
    if end - start == (len(indexes) - 1) * n_vocab * 4:  # a view: valid until the next decode
        return np.ctypeslib.as_array(first, shape=(len(indexes), n_vocab))
    return np.stack(
        [np.ctypeslib.as_array(low.llama_get_logits_ith(ctx, i), shape=(n_vocab,)) for i in indexes]
    )


def perplexity(
    engine: Engine,
    tokens: Sequence[int],
    n_ctx: int,
    *,
    progress: Callable[[LabProgress], None] | None = None,
    stop_event: threading.Event | None = None,
) -> PerplexityResult:
    """Perplexity of the loaded model over ``tokens`` (see :func:`text_tokens`) in windows of ``n_ctx``.

    ``stop_event`` cancels (EngineError "cancelled") between batches and inside a long one.
    """
    llm = engine.llama
    info = engine.info
    check_context(n_ctx, info.context_length if info else None, info.path.name if info else "the model")
    if n_ctx > engine.n_ctx:
        raise EngineError(
            f"The model was loaded with a context of {engine.n_ctx:,}; {n_ctx:,} was asked for."
        )
    spans = windows_of(tokens, n_ctx)
    module = runtime.llama_cpp()
    low = module.llama_cpp
    ctx = llm._ctx.ctx
    vocab = llm._model.vocab
    n_vocab = int(low.llama_vocab_n_tokens(vocab))
    add_bos = bool(low.llama_vocab_get_add_bos(vocab))
    bos = int(low.llama_vocab_bos(vocab))
    n_batch = max(1, min(int(llm.n_batch), n_ctx))
    first = n_ctx // 2
    stop = stop_event or threading.Event()
    clock = ProgressClock()
    started = time.perf_counter()
    losses: list[np.ndarray] = []
    batch = _Batch(module, n_batch)
    engine._active_stop = stop  # llama.cpp's abort callback then stops a long batch too
    runtime.set_stopping(False)
    llm.reset()
    try:
        for number, (start, end) in enumerate(spans):
            window = list(tokens[start:end])
            if add_bos:
                window[0] = bos
            low.llama_memory_clear(low.llama_get_memory(ctx), True)
            for offset in range(0, n_ctx, n_batch):
                if stop.is_set():
                    raise EngineError("The measurement was cancelled.")
                part = window[offset : offset + n_batch]
                wanted = batch.fill(part, offset, lambda pos: first <= pos < n_ctx - 1)
                status = int(low.llama_decode(ctx, batch.batch))
                if status != 0:
                    if stop.is_set():
                        raise EngineError("The measurement was cancelled.")
                    raise EngineError(
                        f"llama.cpp failed to evaluate the text (llama_decode returned {status})."
                    )
                if wanted:
                    rows = _rows(low, ctx, wanted, n_vocab)
                    targets = np.array([window[offset + i + 1] for i in wanted], dtype=np.int64)
                    losses.append(token_nll(rows, targets))
            if progress is not None:
                progress(clock.progress(number + 1, len(spans), f"Window {number + 1} of {len(spans)}"))
    finally:
        engine._active_stop = None
        batch.free()
        low.llama_memory_clear(low.llama_get_memory(ctx), True)
        llm.reset()
    nll = np.concatenate(losses)
    if not np.all(np.isfinite(nll)):
        raise EngineError("The model produced invalid numbers (NaN or infinity) for this text.")
    return summarize(
        nll, windows=len(spans), n_ctx=n_ctx, text_tokens=len(tokens), seconds=time.perf_counter() - started
    )


def measure_perplexity(
    path: Path | str,
    text: str,
    n_ctx: int,
    runtime_settings: RuntimeSettings | None = None,
    *,
    progress: Callable[[LabProgress], None] | None = None,
    stop_event: threading.Event | None = None,
) -> PerplexityResult:
    """Load ``path`` in an engine of its own with a context of ``n_ctx``, score ``text`` and free it."""
    from .gguf_info import inspect_gguf

    info = inspect_gguf(path)
    check_context(n_ctx, info.context_length, info.path.name)
    rs = (runtime_settings or RuntimeSettings()).model_copy(
        update={"n_ctx": n_ctx, "n_batch": min(n_ctx, 8192)}
    )
    stop = stop_event or threading.Event()
    if progress is not None:
        progress(LabProgress(0.0, None, "Loading the model…"))
    engine = Engine()
    engine.load(path, rs, progress=lambda _v: not stop.is_set())
    try:
        if progress is not None:
            progress(LabProgress(0.0, None, "Reading the text…"))
        tokens = text_tokens(engine, text)
        return perplexity(engine, tokens, n_ctx, progress=progress, stop_event=stop)
    finally:
        engine.unload()


def perplexity_record(
    path: Path | str, text_file: Path | str, result: PerplexityResult, runtime_settings: RuntimeSettings
) -> LabRecord:
    """The kept record of a perplexity measurement (the text is named by its file name and size)."""
    path, text_file = Path(path), Path(text_file)
    settings = {
        "n_ctx": result.n_ctx,
        "text": text_file.name,
        "text_size": file_size(text_file),
        "n_gpu_layers": runtime_settings.n_gpu_layers,
    }
    return LabRecord(
        kind="perplexity",
        model_path=str(path),
        model_name=path.name,
        model_size=file_size(path),
        settings=settings,
        backend="",
        version=current_version(),
        measured_at=time.time(),
        figures=result.as_dict(),
    )
