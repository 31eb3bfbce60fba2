"""Fit a conversation into the model's context by leaving out its oldest turns.

The system prompt and the newest user message are always kept; older turns go first, a whole
user + assistant exchange at a time so the conversation keeps alternating. The search renders and
tokenizes O(log n) candidate prompts, mostly the short ones, never every prefix of the chat.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from llamadesk.errors import LlamaDeskError

from .templates import ChatFormat

__all__ = ["ContextError", "ContextFit", "fit_context"]


class ContextError(LlamaDeskError):
    """The newest message (with the system prompt) does not fit in the context on its own."""

    def __init__(self, message: str, *, needed: int, budget: int) -> None:
        super().__init__(message)
        self.needed = needed
        self.budget = budget


@dataclass
class ContextFit:
    """The prompt to send and which messages (indices into the input) it includes."""

    prompt: str
    prompt_tokens: list[int]
    kept: list[int]
    dropped: list[int]


@dataclass
class _Candidate:
    kept: list[int]
    prompt: str
    tokens: list[int]


def _turn_groups(messages: Sequence[Mapping[str, Any]], start: int, stop: int) -> list[list[int]]:
    """Split ``messages[start:stop]`` into turns: each user message with the replies after it."""
    groups: list[list[int]] = []
    for index in range(start, stop):
        if not groups or messages[index].get("role") == "user":
            groups.append([index])
        else:
            groups[-1].append(index)
    return groups


def fit_context(
    fmt: ChatFormat,
    messages: Sequence[Mapping[str, Any]],
    tokenize: Callable[[str], list[int]],
    budget: int,
    *,
    n_ctx: int | None = None,
    max_tokens: int | None = None,
) -> ContextFit:
    """Render the newest part of ``messages`` that fits in ``budget`` prompt tokens.

    ``n_ctx`` and ``max_tokens`` only make the :class:`ContextError` message more specific.
    Raises :class:`ContextError` when even the system prompt plus the newest user message is too
    long, and :class:`~llamadesk.chat.TemplateError` when the template fails.
    """
    if not messages:
        raise ContextError("There is no message to send.", needed=0, budget=budget)
    head = [0] if messages[0].get("role") == "system" else []
    users = [i for i, message in enumerate(messages) if message.get("role") == "user" and i >= len(head)]
    anchor = max(users[-1] if users else len(messages) - 1, len(head))
    tail = list(range(anchor, len(messages)))
    groups = _turn_groups(messages, len(head), anchor)
    cache: dict[int, _Candidate] = {}

    def candidate(drop: int) -> _Candidate:
        """The prompt without the ``drop`` oldest turns."""
        if drop not in cache:
            kept = head + [i for group in groups[drop:] for i in group] + tail
            prompt = fmt.render([messages[i] for i in kept])
            cache[drop] = _Candidate(kept, prompt, tokenize(prompt))
        return cache[drop]

    def fits(drop: int) -> bool:
        return len(candidate(drop).tokens) <= budget

    total = len(groups)
    if not fits(0):
        if not fits(total):
            raise _too_long(len(candidate(total).tokens), budget, bool(head), n_ctx, max_tokens)
        best = _fewest_drops(total, fits)
    else:
        best = 0
    chosen = candidate(best)
    kept_set = set(chosen.kept)
    return ContextFit(
        prompt=chosen.prompt,
        prompt_tokens=chosen.tokens,
        kept=chosen.kept,
        dropped=[i for i in range(len(messages)) if i not in kept_set],
    )


def _fewest_drops(total: int, fits: Callable[[int], bool]) -> int:
    """Smallest number of dropped turns that fits, given that 0 does not and ``total`` does.

    Gallops from the newest turns backwards (keep 1, 2, 4, ... turns) and then bisects, so the
    prompts it renders stay about as long as the answer instead of as long as the whole chat.
    """
    fitting, failing = total, 0
    keep = 1
    while total - keep > failing:
        drop = total - keep
        if not fits(drop):
            failing = drop
            break
        fitting = drop
        keep *= 2
    while fitting - failing > 1:
        middle = (fitting + failing) // 2
        if fits(middle):
            fitting = middle
        else:
            failing = middle
    return fitting


def _too_long(
    needed: int, budget: int, has_system: bool, n_ctx: int | None, max_tokens: int | None
) -> ContextError:
    what = "Your message and the system prompt need" if has_system else "Your message needs"
    if n_ctx is not None and max_tokens is not None:
        room = (
            f"only {budget} fit in the context (context length {n_ctx} minus {max_tokens} kept for the reply)"
        )
    else:
        room = f"only {max(budget, 0)} fit in the context"
    message = f"{what} {needed} tokens, but {room}. Shorten it or raise the context length."
    return ContextError(message, needed=needed, budget=budget)
