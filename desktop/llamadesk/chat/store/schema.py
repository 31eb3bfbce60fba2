"""The database schema, its migrations (``PRAGMA user_version``) and turning rows into records.

Queries that walk the message tree name their indexes (``INDEXED BY``/``NOT INDEXED``) so that
planner statistics from a small database (``PRAGMA optimize`` at close) can never turn a walk
into a scan of every message per step.
"""

from __future__ import annotations

import json
import math
import sqlite3
from collections.abc import Callable
from enum import Enum
from typing import Any

from ... import safejson
from ..records import DEFAULT_TITLE, Conversation, Message, clean_text

_FTS_OPTIONS = "tokenize='unicode61 remove_diacritics 2'"


def _run(conn: sqlite3.Connection, statements: list[str]) -> None:
    for statement in statements:
        conn.execute(statement)


def _migrate_to_v1(conn: sqlite3.Connection) -> None:
    """Conversations and the message tree."""
    _run(
        conn,
        [
            """CREATE TABLE conversations (
                id INTEGER PRIMARY KEY,
                title TEXT NOT NULL DEFAULT '',
                title_custom INTEGER NOT NULL DEFAULT 0,
                created_at REAL NOT NULL,
                updated_at REAL NOT NULL,
                model TEXT,
                system_prompt TEXT,
                settings_json TEXT NOT NULL DEFAULT '{}',
                pinned INTEGER NOT NULL DEFAULT 0,
                active_leaf_id INTEGER
            )""",
            """CREATE TABLE messages (
                id INTEGER PRIMARY KEY,
                conversation_id INTEGER NOT NULL REFERENCES conversations(id) ON DELETE CASCADE,
                parent_id INTEGER REFERENCES messages(id),
                role TEXT NOT NULL,
                content TEXT NOT NULL DEFAULT '',
                status TEXT NOT NULL DEFAULT 'complete',
                model TEXT,
                stats_json TEXT,
                created_at REAL NOT NULL
            )""",
            "CREATE INDEX messages_by_parent ON messages(conversation_id, parent_id)",
        ],
    )


def _migrate_to_v2(conn: sqlite3.Connection) -> None:
    """Full-text search (FTS5, kept in sync by triggers) and the indexes for large histories."""
    _run(
        conn,
        [
            "CREATE INDEX conversations_by_recency ON conversations(pinned, updated_at)",
            # the parent_id foreign key is checked on every delete: without this index that is a full scan
            "CREATE INDEX messages_by_parent_id ON messages(parent_id)",
            "CREATE INDEX messages_streaming ON messages(id) WHERE status = 'streaming'",
            f"""CREATE VIRTUAL TABLE messages_fts USING fts5(
                content, content='messages', content_rowid='id', {_FTS_OPTIONS})""",
            """CREATE TRIGGER messages_fts_insert AFTER INSERT ON messages BEGIN
                INSERT INTO messages_fts(rowid, content) VALUES (new.id, new.content);
            END""",
            """CREATE TRIGGER messages_fts_delete AFTER DELETE ON messages BEGIN
                INSERT INTO messages_fts(messages_fts, rowid, content) VALUES ('delete', old.id, old.content);
            END""",
            """CREATE TRIGGER messages_fts_update AFTER UPDATE OF content ON messages BEGIN
                INSERT INTO messages_fts(messages_fts, rowid, content) VALUES ('delete', old.id, old.content);
                INSERT INTO messages_fts(rowid, content) VALUES (new.id, new.content);
            END""",
            f"""CREATE VIRTUAL TABLE conversations_fts USING fts5(
                title, content='conversations', content_rowid='id', {_FTS_OPTIONS})""",
            """CREATE TRIGGER conversations_fts_insert AFTER INSERT ON conversations BEGIN
                INSERT INTO conversations_fts(rowid, title) VALUES (new.id, new.title);
            END""",
            """CREATE TRIGGER conversations_fts_delete AFTER DELETE ON conversations BEGIN
                INSERT INTO conversations_fts(conversations_fts, rowid, title)
                    VALUES ('delete', old.id, old.title);
            END""",
            """CREATE TRIGGER conversations_fts_update AFTER UPDATE OF title ON conversations BEGIN
                INSERT INTO conversations_fts(conversations_fts, rowid, title)
                    VALUES ('delete', old.id, old.title);
                INSERT INTO conversations_fts(rowid, title) VALUES (new.id, new.title);
            END""",
            "INSERT INTO messages_fts(messages_fts) VALUES ('rebuild')",
            "INSERT INTO conversations_fts(conversations_fts) VALUES ('rebuild')",
        ],
    )


