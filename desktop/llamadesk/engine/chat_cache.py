"""The inference service's KV-cache bookkeeping for chat replies.

Three things keep a long conversation as fast as a short one:

- fitting drops the oldest turns in large steps (a quarter of the context), at points that stay put
  as the chat grows, so most turns send a prompt that starts like the last one;
- when a step is taken, the cache is shifted over the dropped turns instead of read again
  (:mod:`.kv_shift`; models whose cache cannot shift read the prompt once per step);
- the cache of each recent conversation is saved when another one takes the model, and restored
  when it comes back, in this process or the next (:mod:`.states`).
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..chat.context import ContextFit, fit_context
from .states import DEFAULT_DISK_BUDGET, ConversationStates, StateKey, state_key

if TYPE_CHECKING:
    from ..chat.templates import ChatFormat
    from .engine import Engine, GenerationStats

__all__ = ["ChatCache", "Prepared", "default_states_folder"]

STEP_FRACTION = 4  # drop the oldest turns a quarter of the context at a time
_COUNTS_MAX = 50_000


def default_states_folder() -> Path:
    """Where conversation states are kept: ``states`` in the data folder."""
    from ..paths import get_paths

    return get_paths().data_dir / "states"


@dataclass
class Prepared:
    """What was done to the cache before a reply, reported in its stats."""

    key: StateKey | None
    restored: str = ""  # "memory" or "disk" when a saved state was loaded
    shifted: int = 0  # tokens of old turns cut from the cache in place
    seconds: float = 0.0  # time spent on it (part of the time to the first token)
    left_out: int = 0  # messages the fit left out


class ChatCache:
    """Used by the service on its own thread: fit, prepare the cache, note the result."""

    def __init__(self, states: ConversationStates | None = None) -> None:
        self.states = states or ConversationStates.in_folder(
            default_states_folder(), disk_budget=DEFAULT_DISK_BUDGET
        )
        self._counts: dict[str, int] = {}

    def model_changed(self) -> None:
        """A model was loaded or freed: token counts of the old one no longer hold."""
        self._counts.clear()

    def fit(
        self,
        engine: Engine,
        fmt: ChatFormat,
        messages: Sequence[Mapping[str, Any]],
        budget: int,
        *,
        max_tokens: int,
        overflow: str = "drop_oldest",
    ) -> ContextFit:
        """Fit ``messages`` in ``budget`` tokens, dropping the oldest turns in steps (or, with
        ``overflow="stop"``, refusing to drop any: :class:`~llamadesk.chat.ContextError`)."""
        n_ctx = engine.n_ctx
        return fit_context(
            fmt,
            messages,
            engine.tokenize,
            budget,
            n_ctx=n_ctx,
            max_tokens=max_tokens,
            step=max(n_ctx // STEP_FRACTION, 1),
            count_tokens=lambda text: self._count(engine, text),
            drop=overflow != "stop",
        )

    def _count(self, engine: Engine, text: str) -> int:
        count = self._counts.get(text)
        if count is None:
            if len(self._counts) >= _COUNTS_MAX:
                self._counts.clear()
            count = self._counts[text] = len(engine.tokenize(text))
        return count

    def prepare(
        self,
        engine: Engine,
        fmt: ChatFormat,
        messages: Sequence[Mapping[str, Any]],
        fit: ContextFit,
        conversation: str | None = None,
        *,
        fresh: bool = False,
    ) -> Prepared:
        """Before generating ``fit``: restore the conversation's saved state if that serves it best,
        then shift the cache over the turns the fit left out. ``fresh``: the prompt will be read
        from its start whatever the cache holds (a fixed seed), so only save what the cache holds."""
        started = time.perf_counter()
        context = hashlib.sha256(
            f"{engine.fingerprint}\0{fmt.template}".encode("utf-8", "replace")
        ).hexdigest()
        key = state_key(messages, context=context, conversation=conversation)
        if fresh:  # save what the cache holds; the reply then belongs to this conversation
            self.prepare_raw(engine)
            return Prepared(key, left_out=len(fit.dropped))
        head = fit.head_tokens if fit.dropped else None
        restored = self.states.prepare(engine, key, fit.prompt_tokens, head)
        shifted = engine.reuse_cache(fit.prompt_tokens, head=head)
        return Prepared(key, restored, shifted, time.perf_counter() - started, len(fit.dropped))

    def prepare_raw(self, engine: Engine) -> None:
        """Before a reply to a raw prompt (no conversation): save the conversation in the cache first."""
        self.states.prepare(engine, None, [], None)

    def finished(self, prepared: Prepared, stats: GenerationStats | None) -> None:
        """After the reply (complete or not): the cache holds this conversation now."""
        self.states.finished(prepared.key)
        if stats is not None:
            stats.restored_from = prepared.restored
            stats.shifted_tokens = prepared.shifted
            stats.left_out = prepared.left_out
            stats.ttft_s += prepared.seconds
            stats.total_s += prepared.seconds

    def abandon(self) -> None:
        """The engine was abandoned (its RPC worker went away): forget what its cache held, saving nothing."""
        self.states.abandon()
        self.model_changed()

    def unloading(self, engine: Engine) -> None:
        """Before the model is freed: save the conversation in the cache."""
        self.states.unloading(engine)
        self.model_changed()
