"""Walking a conversation's message tree: the shown path, a branch's newest leaf, deleting a subtree.

Every walk follows only links that a message written by the store has: a parent with a smaller
id in the same conversation. A table edited by hand or damaged into a parent cycle
(``UPDATE messages SET parent_id = 4 WHERE id = 1``) therefore stops at the bad link: the
message after it is shown as the start of its branch, and ``damaged_conversations`` finds them.
"""

from __future__ import annotations

import sqlite3

from ..records import Message
from .errors import StoreError, check_id
from .schema import MESSAGE_COLUMNS, PATH_SQL, SIBLING_COLUMNS, SUBTREE_SQL, message_from_row


def get_message(conn: sqlite3.Connection, message_id: int, conversation_id: int | None = None) -> Message:
    """The message with its place among its siblings; StoreError when it is not (in that conversation)."""
    check_id(message_id, "message")
    row = conn.execute(
        f"SELECT {MESSAGE_COLUMNS}, {SIBLING_COLUMNS} FROM messages m WHERE m.id = ?", (message_id,)
    ).fetchone()
    if row is None or (conversation_id is not None and row[1] != conversation_id):
        raise StoreError(f"message {message_id} does not exist (it may have been deleted)")
    return message_from_row(row)


def path(conn: sqlite3.Connection, conversation_id: int, leaf_id: int | None) -> list[Message]:
    """Root to ``leaf_id``, each message with its sibling place; empty when there is no leaf."""
    if leaf_id is None:
        return []
    return [message_from_row(row) for row in conn.execute(PATH_SQL, (leaf_id, conversation_id))]


def first_user_on_branch(conn: sqlite3.Connection, parent_id: int | None) -> bool:
    """True when no message from ``parent_id`` up to the root is a user message."""
    child_id: int | None = None
    while parent_id is not None:
        if child_id is not None and parent_id >= child_id:
            return True  # a damaged link: the branch starts below it
        row = conn.execute("SELECT role, parent_id FROM messages WHERE id = ?", (parent_id,)).fetchone()
        if row is None or row[0] == "user":
            return row is None
        child_id, parent_id = parent_id, row[1]
    return True


def newest_leaf(conn: sqlite3.Connection, conversation_id: int, message_id: int) -> int:
    """The most recently created message in the subtree of ``message_id`` (itself when it has none)."""
    leaf = conn.execute(
        SUBTREE_SQL + "SELECT max(id) FROM subtree", (message_id, conversation_id)
    ).fetchone()[0]
    return int(leaf)


def in_subtree(conn: sqlite3.Connection, conversation_id: int, root_id: int, message_id: int | None) -> bool:
    """True when ``message_id`` is ``root_id`` or one of its descendants."""
    if message_id is None:
        return False
    row = conn.execute(
        SUBTREE_SQL + "SELECT 1 FROM subtree WHERE id = ?", (root_id, conversation_id, message_id)
    ).fetchone()
    return row is not None


def delete_subtree(conn: sqlite3.Connection, conversation_id: int, root_id: int) -> None:
    """Delete a message and its descendants.

    A message outside the subtree whose damaged parent link points into it (an older message, or
    one in another conversation) becomes a root, so the parent_id foreign key cannot fail the delete.
    """
    subtree = SUBTREE_SQL + "SELECT id FROM subtree"
    conn.execute(
        f"UPDATE messages SET parent_id = NULL WHERE parent_id IN ({subtree})"
        " AND (id <= parent_id OR conversation_id IS NOT ?)",
        (root_id, conversation_id, conversation_id),
    )
    conn.execute(f"DELETE FROM messages WHERE id IN ({subtree})", (root_id, conversation_id))


def damaged_conversations(conn: sqlite3.Connection) -> list[int]:
    """Conversations with a message whose parent is not older than itself (a cycle needs one)."""
    rows = conn.execute(
        "SELECT DISTINCT m.conversation_id FROM messages m INDEXED BY messages_by_parent_id"
        " WHERE m.parent_id > 0 AND m.parent_id >= m.id ORDER BY 1"
    ).fetchall()
    return [int(row[0]) for row in rows]