def _migrate_to_v3(conn: sqlite3.Connection) -> None:
    """A reply is indexed for search once, when it ends, not on every flush; imports commit in steps.

    The index reads its text through ``messages_indexed`` (every message but a streaming one), so
    rebuilding it and its integrity check agree with what the triggers index. ``importing`` hides a
    conversation whose import is still being committed; an import cut short is removed on open.
    """
    _run(
        conn,
        [
            "ALTER TABLE conversations ADD COLUMN importing INTEGER NOT NULL DEFAULT 0",
            "DROP TRIGGER messages_fts_insert",
            "DROP TRIGGER messages_fts_delete",
            "DROP TRIGGER messages_fts_update",
            "DROP TABLE messages_fts",
            "CREATE VIEW messages_indexed AS SELECT id, content FROM messages WHERE status != 'streaming'",
            f"""CREATE VIRTUAL TABLE messages_fts USING fts5(
                content, content='messages_indexed', content_rowid='id', {_FTS_OPTIONS})""",
            """CREATE TRIGGER messages_fts_insert AFTER INSERT ON messages
            WHEN new.status != 'streaming' BEGIN
                INSERT INTO messages_fts(rowid, content) VALUES (new.id, new.content);
            END""",
            """CREATE TRIGGER messages_fts_delete AFTER DELETE ON messages
            WHEN old.status != 'streaming' BEGIN
                INSERT INTO messages_fts(messages_fts, rowid, content) VALUES ('delete', old.id, old.content);
            END""",
            """CREATE TRIGGER messages_fts_update AFTER UPDATE OF content, status ON messages
            WHEN old.status != 'streaming' OR new.status != 'streaming' BEGIN
                INSERT INTO messages_fts(messages_fts, rowid, content)
                    SELECT 'delete', old.id, old.content WHERE old.status != 'streaming';
                INSERT INTO messages_fts(rowid, content)
                    SELECT new.id, new.content WHERE new.status != 'streaming';
            END""",
            "INSERT INTO messages_fts(messages_fts) VALUES ('rebuild')",
        ],
    )


def _migrate_to_v4(conn: sqlite3.Connection) -> None:
    """A reply's thinking (reasoning models), kept apart from its answer."""
    conn.execute("ALTER TABLE messages ADD COLUMN thinking TEXT NOT NULL DEFAULT ''")


def _migrate_to_v5(conn: sqlite3.Connection) -> None:
    """Documents in chats: the collections a conversation uses, and the sources a question was sent with.

    ``message_sources.context`` is the exact text put before the question in the prompt: later turns
    send it again byte for byte, so a follow-up reuses the cached prompt instead of re-reading it.
    """
    _run(
        conn,
        [
            """CREATE TABLE conversation_collections (
                conversation_id INTEGER NOT NULL REFERENCES conversations(id) ON DELETE CASCADE,
                name TEXT NOT NULL,
                position INTEGER NOT NULL DEFAULT 0,
                PRIMARY KEY (conversation_id, name)
            )""",
            "CREATE INDEX conversation_collections_by_name ON conversation_collections(name)",
            """CREATE TABLE message_sources (
                message_id INTEGER PRIMARY KEY REFERENCES messages(id) ON DELETE CASCADE,
                context TEXT NOT NULL DEFAULT '',
                sources_json TEXT NOT NULL DEFAULT '[]'
            )""",
        ],
    )


# MIGRATIONS[n] takes a database from schema version n to n + 1 (PRAGMA user_version).
MIGRATIONS: list[Callable[[sqlite3.Connection], None]] = [
    _migrate_to_v1,
    _migrate_to_v2,
    _migrate_to_v3,
    _migrate_to_v4,
    _migrate_to_v5,
]
SCHEMA_VERSION = len(MIGRATIONS)

