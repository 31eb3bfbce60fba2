"""Fit a conversation into the model's context by leaving out its oldest turns.

The system prompt and the newest user message are always kept; older turns go first, a whole
user + assistant exchange at a time so the conversation keeps alternating. The search renders and
tokenizes O(log n) candidate prompts, mostly the short ones, never every prefix of the chat.

With a ``step`` the oldest turns go in stretches of about ``step`` tokens, at points fixed by the
turns themselves (where the dropped turns first add up to 1, 2, 3... steps), so the next turns of
the chat drop the same ones: their prompts keep the same start, and the model's cache keeps
serving them, until the chat has grown by another step. A front end in a new process computes the
same points.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from llamadesk.errors import LlamaDeskError

from .templates import ChatFormat

__all__ = ["ContextError", "ContextFit", "fit_context", "step_points"]

MESSAGE_OVERHEAD = 4  # tokens a template adds around a message (role markers), for the step points
_HEAD_PROBES = ("\u00b6", "\u00a7")  # stand-ins for the newest message when finding where turns start


class ContextError(LlamaDeskError):
    """The conversation cannot be sent: the newest message (with the system prompt) does not fit in
    the context on its own, or older turns would have to be left out and that is not allowed."""

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
    head_tokens: int | None = None  # when turns were dropped: prompt tokens before the first kept turn


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
    step: int = 0,
    count_tokens: Callable[[str], int] | None = None,
    drop: bool = True,
) -> ContextFit:
    """Render the newest part of ``messages`` that fits in ``budget`` prompt tokens.

    ``step`` > 0 drops the oldest turns in stretches of about that many tokens (see the module
    docstring), measured with ``count_tokens`` (default: ``len(tokenize(text))``). ``drop=False``
    refuses to leave anything out. ``n_ctx`` and ``max_tokens`` only make the :class:`ContextError`
    message more specific. Raises :class:`ContextError` when even the system prompt plus the newest
    user message is too long (or anything would be left out with ``drop=False``), and
    :class:`~llamadesk.chat.TemplateError` when the template fails.
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
        if not drop:
            raise _would_drop(len(candidate(0).tokens), budget, n_ctx, max_tokens)
        if step > 0:
            count = count_tokens or (lambda text: len(tokenize(text)))
            sizes = [sum(count(_text(messages[i])) + MESSAGE_OVERHEAD for i in group) for group in groups]
            best = _first_fitting([0, *step_points(sizes, step), total], fits)
        else:
            best = _fewest_drops(total, fits)
    else:
        best = 0
    chosen = candidate(best)
    kept_set = set(chosen.kept)
    head_tokens = None
    if best > 0:
        # Where the kept turns start: the common start of the prompt and of prompts holding only the
        # system prompt and a stand-in message (two, so a word that happens to match is not counted).
        starts = [*(messages[i] for i in head)]
        probes = [fmt.render([*starts, {"role": "user", "content": probe}]) for probe in _HEAD_PROBES]
        head_tokens = min(_common_prefix(chosen.tokens, tokenize(text)) for text in probes)
    return ContextFit(
        prompt=chosen.prompt,
        prompt_tokens=chosen.tokens,
        kept=chosen.kept,
        dropped=[i for i in range(len(messages)) if i not in kept_set],
        head_tokens=head_tokens,
    )


def step_points(sizes: Sequence[int], step: int) -> list[int]:
    """Turn counts at which turns of ``sizes`` tokens, counted from the oldest, first add up to
    ``step``, 2 x ``step``, ...: the same for a chat and for that chat with more turns after it."""
    points: list[int] = []
    total = 0
    mark = step
    for index, size in enumerate(sizes):
        total += size
        if total >= mark:
            points.append(index + 1)
            mark = (total // step + 1) * step  # one long turn can pass several marks
    return points


def _first_fitting(candidates: list[int], fits: Callable[[int], bool]) -> int:
    """The first of ``candidates`` (ascending drop counts, the last one fitting) that fits, by bisection."""
    lo, hi = 0, len(candidates) - 1
    while lo < hi:
        middle = (lo + hi) // 2
        if fits(candidates[middle]):
            hi = middle
        else:
            lo = middle + 1
    return candidates[lo]


def _text(message: Mapping[str, Any]) -> str:
    content = message.get("content")
    return content if isinstance(content, str) else str(content or "")


def _common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


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


def _would_drop(needed: int, budget: int, n_ctx: int | None, max_tokens: int | None) -> ContextError:
    room = f"{budget:,} fit in the context"
    if n_ctx is not None and max_tokens is not None:
        room += f" (context length {n_ctx:,} minus {max_tokens:,} kept for the reply)"
    message = (
        f"This conversation no longer fits in the model's context: it needs {needed:,} tokens and {room}. "
        "Start a new chat, raise the context length, or let LlamaDesk leave out the oldest turns "
        "(Preferences → Generation → When the chat outgrows the context)."
    )
    return ContextError(message, needed=needed, budget=budget)
