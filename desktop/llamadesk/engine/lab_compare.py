"""Compare models: the same prompt and settings to each, one model loaded at a time.

Each model is loaded in an engine of its own, answers, and is freed before the next loads, so
models that don't fit in memory together can still be compared. The table of quantizations
(size, bits per weight, measured perplexity and speed) is built from the kept lab results.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ..errors import LlamaDeskError
from ..settings import GenerationSettings, RuntimeSettings
from .engine import Engine
from .errors import EngineError
from .lab_results import LabProgress, LabResults, ProgressClock
from .lab_speed import _kernel_peak, _reset_peak, rss_bytes


@dataclass(frozen=True)
class CompareResult:
    """One model's reply and what it cost."""

    model_path: str
    text: str
    prompt_tokens: int
    completion_tokens: int
    ttft_s: float
    tokens_per_s: float
    load_s: float
    peak_rss_bytes: int
    stop_reason: str
    error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def compare_models(
    paths: Sequence[Path | str],
    prompt: str,
    settings: GenerationSettings,
    runtime_settings: RuntimeSettings | None = None,
    *,
    progress: Callable[[LabProgress], None] | None = None,
    on_result: Callable[[CompareResult], None] | None = None,
    stop_event: threading.Event | None = None,
) -> list[CompareResult]:
    """Send ``prompt`` (a chat message, through each model's own template) to every model in turn.

    A model that fails to load or answer gets a result with ``error``; the others still run.
    EngineError "cancelled" when ``stop_event`` is set.
    """
    from ..chat.templates import chat_format_for

    stop = stop_event or threading.Event()
    clock = ProgressClock()
    results: list[CompareResult] = []
    for number, path in enumerate(paths):
        if stop.is_set():
            raise EngineError("The comparison was cancelled.")
        if progress is not None:
            progress(
                clock.progress(number, len(paths), f"Model {number + 1} of {len(paths)}: {Path(path).name}")
            )
        engine = Engine()
        _reset_peak()
        try:
            started = time.perf_counter()
            engine.load(path, runtime_settings, progress=lambda _v: not stop.is_set())
            load_s = time.perf_counter() - started
            info = engine.info
            assert info is not None
            fmt = chat_format_for(info.chat_template, info.bos_token, info.eos_token)
            text = fmt.render([{"role": "user", "content": prompt}])
            tokens = engine.tokenize(text)
            generation = engine.generate(tokens, settings, stop_event=stop, extra_stop=fmt.stop_strings)
            for _piece in generation:
                pass
            stats = generation.stats
            assert stats is not None
            if stop.is_set():
                raise EngineError("The comparison was cancelled.")
            result = CompareResult(
                model_path=str(path),
                text=generation.text,
                prompt_tokens=stats.prompt_tokens,
                completion_tokens=stats.completion_tokens,
                ttft_s=stats.ttft_s,
                tokens_per_s=stats.tokens_per_s,
                load_s=load_s,
                peak_rss_bytes=max(rss_bytes(), _kernel_peak()),
                stop_reason=stats.stop_reason.value,
                error=stats.error,
            )
        except LlamaDeskError as exc:
            if stop.is_set():
                raise EngineError("The comparison was cancelled.") from exc
            result = CompareResult(str(path), "", 0, 0, 0.0, 0.0, 0.0, 0, "error", str(exc))
        finally:
            engine.unload()
        results.append(result)
        if on_result is not None:
            on_result(result)
    if progress is not None:
        progress(LabProgress(1.0, 0.0, "Done"))
    return results


@dataclass(frozen=True)
class QuantRow:
    """One variant of a model in the quantization table."""

    path: str
    quantization: str
    size: int
    bits_per_weight: float | None
    perplexity: float | None
    perplexity_stderr: float | None
    tokens_per_s: float | None
    chosen: bool = False


def quant_table(
    variants: Sequence[tuple[Path, str, int, int | None]], results: LabResults, chosen: Path | None = None
) -> list[QuantRow]:
    """Rows for ``variants`` ((path, quantization, size in bytes, parameter count)), smallest first,
    with the newest perplexity and speed kept for each; perplexities come from one text only
    (the one measured most recently), so they can be compared."""
    latest = [results.latest(path, "perplexity") for path, *_ in variants]
    texts = [r.settings.get("text") for r in latest if r is not None]
    newest = max((r for r in latest if r is not None), key=lambda r: r.measured_at, default=None)
    text = newest.settings.get("text") if newest is not None else None
    rows = []
    for (path, quant, size, params), ppl in zip(variants, latest, strict=True):
        speed = results.latest(path, "speed")
        same = ppl is not None and ppl.settings.get("text") == text and texts
        rows.append(
            QuantRow(
                path=str(path),
                quantization=quant,
                size=size,
                bits_per_weight=size * 8 / params if params else None,
                perplexity=float(ppl.figures["perplexity"]) if same and ppl else None,
                perplexity_stderr=float(ppl.figures["stderr"]) if same and ppl else None,
                tokens_per_s=float(speed.figures["tg_tps"]) if speed else None,
                chosen=chosen is not None and Path(path) == Path(chosen),
            )
        )
    return sorted(rows, key=lambda r: r.size)
