"""Fitting a conversation into the context: oldest turns go first, whole exchanges at a time.

The tokenizer here is a plain function (one token per character) so that the arithmetic is
visible; tests/integration/test_template_model.py runs the same logic on the real llama.cpp
tokenizer.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from llamadesk.chat import ChatFormat, ContextError, chat_format_for, fit_context
from llamadesk.errors import LlamaDeskError

TEMPLATES = Path(__file__).resolve().parents[1] / "data" / "templates"


class CountingTokenizer:
    """One token per character; counts how often and how much it was asked to tokenize."""

    def __init__(self) -> None:
        self.calls = 0
        self.chars = 0

    def __call__(self, text: str) -> list[int]:
        self.calls += 1
        self.chars += len(text)
        return [ord(c) for c in text]


def chatml() -> ChatFormat:
    return chat_format_for(None, None, None)


def conversation(turns: int, *, system: bool = True, size: int = 40) -> list[dict[str, str]]:
    messages = [{"role": "system", "content": "Be helpful."}] if system else []
    for i in range(turns):
        messages.append({"role": "user", "content": f"question {i} ".ljust(size, "q")})
        messages.append({"role": "assistant", "content": f"answer {i} ".ljust(size, "a")})
    messages.append({"role": "user", "content": "newest question"})
    return messages


def test_everything_fits() -> None:
    messages = conversation(3)
    tokenize = CountingTokenizer()
    fit = fit_context(chatml(), messages, tokenize, budget=10_000)
    assert fit.dropped == []
    assert fit.kept == list(range(len(messages)))
    assert fit.prompt == chatml().render(messages)
    assert fit.prompt_tokens == tokenize(fit.prompt)
    assert tokenize.calls == 2  # one render + tokenize, plus the check above


def test_oldest_turns_are_dropped_in_whole_exchanges() -> None:
    fmt = chatml()
    messages = conversation(10)
    full = len(fmt.render(messages))
    fit = fit_context(fmt, messages, CountingTokenizer(), budget=full - 150)
    assert fit.kept[0] == 0  # the system prompt stays
    assert fit.kept[-1] == len(messages) - 1  # and so does the newest question
    assert fit.dropped == list(range(1, 1 + len(fit.dropped)))  # the oldest ones go
    assert len(fit.dropped) % 2 == 0  # whole user + assistant exchanges
    roles = [messages[i]["role"] for i in fit.kept]
    assert roles[1:] == ["user", "assistant"] * ((len(roles) - 2) // 2) + ["user"]
    assert len(fit.prompt_tokens) <= full - 150
    # It keeps as much as fits: one more exchange would not.
    one_more = [0, fit.dropped[-2], fit.dropped[-1], *fit.kept[1:]]
    assert len(fmt.render([messages[i] for i in one_more])) > full - 150


@pytest.mark.parametrize("budget_fraction", [0.05, 0.2, 0.5, 0.9])
def test_fit_is_the_longest_suffix_that_fits(budget_fraction: float) -> None:
    fmt = chatml()
    messages = conversation(40)
    budget = int(len(fmt.render(messages)) * budget_fraction)
    minimal = len(fmt.render([messages[0], messages[-1]]))
    if budget < minimal:
        budget = minimal
    fit = fit_context(fmt, messages, CountingTokenizer(), budget=budget)
    assert len(fit.prompt_tokens) <= budget
    dropped_pairs = len(fit.dropped) // 2
    if dropped_pairs:
        keep_one_more = [0, *range(2 * dropped_pairs - 1, len(messages))]
        assert len(fmt.render([messages[i] for i in keep_one_more])) > budget


def test_without_a_system_prompt_the_oldest_user_turn_goes_first() -> None:
    fmt = chatml()
    messages = conversation(5, system=False)
    fit = fit_context(fmt, messages, CountingTokenizer(), budget=len(fmt.render(messages)) - 10)
    assert fit.dropped == [0, 1]
    assert fit.kept == list(range(2, len(messages)))


def test_a_leading_assistant_greeting_is_dropped_on_its_own() -> None:
    fmt = chatml()
    messages = [
        {"role": "system", "content": "Be helpful."},
        {"role": "assistant", "content": "Hello! How can I help you today?"},
        {"role": "user", "content": "Tell me a joke"},
        {"role": "assistant", "content": "Why did the chicken cross the road?"},
        {"role": "user", "content": "Why?"},
    ]
    fit = fit_context(fmt, messages, CountingTokenizer(), budget=len(fmt.render(messages)) - 5)
    assert fit.dropped == [1]


def test_system_prompt_survives_a_template_that_merges_it() -> None:
    gemma2 = chat_format_for((TEMPLATES / "gemma2.jinja").read_text(encoding="utf-8"), "<bos>", "<eos>")
    messages = conversation(6)
    fit = fit_context(gemma2, messages, CountingTokenizer(), budget=len(gemma2.render(messages)) // 2)
    assert fit.dropped
    assert fit.prompt.startswith("<bos><start_of_turn>user\nBe helpful.\nquestion ")
    assert fit.prompt.endswith("newest question<end_of_turn>\n<start_of_turn>model\n")


def test_message_too_long_for_the_context_raises_with_the_numbers() -> None:
    fmt = chatml()
    messages = [*conversation(2)[:-1], {"role": "user", "content": "x" * 500}]
    needed = len(fmt.render([messages[0], messages[-1]]))
    with pytest.raises(ContextError) as caught:
        fit_context(fmt, messages, CountingTokenizer(), budget=300, n_ctx=812, max_tokens=512)
    error = caught.value
    assert isinstance(error, LlamaDeskError)
    assert (error.needed, error.budget) == (needed, 300)
    assert str(error) == (
        f"Your message and the system prompt need {needed} tokens, but only 300 fit in the context "
        "(context length 812 minus 512 kept for the reply). Shorten it or raise the context length."
    )


def test_message_too_long_without_context_numbers() -> None:
    messages = [{"role": "user", "content": "x" * 500}]
    with pytest.raises(
        ContextError, match=r"^Your message needs \d+ tokens, but only 100 fit in the context\."
    ):
        fit_context(chatml(), messages, CountingTokenizer(), budget=100)


def test_no_messages_is_an_error() -> None:
    with pytest.raises(ContextError):
        fit_context(chatml(), [], CountingTokenizer(), budget=100)


def test_long_chats_are_not_retokenized_over_and_over() -> None:
    fmt = chatml()
    turns = 500
    messages = conversation(turns)
    full = len(fmt.render(messages))
    tokenize = CountingTokenizer()
    fit = fit_context(fmt, messages, tokenize, budget=full // 20)
    assert fit.dropped
    # The full prompt once, then a gallop and a bisection over the newest turns.
    assert tokenize.calls <= 2 * math.ceil(math.log2(turns)) + 3
    assert tokenize.chars <= full + 4 * math.ceil(math.log2(turns)) * (full // 20)
