"""The retrieved passages as prompt text: an instruction to cite, then numbered sources."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from .types import Passage

__all__ = ["INSTRUCTION", "context_block", "source_heading"]

INSTRUCTION = (
    "Answer using the sources below. After each statement taken from a source, cite it by its "
    "number in square brackets, like [1] or [2]. If the sources do not contain the answer, say so "
    "instead of guessing."
)


def source_heading(number: int, passage: Passage) -> str:
    """``[n] title — location`` (no dash when the passage has no page or heading)."""
    where = f" — {passage.location}" if passage.location else ""
    return f"[{number}] {passage.title}{where}"


def context_block(
    passages: Sequence[Passage], *, budget_tokens: int, count_tokens: Callable[[str], int]
) -> tuple[str, list[Passage]]:
    """The text to put into the prompt and the passages it numbers, in number order.

    Passages are taken in the order given (best first); one that would overflow
    ``budget_tokens`` is left out and the next, shorter one may still fit. Returns ``("", [])``
    when not even one source fits.
    """
    used: list[Passage] = []
    sections: list[str] = []
    seen: set[int] = set()
    total = count_tokens(INSTRUCTION)
    if total >= budget_tokens:
        return "", []
    for passage in passages:
        if passage.chunk_id in seen:
            continue
        section = f"\n\n{source_heading(len(used) + 1, passage)}\n{passage.text.strip()}"
        cost = count_tokens(section)
        if total + cost > budget_tokens:
            continue
        seen.add(passage.chunk_id)
        used.append(passage)
        sections.append(section)
        total += cost
    # Counting pieces apart can differ from counting the whole by a token or two: check the whole.
    while used and count_tokens(INSTRUCTION + "".join(sections)) > budget_tokens:
        used.pop()
        sections.pop()
    if not used:
        return "", []
    return INSTRUCTION + "".join(sections), used
