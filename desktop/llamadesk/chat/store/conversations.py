"""``ConversationStore``: conversations and their message trees, with search, export and import."""

from __future__ import annotations

import logging
import re
import sqlite3
import time
from dataclasses import replace
from pathlib import Path
from types import EllipsisType, TracebackType
from typing import Any

from .. import export as _export
from ..records import ROLES, STATUSES, Conversation, Message, clean_text, clean_title, make_title
from . import tree
from .documents import DocumentLinks
from .errors import MAX_INTEGER, StoreError, check_count, check_id
from .importing import read_import_file, write_import
from .schema import (
    CONVERSATION_COLUMNS,
    MESSAGE_COLUMNS,
    conversation_from_row,
    dumps,
    message_from_row,
    rowid,
)
from .search import SearchHit, search
from .streaming import StreamingReply

log = logging.getLogger(__name__)

_VISIBLE = "c.importing = 0"  # a conversation being imported is not listed until it is whole
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")  # no text holds one: searching for it can't find anything


class ConversationStore(DocumentLinks):
    """All conversations, in one SQLite file (see ``Database`` for opening, damage and listeners;
    ``DocumentLinks`` for the documents a chat uses).

    A message names its parent explicitly (None for the first message of a conversation or of a
    new first-message version); the new message becomes the shown leaf.
    """

    def __enter__(self) -> ConversationStore:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # -- conversations

    def create_conversation(
        self,
        *,
        title: str | None = None,
        model: str | None = None,
        system_prompt: str | None = None,
        settings_overrides: dict[str, Any] | None = None,
    ) -> Conversation:
        """A new, empty conversation; without a title it takes one from the first user message."""
        title = clean_title(title or "")
        model, system_prompt = _clean(model), _clean(system_prompt)
        now = time.time()
        with self._write("create the conversation") as conn:
            cursor = conn.execute(
                "INSERT INTO conversations (title, title_custom, created_at, updated_at, model,"
                " system_prompt, settings_json) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (title, int(bool(title)), now, now, model, system_prompt, dumps(settings_overrides or {})),
            )
            conversation = self._get_conversation(conn, rowid(cursor))
            self._notify(conversation.id, "created")
            return conversation

    def get_conversation(self, conversation_id: int) -> Conversation:
        """The conversation's metadata; StoreError when it does not exist."""
        with self._read("load the conversation") as conn:
            return self._get_conversation(conn, conversation_id)

    def _get_conversation(self, conn: sqlite3.Connection, conversation_id: int) -> Conversation:
        check_id(conversation_id, "conversation")
        row = conn.execute(
            f"SELECT {CONVERSATION_COLUMNS} FROM conversations c WHERE c.id = ?", (conversation_id,)
        ).fetchone()
        if row is None:
            raise StoreError(f"conversation {conversation_id} does not exist (it may have been deleted)")
        return conversation_from_row(row)

    def list_conversations(self, *, limit: int | None = None, offset: int = 0) -> list[Conversation]:
        """Pinned first, then the most recently active; ``limit`` None lists them all."""
        count = MAX_INTEGER if limit is None else check_count(limit, "limit")
        skip = check_count(offset, "offset")
        with self._read("list the conversations") as conn:
            rows = conn.execute(
                f"SELECT {CONVERSATION_COLUMNS} FROM conversations c WHERE {_VISIBLE}"
                " ORDER BY c.pinned DESC, c.updated_at DESC, c.id DESC LIMIT ? OFFSET ?",
                (count, skip),
            ).fetchall()
        return [conversation_from_row(row) for row in rows]

    def conversation_position(self, conversation_id: int) -> int:
        """Where the conversation stands (0-based) in the ``list_conversations`` order."""
        with self._read("list the conversations") as conn:
            conversation = self._get_conversation(conn, conversation_id)
            return int(
                conn.execute(
                    f"SELECT count(*) FROM conversations c WHERE {_VISIBLE} AND (c.pinned > ?"
                    " OR (c.pinned = ? AND (c.updated_at > ? OR (c.updated_at = ? AND c.id > ?))))",
                    (
                        int(conversation.pinned),
                        int(conversation.pinned),
                        conversation.updated_at,
                        conversation.updated_at,
                        conversation.id,
                    ),
                ).fetchone()[0]
            )

    def count_conversations(self) -> int:
        """How many conversations ``list_conversations`` would list."""
        with self._read("count the conversations") as conn:
            return int(conn.execute(f"SELECT count(*) FROM conversations c WHERE {_VISIBLE}").fetchone()[0])

    def rename_conversation(self, conversation_id: int, title: str) -> Conversation:
        """Set the title; an empty title goes back to the automatic one (from the first user message).

        The title is kept on one line and cut at ``TITLE_MAX_LENGTH`` characters. Confirming the
        title it already has changes nothing: an automatic title keeps following the first message.
        """
        title = clean_title(title)
        with self._write("rename the conversation") as conn:
            conversation = self._get_conversation(conn, conversation_id)
            if title == conversation.title:
                return conversation
            if not title:
                path = tree.path(conn, conversation.id, conversation.active_leaf_id)
                first_user = next((message for message in path if message.role == "user"), None)
                title = make_title(first_user.content) if first_user else ""
                custom = False
            else:
                custom = True
            conn.execute(
                "UPDATE conversations SET title = ?, title_custom = ? WHERE id = ?",
                (title, int(custom), conversation_id),
            )
            self._notify(conversation_id, "changed")
            return self._get_conversation(conn, conversation_id)

    def set_pinned(self, conversation_id: int, pinned: bool) -> None:
        """Pin the conversation to the top of the list, or unpin it."""
        with self._write("pin the conversation") as conn:
            self._get_conversation(conn, conversation_id)
            conn.execute("UPDATE conversations SET pinned = ? WHERE id = ?", (int(pinned), conversation_id))
            self._notify(conversation_id, "changed")

    def update_conversation(
        self,
        conversation_id: int,
        *,
        model: str | EllipsisType | None = ...,
        system_prompt: str | EllipsisType | None = ...,
        settings_overrides: dict[str, Any] | EllipsisType | None = ...,
    ) -> Conversation:
        """Change the model, system prompt or settings overrides; arguments left out stay as they are."""
        changes: dict[str, Any] = {}
        if not isinstance(model, EllipsisType):
            changes["model"] = _clean(model)
        if not isinstance(system_prompt, EllipsisType):
            changes["system_prompt"] = _clean(system_prompt)
        if not isinstance(settings_overrides, EllipsisType):
            changes["settings_json"] = dumps(settings_overrides or {})
        with self._write("update the conversation") as conn:
            self._get_conversation(conn, conversation_id)
            for column, value in changes.items():
                conn.execute(f"UPDATE conversations SET {column} = ? WHERE id = ?", (value, conversation_id))
            if changes:
                self._notify(conversation_id, "changed")
            return self._get_conversation(conn, conversation_id)

    def delete_conversation(self, conversation_id: int) -> None:
        """Delete the conversation and all its messages."""
        check_id(conversation_id, "conversation")
        with self._write("delete the conversation") as conn:
            if conn.execute("DELETE FROM conversations WHERE id = ?", (conversation_id,)).rowcount == 0:
                raise StoreError(f"conversation {conversation_id} does not exist (it may have been deleted)")
            self._notify(conversation_id, "deleted")

    def delete_all(self) -> None:
        """Delete every conversation, then compact the file so the deleted text is gone from disk."""
        with self._write("delete the conversations") as conn:
            conn.execute("DELETE FROM conversations")
            # The search indexes keep deleted words in their segments until merged; start them afresh.
            conn.execute("INSERT INTO messages_fts(messages_fts) VALUES('delete-all')")
            conn.execute("INSERT INTO conversations_fts(conversations_fts) VALUES('delete-all')")
            self._notify(None, "all")
        with self._lock:
            conn = self._open_connection()
            try:
                conn.execute("VACUUM")
                conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            except sqlite3.Error as exc:  # the rows are gone; compacting is a nicety
                log.warning("could not compact the conversation database: %s", exc)

    # -- messages

    def add_message(
        self,
        conversation_id: int,
        role: str,
        content: str,
        *,
        parent_id: int | None,
        status: str = "complete",
        model: str | None = None,
        stats: dict[str, Any] | None = None,
        thinking: str = "",
    ) -> Message:
        """Commit a message under ``parent_id`` (None: a first message); it becomes the active leaf.
        ``thinking``: a reasoning model's thinking, kept apart from the reply's ``content``.

        The first user message of a branch sets the title unless the user renamed the conversation.
        """
        if role not in ROLES:
            raise ValueError(f"unknown role {role!r}")
        if status not in STATUSES:
            raise ValueError(f"unknown status {status!r}")
        content, model, thinking = clean_text(content), _clean(model), clean_text(thinking)
        with self._write("save the message") as conn:
            conversation = self._get_conversation(conn, conversation_id)
            if parent_id is not None:
                tree.get_message(conn, parent_id, conversation_id)
            now = time.time()
            cursor = conn.execute(
                "INSERT INTO messages (conversation_id, parent_id, role, content, status, model, stats_json,"
                " created_at, thinking) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (conversation_id, parent_id, role, content, status, model, dumps(stats), now, thinking),
            )
            message_id = rowid(cursor)
            conn.execute(
                "UPDATE conversations SET active_leaf_id = ?, updated_at = ? WHERE id = ?",
                (message_id, now, conversation_id),
            )
            if (
                role == "user"
                and not conversation.title_is_custom
                and tree.first_user_on_branch(conn, parent_id)
            ):
                title = make_title(content)
                if title:
                    conn.execute("UPDATE conversations SET title = ? WHERE id = ?", (title, conversation_id))
            self._notify(conversation_id, "changed")
            return tree.get_message(conn, message_id)

    def stream_reply(
        self,
        conversation_id: int,
        *,
        parent_id: int | None,
        model: str | None = None,
        flush_interval: float = 1.0,
    ) -> StreamingReply:
        """Start an assistant reply under ``parent_id``, committed at once as empty and 'streaming'.

        A regenerate passes the user message again: the new reply is a sibling of the old one.
        """
        message = self.add_message(
            conversation_id, "assistant", "", parent_id=parent_id, status="streaming", model=model
        )
        return StreamingReply(self, message, flush_interval=flush_interval)

    def _save_streamed(self, message_id: int, content: str, thinking: str = "") -> None:
        with self._write("save the reply") as conn:
            cursor = conn.execute(
                "UPDATE messages SET content = ?, thinking = ? WHERE id = ?",
                (clean_text(content), clean_text(thinking), message_id),
            )
            if cursor.rowcount == 0:
                raise StoreError("the reply could not be saved: its conversation was deleted")

    def _finish_streamed(
        self, message_id: int, content: str, status: str, stats: dict[str, Any] | None, thinking: str = ""
    ) -> Message:
        with self._write("save the reply") as conn:
            cursor = conn.execute(
                "UPDATE messages SET content = ?, status = ?, stats_json = ?, thinking = ? WHERE id = ?",
                (clean_text(content), status, dumps(stats), clean_text(thinking), message_id),
            )
            if cursor.rowcount == 0:
                raise StoreError("the reply could not be saved: its conversation was deleted")
            message = tree.get_message(conn, message_id)
            conn.execute(
                "UPDATE conversations SET updated_at = ? WHERE id = ?", (time.time(), message.conversation_id)
            )
            self._notify(message.conversation_id, "changed")
            return message

    def get_message(self, message_id: int) -> Message:
        """One message with its place among its siblings; StoreError when it does not exist."""
        with self._read("load the message") as conn:
            return tree.get_message(conn, message_id)

    def active_path(self, conversation_id: int) -> list[Message]:
        """The messages shown: root to active leaf, each with its place among its siblings."""
        with self._read("load the conversation") as conn:
            conversation = self._get_conversation(conn, conversation_id)
            return tree.path(conn, conversation.id, conversation.active_leaf_id)

    def path_to(self, message_id: int) -> list[Message]:
        """Root to ``message_id`` (that message last), whichever branch is shown now.

        A reply is written for the branch its question is on: another window or the command line
        may have made another branch the shown one meanwhile (``active_path`` would give that one).
        """
        with self._read("load the conversation") as conn:
            message = tree.get_message(conn, message_id)
            return tree.path(conn, message.conversation_id, message.id)

    def chat_messages(self, conversation_id: int, *, up_to: int | None = None) -> list[dict[str, str]]:
        """The prompt for the model: system prompt plus the active path (or the path to ``up_to``).

        Failed replies with no text are left out.
        """
        with self._read("load the conversation") as conn:
            conversation = self._get_conversation(conn, conversation_id)
            if up_to is not None:
                tree.get_message(conn, up_to, conversation_id)
            path = tree.path(conn, conversation.id, conversation.active_leaf_id if up_to is None else up_to)
        messages = (
            [{"role": "system", "content": conversation.system_prompt}] if conversation.system_prompt else []
        )
        messages += [
            {"role": message.role, "content": message.content}
            for message in path
            if not (message.status == "failed" and not message.content)
        ]
        return messages

    def siblings(self, message_id: int) -> list[Message]:
        """Every version of this message (same parent), oldest first."""
        with self._read("load the message versions") as conn:
            message = tree.get_message(conn, message_id)
            rows = conn.execute(
                f"SELECT {MESSAGE_COLUMNS} FROM messages m INDEXED BY messages_by_parent"
                " WHERE m.conversation_id = ? AND m.parent_id IS ? ORDER BY m.id",
                (message.conversation_id, message.parent_id),
            ).fetchall()
        count = len(rows)
        return [
            replace(message_from_row(row), sibling_index=index, sibling_count=count)
            for index, row in enumerate(rows, start=1)
        ]

    def switch_branch(self, message_id: int) -> None:
        """Show this version: the active leaf becomes its most recently created descendant."""
        with self._write("switch the branch") as conn:
            message = tree.get_message(conn, message_id)
            leaf = tree.newest_leaf(conn, message.conversation_id, message_id)
            conn.execute(
                "UPDATE conversations SET active_leaf_id = ? WHERE id = ?", (leaf, message.conversation_id)
            )
            self._notify(message.conversation_id, "changed")

    def edit_message(self, message_id: int, content: str) -> Message:
        """A new version of the message (a sibling on a new branch, now active); the old one stays."""
        with self._write("save the edited message") as conn:
            original = tree.get_message(conn, message_id)
            return self.add_message(
                original.conversation_id,
                original.role,
                content,
                parent_id=original.parent_id,
                model=original.model,
            )

    def delete_message(self, message_id: int) -> None:
        """Delete a message and everything after it on its branches; the shown branch moves to a neighbour."""
        with self._write("delete the message") as conn:
            message = tree.get_message(conn, message_id)
            conversation = self._get_conversation(conn, message.conversation_id)
            shown = tree.in_subtree(conn, conversation.id, message_id, conversation.active_leaf_id)
            tree.delete_subtree(conn, conversation.id, message_id)
            self._notify(conversation.id, "changed")
            if not shown:
                return
            sibling = conn.execute(
                "SELECT max(id) FROM messages WHERE conversation_id = ? AND parent_id IS ?",
                (conversation.id, message.parent_id),
            ).fetchone()[0]
            leaf = message.parent_id
            if sibling is not None:
                leaf = tree.newest_leaf(conn, conversation.id, sibling)
            conn.execute("UPDATE conversations SET active_leaf_id = ? WHERE id = ?", (leaf, conversation.id))

    # -- search

    def search(
        self, query: str, *, limit: int = 50, highlight: tuple[str, str] = ("[", "]")
    ) -> list[SearchHit]:
        """Full-text search over titles and messages (best matches first; titles first).

        The last word matches as a prefix; quotes group a phrase; punctuation is ignored.
        """
        count = check_count(limit, "search limit")
        with self._read("search the conversations") as conn:
            return search(conn, _LONE_SURROGATE.sub(" ", query), count, highlight)

    # -- export and import

    def export_markdown(self, conversation_id: int) -> str:
        """The shown branch as Markdown."""
        with self._read("export the conversation") as conn:
            conversation = self._get_conversation(conn, conversation_id)
            path = tree.path(conn, conversation.id, conversation.active_leaf_id)
        found = self.message_sources(m.id for m in path if m.role == "user")
        return _export.to_markdown(conversation, path, found)

    def export_json(self, conversation_id: int) -> dict[str, Any]:
        """Everything: OpenAI ``messages`` of the shown branch, metadata, and every branch in ``tree``."""
        with self._read("export the conversation") as conn:
            conversation = self._get_conversation(conn, conversation_id)
            path = tree.path(conn, conversation.id, conversation.active_leaf_id)
            rows = conn.execute(
                f"SELECT {MESSAGE_COLUMNS} FROM messages m WHERE m.conversation_id = ? ORDER BY m.id",
                (conversation.id,),
            ).fetchall()
        messages = [message_from_row(row) for row in rows]
        found = self.message_sources(m.id for m in messages if m.role == "user")
        return _export.to_json(conversation, messages, path, found)

    def import_json(self, data: object) -> Conversation:
        """Add a conversation from ``export_json`` output (or a plain OpenAI ``messages`` list).

        Large imports commit in steps and stay hidden until complete; listeners then hear "all".
        """
        try:
            parsed = _export.parse_import(data)
        except ValueError as exc:
            raise StoreError(f"this is not a conversation LlamaDesk can import: {exc}") from exc
        conversation_id = write_import(self, parsed)
        return self.get_conversation(conversation_id)

    def import_file(self, path: Path) -> Conversation:
        """Import a conversation file (see ``read_import_file`` for what is accepted)."""
        return self.import_json(read_import_file(path))


def _clean(text: str | None) -> str | None:
    """Text a caller passed, storable as UTF-8 (see ``clean_text``); None stays None."""
    return None if text is None else clean_text(text)
