"""Conversations in SQLite: message trees with branches, crash-safe streaming and full-text search.

One file in the data dir, in WAL mode with foreign keys on. Every message is committed the
moment it exists and a streaming reply at least once a second. ``synchronous=NORMAL`` in
WAL mode loses nothing when the process crashes or is killed; a power cut may lose the
last commits but never corrupts the file. The store is safe to share between threads: one
connection (``check_same_thread=False``) guarded by a lock; writes are tiny, so the GUI
thread may call it directly.
"""

from __future__ import annotations

import json
import logging
import os
import re
import sqlite3
import threading
import time
import unicodedata
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from types import EllipsisType, TracebackType
from typing import Any

from ..errors import LlamaDeskError
from . import export as _export
from .export import DEFAULT_TITLE, ROLES, STATUSES, TITLE_MAX_LENGTH, clean_text, clean_title

log = logging.getLogger(__name__)

FINAL_STATUSES = ("complete", "stopped", "failed")


def reply_status(stop_reason: str) -> str:
    """The status a finished reply is stored with, from the engine's stop reason."""
    return {"user_stop": "stopped", "error": "failed"}.get(stop_reason, "complete")


TITLE_LENGTH = 60

# SQLite primary result codes (the sqlite3.SQLITE_* names exist from Python 3.11 only).
_SQLITE_BUSY = 5
_SQLITE_LOCKED = 6
_SQLITE_READONLY = 8
_SQLITE_CORRUPT = 11
_SQLITE_FULL = 13
_SQLITE_CANTOPEN = 14
_SQLITE_NOTADB = 26


class StoreError(LlamaDeskError):
    """A conversation could not be read or saved; the message says why."""


class _Damaged(Exception):
    """The database file is not a readable SQLite database (internal)."""


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


@dataclass(frozen=True)
class SearchHit:
    """A search result; ``message_id`` is None when the conversation's title matched."""

    conversation_id: int
    message_id: int | None
    title: str
    snippet: str


# ---------------------------------------------------------------- schema and migrations


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
            """CREATE VIRTUAL TABLE messages_fts USING fts5(
                content, content='messages', content_rowid='id', tokenize='unicode61 remove_diacritics 2')""",
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
            """CREATE VIRTUAL TABLE conversations_fts USING fts5(
                title, content='conversations', content_rowid='id',
                tokenize='unicode61 remove_diacritics 2')""",
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


# MIGRATIONS[n] takes a database from schema version n to n + 1 (PRAGMA user_version).
MIGRATIONS: list[Callable[[sqlite3.Connection], None]] = [_migrate_to_v1, _migrate_to_v2]
SCHEMA_VERSION = len(MIGRATIONS)

_CONVERSATION_COLUMNS = (
    "c.id, c.title, c.title_custom, c.created_at, c.updated_at, c.model, c.system_prompt, "
    "c.settings_json, c.pinned, c.active_leaf_id"
)
_MESSAGE_COLUMNS = (
    "m.id, m.conversation_id, m.parent_id, m.role, m.content, m.status, m.model, m.stats_json, m.created_at"
)
_SIBLING_COLUMNS = (
    "(SELECT count(*) FROM messages s WHERE s.conversation_id = m.conversation_id"
    " AND s.parent_id IS m.parent_id AND s.id <= m.id),"
    " (SELECT count(*) FROM messages s WHERE s.conversation_id = m.conversation_id"
    " AND s.parent_id IS m.parent_id)"
)
_PATH_SQL = f"""
    WITH RECURSIVE path(id, depth) AS (
        SELECT ?, 0
        UNION ALL
        SELECT m.parent_id, path.depth + 1 FROM messages m JOIN path ON m.id = path.id
        WHERE m.parent_id IS NOT NULL
    )
    SELECT {_MESSAGE_COLUMNS}, {_SIBLING_COLUMNS} FROM path JOIN messages m ON m.id = path.id
    ORDER BY path.depth DESC
"""
_SUBTREE_SQL = """
    WITH RECURSIVE subtree(id) AS (
        SELECT ?
        UNION ALL
        SELECT m.id FROM messages m JOIN subtree ON m.parent_id = subtree.id WHERE m.conversation_id = ?
    )
"""


# ---------------------------------------------------------------- helpers


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


# Scripts written without spaces between words (Chinese, Japanese, Thai, Lao, Khmer, Myanmar):
# the full-text index holds a whole sentence as one token, so a word inside it is found by substring.
_UNSPACED = re.compile(
    "[\u0e00-\u0eff\u1000-\u109f\u1780-\u17ff\u2e80-\u2fdf\u3040-\u31ff\u3400-\u4dbf"
    "\u4e00-\u9fff\uf900-\ufaff\uff66-\uff9f\U00020000-\U0003134f]"
)
SNIPPET_WIDTH = 80


