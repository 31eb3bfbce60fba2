"""What a conversation is made of, shared by the store and the export formats.

Roles, statuses, titles and the ``Conversation``/``Message`` records live here so that
:mod:`llamadesk.chat.store` and :mod:`llamadesk.chat.export` both import this module and
neither imports the other.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

ROLES = ("system", "user", "assistant", "tool")
STATUSES = ("complete", "streaming", "stopped", "failed", "interrupted")
FINAL_STATUSES = ("complete", "stopped", "failed")
DEFAULT_TITLE = "New chat"
TITLE_LENGTH = 60  # automatic titles, from the first user message
TITLE_MAX_LENGTH = 200  # any title, typed or imported

_SURROGATE = re.compile("[\ud800-\udfff]")
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")


def reply_status(stop_reason: str) -> str:
    """The status a finished reply is stored with, from the engine's stop reason."""
    return {"user_stop": "stopped", "error": "failed"}.get(stop_reason, "complete")


def stat_number(stats: Mapping[str, Any] | None, key: str) -> float | None:
    """A reply's figure (``stats[key]``) when it is a finite number; None for anything else.

    Stats come from the database, where older versions or other programs may have left text,
    null or non-finite values: showing them must never raise.
    """
    value = (stats or {}).get(key)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def clean_text(text: str) -> str:
    """``text`` storable as UTF-8: a lone surrogate (JSON allows "\\ud800") becomes U+FFFD."""
    return _SURROGATE.sub("\ufffd", text)


def clean_title(title: str) -> str:
    """A title on one line, spaces collapsed, at most ``TITLE_MAX_LENGTH`` characters."""
    title = " ".join(_CONTROL.sub(" ", clean_text(title)).split())
    if len(title) > TITLE_MAX_LENGTH:
        title = title[: TITLE_MAX_LENGTH - 1].rstrip() + "…"
    return title


def make_title(text: str) -> str:
    """A conversation title from a message: its first non-empty line, about 60 characters at most."""
    for line in text.splitlines():
        line = " ".join(re.sub(r"^(?:#{1,6}|>+)\s+", "", line.strip()).split())  # Markdown heading/quote
        if line:
            break
    else:
        return ""
    if len(line) <= TITLE_LENGTH:
        return line
    cut = line[:TITLE_LENGTH]
    space = cut.rfind(" ")
    if space >= TITLE_LENGTH // 2:
        cut = cut[:space]
    return cut.rstrip(" .,;:-") + "…"


@dataclass
class Conversation:
    """One chat: its metadata and the leaf of the branch that is shown."""

    id: int
    title: str
    created_at: float
    updated_at: float
    model: str | None
    system_prompt: str | None
    settings_overrides: dict[str, Any]
    pinned: bool
    active_leaf_id: int | None
    title_is_custom: bool = False


@dataclass
class Message:
    """One message; ``sibling_index``/``sibling_count`` (1-based) drive the "‹ 2/3 ›" switcher."""

    id: int
    conversation_id: int
    parent_id: int | None
    role: str
    content: str
    status: str
    model: str | None
    stats: dict[str, Any] | None
    created_at: float
    sibling_index: int = 1
    sibling_count: int = 1
    thinking: str = ""  # a reasoning model's thinking before this reply's answer (``content``)
