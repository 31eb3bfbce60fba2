"""Conversation export (Markdown, JSON) and the JSON import parser.

The JSON form keeps the active path as OpenAI-style ``messages`` (ready to send to any
chat API) and every branch, with status and stats, in ``tree``. A reasoning model's thinking is
kept apart from the answer: ``reasoning_content`` in ``messages``, ``thinking`` in ``tree``, and a
collapsed ``<details>`` section in Markdown. The documents a question was answered from are kept
too: a "Sources" list under the answer in Markdown, ``sources`` (and ``sources_context``, the text
sent before the question) on the question in ``tree``, restored by the import.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from .records import (
    DEFAULT_TITLE,
    ROLES,
    STATUSES,
    TITLE_MAX_LENGTH,
    Conversation,
    Message,
    clean_text,
    clean_title,
    stat_number,
)

if TYPE_CHECKING:
    from .store.documents import MessageSources

EXPORT_FORMAT = "llamadesk.conversation"
EXPORT_VERSION = 1
_STATUS_NOTES = {
    "stopped": "stopped by the user",
    "failed": "failed",
    "interrupted": "interrupted: LlamaDesk closed while this reply was being written",
    "streaming": "still being written",
}


MAX_TIME = datetime(9999, 12, 31, tzinfo=timezone.utc).timestamp()
_WINDOWS_RESERVED = {
    "CON",
    "PRN",
    "AUX",
    "NUL",
    *(f"COM{n}" for n in range(1, 10)),
    *(f"LPT{n}" for n in range(1, 10)),
}

# Older code imported the text helpers from here; they live in .records now.
__all__ = [
    "DEFAULT_TITLE",
    "EXPORT_FORMAT",
    "EXPORT_VERSION",
    "ROLES",
    "STATUSES",
    "TITLE_MAX_LENGTH",
    "ImportedConversation",
    "ImportedMessage",
    "clean_text",
    "clean_title",
    "file_name",
    "iso_time",
    "parse_import",
    "parse_time",
    "to_json",
    "to_markdown",
]


def file_name(title: str, suffix: str, *, max_length: int = 80) -> str:
    """A file name made from a conversation title that is valid on Windows, macOS and Linux.

    Path separators and the characters Windows refuses become "-", reserved device names
    (CON, NUL, COM1...) get a "_", trailing dots and spaces go; an empty result is "conversation".
    """
    name = "".join("-" if ch in '<>:"/\\|?*' or ord(ch) < 32 else ch for ch in clean_title(title))
    name = name[:max_length].strip(" .")
    if not name:
        name = "conversation"
    if name.split(".")[0].strip().upper() in _WINDOWS_RESERVED:
        name = "_" + name
    return name + suffix


def iso_time(timestamp: float) -> str:
    """A Unix time as an ISO 8601 UTC string (what the export files hold)."""
    return datetime.fromtimestamp(timestamp, tz=timezone.utc).isoformat()


def parse_time(value: object) -> float | None:
    """An ISO 8601 string or a Unix time from an import file; None when missing."""
    if value is None:
        return None
    if isinstance(value, bool):
        raise ValueError(f"not a time: {value!r}")
    if isinstance(value, (int, float)):
        try:
            seconds = float(value)
        except OverflowError:
            raise ValueError(f"not a time: {_short(value)} (after 9999)") from None
        if not math.isfinite(seconds):
            raise ValueError(f"not a time: {value!r}")
        if abs(seconds) >= 1e11:  # JavaScript and many chat exports count milliseconds
            seconds /= 1000
        if not 0 <= seconds < MAX_TIME:
            raise ValueError(f"not a time: {value!r} (before 1970 or after 9999)")
        return seconds
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise ValueError(f"not a time: {value!r}") from None
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=timezone.utc)
        if not 0 <= parsed.timestamp() < MAX_TIME:
            raise ValueError(f"not a time: {value!r} (before 1970 or after 9999)")
        return parsed.timestamp()
    raise ValueError(f"not a time: {value!r}")


def to_markdown(
    conversation: Conversation, path: list[Message], sources: Mapping[int, MessageSources] | None = None
) -> str:
    """The active path as a readable Markdown document; ``sources`` (by question id) are listed
    under the answer to each question (under the question when it has no answer)."""
    found = sources or {}
    lines = [f"# {conversation.title}", ""]
    meta = [f"Created {_local_time(conversation.created_at)}"]
    if conversation.model:
        meta.append(f"model: {conversation.model}")
    lines += ["_" + " · ".join(meta) + "_", ""]
    if conversation.system_prompt:
        lines += ["## System prompt", "", conversation.system_prompt.rstrip(), ""]
    for message in path:
        heading = message.role.capitalize()
        if message.role == "assistant" and message.model:
            heading += f" ({message.model})"
        if message.sibling_count > 1:
            heading += f" · version {message.sibling_index} of {message.sibling_count}"
        lines += [f"## {heading}", ""]
        if message.thinking.strip():
            seconds = stat_number(message.stats, "thinking_s")
            summary = f"Thought for {seconds:.0f} s" if seconds is not None else "Thinking"
            lines += [
                "<details>",
                f"<summary>{summary}</summary>",
                "",
                message.thinking.strip(),
                "",
                "</details>",
                "",
            ]
        lines += [message.content.rstrip() or "_(empty)_", ""]
        note = _STATUS_NOTES.get(message.status)
        if note:
            lines += [f"_({note})_", ""]
        lines += _sources_markdown(message, path, found)
    return "\n".join(lines).rstrip() + "\n"


def _sources_markdown(
    message: Message, path: list[Message], found: Mapping[int, MessageSources]
) -> list[str]:
    """The "Sources" list shown after ``message``: its question's sources when it answers one, its
    own when it is a question with no answer after it on ``path``."""
    if message.role == "assistant" and message.parent_id is not None:
        question = found.get(message.parent_id)
    elif message.role == "user" and message is path[-1]:
        question = found.get(message.id)
    else:
        question = None
    if question is None or not question.sources:
        return []
    lines = ["**Sources**", ""]
    for source in question.sources:
        where = f" — {source.location}" if source.location else ""
        lines.append(f"- [{source.number}] {source.title}{where}")
    return [*lines, ""]


def to_json(
    conversation: Conversation,
    messages: list[Message],
    path: list[Message],
    sources: Mapping[int, MessageSources] | None = None,
) -> dict[str, Any]:
    """The whole conversation: OpenAI ``messages`` of the active path, every branch in ``tree``.

    ``messages`` are ordered parents first; ids in the file are 1..n and local to it. A parent that
    does not come before its message (a damaged database) is written as none, so the file imports.
    A question's ``sources`` (by message id) go on its ``tree`` entry.
    """
    found = sources or {}
    local = {message.id: index for index, message in enumerate(messages, start=1)}

    def parent(message: Message) -> int | None:
        index = local.get(message.parent_id) if message.parent_id is not None else None
        return index if index is not None and index < local[message.id] else None

    chat: list[dict[str, Any]] = []
    if conversation.system_prompt:
        chat.append({"role": "system", "content": conversation.system_prompt})
    chat += [_chat_message(message) for message in path]
    tree = [
        {
            "id": local[message.id],
            "parent": parent(message),
            "role": message.role,
            "content": message.content,
            **({"thinking": message.thinking} if message.thinking else {}),
            "status": message.status,
            "model": message.model,
            "stats": message.stats,
            "created": iso_time(message.created_at),
            **_sources_json(found.get(message.id)),
        }
        for message in messages
    ]
    return {
        "format": EXPORT_FORMAT,
        "version": EXPORT_VERSION,
        "title": conversation.title,
        "model": conversation.model,
        "created": iso_time(conversation.created_at),
        "updated": iso_time(conversation.updated_at),
        "system_prompt": conversation.system_prompt,
        "settings_overrides": conversation.settings_overrides,
        "pinned": conversation.pinned,
        "messages": chat,
        "active_path": [local[message.id] for message in path],
        "tree": tree,
    }


def _sources_json(sources: MessageSources | None) -> dict[str, Any]:
    """A tree entry's ``sources`` and ``sources_context`` (nothing when the message has none)."""
    if sources is None or (not sources.sources and not sources.context):
        return {}
    from .store.documents import sources_data

    return {"sources": sources_data(sources), "sources_context": sources.context}


