"""`llamadesk bench`, `llamadesk perplexity` and `llamadesk compare`: the model lab in a terminal.

Each command loads its own model in this process (nothing else decodes here), prints progress
with the time left on stderr when it is a terminal, and keeps speed and perplexity results in
the data folder, where My models and the Hub browser show them. Ctrl+C cancels (exit 130).
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ..engine.lab_results import LabProgress, LabResults
from ..paths import get_paths
from ..settings import RuntimeSettings, SettingsStore, validated_update
from .common import EXIT_INTERRUPTED, CliError, shown, warn
from .resolve import models_folder, resolve_model

__all__ = ["cmd_bench", "cmd_compare", "cmd_perplexity"]


@contextmanager
def _cancellable() -> Iterator[threading.Event]:
    """An event Ctrl+C sets (the run stops within a batch) instead of raising mid-decode."""
    stop = threading.Event()
    previous = signal.signal(signal.SIGINT, lambda *_: stop.set())
    try:
        yield stop
    finally:
        signal.signal(signal.SIGINT, previous)


def _reporter(quiet: bool) -> Callable[[LabProgress], None] | None:
    """A progress line on stderr (rewritten in place) when stderr is a terminal."""
    if quiet or not sys.stderr.isatty():
        return None

    def report(p: LabProgress) -> None:
        left = f", about {_duration(p.seconds_left)} left" if p.seconds_left is not None else ""
        sys.stderr.write(f"\r\x1b[2K{p.fraction:4.0%} {p.text}{left}")
        sys.stderr.flush()
        if p.fraction >= 1.0:
            sys.stderr.write("\r\x1b[2K")

    return report


def _duration(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 90 else f"{seconds / 60:.0f} min"


def _setup(args: argparse.Namespace, *, context: bool = True) -> tuple[RuntimeSettings, Path]:
    """The runtime settings (from Preferences, with the command's overrides) and the models folder."""
    paths = get_paths().ensure()
    store = SettingsStore(paths.settings_file)
    settings = store.load()
    if store.warning:
        warn(store.warning)
    changes: dict[str, Any] = {}
    for option, name in (("ctx", "n_ctx"), ("gpu_layers", "n_gpu_layers"), ("threads", "n_threads")):
        value = getattr(args, option, None)
        if value is not None and (context or option != "ctx"):
            changes[name] = value
    return validated_update(settings.runtime, **changes), models_folder(settings, paths)


def _keep(record: Any) -> None:
    results = LabResults.default()
    try:
        results.add(record)
    except OSError as exc:
        warn(f"the result could not be kept: {exc.strerror or exc}")
    if results.warning:
        warn(results.warning)


def _mb(value: int) -> str:
    return f"{value / (1 << 20):,.0f} MB"


def cmd_bench(args: argparse.Namespace) -> int:
    from ..engine.lab_speed import measure_speed, speed_record

    runtime, models_dir = _setup(args, context=False)
    # Like llama-bench, the context is what the test needs unless --ctx says otherwise.
    runtime = runtime.model_copy(update={"n_ctx": args.ctx or 0})
    path = resolve_model(args.model, models_dir=models_dir)
    with _cancellable() as stop:
        result = _interruptible(
            stop,
            lambda: measure_speed(
                path,
                runtime,
                pp_tokens=args.prompt_tokens,
                tg_tokens=args.gen_tokens,
                repetitions=args.repetitions,
                progress=_reporter(args.json),
                stop_event=stop,
            ),
        )
    if result is None:
        return EXIT_INTERRUPTED
    _keep(speed_record(path, result, runtime))
    if args.json:
        print(json.dumps({"model": str(path), **result.as_dict()}, ensure_ascii=False))
        return 0
    print(
        f"{shown(path.name)}: {result.backend}, {result.n_threads} threads, context {result.n_ctx:,}, "
        f"{result.n_gpu_layers} GPU layers"
    )
    print(f"  pp{result.pp_tokens:<5} {result.pp_tps:10.1f} ± {result.pp_std:.1f} tok/s")
    print(f"  tg{result.tg_tokens:<5} {result.tg_tps:10.1f} ± {result.tg_std:.1f} tok/s")
    print(f"  load     {result.load_s:10.2f} s")
    print(f"  memory   {_mb(result.peak_rss_bytes):>10} peak ({_mb(result.model_rss_bytes)} for the model)")
    print(f"  ({result.repetitions} runs each)")
    return 0


def cmd_perplexity(args: argparse.Namespace) -> int:
    from ..engine.gguf_info import inspect_gguf
    from ..engine.perplexity import check_context, measure_perplexity, perplexity_record, read_text_file

    runtime, models_dir = _setup(args, context=False)  # --ctx is the window here, set below
    path = resolve_model(args.model, models_dir=models_dir)
    text = read_text_file(Path(args.file).expanduser())
    n_ctx = args.ctx or 512
    check_context(n_ctx, inspect_gguf(path).context_length, path.name)
    with _cancellable() as stop:
        result = _interruptible(
            stop,
            lambda: measure_perplexity(
                path, text, n_ctx, runtime, progress=_reporter(args.json), stop_event=stop
            ),
        )
    if result is None:
        return EXIT_INTERRUPTED
    _keep(perplexity_record(path, Path(args.file), result, runtime))
    if args.json:
        print(
            json.dumps({"model": str(path), "file": str(args.file), **result.as_dict()}, ensure_ascii=False)
        )
        return 0
    print(
        f"{shown(path.name)} on {shown(Path(args.file).name)}: "
        f"perplexity {result.perplexity:.4f} ± {result.stderr:.4f}"
    )
    print(
        f"  {result.tokens_scored:,} tokens scored in {result.windows} windows of {result.n_ctx}, "
        f"{result.tokens_per_s:,.0f} tok/s"
    )
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from ..engine.lab_compare import compare_models

    runtime, models_dir = _setup(args)
    if len(args.models) < 2:
        raise CliError('give two or more models and a prompt: llamadesk compare MODEL_A MODEL_B "prompt"')
    paths = [resolve_model(name, models_dir=models_dir) for name in args.models]
    prompt = args.prompt.strip()
    if not prompt:
        raise CliError("the prompt is empty")
    changes = {"max_tokens": args.max_tokens, "seed": args.seed, "temperature": args.temperature}
    generation = validated_update(
        SettingsStore(get_paths().settings_file).load().generation,
        **{k: v for k, v in changes.items() if v is not None},
    )
    with _cancellable() as stop:
        results = _interruptible(
            stop,
            lambda: compare_models(
                paths, prompt, generation, runtime, progress=_reporter(args.json), stop_event=stop
            ),
        )
    if results is None:
        return EXIT_INTERRUPTED
    if args.json:
        print(json.dumps([r.as_dict() for r in results], ensure_ascii=False))
        return 0
    for r in results:
        print(f"=== {shown(Path(r.model_path).name)}")
        if r.error:
            print(f"  failed: {shown(r.error)}")
            continue
        print(shown(r.text.strip(), block=True))
        print(
            f"  ({r.completion_tokens} tokens, first after {r.ttft_s:.2f} s, {r.tokens_per_s:.1f} tok/s, "
            f"load {r.load_s:.1f} s, {_mb(r.peak_rss_bytes)} peak)"
        )
    return 0


def _interruptible(stop: threading.Event, run: Callable[[], Any]) -> Any:
    """``run()``; None when Ctrl+C cancelled it."""
    from ..errors import LlamaDeskError

    try:
        return run()
    except LlamaDeskError:
        if stop.is_set():
            sys.stderr.write("\n")
            return None
        raise