CONVERSATION_COLUMNS = (
    "c.id, c.title, c.title_custom, c.created_at, c.updated_at, c.model, c.system_prompt, "
    "c.settings_json, c.pinned, c.active_leaf_id"
)
MESSAGE_COLUMNS = (
    "m.id, m.conversation_id, m.parent_id, m.role, m.content, m.status, m.model, m.stats_json, m.created_at,"
    " m.thinking"
)
_SIBLINGS = (
    "SELECT count(*) FROM messages s INDEXED BY messages_by_parent"
    " WHERE s.conversation_id = m.conversation_id AND s.parent_id IS m.parent_id"
)
SIBLING_COLUMNS = f"({_SIBLINGS} AND s.id <= m.id), ({_SIBLINGS})"
# Root to leaf. A step goes only to a parent with a smaller id in the same conversation: every
# message the store writes has one, and a damaged table (a parent cycle) cannot loop the walk.
PATH_SQL = f"""
    WITH RECURSIVE path(id, depth) AS (
        SELECT m.id, 0 FROM messages m NOT INDEXED WHERE m.id = ? AND m.conversation_id = ?
        UNION ALL
        SELECT p.id, path.depth + 1
        FROM path CROSS JOIN messages m NOT INDEXED CROSS JOIN messages p NOT INDEXED
        WHERE m.id = path.id AND p.id = m.parent_id AND p.id < m.id AND p.conversation_id = m.conversation_id
    )
    SELECT {MESSAGE_COLUMNS}, {SIBLING_COLUMNS} FROM path CROSS JOIN messages m NOT INDEXED
    WHERE m.id = path.id ORDER BY path.depth DESC
"""
# A message and its descendants (parameters: message id, conversation id); children have larger ids.
SUBTREE_SQL = """
    WITH RECURSIVE subtree(id) AS (
        SELECT ?
        UNION
        SELECT m.id FROM subtree CROSS JOIN messages m INDEXED BY messages_by_parent
        WHERE m.conversation_id = ? AND m.parent_id = subtree.id AND m.id > subtree.id
    )
"""


def _json_default(value: object) -> object:
    if isinstance(value, Enum):
        return value.value
    return str(value)


def dumps(value: dict[str, Any] | None) -> str | None:
    """A dict as the JSON text a column holds (enums by value, anything else as text).

    A number JSON can't hold (``inf``, ``nan``) is written as null: written as ``Infinity`` it
    would make every export of the conversation a file that no JSON reader, LlamaDesk's included,
    accepts.
    """
    if value is None:
        return None
    try:
        text = json.dumps(value, default=_json_default, ensure_ascii=False, allow_nan=False)
    except ValueError:
        text = json.dumps(_finite(value), default=_json_default, ensure_ascii=False, allow_nan=False)
    return clean_text(text)


def _finite(value: Any) -> Any:
    """``value`` with every non-finite float as None (lists and dicts copied; nesting as deep as given)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(item) for item in value]
    return value


def _finite_or_none(text: str) -> float | None:
    number = float(text)
    return number if math.isfinite(number) else None


def loads_dict(text: str | None) -> dict[str, Any] | None:
    """A JSON column back as a dict; None when missing, not a JSON object or nested too deeply.

    The column may have been written by an older version or another program: ``Infinity``,
    ``NaN`` and ``1e999`` come back as None, so no reader meets ``int(inf)``.
    """
    if text is None:
        return None
    try:
        value = json.loads(text, parse_constant=lambda _name: None, parse_float=_finite_or_none)
    except (ValueError, RecursionError):
        return None
    if not isinstance(value, dict) or safejson.depth(value) > safejson.MAX_DEPTH:
        return None
    return value


def conversation_from_row(row: tuple[Any, ...]) -> Conversation:
    """A ``Conversation`` from a row selected with ``CONVERSATION_COLUMNS``."""
    return Conversation(
        id=row[0],
        title=row[1] or DEFAULT_TITLE,
        title_is_custom=bool(row[2]),
        created_at=row[3],
        updated_at=row[4],
        model=row[5],
        system_prompt=row[6],
        settings_overrides=loads_dict(row[7]) or {},
        pinned=bool(row[8]),
        active_leaf_id=row[9],
    )


def message_from_row(row: tuple[Any, ...]) -> Message:
    """A ``Message`` from a row selected with ``MESSAGE_COLUMNS`` (and optionally ``SIBLING_COLUMNS``)."""
    return Message(
        id=row[0],
        conversation_id=row[1],
        parent_id=row[2],
        role=row[3],
        content=row[4],
        status=row[5],
        model=row[6],
        stats=loads_dict(row[7]),
        created_at=row[8],
        thinking=row[9] if isinstance(row[9], str) else "",
        sibling_index=row[10] if len(row) > 10 else 1,
        sibling_count=row[11] if len(row) > 11 else 1,
    )


def rowid(cursor: sqlite3.Cursor) -> int:
    """The id of the row an INSERT just added."""
    value = cursor.lastrowid
    assert value is not None
    return value