def _chat_message(message: Message) -> dict[str, Any]:
    """An OpenAI-style message; a reply's thinking as ``reasoning_content`` (as reasoning APIs write it)."""
    chat: dict[str, Any] = {"role": message.role, "content": message.content}
    if message.thinking:
        chat["reasoning_content"] = message.thinking
    return chat


@dataclass
class ImportedMessage:
    """One message of an import file, checked; ``key`` and ``parent`` are the file's ids."""

    key: int
    parent: int | None
    role: str
    content: str
    status: str = "complete"
    model: str | None = None
    stats: dict[str, Any] | None = None
    created_at: float | None = None
    thinking: str = ""
    sources: MessageSources | None = None


@dataclass
class ImportedConversation:
    """An import file, checked: messages come parents first."""

    title: str | None
    model: str | None
    system_prompt: str | None
    settings_overrides: dict[str, Any]
    pinned: bool
    created_at: float | None
    updated_at: float | None
    messages: list[ImportedMessage] = field(default_factory=list)
    active_leaf: int | None = None


def parse_import(data: object) -> ImportedConversation:
    """Check an export file (ours, or a plain OpenAI ``messages`` list); ValueError says what is wrong."""
    if isinstance(data, list):
        if data and isinstance(data[0], dict) and "role" not in data[0] and "mapping" in data[0]:
            raise ValueError(
                "this is a ChatGPT data export (a list of conversations); "
                "LlamaDesk imports one conversation as an OpenAI 'messages' list or a LlamaDesk export"
            )
        data = {"messages": data}
    if not isinstance(data, dict):
        raise ValueError("expected a JSON object with a 'messages' list")
    fmt = data.get("format")
    if fmt is not None and fmt != EXPORT_FORMAT:
        raise ValueError(f"unknown format {_short(fmt)}")
    version = data.get("version", EXPORT_VERSION)
    if not isinstance(version, int) or isinstance(version, bool):
        raise ValueError(f"'version' must be a whole number, not {_short(version)}")
    if version > EXPORT_VERSION:
        raise ValueError(f"the file is from a newer LlamaDesk (format version {version})")
    overrides = data.get("settings_overrides") or {}
    if not isinstance(overrides, dict):
        raise ValueError("'settings_overrides' must be an object")
    pinned = data.get("pinned", False)
    if not isinstance(pinned, bool):
        raise ValueError(f"'pinned' must be true or false, not {_short(pinned)}")
    result = ImportedConversation(
        title=_optional_str(data, "title"),
        model=_optional_str(data, "model"),
        system_prompt=_optional_str(data, "system_prompt"),
        settings_overrides=overrides,
        pinned=pinned,
        created_at=parse_time(data.get("created")),
        updated_at=parse_time(data.get("updated")),
    )
    if data.get("tree") is not None:
        _parse_tree(data, result)
    else:
        _parse_linear(data, result)
    return result


