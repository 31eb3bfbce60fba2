"""Dropping the oldest turns in steps: a long chat keeps the same prompt start for many turns.

One token per character (as in test_context.py), so the arithmetic is visible.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from llamadesk.chat import ChatFormat, ContextError, chat_format_for, fit_context
from llamadesk.chat.context import step_points

TEMPLATES = Path(__file__).resolve().parents[1] / "data" / "templates"


def tokenize(text: str) -> list[int]:
    return [ord(c) for c in text]


def chatml() -> ChatFormat:
    return chat_format_for(None, None, None)


def chat(turns: int, size: int = 60) -> list[dict[str, str]]:
    messages = [{"role": "system", "content": "Be helpful."}]
    for i in range(turns):
        messages.append({"role": "user", "content": f"question {i} ".ljust(size, "q")})
        messages.append({"role": "assistant", "content": f"answer {i} ".ljust(size, "a")})
    return messages


def test_step_points_stay_put_as_the_chat_grows() -> None:
    sizes = [30, 50, 10, 90, 400, 20, 20, 70]
    points = step_points(sizes, 100)
    # Running totals 30, 80, 90, 180, 580, 600, 620, 690: 180 passes 100, 580 passes 200 to 500 at
    # once, 600 reaches 600; 690 is short of 700.
    assert points == [4, 5, 6]
    for n in range(len(sizes)):
        assert step_points(sizes[:n], 100) == [p for p in points if p <= n]
    assert step_points([*sizes, 15], 100) == [4, 5, 6, 9]


def test_a_growing_chat_keeps_its_drop_point_until_it_grows_by_a_step() -> None:
    fmt = chatml()
    budget, step = 1200, 300
    starts = []
    for turns in range(6, 40):
        messages = [*chat(turns), {"role": "user", "content": "newest"}]
        fit = fit_context(fmt, messages, tokenize, budget, step=step)
        assert len(fit.prompt_tokens) <= budget
        starts.append(fit.kept[1] if len(fit.kept) > 1 else None)
    changes = sum(1 for a, b in itertools.pairwise(starts) if a != b)
    grown = sum(len(m["content"]) + 4 for m in chat(40)[1:]) - sum(len(m["content"]) + 4 for m in chat(6)[1:])
    # Without steps the start moves on every turn once the chat is full; with them, once a step.
    assert changes <= grown // step + 1
    plain = [
        fit_context(fmt, [*chat(t), {"role": "user", "content": "newest"}], tokenize, budget).kept[1]
        for t in range(20, 30)
    ]
    assert len(set(plain)) == len(plain)


def test_each_step_frees_about_a_step_of_room() -> None:
    fmt = chatml()
    budget, step = 1200, 300
    messages = [*chat(30), {"role": "user", "content": "newest"}]
    fit = fit_context(fmt, messages, tokenize, budget, step=step)
    fewest = fit_context(fmt, messages, tokenize, budget)
    assert len(fit.dropped) >= len(fewest.dropped)
    assert budget - len(fit.prompt_tokens) < step + 2 * 130  # never more than a step and a turn
    assert fit.kept[0] == 0 and fit.kept[-1] == len(messages) - 1


def test_the_head_is_where_the_kept_turns_start() -> None:
    fmt = chatml()
    messages = [*chat(30), {"role": "user", "content": "newest"}]
    fit = fit_context(fmt, messages, tokenize, 1200, step=300)
    assert fit.dropped and fit.head_tokens is not None
    system_part = fmt.render([messages[0]], add_generation_prompt=False) + "<|im_start|>user\n"
    assert fit.head_tokens == len(system_part)
    assert fit.prompt.startswith(system_part + "question ")
    assert fit_context(fmt, messages[:5], tokenize, 10_000, step=300).head_tokens is None  # nothing dropped


def test_the_head_of_a_template_that_merges_the_system_prompt() -> None:
    gemma2 = chat_format_for((TEMPLATES / "gemma2.jinja").read_text(encoding="utf-8"), "<bos>", "<eos>")
    messages = [*chat(30), {"role": "user", "content": "newest"}]
    fit = fit_context(gemma2, messages, tokenize, 1200, step=300)
    assert fit.head_tokens is not None
    head = fit.prompt[: fit.head_tokens]
    assert head.startswith("<bos><start_of_turn>user\nBe helpful.") and "question" not in head


def test_stop_and_tell_me_refuses_to_leave_anything_out() -> None:
    fmt = chatml()
    messages = [*chat(30), {"role": "user", "content": "newest"}]
    needed = len(fmt.render(messages))
    with pytest.raises(ContextError, match="no longer fits") as caught:
        fit_context(fmt, messages, tokenize, 1200, n_ctx=1300, max_tokens=100, drop=False)
    assert caught.value.needed == needed and caught.value.budget == 1200
    assert "1,300" in str(caught.value) and "Preferences" in str(caught.value)
    short = [*chat(2), {"role": "user", "content": "newest"}]
    assert fit_context(fmt, short, tokenize, 1200, drop=False).dropped == []


def test_token_counts_for_the_steps_come_from_the_counter_given() -> None:
    fmt = chatml()
    counted: list[str] = []

    def count(text: str) -> int:
        counted.append(text)
        return len(text)

    messages = [*chat(30), {"role": "user", "content": "newest"}]
    fit = fit_context(fmt, messages, tokenize, 1200, step=300, count_tokens=count)
    assert fit.dropped
    assert set(counted) <= {m["content"] for m in messages[1:-1]}
