"""Which messages go to the model: one rule for every front end (window, CLI, API server).

The rule, applied to the branch the user is on (root to the message being answered):

- the conversation's system prompt goes first when it is not blank;
- every user message is sent;
- a reply is sent back whenever it has text, whatever way it ended (complete, stopped by the
  user, cut short by a crash, or failed partway): the user saw that text and the next question
  may refer to it;
- a reply with no text (failed before its first token, or still being written) is left out;
- a user message sent with documents (``contexts``) is sent with that exact context text before
  it, on every turn, so the rendered prompt of a follow-up starts with the tokens already cached;
- two user messages left next to each other by such a gap are sent as one turn, joined by a
  blank line, so templates that require user and assistant turns to alternate still render.

:func:`reply_reserve` is the one place that decides how much of the context is kept free for
the reply.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Protocol

__all__ = ["PromptMessages", "build_messages", "reply_reserve"]


class _MessageLike(Protocol):
    id: int
    role: str
    content: str
    status: str


@dataclass
class PromptMessages:
    """The chat messages for the template, and which stored message ids each one came from.

    ``sources[i]`` lists the stored ids merged into ``messages[i]`` (empty for the system prompt).
    """

    messages: list[dict[str, str]] = field(default_factory=list)
    sources: list[tuple[int, ...]] = field(default_factory=list)

    def ids_of(self, indices: Iterable[int]) -> set[int]:
        """The stored message ids behind ``indices`` (e.g. the ones context fitting left out)."""
        return {i for index in indices if 0 <= index < len(self.sources) for i in self.sources[index]}


def _sent(message: _MessageLike) -> bool:
    if message.role == "user":
        return True
    if message.role == "assistant":
        return bool(message.content) and message.status != "streaming"
    return False


def build_messages(
    system_prompt: str | None,
    path: Iterable[_MessageLike],
    *,
    new_user_message: str | None = None,
    contexts: Mapping[int, str] | None = None,
) -> PromptMessages:
    """The messages to send for ``path`` (a branch, oldest first), by the rule in the module docstring.

    ``new_user_message`` appends a user turn that is not stored yet (a one-off CLI question);
    ``contexts`` maps a user message's id to the documents context stored with it (sent first).
    """
    result = PromptMessages()
    if system_prompt and system_prompt.strip():
        result.messages.append({"role": "system", "content": system_prompt})
        result.sources.append(())
    added = contexts or {}
    pending: list[tuple[str, str, int | None]] = [
        (m.role, f"{added[m.id]}\n\n{m.content}" if m.role == "user" and added.get(m.id) else m.content, m.id)
        for m in path
        if _sent(m)
    ]
    if new_user_message is not None:
        pending.append(("user", new_user_message, None))
    for role, content, message_id in pending:
        ids = () if message_id is None else (message_id,)
        last = result.messages[-1] if result.messages else None
        if role == "user" and last is not None and last["role"] == "user":
            last["content"] = f"{last['content']}\n\n{content}"
            result.sources[-1] = result.sources[-1] + ids
            continue
        result.messages.append({"role": role, "content": content})
        result.sources.append(ids)
    return result


def reply_reserve(n_ctx: int, max_tokens: int) -> int:
    """Tokens kept free for the reply: ``max_tokens``, but never more than half the context."""
    return max(0, min(max_tokens, n_ctx // 2))