def _parse_tree(data: dict[str, Any], result: ImportedConversation) -> None:
    tree = data["tree"]
    if not isinstance(tree, list):
        raise ValueError("'tree' must be a list")
    seen: set[int] = set()
    for position, node in enumerate(tree, start=1):
        if not isinstance(node, dict):
            raise ValueError(f"tree entry {position} is not an object")
        key = node.get("id")
        parent = node.get("parent")
        if not isinstance(key, int) or isinstance(key, bool) or key in seen:
            raise ValueError(f"tree entry {position} has a missing or repeated id")
        if parent is not None and (
            not isinstance(parent, int) or isinstance(parent, bool) or parent not in seen
        ):
            raise ValueError(f"tree entry {position} names a parent that does not come before it")
        seen.add(key)
        stats = node.get("stats")
        if stats is not None and not isinstance(stats, dict):
            raise ValueError(f"tree entry {position}: 'stats' must be an object")
        stats = _stats(stats)
        status = node.get("status", "complete")
        if not isinstance(status, str) or status not in STATUSES:
            raise ValueError(f"tree entry {position}: unknown status {_short(status)}")
        result.messages.append(
            ImportedMessage(
                key=key,
                parent=parent,
                role=_role(node, position),
                content=_content(node, position),
                status="interrupted" if status == "streaming" else status,
                model=_optional_str(node, "model"),
                stats=stats,
                created_at=parse_time(node.get("created")),
                thinking=_thinking(node, position),
                sources=_sources(node, position),
            )
        )
    path = data.get("active_path")
    if isinstance(path, list) and path:
        leaf = path[-1]
        if not isinstance(leaf, int) or isinstance(leaf, bool) or leaf not in seen:
            raise ValueError("'active_path' names a message that is not in 'tree'")
        result.active_leaf = leaf
    elif result.messages:
        result.active_leaf = result.messages[-1].key


