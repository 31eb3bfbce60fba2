"""Context shift: keep a conversation's KV cache when its oldest turns are left out.

When fitting drops the oldest turns, the new prompt is the old one with a span after the system
prompt cut out. Instead of reading the whole prompt again, the cached tokens after that span are
moved back over it (``llama_memory_seq_rm`` + ``llama_memory_seq_add``; llama.cpp re-rotates their
keys), and llama-cpp-python's token bookkeeping is set to match so its prefix reuse carries on.

:func:`plan_reuse` is pure (token lists in, a plan out); :func:`apply_shift` edits a loaded
``llama_cpp.Llama``. A shift only ever starts at ``head``: the end of the prompt's system part,
which the cache must hold unchanged, so an edited system prompt or an edited message never moves
keys computed for other text into place.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

__all__ = [
    "MIN_MOVED",
    "NO_SHIFT_ARCHITECTURES",
    "ReusePlan",
    "apply_shift",
    "can_shift",
    "common_prefix",
    "plan_reuse",
]

MIN_MOVED = 32  # fewer matching tokens than this are not worth a shift (and may match by chance)
# Model architectures (GGUF general.architecture) whose shifted caches read visibly worse than a
# fresh read: they fall back to re-reading the prompt once per drop step. Measured with
# benchmarks/shift_agreement.py: llama (SmolLM2) 91-100% teacher-forced agreement with a fresh
# read (no history: 60-88%), gemma3 100%; none is listed.
NO_SHIFT_ARCHITECTURES: frozenset[str] = frozenset()
_PROBE = 8  # tokens compared at once when looking for where the kept part starts in the cache


@dataclass(frozen=True)
class ReusePlan:
    """How much of a cache serves a prompt: ``keep`` tokens as they are, then the ``moved`` cached
    tokens that follow a removed span of ``cut`` tokens, moved back by ``cut`` positions."""

    keep: int
    cut: int = 0
    moved: int = 0

    @property
    def reused(self) -> int:
        """Prompt tokens the cache provides; the rest are read."""
        return self.keep + self.moved

    @property
    def shifts(self) -> bool:
        return self.cut > 0 and self.moved > 0


def _array(tokens: Sequence[int] | np.ndarray) -> np.ndarray:
    return np.asarray(tokens, dtype=np.int64).reshape(-1)


def common_prefix(a: Sequence[int] | np.ndarray, b: Sequence[int] | np.ndarray) -> int:
    """How many tokens ``a`` and ``b`` share from the start."""
    x, y = _array(a), _array(b)
    n = min(len(x), len(y))
    differ = np.flatnonzero(x[:n] != y[:n])
    return int(differ[0]) if len(differ) else n


def plan_reuse(
    cached: Sequence[int] | np.ndarray,
    prompt: Sequence[int] | np.ndarray,
    *,
    head: int | None = None,
    min_moved: int = MIN_MOVED,
) -> ReusePlan:
    """The best use of ``cached`` for ``prompt``: the common prefix, or a shift starting at ``head``.

    ``head`` is the number of prompt tokens before the first kept turn (None: no shift is allowed).
    A shift is planned only when the cache holds those ``head`` tokens unchanged and a run of at
    least ``min_moved`` tokens of the prompt after them appears later in the cache.
    """
    c, p = _array(cached), _array(prompt)
    keep = common_prefix(c, p)
    plain = ReusePlan(keep)
    if head is None or head <= 0 or keep < head or head >= len(p) or head >= len(c):
        return plain
    rest = p[head:]
    # Where the cache could hold rest's start: filter on its first _PROBE tokens, vectorised.
    probe = min(_PROBE, len(rest))
    starts = np.flatnonzero(c[head + 1 :] == rest[0]) + head + 1
    for offset in range(1, probe):
        starts = starts[starts + offset < len(c)]
        starts = starts[c[starts + offset] == rest[offset]]
    best_start, best_moved = 0, 0
    for start in starts.tolist():
        n = min(len(c) - start, len(rest))
        if n <= best_moved:
            continue
        moved = common_prefix(c[start : start + n], rest[:n])
        if moved > best_moved:
            best_start, best_moved = start, moved
    if best_moved < min_moved or head + best_moved <= keep:
        return plain
    return ReusePlan(head, best_start - head, best_moved)


def _memory(llm: Any) -> Any:
    from . import runtime

    low = runtime.llama_cpp().llama_cpp
    return low, low.llama_get_memory(llm._ctx.ctx)


def can_shift(llm: Any) -> bool:
    """Whether the loaded model's cache can move tokens (not recurrent or hybrid models, say)."""
    if getattr(llm, "_is_recurrent", False) or getattr(llm, "_is_hybrid", False):
        return False
    low, memory = _memory(llm)
    return bool(memory) and bool(low.llama_memory_can_shift(memory))


def apply_shift(llm: Any, plan: ReusePlan) -> bool:
    """Carry out ``plan`` on ``llm``'s cache (sequence 0) and its token bookkeeping.

    Returns False, with the cache cut back to the plain ``plan.keep`` prefix, when llama.cpp
    refuses; the caller then reads the rest of the prompt as usual.
    """
    if not plan.shifts:
        return False
    low, memory = _memory(llm)
    start, end = plan.keep, plan.keep + plan.cut
    last = end + plan.moved
    if last > int(llm.n_tokens) or not low.llama_memory_can_shift(memory):
        return False
    tokens = np.array(llm.input_ids[:last], dtype=np.intc)
    # Drop what follows the moved run, then the cut span, then close the gap.
    if not low.llama_memory_seq_rm(memory, -1, last, -1) or not low.llama_memory_seq_rm(
        memory, -1, start, end
    ):
        log.debug("llama.cpp refused to remove cache cells; reading the prompt instead")
        low.llama_memory_seq_rm(memory, -1, start, -1)
        llm.n_tokens = min(int(llm.n_tokens), start)
        return False
    low.llama_memory_seq_add(memory, 0, end, last, -plan.cut)
    llm.input_ids[start : start + plan.moved] = tokens[end:last]
    llm.n_tokens = start + plan.moved
    if hasattr(llm, "_requires_eval"):
        llm._requires_eval = True  # no logits for the new last token yet
    return True
