"""API chats in the conversation history, only when the user asked for it (off by default).

Each finished chat request becomes a conversation: its system prompt, its user and assistant
turns as sent, and the reply with the engine's stats. A reasoning model's thinking is kept apart
from its answer, as in the window's chats (the markers never reach the history). Written on a thread
of its own, after the response, so the history never slows a reply down; a failure is logged, never
a failed request.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from ..chat.reasoning import THINK_CLOSE, THINK_OPEN, split_reasoning, starts_in_thinking
from ..errors import LlamaDeskError

log = logging.getLogger(__name__)

__all__ = ["History"]


class History:
    """Stores finished API chats through ``open_store()`` (a ``ConversationStore``), opened on first use."""

    def __init__(self, open_store: Callable[[], Any], *, owns_store: bool = True) -> None:
        self._open_store = open_store
        self._owns_store = owns_store
        self._store: Any = None
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="llamadesk-api-history")

    def record(
        self,
        model: str,
        messages: Sequence[Mapping[str, Any]],
        reply: str,
        stats: dict[str, Any],
        *,
        prompt: str | None = None,
        channels: bool | None = None,
    ) -> None:
        """Queue one finished chat for storing; ``reply`` is the model's raw text, split here into
        thinking and answer. ``prompt``: the rendered prompt, which tells whether the reply began
        inside ``<think>``; ``channels``: whether the template writes gpt-oss channel markers (None:
        when the reply holds one)."""
        copied = [dict(m) for m in messages]
        self._executor.submit(self._write, model, copied, reply, stats, prompt, channels)

    def close(self) -> None:
        """Finish the writes queued so far; close the store when this object opened it."""
        self._executor.shutdown(wait=True)
        if self._store is not None and self._owns_store:
            self._store.close()
        self._store = None

    def _write(
        self,
        model: str,
        messages: list[dict[str, Any]],
        reply: str,
        stats: dict[str, Any],
        prompt: str | None,
        channels: bool | None,
    ) -> None:
        try:
            if self._store is None:
                self._store = self._open_store()
            store = self._store
            system = "\n\n".join(m["content"] for m in messages if m["role"] == "system" and m["content"])
            conversation = store.create_conversation(model=model, system_prompt=system or None)
            parent: int | None = None
            for message in messages:
                if message["role"] in ("user", "assistant") and message.get("content"):
                    thinking = message.get("thinking") if message["role"] == "assistant" else ""
                    parent = store.add_message(
                        conversation.id,
                        message["role"],
                        message["content"],
                        parent_id=parent,
                        thinking=thinking if isinstance(thinking, str) else "",
                    ).id
            split = split_reasoning(
                reply, start_in_thinking=_began_thinking(reply, prompt), channels=channels
            )
            store.add_message(
                conversation.id,
                "assistant",
                split.answer,
                parent_id=parent,
                model=model,
                stats=stats,
                thinking=split.thinking,
            )
        except (LlamaDeskError, OSError, ValueError):
            log.exception("could not keep an API chat in the history")


def _began_thinking(reply: str, prompt: str | None) -> bool:
    """Whether ``reply`` starts inside thinking: the prompt opened ``<think>``; without the prompt,
    the reply closes ``</think>`` before it opens one or any code (the template opened it)."""
    if prompt is not None:
        return starts_in_thinking(prompt)
    closed = reply.find(THINK_CLOSE)
    return closed >= 0 and THINK_OPEN not in reply[:closed] and "`" not in reply[:closed]