def _parse_linear(data: dict[str, Any], result: ImportedConversation) -> None:
    messages = data.get("messages")
    if not isinstance(messages, list):
        raise ValueError("expected a 'messages' list")
    parent: int | None = None
    for position, node in enumerate(messages, start=1):
        if not isinstance(node, dict):
            raise ValueError(f"message {position} is not an object")
        role = _role(node, position)
        content = _content(node, position)
        if role == "system" and parent is None and result.system_prompt is None:
            result.system_prompt = content
            continue
        result.messages.append(
            ImportedMessage(
                key=position,
                parent=parent,
                role=role,
                content=content,
                thinking=_thinking(node, position),
                sources=_sources(node, position),
            )
        )
        parent = position
    result.active_leaf = parent


def _role(node: dict[str, Any], position: int) -> str:
    role = node.get("role")
    if role == "developer":
        role = "system"
    if not isinstance(role, str) or role not in ROLES:
        raise ValueError(f"message {position} has an unknown role {_short(role)}")
    return role


def _content(node: dict[str, Any], position: int) -> str:
    content = node.get("content")
    if content is None:
        return ""
    if isinstance(content, str):
        return clean_text(content)
    if isinstance(content, list):  # OpenAI content parts: keep the text ones
        texts = [
            part.get("text", "") for part in content if isinstance(part, dict) and part.get("type") == "text"
        ]
        if not all(isinstance(text, str) for text in texts):
            raise ValueError(f"message {position}: a text part's 'text' must be text")
        return clean_text("".join(texts))
    raise ValueError(f"message {position}: 'content' must be text")


def _thinking(node: dict[str, Any], position: int) -> str:
    """A message's thinking: ``thinking`` (LlamaDesk's tree) or ``reasoning_content`` (reasoning APIs)."""
    for key in ("thinking", "reasoning_content"):
        value = node.get(key)
        if value is None:
            continue
        if not isinstance(value, str):
            raise ValueError(f"message {position}: '{key}' must be text")
        return clean_text(value)
    return ""


def _sources(node: dict[str, Any], position: int) -> MessageSources | None:
    """A question's ``sources`` and ``sources_context``; entries that are not sources are left out."""
    items, context = node.get("sources"), node.get("sources_context")
    if items is None and context is None:
        return None
    if items is not None and not isinstance(items, list):
        raise ValueError(f"message {position}: 'sources' must be a list")
    if context is not None and not isinstance(context, str):
        raise ValueError(f"message {position}: 'sources_context' must be text")
    from .store.documents import sources_from_data

    return sources_from_data(context, items)


# The generation numbers a reply's stats hold (``GenerationStats``): the window adds and formats them.
_STAT_NUMBERS = (
    "prompt_tokens",
    "cached_tokens",
    "completion_tokens",
    "ttft_s",
    "tokens_per_s",
    "total_s",
    "thinking_s",
)
_MAX_STAT = 1e15


def _stats(stats: dict[str, Any] | None) -> dict[str, Any] | None:
    """An import's reply stats with each generation number a real one (else left out).

    A file may say ``"prompt_tokens": "many"`` or ``1e300``; whoever shows the stats later
    would meet ``int("many")``.
    """
    if stats is None:
        return None
    kept = dict(stats)
    for key in _STAT_NUMBERS:
        value = kept.get(key)
        if key in kept and (
            isinstance(value, bool) or not isinstance(value, (int, float)) or not abs(value) <= _MAX_STAT
        ):
            del kept[key]
    return kept


def _optional_str(node: dict[str, Any], key: str) -> str | None:
    value = node.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise ValueError(f"'{key}' must be text")
    return clean_text(value)


def _short(value: object) -> str:
    """``repr(value)`` cut short, for messages about a file's content."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _local_time(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp).strftime("%Y-%m-%d %H:%M")
