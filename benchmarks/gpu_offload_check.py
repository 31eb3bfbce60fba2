"""Check GPU offload for real: hardware detection, the automatic plan, and decode speed.

Loads a model through the Engine twice, CPU only (n_gpu_layers=0) and with the planner's
automatic choice (-2), reports llama.cpp's "offloaded N/M layers" line and decode tokens/s.
Exits 1 when a CUDA build on a machine with an NVIDIA GPU does not offload every layer.
Usage: python benchmarks/gpu_offload_check.py MODEL.gguf [--tokens 128] [--runs 3]
"""

from __future__ import annotations

import argparse
import logging
import re
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "desktop"))

from llamadesk.engine import Engine, detect_hardware, inspect_gguf, plan_fit
from llamadesk.engine import runtime as llama_runtime
from llamadesk.engine.hardware import GiB
from llamadesk.settings import GenerationSettings, RuntimeSettings

PROMPT = "Write a long, detailed story about a llama who learns to program computers."
OFFLOAD_RE = re.compile(r"offloaded (\d+)/(\d+) layers to GPU")


class LineCollector(logging.Handler):
    """Keeps the llama.cpp log lines of the current load."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


def measure(engine: Engine, tokens: int, runs: int) -> tuple[float, list[float], int]:
    """Median decode tokens/s over ``runs`` greedy generations of ``tokens`` tokens."""
    settings = GenerationSettings(
        temperature=0.0, top_k=1, top_p=1.0, min_p=0.0, repeat_penalty=1.0, max_tokens=tokens, seed=0
    )
    warm = engine.generate(PROMPT, settings.model_copy(update={"max_tokens": 16}))
    for _ in warm:
        pass
    rates: list[float] = []
    produced = 0
    for _ in range(runs):
        gen = engine.generate(PROMPT, settings)
        for _piece in gen:
            pass
        assert gen.stats is not None
        produced = gen.stats.completion_tokens
        rates.append(gen.stats.tokens_per_s)
    return statistics.median(rates), rates, produced


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("model", type=Path)
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args(argv)

    collector = LineCollector()
    llama_log = logging.getLogger("llama.cpp")
    llama_log.setLevel(logging.DEBUG)
    llama_log.addHandler(collector)
    llama_log.propagate = False

    t0 = time.perf_counter()
    hw = detect_hardware()
    print(
        f"llama-cpp-python {llama_runtime.version()}; detect_hardware() took {time.perf_counter() - t0:.3f} s"
    )
    print(f"backend={hw.backend} compiled_backends={hw.compiled_backends} gpu_offload={hw.gpu_offload}")
    for gpu in hw.gpus:
        print(f"  GPU {gpu.name}: {gpu.vram_total / GiB:.1f} GiB total, {gpu.vram_free / GiB:.1f} GiB free")
    print(f"  {hw.describe()}")
    module = llama_runtime.llama_cpp()
    print(f"llama_supports_gpu_offload()={bool(module.llama_supports_gpu_offload())}")

    info = inspect_gguf(args.model)
    plan = plan_fit(info, hw)
    size = info.file_size / 2**20
    print(f"model {info.display_name}: {info.file_type}, {info.block_count} layers, {size:.1f} MiB")
    print(f"plan: verdict={plan.verdict} n_gpu_layers={plan.n_gpu_layers} n_ctx={plan.n_ctx}")
    print(f"  {plan.summary}")

    results: dict[str, float] = {}
    offload: dict[str, tuple[int, int] | None] = {}
    for label, gpu_layers in (("cpu", 0), ("auto", -2)):
        collector.lines.clear()
        engine = Engine()
        t0 = time.perf_counter()
        engine.load(args.model, RuntimeSettings(n_gpu_layers=gpu_layers))
        load_s = time.perf_counter() - t0
        lines = [line for line in collector.lines if OFFLOAD_RE.search(line) or "CUDA0" in line]
        match = next((m for m in map(OFFLOAD_RE.search, collector.lines) if m), None)
        offload[label] = (int(match.group(1)), int(match.group(2))) if match else None
        print(
            f"[{label}] n_gpu_layers={gpu_layers} -> engine.n_gpu_layers={engine.n_gpu_layers} "
            f"backend={engine.backend} n_ctx={engine.n_ctx} load {load_s:.2f} s"
        )
        for line in lines or ["(no 'offloaded' line in the llama.cpp log)"]:
            print(f"  llama.cpp: {line}")
        tps, rates, produced = measure(engine, args.tokens, args.runs)
        results[label] = tps
        print(
            f"  decode {tps:.1f} tokens/s (median of {rates and ', '.join(f'{r:.1f}' for r in rates)}; "
            f"{produced} tokens per run)"
        )
        engine.unload()

    if results.get("cpu"):
        print(f"speed-up auto/cpu: {results['auto'] / results['cpu']:.2f}x")
    if hw.backend != "CUDA":
        print("not a CUDA build: nothing to verify")
        return 0
    auto = offload.get("auto")
    if not hw.gpus:
        print("FAIL: CUDA build but no GPU detected (nvidia-smi missing or unparsable)")
        return 1
    if auto is None or auto[0] != auto[1]:
        print(f"FAIL: automatic plan did not offload all layers (got {auto})")
        return 1
    print(f"OK: automatic plan offloaded {auto[0]}/{auto[1]} layers")
    return 0


if __name__ == "__main__":
    sys.exit(main())
