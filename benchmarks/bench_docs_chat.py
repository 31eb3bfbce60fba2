"""Follow-up questions with documents keep the model's cache: a chat answered from a collection.

A collection of the course notes and these docs is indexed, then one conversation asks a few
questions with ``llamadesk chat --docs notes --conversation ID --json`` (a new process per turn, so
the conversation's saved state carries the cache from turn to turn), and the same questions again
without documents. Per turn: prompt tokens, tokens served from the cache, tokens read.

The figure that matters: a follow-up finds everything sent before in the cache, so tokens served
from the cache ÷ the previous turn's prompt is about 1 (at least 0.95), with documents as without;
only the new question and its sources are read. Prints a table per run and the medians.

    python benchmarks/bench_docs_chat.py [--turns 5] [--ctx 8192] [--max-tokens 48]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
CORPUS = HERE / "data" / "docs_eval" / "corpus"

QUESTIONS = [
    "What does the temperature setting change when a model generates text?",
    "Why would I pick a smaller quantization for a model?",
    "How does a chat template turn messages into a prompt?",
    "What happens when a conversation no longer fits in the context window?",
    "How can I check whether a model fits my machine before loading it?",
    "What is top-p sampling?",
    "Which quantization keeps the most quality for its size?",
]


def run_cli(args: list[str], home: Path) -> dict[str, Any]:
    env = {**os.environ, "LLAMADESK_HOME": str(home)}
    done = subprocess.run(
        [sys.executable, "-m", "llamadesk", *args], capture_output=True, text=True, env=env, timeout=600
    )
    if done.returncode != 0:
        raise SystemExit(f"llamadesk {' '.join(args[:2])} failed: {done.stderr.strip()[-800:]}")
    out = done.stdout.strip().splitlines()
    return json.loads(out[-1]) if out and out[-1].startswith("{") else {}


def conversation(home: Path, turns: int, ctx: int, max_tokens: int, docs: bool) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    conversation_id: int | None = None
    for question in QUESTIONS[:turns]:
        args = [
            "chat",
            "-m",
            "starter",
            "--json",
            "--temperature",
            "0",
        ]
        args += ["--ctx", str(ctx), "--max-tokens", str(max_tokens)]
        if docs:
            args += ["--docs", "notes"]
        args += ["--new"] if conversation_id is None else ["--conversation", str(conversation_id)]
        out = run_cli([*args, question], home)
        conversation_id = int(out["conversation_id"])
        rows.append(out)
    return rows


def report(name: str, rows: list[dict[str, Any]]) -> list[float]:
    print(f"\n{name}")
    print(
        f"{'turn':>4} {'prompt':>7} {'cached':>7} {'read':>6} {'cached ÷ previous prompt':>25} {'sources':>8}"
    )
    ratios: list[float] = []
    previous = 0
    for number, row in enumerate(rows, 1):
        prompt, cached = int(row["prompt_tokens"]), int(row["cached_tokens"])
        ratio = cached / previous if previous else float("nan")
        if previous:
            ratios.append(ratio)
        sources = len(row.get("sources", []))
        print(f"{number:>4} {prompt:>7} {cached:>7} {prompt - cached:>6} {ratio:>25.2f} {sources:>8}")
        previous = prompt
    return ratios


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--turns", type=int, default=5)
    parser.add_argument("--ctx", type=int, default=8192)
    parser.add_argument("--max-tokens", type=int, default=48)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="llamadesk-bench-docs-chat-") as folder:
        home = Path(folder)
        run_cli(["docs", "add", "notes", str(CORPUS)], home)
        with_docs = conversation(home, args.turns, args.ctx, args.max_tokens, docs=True)
        without = conversation(home, args.turns, args.ctx, args.max_tokens, docs=False)
    a = report("with documents (--docs notes)", with_docs)
    b = report("without documents", without)
    read_docs = statistics.median(int(r["prompt_tokens"]) - int(r["cached_tokens"]) for r in with_docs[1:])
    read_plain = statistics.median(int(r["prompt_tokens"]) - int(r["cached_tokens"]) for r in without[1:])
    print(
        f"\nfollow-ups, cached ÷ previous prompt (median): with documents {statistics.median(a):.2f}, "
        f"without {statistics.median(b):.2f} (target ≥ 0.95)"
    )
    print(f"follow-ups, tokens read (median): with documents {read_docs:.0f}, without {read_plain:.0f}")
    return 0 if min(statistics.median(a), statistics.median(b)) >= 0.95 else 1


if __name__ == "__main__":
    sys.exit(main())