def _search_terms(text: str) -> list[tuple[str, bool]]:
    """What a user typed as (term, typed as a bare word) pairs: quoted phrases stay whole."""
    terms: list[tuple[str, bool]] = []
    for match in re.finditer(r'"([^"]*)"|(\S+)', text):
        quoted, word = match.group(1), match.group(2)
        term = quoted if quoted is not None else word
        if term.strip():
            terms.append((term.strip(), quoted is None))
    return terms


def _needs_substring(term: str) -> bool:
    """True when the word index cannot find ``term``: an unspaced script, or only symbols (emoji)."""
    return bool(_UNSPACED.search(term)) or (
        not re.search(r"\w", term)
        and any(unicodedata.category(ch) in ("So", "Sk", "Sm", "Sc") for ch in term)
    )


def fts_query(text: str) -> str | None:
    """Turn what a user typed into a safe FTS5 query: quoted phrases, the last word as a prefix.

    Punctuation and quotes can never cause a syntax error; None when nothing is searchable.
    """
    terms = [(term, bare) for term, bare in _search_terms(text) if re.search(r"\w", term)]
    if not terms:
        return None
    parts = ['"' + term.replace('"', '""') + '"' for term, _ in terms]
    if terms[-1][1]:
        parts[-1] += "*"
    return " ".join(parts)


