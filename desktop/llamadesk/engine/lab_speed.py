"""Speed of a model on this machine, measured like llama.cpp's ``llama-bench``.

``pp`` (prompt processing): ``pp_tokens`` tokens (BOS, then random ids) evaluated from an empty
cache in batches; ``tg`` (text generation): ``tg_tokens`` tokens evaluated one at a time after
BOS, as a reply is produced. Both are the raw model speed, with no sampling or detokenizing.
A warm-up run goes first; each test is repeated and reported as mean ± standard deviation of
tokens/s. Load time and the process's peak memory are measured too.
"""

from __future__ import annotations

import contextlib
import os
import random
import statistics
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..settings import RuntimeSettings
from . import runtime
from .engine import Engine
from .errors import EngineError
from .lab_results import LabProgress, LabRecord, ProgressClock, current_version, file_size
from .perplexity import _Batch

PP_TOKENS = 512
TG_TOKENS = 128


@dataclass(frozen=True)
class SpeedResult:
    """Tokens/s for prompt processing and generation (mean and spread), load time and memory."""

    pp_tokens: int
    tg_tokens: int
    repetitions: int
    pp_tps: float
    pp_std: float
    tg_tps: float
    tg_std: float
    load_s: float
    peak_rss_bytes: int  # the process's peak resident memory while measuring
    model_rss_bytes: int  # what loading added to the resident memory
    n_ctx: int
    n_gpu_layers: int
    n_threads: int
    backend: str
    pp_runs: list[float] = field(default_factory=list)
    tg_runs: list[float] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def rss_bytes() -> int:
    """The process's resident memory now (0 where it can't be read)."""
    if sys.platform.startswith("linux"):
        try:
            pages = int(Path("/proc/self/statm").read_text().split()[1])
            return pages * os.sysconf("SC_PAGE_SIZE")
        except (OSError, ValueError, IndexError):
            return 0
    with contextlib.suppress(ImportError, OSError):
        import resource

        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return int(peak if sys.platform == "darwin" else peak * 1024)
    return 0


def _reset_peak() -> None:
    """Linux: restart the kernel's peak-RSS count (VmHWM) so it covers this measurement only."""
    with contextlib.suppress(OSError):
        Path("/proc/self/clear_refs").write_text("5")


def _kernel_peak() -> int:
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return 0


def _stats(runs: list[float]) -> tuple[float, float]:
    return statistics.fmean(runs), statistics.stdev(runs) if len(runs) > 1 else 0.0


def measure_speed(
    path: Path | str,
    runtime_settings: RuntimeSettings | None = None,
    *,
    pp_tokens: int = PP_TOKENS,
    tg_tokens: int = TG_TOKENS,
    repetitions: int = 3,
    progress: Callable[[LabProgress], None] | None = None,
    stop_event: threading.Event | None = None,
) -> SpeedResult:
    """Load ``path`` in an engine of its own, measure pp and tg ``repetitions`` times, and free it.

    The context defaults to ``pp_tokens + tg_tokens``; EngineError "cancelled" when ``stop_event`` is set.
    """
    if repetitions < 1 or pp_tokens < 1 or tg_tokens < 1:
        raise EngineError("The speed test needs at least one repetition and one token of each kind.")
    rs = runtime_settings or RuntimeSettings()
    need = max(pp_tokens, tg_tokens + 1)
    n_ctx = rs.n_ctx or pp_tokens + tg_tokens
    if n_ctx < need:
        raise EngineError(f"The speed test needs a context of at least {need:,} tokens (got {n_ctx:,}).")
    rs = rs.model_copy(update={"n_ctx": n_ctx, "n_batch": min(max(rs.n_batch, pp_tokens), n_ctx)})
    stop = stop_event or threading.Event()
    clock = ProgressClock()
    steps = 2 + 2 * repetitions  # loading, warm-up, then each pp and tg run
    done = 0

    def step(text: str) -> None:
        nonlocal done
        if stop.is_set():
            raise EngineError("The measurement was cancelled.")
        if progress is not None:
            progress(clock.progress(done, steps, text))
        done += 1

    engine = Engine()
    _reset_peak()
    before = rss_bytes()
    step("Loading the model…")
    started = time.perf_counter()
    engine.load(path, rs, progress=lambda _v: not stop.is_set())
    load_s = time.perf_counter() - started
    loaded_rss = rss_bytes()
    bench: _Bench | None = None
    try:
        bench = _Bench(engine, stop)
        step("Warming up…")
        bench.prompt(min(pp_tokens, 16))
        bench.generate(1)
        pp_runs: list[float] = []
        tg_runs: list[float] = []
        peak = loaded_rss
        for rep in range(repetitions):
            step(f"Prompt processing, run {rep + 1} of {repetitions}")
            pp_runs.append(pp_tokens / bench.prompt(pp_tokens))
            peak = max(peak, rss_bytes())
            step(f"Generation, run {rep + 1} of {repetitions}")
            tg_runs.append(tg_tokens / bench.generate(tg_tokens))
            peak = max(peak, rss_bytes())
        if progress is not None:
            progress(LabProgress(1.0, 0.0, "Done"))
        pp_tps, pp_std = _stats(pp_runs)
        tg_tps, tg_std = _stats(tg_runs)
        return SpeedResult(
            pp_tokens=pp_tokens,
            tg_tokens=tg_tokens,
            repetitions=repetitions,
            pp_tps=pp_tps,
            pp_std=pp_std,
            tg_tps=tg_tps,
            tg_std=tg_std,
            load_s=load_s,
            peak_rss_bytes=max(peak, _kernel_peak()),
            model_rss_bytes=max(loaded_rss - before, 0),
            n_ctx=engine.n_ctx,
            n_gpu_layers=engine.n_gpu_layers,
            n_threads=int(engine.llama.n_threads) if hasattr(engine.llama, "n_threads") else rs.n_threads,
            backend=engine.backend,
            pp_runs=pp_runs,
            tg_runs=tg_runs,
        )
    finally:
        if bench is not None:
            bench.close()
        engine.unload()


