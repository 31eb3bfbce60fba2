"""Documents in conversations: which collections a chat searches, and the sources each question used.

The sources of a question are kept with the user message: the exact context text that went before it
in the prompt (sent again, byte for byte, on every later turn so the prompt cache stays warm) and the
numbered passages, with their text, so a citation still opens after its file changed or was removed.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from ... import safejson
from ..records import clean_text
from .database import Database
from .errors import StoreError, check_id

__all__ = [
    "MAX_LINKED_COLLECTIONS",
    "DocumentLinks",
    "MessageSources",
    "SourceRef",
    "insert_sources",
    "sources_data",
    "sources_from_data",
]

MAX_LINKED_COLLECTIONS = 32
_MAX_SOURCES = 64  # sources kept per message (a context block numbers far fewer)
_MAX_FIELD = 20_000  # characters kept of any one field of a source (a chunk is much shorter)


@dataclass(frozen=True)
class SourceRef:
    """One numbered source of a question: the passage ``[number]`` in the answer points to."""

    number: int
    chunk_id: int
    collection: str
    path: str
    title: str
    location: str
    text: str

    def label(self) -> str:
        """ "notes.md, page 3": the title and, when known, where in the file."""
        return f"{self.title}, {self.location}" if self.location else self.title


@dataclass(frozen=True)
class MessageSources:
    """What a question was sent with: the context text before it and the sources it numbers."""

    context: str = ""
    sources: tuple[SourceRef, ...] = field(default_factory=tuple)

    def source(self, number: int) -> SourceRef | None:
        """The source numbered ``number``, None when there is none."""
        return next((s for s in self.sources if s.number == number), None)


def _source_from(value: object) -> SourceRef | None:
    """A source from stored JSON (written by any version or program): None when it is not one."""
    if not isinstance(value, dict):
        return None
    number, chunk = value.get("number"), value.get("chunk_id")
    if not isinstance(number, int) or isinstance(number, bool) or not isinstance(chunk, int):
        return None
    texts = [value.get(key, "") for key in ("collection", "path", "title", "location", "text")]
    if not all(isinstance(text, str) for text in texts):
        return None
    collection, path, title, location, text = (str(t)[:_MAX_FIELD] for t in texts)
    return SourceRef(number, chunk, collection, path, title, location, text)


def _sources_from_list(value: object) -> tuple[SourceRef, ...]:
    if not isinstance(value, list):
        return ()
    found = (_source_from(item) for item in value[:_MAX_SOURCES])
    return tuple(source for source in found if source is not None)


def _sources_from_json(text: str | None) -> tuple[SourceRef, ...]:
    try:
        value = safejson.loads(text or "[]")
    except ValueError:
        return ()
    return _sources_from_list(value)


def sources_data(sources: MessageSources) -> list[dict[str, Any]]:
    """The numbered sources as plain JSON values (what the store and export files keep)."""
    return [asdict(source) for source in sources.sources[:_MAX_SOURCES]]


def sources_from_data(context: object, items: object) -> MessageSources | None:
    """Sources read back from an export file: the context text and the list of sources.

    Entries that are not sources are left out; None when nothing usable remains.
    """
    text = context if isinstance(context, str) else ""
    found = _sources_from_list(items)
    if not text and not found:
        return None
    return MessageSources(clean_text(text), found)


def insert_sources(conn: sqlite3.Connection, message_id: int, sources: MessageSources) -> None:
    """Write (or replace) the sources of ``message_id`` inside the caller's transaction."""
    text = clean_text(json.dumps(sources_data(sources), ensure_ascii=False))
    conn.execute(
        "INSERT INTO message_sources (message_id, context, sources_json) VALUES (?, ?, ?)"
        " ON CONFLICT(message_id) DO UPDATE SET context = excluded.context,"
        " sources_json = excluded.sources_json",
        (message_id, clean_text(sources.context), text),
    )


def _clean_names(names: Iterable[str]) -> list[str]:
    """Collection names without blanks or repeats, in the order given."""
    result: list[str] = []
    for name in names:
        name = clean_text(str(name)).strip()
        if name and name not in result:
            result.append(name)
    if len(result) > MAX_LINKED_COLLECTIONS:
        raise StoreError(f"a chat can use at most {MAX_LINKED_COLLECTIONS} collections")
    return result


class DocumentLinks(Database):
    """The conversation store's document links (mixed into ``ConversationStore``)."""

    def conversation_collections(self, conversation_id: int) -> list[str]:
        """The collections the conversation searches, in the order they were chosen."""
        check_id(conversation_id, "conversation")
        with self._read("load the chat's documents") as conn:
            rows = conn.execute(
                "SELECT name FROM conversation_collections WHERE conversation_id = ? ORDER BY position, name",
                (conversation_id,),
            ).fetchall()
        return [str(row[0]) for row in rows]

    def set_conversation_collections(self, conversation_id: int, names: Sequence[str]) -> list[str]:
        """Make the conversation search exactly ``names`` (none: it stops using documents)."""
        check_id(conversation_id, "conversation")
        cleaned = _clean_names(names)
        with self._write("save the chat's documents") as conn:
            if (
                conn.execute("SELECT 1 FROM conversations WHERE id = ?", (conversation_id,)).fetchone()
                is None
            ):
                raise StoreError(f"conversation {conversation_id} does not exist (it may have been deleted)")
            conn.execute("DELETE FROM conversation_collections WHERE conversation_id = ?", (conversation_id,))
            conn.executemany(
                "INSERT INTO conversation_collections (conversation_id, name, position) VALUES (?, ?, ?)",
                [(conversation_id, name, position) for position, name in enumerate(cleaned)],
            )
            self._notify(conversation_id, "changed")
        return cleaned

    def forget_collection(self, name: str) -> None:
        """A collection was removed: no chat searches it any more (sources already stored stay)."""
        with self._write("update the chats' documents") as conn:
            rows = conn.execute(
                "SELECT DISTINCT conversation_id FROM conversation_collections WHERE name = ?", (name,)
            ).fetchall()
            conn.execute("DELETE FROM conversation_collections WHERE name = ?", (name,))
            for (conversation_id,) in rows:
                self._notify(int(conversation_id), "changed")

    def set_message_sources(self, message_id: int, sources: MessageSources) -> None:
        """Keep the context text and numbered sources a user message is sent with."""
        check_id(message_id, "message")
        with self._write("save the message's sources") as conn:
            if conn.execute("SELECT 1 FROM messages WHERE id = ?", (message_id,)).fetchone() is None:
                raise StoreError(f"message {message_id} does not exist (it may have been deleted)")
            insert_sources(conn, message_id, sources)

    def message_sources(self, message_ids: Iterable[int]) -> dict[int, MessageSources]:
        """The stored sources of those messages that have some (by message id)."""
        ids = [i for i in dict.fromkeys(message_ids) if isinstance(i, int) and not isinstance(i, bool)]
        found: dict[int, MessageSources] = {}
        with self._read("load the message's sources") as conn:
            for start in range(0, len(ids), 500):
                part = ids[start : start + 500]
                marks = ",".join("?" * len(part))
                rows = conn.execute(
                    "SELECT message_id, context, sources_json FROM message_sources"
                    f" WHERE message_id IN ({marks})",
                    part,
                ).fetchall()
                for message_id, context, sources_json in rows:
                    found[int(message_id)] = MessageSources(
                        context if isinstance(context, str) else "", _sources_from_json(sources_json)
                    )
        return found