def _snippet(text: str, terms: list[str], highlight: tuple[str, str]) -> str:
    """About ``SNIPPET_WIDTH`` characters of ``text`` around the first term found, terms highlighted."""
    start, end = highlight
    pattern = re.compile(
        "|".join(re.escape(term) for term in sorted(terms, key=len, reverse=True)), re.IGNORECASE
    )
    found = pattern.search(text)
    first = max(0, found.start() - SNIPPET_WIDTH // 4) if found else 0
    last = min(len(text), max(first + SNIPPET_WIDTH, found.end() if found else 0))
    piece = pattern.sub(lambda m: start + m.group(0) + end, text[first:last])
    return ("…" if first > 0 else "") + piece + ("…" if last < len(text) else "")


def _error_code(exc: sqlite3.Error) -> int | None:
    code = getattr(exc, "sqlite_errorcode", None)
    if isinstance(code, int):
        return code & 0xFF
    text = str(exc).lower()
    for needle, value in (
        ("disk is full", _SQLITE_FULL),
        ("malformed", _SQLITE_CORRUPT),
        ("not a database", _SQLITE_NOTADB),
        ("readonly", _SQLITE_READONLY),
        ("is locked", _SQLITE_BUSY),
    ):
        if needle in text:
            return value
    return None


def _describe(exc: sqlite3.Error, action: str) -> str:
    """A sentence for the user about a failed database operation."""
    code = _error_code(exc)
    if code == _SQLITE_FULL:
        return f"the disk is full: could not {action}. Free some space and try again."
    if code == _SQLITE_READONLY:
        return f"the conversation database is read-only: could not {action}"
    if code in (_SQLITE_BUSY, _SQLITE_LOCKED):
        return f"the conversation database is busy (another program is using it): could not {action}"
    if code in (_SQLITE_CORRUPT, _SQLITE_NOTADB):
        return (
            f"the conversation database is damaged ({exc}): could not {action}. "
            "Restart LlamaDesk to set it aside and start a new one."
        )
    if "no such module: fts5" in str(exc):
        return f"could not {action}: this Python's SQLite library has no full-text search (FTS5)"
    if code == _SQLITE_CANTOPEN:
        return f"could not {action}: the database file cannot be opened ({exc})"
    return f"could not {action}: {exc}"


def _json_default(value: object) -> object:
    if isinstance(value, Enum):
        return value.value
    return str(value)


def _dumps(value: dict[str, Any] | None) -> str | None:
    if value is None:
        return None
    return clean_text(json.dumps(value, default=_json_default, ensure_ascii=False))


def _loads_dict(text: str | None) -> dict[str, Any] | None:
    if text is None:
        return None
    try:
        value = json.loads(text)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def _conversation(row: tuple[Any, ...]) -> Conversation:
    return Conversation(
        id=row[0],
        title=row[1] or DEFAULT_TITLE,
        title_is_custom=bool(row[2]),
        created_at=row[3],
        updated_at=row[4],
        model=row[5],
        system_prompt=row[6],
        settings_overrides=_loads_dict(row[7]) or {},
        pinned=bool(row[8]),
        active_leaf_id=row[9],
    )


def _message(row: tuple[Any, ...]) -> Message:
    return Message(
        id=row[0],
        conversation_id=row[1],
        parent_id=row[2],
        role=row[3],
        content=row[4],
        status=row[5],
        model=row[6],
        stats=_loads_dict(row[7]),
        created_at=row[8],
        sibling_index=row[9] if len(row) > 9 else 1,
        sibling_count=row[10] if len(row) > 10 else 1,
    )


# ---------------------------------------------------------------- streaming


class StreamingReply:
    """A reply being generated: ``append`` pieces, ``finish`` at the end.

    The text is committed when ``flush_interval`` seconds have passed since the last commit
    (1 s by default), so a crash loses at most that much; the row stays 'streaming' until
    ``finish`` and is marked 'interrupted' when the store is next opened.
    """

    def __init__(self, store: ConversationStore, message: Message, *, flush_interval: float = 1.0) -> None:
        self.message_id = message.id
        self.conversation_id = message.conversation_id
        self.flush_interval = flush_interval
        self.committed_length = 0
        self.status = message.status
        self._store = store
        self._parts: list[str] = [message.content] if message.content else []
        self._last_commit = time.monotonic()

    @property
    def content(self) -> str:
        """The whole text so far, committed or not."""
        if len(self._parts) > 1:
            self._parts = ["".join(self._parts)]
        return self._parts[0] if self._parts else ""

    @property
    def finished(self) -> bool:
        return self.status != "streaming"

    def append(self, text: str) -> bool:
        """Add a piece of text; commits (and returns True) when the flush interval has passed."""
        if self.finished:
            raise StoreError("this reply is already finished")
        if text:
            self._parts.append(text)
        if time.monotonic() - self._last_commit >= self.flush_interval:
            self.flush()
            return True
        return False

    def flush(self) -> None:
        """Commit the text so far now."""
        self._last_commit = time.monotonic()  # a failing disk is retried once per interval, not per token
        content = self.content
        self._store._save_streamed(self.message_id, content)
        self.committed_length = len(content)

    def finish(self, status: str = "complete", stats: dict[str, Any] | None = None) -> Message:
        """Commit the final text with ``status`` (complete, stopped or failed) and the generation stats."""
        if status not in FINAL_STATUSES:
            raise ValueError(f"a reply finishes as one of {', '.join(FINAL_STATUSES)}, not {status!r}")
        content = self.content
        message = self._store._finish_streamed(self.message_id, content, status, stats)
        self.committed_length = len(content)
        self.status = status
        return message

    def __enter__(self) -> StreamingReply:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if not self.finished:
            if exc is None:
                self.finish("complete")
            else:
                self.finish("failed", {"error": str(exc)})


# ---------------------------------------------------------------- the store


class ConversationStore:
    """All conversations, in one SQLite file.

    A damaged file is never overwritten: it is moved aside (``conversations.sqlite3.corrupt-<time>``
    with its -wal/-shm), ``warning`` says so and a new database starts. Replies left
    'streaming' by a crash become 'interrupted' on open (``interrupted_count`` says how many),
    unless another process (a second window, ``llamadesk chat``) has the database open: its
    replies may be streaming right now, so they are left for the next open that finds itself
    alone. Every failure a user can meet raises ``StoreError``.
    """

    def __init__(self, path: Path | str, *, recover_interrupted: bool = True) -> None:
        self.path = Path(path)
        self.warning: str | None = None
        self.backup_path: Path | None = None
        self.interrupted_count = 0
        self._lock = threading.RLock()
        self._depth = 0
        self._conn: sqlite3.Connection | None = None
        self._presence: sqlite3.Connection | None = None
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(
                f"could not create the folder {self.path.parent}: {exc.strerror or exc}"
            ) from exc
        try:
            self._conn = self._connect()
        except _Damaged as exc:
            self.backup_path = self._move_aside()
            self.warning = (
                f"Your conversation database could not be read ({exc}). It was moved aside as "
                f"{self.backup_path.name} and a new, empty one was started."
            )
            log.warning("%s", self.warning)
            try:
                self._conn = self._connect()
            except _Damaged as again:
                raise StoreError(f"could not start a new conversation database: {again}") from again
        alone = self._announce_presence()
        if recover_interrupted and not alone:
            log.info(
                "another process has the conversation database open: streaming replies are left as they are"
            )
        if recover_interrupted and alone:
            try:
                with self._write("recover interrupted replies") as conn:
                    cursor = conn.execute(
                        "UPDATE messages SET status = 'interrupted' WHERE status = 'streaming'"
                    )
                    self.interrupted_count = cursor.rowcount
            except BaseException:
                self.close()
                raise

    # -- opening and closing

    def _announce_presence(self) -> bool:
        """Hold a shared lock on ``<database>-instances`` while open; True when no other store holds one.

        SQLite's own file locking does the work (on every platform, released when a process dies):
        an exclusive transaction on the side file succeeds only when nobody else has it open.
        """
        side = self.path.with_name(self.path.name + "-instances")
        conn: sqlite3.Connection | None = None
        try:
            conn = sqlite3.connect(side, timeout=0, isolation_level=None, check_same_thread=False)
            try:
                conn.execute("BEGIN EXCLUSIVE")
                conn.execute("ROLLBACK")
                alone = True
            except sqlite3.OperationalError as exc:
                if _error_code(exc) not in (_SQLITE_BUSY, _SQLITE_LOCKED):
                    raise
                alone = False
            conn.execute("BEGIN")
            conn.execute("SELECT count(*) FROM sqlite_master").fetchone()  # takes the shared lock
        except sqlite3.Error as exc:  # a read-only folder, say: behave as if alone
            log.warning("could not tell whether another process uses the conversation database: %s", exc)
            if conn is not None:
                conn.close()
            return True
        self._presence = conn
        return alone

    def _probe(self) -> None:
        """Check an existing file read-only first, so a damaged or newer one is left exactly as it is."""
        try:
            if self.path.stat().st_size == 0:
                return
        except FileNotFoundError:
            return
        except OSError as exc:
            raise StoreError(f"could not open {self.path}: {exc.strerror or exc}") from exc
        try:
            conn = sqlite3.connect(
                self.path.resolve().as_uri() + "?mode=ro", uri=True, timeout=5.0, check_same_thread=False
            )
        except sqlite3.Error as exc:
            raise StoreError(_describe(exc, f"open {self.path}")) from exc
        try:
            problems = [row[0] for row in conn.execute("PRAGMA quick_check(3)")]
            if problems != ["ok"]:
                raise _Damaged("; ".join(str(problem) for problem in problems))
            self._check_version(conn.execute("PRAGMA user_version").fetchone()[0])
        except sqlite3.DatabaseError as exc:
            if _error_code(exc) in (_SQLITE_CORRUPT, _SQLITE_NOTADB):
                raise _Damaged(str(exc)) from exc
            raise StoreError(_describe(exc, f"open {self.path}")) from exc
        finally:
            conn.close()

    def _check_version(self, version: int) -> None:
        if version > SCHEMA_VERSION:
            raise StoreError(
                f"the conversation database {self.path} was written by a newer LlamaDesk "
                f"(schema {version}; this version knows up to {SCHEMA_VERSION}). Update LlamaDesk to open it."
            )

    def _connect(self) -> sqlite3.Connection:
        self._probe()
        try:
            conn = sqlite3.connect(self.path, timeout=5.0, isolation_level=None, check_same_thread=False)
        except sqlite3.Error as exc:
            raise StoreError(_describe(exc, f"open {self.path}")) from exc
        try:
            conn.execute("PRAGMA foreign_keys = ON")
            mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if mode != "wal":
                log.warning("the conversation database is in %s mode, not WAL", mode)
            conn.execute("PRAGMA synchronous = NORMAL")
            self._migrate(conn)
        except sqlite3.DatabaseError as exc:
            conn.close()
            if _error_code(exc) in (_SQLITE_CORRUPT, _SQLITE_NOTADB):
                raise _Damaged(str(exc)) from exc
            raise StoreError(_describe(exc, f"open {self.path}")) from exc
        except BaseException:
            conn.close()
            raise
        return conn

    def _migrate(self, conn: sqlite3.Connection) -> None:
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        self._check_version(version)
        while version < SCHEMA_VERSION:
            conn.execute("BEGIN IMMEDIATE")
            try:
                version = conn.execute("PRAGMA user_version").fetchone()[
                    0
                ]  # another process may have migrated
                if version < SCHEMA_VERSION:
                    MIGRATIONS[version](conn)
                    version += 1
                    conn.execute(f"PRAGMA user_version = {version}")
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
            log.info("conversation database migrated to schema %d", version)

    def _move_aside(self) -> Path:
        stamp = time.strftime("%Y%m%d-%H%M%S")
        backup = self.path.with_name(f"{self.path.name}.corrupt-{stamp}")
        counter = 1
        while backup.exists():
            backup = self.path.with_name(f"{self.path.name}.corrupt-{stamp}-{counter}")
            counter += 1
        try:
            os.replace(self.path, backup)
            for suffix in ("-wal", "-shm"):
                side = self.path.with_name(self.path.name + suffix)
                if side.exists():
                    os.replace(side, backup.with_name(backup.name + suffix))
        except OSError as exc:
            raise StoreError(
                f"the conversation database {self.path} is damaged and could not be moved aside: "
                f"{exc.strerror or exc}"
            ) from exc
        return backup

    def close(self) -> None:
        """Close the database; safe to call twice."""
        with self._lock:
            if self._conn is not None:
                try:
                    self._conn.execute("PRAGMA optimize")
                except sqlite3.Error:
                    pass
                self._conn.close()
                self._conn = None
            if self._presence is not None:
                self._presence.close()
                self._presence = None

    def __enter__(self) -> ConversationStore:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # -- transactions

    def _open_connection(self) -> sqlite3.Connection:
        if self._conn is None:
            raise StoreError("the conversation store is closed")
        return self._conn

    @contextmanager
    def _read(self, action: str) -> Iterator[sqlite3.Connection]:
        with self._lock:
            conn = self._open_connection()
            try:
                yield conn
            except sqlite3.Error as exc:
                raise StoreError(_describe(exc, action)) from exc

    @contextmanager
    def _write(self, action: str) -> Iterator[sqlite3.Connection]:
        """One transaction (nested calls join the outer one); sqlite errors become StoreError."""
        with self._lock:
            conn = self._open_connection()
            if self._depth:
                self._depth += 1
                try:
                    yield conn
                finally:
                    self._depth -= 1
                return
            try:
                conn.execute("BEGIN IMMEDIATE")
                self._depth = 1
                yield conn
                conn.execute("COMMIT")
            except sqlite3.Error as exc:
                self._rollback(conn)
                raise StoreError(_describe(exc, action)) from exc
            except BaseException:
                self._rollback(conn)
                raise
            finally:
                self._depth = 0

    @staticmethod
    def _rollback(conn: sqlite3.Connection) -> None:
        try:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
        except sqlite3.Error:
            log.exception("rollback failed")

    @contextmanager
    def batch(self) -> Iterator[None]:
        """Group many writes into one commit (imports, benchmarks): all of them or none."""
        with self._write("save the changes"):
            yield

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
        now = time.time()
        with self._write("create the conversation") as conn:
            cursor = conn.execute(
                "INSERT INTO conversations (title, title_custom, created_at, updated_at, model,"
                " system_prompt, settings_json) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (title, int(bool(title)), now, now, model, system_prompt, _dumps(settings_overrides or {})),
            )
            return self._get_conversation(conn, _rowid(cursor))

    def get_conversation(self, conversation_id: int) -> Conversation:
        with self._read("load the conversation") as conn:
            return self._get_conversation(conn, conversation_id)

    def _get_conversation(self, conn: sqlite3.Connection, conversation_id: int) -> Conversation:
        row = conn.execute(
            f"SELECT {_CONVERSATION_COLUMNS} FROM conversations c WHERE c.id = ?", (conversation_id,)
        ).fetchone()
        if row is None:
            raise StoreError(f"conversation {conversation_id} does not exist (it may have been deleted)")
        return _conversation(row)

    def list_conversations(self, *, limit: int | None = None, offset: int = 0) -> list[Conversation]:
        """Pinned first, then the most recently active."""
        with self._read("list the conversations") as conn:
            rows = conn.execute(
                f"SELECT {_CONVERSATION_COLUMNS} FROM conversations c"
                " ORDER BY c.pinned DESC, c.updated_at DESC, c.id DESC LIMIT ? OFFSET ?",
                (-1 if limit is None else limit, offset),
            ).fetchall()
        return [_conversation(row) for row in rows]

    def conversation_position(self, conversation_id: int) -> int:
        """Where the conversation stands (0-based) in the ``list_conversations`` order."""
        with self._read("list the conversations") as conn:
            conversation = self._get_conversation(conn, conversation_id)
            return int(
                conn.execute(
                    "SELECT count(*) FROM conversations c WHERE c.pinned > ? OR (c.pinned = ? AND"
                    " (c.updated_at > ? OR (c.updated_at = ? AND c.id > ?)))",
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
        with self._read("count the conversations") as conn:
            return int(conn.execute("SELECT count(*) FROM conversations").fetchone()[0])

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
                path = self._path(conn, conversation.active_leaf_id)
                first_user = next((message for message in path if message.role == "user"), None)
                title = make_title(first_user.content) if first_user else ""
                custom = False
            else:
                custom = True
            conn.execute(
                "UPDATE conversations SET title = ?, title_custom = ? WHERE id = ?",
                (title, int(custom), conversation_id),
            )
            return self._get_conversation(conn, conversation_id)

    def set_pinned(self, conversation_id: int, pinned: bool) -> None:
        with self._write("pin the conversation") as conn:
            self._get_conversation(conn, conversation_id)
            conn.execute("UPDATE conversations SET pinned = ? WHERE id = ?", (int(pinned), conversation_id))

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
            changes["model"] = model
        if not isinstance(system_prompt, EllipsisType):
            changes["system_prompt"] = system_prompt
        if not isinstance(settings_overrides, EllipsisType):
            changes["settings_json"] = _dumps(settings_overrides or {})
        with self._write("update the conversation") as conn:
            self._get_conversation(conn, conversation_id)
            for column, value in changes.items():
                conn.execute(f"UPDATE conversations SET {column} = ? WHERE id = ?", (value, conversation_id))
            return self._get_conversation(conn, conversation_id)

    def delete_conversation(self, conversation_id: int) -> None:
        with self._write("delete the conversation") as conn:
            if conn.execute("DELETE FROM conversations WHERE id = ?", (conversation_id,)).rowcount == 0:
                raise StoreError(f"conversation {conversation_id} does not exist (it may have been deleted)")

    def delete_all(self) -> None:
        """Delete every conversation, then compact the file so the deleted text is gone from disk."""
        with self._write("delete the conversations") as conn:
            conn.execute("DELETE FROM conversations")
            # The search indexes keep deleted words in their segments until merged; start them afresh.
            conn.execute("INSERT INTO messages_fts(messages_fts) VALUES('delete-all')")
            conn.execute("INSERT INTO conversations_fts(conversations_fts) VALUES('delete-all')")
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
        parent_id: int | EllipsisType | None = ...,
        status: str = "complete",
        model: str | None = None,
        stats: dict[str, Any] | None = None,
    ) -> Message:
        """Commit a message; it becomes the active leaf. ``parent_id`` defaults to the active leaf.

        The first user message of a branch sets the title unless the user renamed the conversation.
        """
        if role not in ROLES:
            raise ValueError(f"unknown role {role!r}")
        if status not in STATUSES:
            raise ValueError(f"unknown status {status!r}")
        with self._write("save the message") as conn:
            conversation = self._get_conversation(conn, conversation_id)
            parent = conversation.active_leaf_id if isinstance(parent_id, EllipsisType) else parent_id
            if parent is not None:
                self._get_message(conn, parent, conversation_id)
            now = time.time()
            cursor = conn.execute(
                "INSERT INTO messages (conversation_id, parent_id, role, content, status, model, stats_json,"
                " created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (conversation_id, parent, role, content, status, model, _dumps(stats), now),
            )
            message_id = _rowid(cursor)
            conn.execute(
                "UPDATE conversations SET active_leaf_id = ?, updated_at = ? WHERE id = ?",
                (message_id, now, conversation_id),
            )
            if (
                role == "user"
                and not conversation.title_is_custom
                and self._first_user_on_branch(conn, parent)
            ):
                title = make_title(content)
                if title:
                    conn.execute("UPDATE conversations SET title = ? WHERE id = ?", (title, conversation_id))
            return self._get_message(conn, message_id)

    def _first_user_on_branch(self, conn: sqlite3.Connection, parent_id: int | None) -> bool:
        while parent_id is not None:
            row = conn.execute("SELECT role, parent_id FROM messages WHERE id = ?", (parent_id,)).fetchone()
            if row is None or row[0] == "user":
                return row is None
            parent_id = row[1]
        return True

    def stream_reply(
        self,
        conversation_id: int,
        *,
        parent_id: int | EllipsisType | None = ...,
        model: str | None = None,
        flush_interval: float = 1.0,
    ) -> StreamingReply:
        """Start an assistant reply, committed at once as empty and 'streaming'.

        A regenerate passes the user message as ``parent_id``: the new reply is a sibling of the old one.
        """
        message = self.add_message(
            conversation_id, "assistant", "", parent_id=parent_id, status="streaming", model=model
        )
        return StreamingReply(self, message, flush_interval=flush_interval)

    def _save_streamed(self, message_id: int, content: str) -> None:
        with self._write("save the reply") as conn:
            cursor = conn.execute("UPDATE messages SET content = ? WHERE id = ?", (content, message_id))
            if cursor.rowcount == 0:
                raise StoreError("the reply could not be saved: its conversation was deleted")

    def _finish_streamed(
        self, message_id: int, content: str, status: str, stats: dict[str, Any] | None
    ) -> Message:
        with self._write("save the reply") as conn:
            cursor = conn.execute(
                "UPDATE messages SET content = ?, status = ?, stats_json = ? WHERE id = ?",
                (content, status, _dumps(stats), message_id),
            )
            if cursor.rowcount == 0:
                raise StoreError("the reply could not be saved: its conversation was deleted")
            message = self._get_message(conn, message_id)
            conn.execute(
                "UPDATE conversations SET updated_at = ? WHERE id = ?", (time.time(), message.conversation_id)
            )
            return message

    def get_message(self, message_id: int) -> Message:
        with self._read("load the message") as conn:
            return self._get_message(conn, message_id)

    def _get_message(
        self, conn: sqlite3.Connection, message_id: int, conversation_id: int | None = None
    ) -> Message:
        row = conn.execute(
            f"SELECT {_MESSAGE_COLUMNS}, {_SIBLING_COLUMNS} FROM messages m WHERE m.id = ?", (message_id,)
        ).fetchone()
        if row is None or (conversation_id is not None and row[1] != conversation_id):
            raise StoreError(f"message {message_id} does not exist (it may have been deleted)")
        return _message(row)

    def active_path(self, conversation_id: int) -> list[Message]:
        """The messages shown: root to active leaf, each with its place among its siblings."""
        with self._read("load the conversation") as conn:
            conversation = self._get_conversation(conn, conversation_id)
            return self._path(conn, conversation.active_leaf_id)

    def _path(self, conn: sqlite3.Connection, leaf_id: int | None) -> list[Message]:
        if leaf_id is None:
            return []
        return [_message(row) for row in conn.execute(_PATH_SQL, (leaf_id,))]

    def chat_messages(self, conversation_id: int, *, up_to: int | None = None) -> list[dict[str, str]]:
        """The prompt for the model: system prompt plus the active path (or the path to ``up_to``).

        Failed replies with no text are left out.
        """
        with self._read("load the conversation") as conn:
            conversation = self._get_conversation(conn, conversation_id)
            if up_to is not None:
                self._get_message(conn, up_to, conversation_id)
            path = self._path(conn, conversation.active_leaf_id if up_to is None else up_to)
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
            message = self._get_message(conn, message_id)
            rows = conn.execute(
                f"SELECT {_MESSAGE_COLUMNS}, {_SIBLING_COLUMNS} FROM messages m"
                " WHERE m.conversation_id = ? AND m.parent_id IS ? ORDER BY m.id",
                (message.conversation_id, message.parent_id),
            ).fetchall()
        return [_message(row) for row in rows]

    def switch_branch(self, message_id: int) -> None:
        """Show this version: the active leaf becomes its most recently created descendant."""
        with self._write("switch the branch") as conn:
            message = self._get_message(conn, message_id)
            leaf = conn.execute(
                _SUBTREE_SQL + "SELECT max(id) FROM subtree", (message_id, message.conversation_id)
            ).fetchone()[0]
            conn.execute(
                "UPDATE conversations SET active_leaf_id = ? WHERE id = ?", (leaf, message.conversation_id)
            )

    def edit_message(self, message_id: int, content: str) -> Message:
        """A new version of the message (a sibling on a new branch, now active); the old one stays."""
        with self._write("save the edited message") as conn:
            original = self._get_message(conn, message_id)
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
            message = self._get_message(conn, message_id)
            conversation = self._get_conversation(conn, message.conversation_id)
            subtree = _SUBTREE_SQL + "SELECT id FROM subtree"
            in_subtree = conn.execute(
                f"SELECT 1 FROM ({subtree}) WHERE id = ?",
                (message_id, message.conversation_id, conversation.active_leaf_id),
            ).fetchone()
            conn.execute(
                f"DELETE FROM messages WHERE id IN ({subtree})", (message_id, message.conversation_id)
            )
            if in_subtree is None:
                return
            sibling = conn.execute(
                "SELECT max(id) FROM messages WHERE conversation_id = ? AND parent_id IS ?",
                (message.conversation_id, message.parent_id),
            ).fetchone()[0]
            leaf = message.parent_id
            if sibling is not None:
                leaf = conn.execute(
                    _SUBTREE_SQL + "SELECT max(id) FROM subtree", (sibling, message.conversation_id)
                ).fetchone()[0]
            conn.execute(
                "UPDATE conversations SET active_leaf_id = ? WHERE id = ?", (leaf, message.conversation_id)
            )

    # -- search

    def search(
        self, query: str, *, limit: int = 50, highlight: tuple[str, str] = ("[", "]")
    ) -> list[SearchHit]:
        """Full-text search over titles and messages (best matches first; titles first).

        The last word matches as a prefix; quotes group a phrase; punctuation is ignored.
        """
        if limit <= 0:
            return []
        terms = [term for term, _ in _search_terms(query) if re.search(r"\w", term) or _needs_substring(term)]
        if any(_needs_substring(term) for term in terms):
            return self._substring_search(terms, limit, highlight)
        match = fts_query(query)
        if match is None:
            return []
        start, end = highlight
        with self._read("search the conversations") as conn:
            try:
                titles = conn.execute(
                    "SELECT c.id, c.title, highlight(conversations_fts, 0, ?, ?) FROM conversations_fts"
                    " JOIN conversations c ON c.id = conversations_fts.rowid"
                    " WHERE conversations_fts MATCH ? ORDER BY rank LIMIT ?",
                    (start, end, match, limit),
                ).fetchall()
                messages = conn.execute(
                    "SELECT m.conversation_id, m.id, c.title, snippet(messages_fts, 0, ?, ?, '…', 16)"
                    " FROM messages_fts JOIN messages m ON m.id = messages_fts.rowid"
                    " JOIN conversations c ON c.id = m.conversation_id"
                    " WHERE messages_fts MATCH ? ORDER BY rank LIMIT ?",
                    (start, end, match, max(0, limit - len(titles))),
                ).fetchall()
            except sqlite3.OperationalError as exc:  # a query FTS5 still refuses finds nothing
                log.warning("search for %r failed: %s", query, exc)
                return []
        hits = [SearchHit(row[0], None, row[1] or DEFAULT_TITLE, row[2]) for row in titles]
        hits += [SearchHit(row[0], row[1], row[2] or DEFAULT_TITLE, row[3]) for row in messages]
        return hits

    def _substring_search(self, terms: list[str], limit: int, highlight: tuple[str, str]) -> list[SearchHit]:
        """Titles and messages holding every term as a substring, most recent first (see ``_UNSPACED``)."""
        patterns = ["%" + re.sub(r"([\\%_])", r"\\\1", term) + "%" for term in terms]
        titles_match = " AND ".join(["c.title LIKE ? ESCAPE '\\'"] * len(terms))
        messages_match = " AND ".join(["m.content LIKE ? ESCAPE '\\'"] * len(terms))
        with self._read("search the conversations") as conn:
            titles = conn.execute(
                f"SELECT c.id, c.title FROM conversations c WHERE {titles_match}"
                " ORDER BY c.updated_at DESC, c.id DESC LIMIT ?",
                (*patterns, limit),
            ).fetchall()
            messages = conn.execute(
                f"SELECT m.conversation_id, m.id, c.title, m.content FROM messages m"
                f" JOIN conversations c ON c.id = m.conversation_id WHERE {messages_match}"
                " ORDER BY c.updated_at DESC, m.id DESC LIMIT ?",
                (*patterns, max(0, limit - len(titles))),
            ).fetchall()
        hits = [
            SearchHit(row[0], None, row[1] or DEFAULT_TITLE, _snippet(row[1], terms, highlight))
            for row in titles
        ]
        hits += [
            SearchHit(row[0], row[1], row[2] or DEFAULT_TITLE, _snippet(row[3], terms, highlight))
            for row in messages
        ]
        return hits

    # -- export and import

    def export_markdown(self, conversation_id: int) -> str:
        """The shown branch as Markdown."""
        with self._read("export the conversation") as conn:
            conversation = self._get_conversation(conn, conversation_id)
            path = self._path(conn, conversation.active_leaf_id)
        return _export.to_markdown(conversation, path)

    def export_json(self, conversation_id: int) -> dict[str, Any]:
        """Everything: OpenAI ``messages`` of the shown branch, metadata, and every branch in ``tree``."""
        with self._read("export the conversation") as conn:
            conversation = self._get_conversation(conn, conversation_id)
            path = self._path(conn, conversation.active_leaf_id)
            rows = conn.execute(
                f"SELECT {_MESSAGE_COLUMNS} FROM messages m WHERE m.conversation_id = ? ORDER BY m.id",
                (conversation_id,),
            ).fetchall()
        return _export.to_json(conversation, [_message(row) for row in rows], path)

    def import_json(self, data: object) -> Conversation:
        """Add a conversation from ``export_json`` output (or a plain OpenAI ``messages`` list)."""
        try:
            parsed = _export.parse_import(data)
        except ValueError as exc:
            raise StoreError(f"this is not a conversation LlamaDesk can import: {exc}") from exc
        now = time.time()
        created = parsed.created_at if parsed.created_at is not None else now
        updated = parsed.updated_at if parsed.updated_at is not None else now
        with self._write("import the conversation") as conn:
            cursor = conn.execute(
                "INSERT INTO conversations (title, title_custom, created_at, updated_at, model,"
                " system_prompt, settings_json, pinned) VALUES ('', 0, ?, ?, ?, ?, ?, ?)",
                (
                    created,
                    updated,
                    parsed.model,
                    parsed.system_prompt,
                    _dumps(parsed.settings_overrides),
                    int(parsed.pinned),
                ),
            )
            conversation_id = _rowid(cursor)
            ids: dict[int, int] = {}
            for node in parsed.messages:
                cursor = conn.execute(
                    "INSERT INTO messages (conversation_id, parent_id, role, content, status, model,"
                    " stats_json, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        conversation_id,
                        None if node.parent is None else ids[node.parent],
                        node.role,
                        node.content,
                        node.status,
                        node.model,
                        _dumps(node.stats),
                        node.created_at if node.created_at is not None else created,
                    ),
                )
                ids[node.key] = _rowid(cursor)
            leaf = None if parsed.active_leaf is None else ids[parsed.active_leaf]
            path = self._path(conn, leaf)
            first_user = next((message for message in path if message.role == "user"), None)
            auto = make_title(first_user.content) if first_user else ""
            title = clean_title(parsed.title or "")
            custom = title not in ("", DEFAULT_TITLE, auto)
            conn.execute(
                "UPDATE conversations SET active_leaf_id = ?, title = ?, title_custom = ? WHERE id = ?",
                (leaf, title if custom else auto, int(custom), conversation_id),
            )
            return self._get_conversation(conn, conversation_id)


def _rowid(cursor: sqlite3.Cursor) -> int:
    rowid = cursor.lastrowid
    assert rowid is not None
    return rowid


__all__ = [
    "MIGRATIONS",
    "SCHEMA_VERSION",
    "TITLE_MAX_LENGTH",
    "Conversation",
    "ConversationStore",
    "Message",
    "SearchHit",
    "StoreError",
    "StreamingReply",
    "fts_query",
    "make_title",
]