class _Bench:
    """Timed raw decodes on an engine's context: a prompt in batches, or tokens one by one."""

    def __init__(self, engine: Engine, stop: threading.Event) -> None:
        self.engine = engine
        self.stop = stop
        module = runtime.llama_cpp()
        self.low = module.llama_cpp
        llm = engine.llama
        self.ctx = llm._ctx.ctx
        vocab = llm._model.vocab
        self.n_vocab = int(self.low.llama_vocab_n_tokens(vocab))
        self.bos = int(self.low.llama_vocab_bos(vocab))
        self.n_batch = int(llm.n_batch)
        self.batch = _Batch(module, self.n_batch)
        self.rng = random.Random(0)
        engine._active_stop = stop

    def _clear(self) -> None:
        self.low.llama_memory_clear(self.low.llama_get_memory(self.ctx), True)

    def _decode(self, tokens: list[int], pos: int) -> None:
        self.batch.fill(tokens, pos, lambda p: p == pos + len(tokens) - 1)
        status = int(self.low.llama_decode(self.ctx, self.batch.batch))
        if status != 0 or self.stop.is_set():
            if self.stop.is_set():
                raise EngineError("The measurement was cancelled.")
            raise EngineError(f"llama.cpp failed to evaluate tokens (llama_decode returned {status}).")

    def _random(self, count: int) -> list[int]:
        return [self.rng.randrange(self.n_vocab) for _ in range(count)]

    def _sync(self) -> None:
        self.low.llama_synchronize(self.ctx)

    def prompt(self, count: int) -> float:
        """Seconds to evaluate ``count`` tokens (BOS and random ids) from an empty cache."""
        tokens = [self.bos, *self._random(count - 1)]
        self._clear()
        started = time.perf_counter()
        for offset in range(0, count, self.n_batch):
            self._decode(tokens[offset : offset + self.n_batch], offset)
        self._sync()
        return time.perf_counter() - started

    def generate(self, count: int) -> float:
        """Seconds to evaluate ``count`` tokens one at a time after BOS."""
        tokens = self._random(count)
        self._clear()
        self._decode([self.bos], 0)
        self._sync()
        started = time.perf_counter()
        for i, token in enumerate(tokens):
            self._decode([token], i + 1)
        self._sync()
        return time.perf_counter() - started

    def close(self) -> None:
        self.batch.free()
        self.engine._active_stop = None


def speed_record(path: Path | str, result: SpeedResult, runtime_settings: RuntimeSettings) -> LabRecord:
    """The kept record of a speed measurement."""
    path = Path(path)
    settings = {
        "n_ctx": result.n_ctx,
        "n_gpu_layers": result.n_gpu_layers,
        "n_threads": runtime_settings.n_threads,
        "pp_tokens": result.pp_tokens,
        "tg_tokens": result.tg_tokens,
    }
    return LabRecord(
        kind="speed",
        model_path=str(path),
        model_name=path.name,
        model_size=file_size(path),
        settings=settings,
        backend=result.backend,
        version=current_version(),
        measured_at=time.time(),
        figures=result.as_dict(),
    )
