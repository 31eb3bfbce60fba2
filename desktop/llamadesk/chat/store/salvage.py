"""Copying what can still be read from a damaged database into a fresh one, conversation by conversation.

One bad page should not cost every conversation. The damaged file is only read (``mode=ro``);
each conversation is found through every source that still answers (the table, its indexes),
read row by row where a block of rows fails, and written to the new database in its own
transaction. Links to messages that could not be read are dropped: their children become roots.
"""

from __future__ import annotations

import logging
import os
import shutil
import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..records import make_title

log = logging.getLogger(__name__)

_CONVERSATION = (
    "id, title, title_custom, created_at, updated_at, model, system_prompt, settings_json, pinned,"
    " active_leaf_id"
)
_MESSAGE = "id, conversation_id, parent_id, role, content, status, model, stats_json, created_at"
_CHUNK = 500


@dataclass
class SalvageReport:
    """What a salvage got back: conversations copied, and what could not be read."""

    recovered: int = 0
    untitled: int = 0  # recovered from their messages alone: their own row (title, settings) was lost
    unreadable: int = 0  # conversations found (an index names them) of which nothing could be read
    incomplete: int = 0  # recovered conversations that miss messages
    lost_messages: int = 0
    failure: str | None = None  # why nothing at all could be read

    def sentence(self) -> str:
        """The part of the store's warning that says what was recovered."""
        if self.recovered == 0 and self.unreadable == 0:
            reason = f" ({self.failure})" if self.failure else ""
            return f"No conversation could be recovered from it{reason}; a new, empty database was started."
        verb = "was" if self.recovered == 1 else "were"
        text = f"{_plural(self.recovered, 'conversation')} {verb} recovered into a new database"
        if self.untitled:
            text += f" ({self.untitled} without their title and settings)"
        missing = []
        if self.unreadable:
            missing.append(_plural(self.unreadable, "conversation"))
        if self.lost_messages:
            missing.append(
                f"{_plural(self.lost_messages, 'message')} in {_plural(self.incomplete, 'conversation')}"
            )
        return text + ("; " + " and ".join(missing) + " could not be read" if missing else "") + "."


def _plural(number: int, noun: str) -> str:
    return f"{number} {noun if number == 1 else noun + 's'}"


class _Reader:
    """Reads a damaged file, keeping every row that comes back before a query fails."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn
        self._by_table: dict[int, list[int]] | None = None

    def rows(self, sql: str, params: tuple[Any, ...] = ()) -> tuple[list[tuple[Any, ...]], bool]:
        """The rows read and whether the query ran to the end."""
        rows: list[tuple[Any, ...]] = []
        try:
            for row in self.conn.execute(sql, params):
                rows.append(row)
        except sqlite3.Error:
            return rows, False
        return rows, True

    def conversation_ids(self) -> list[int]:
        ids: set[int] = set()
        for sql in (
            "SELECT id FROM conversations NOT INDEXED",
            "SELECT id FROM conversations INDEXED BY conversations_by_recency",
            "SELECT DISTINCT conversation_id FROM messages INDEXED BY messages_by_parent",
        ):
            ids.update(row[0] for row in self.rows(sql)[0] if isinstance(row[0], int))
        return sorted(ids)

    def message_ids(self, conversation_id: int) -> list[int]:
        rows, complete = self.rows(
            "SELECT id FROM messages INDEXED BY messages_by_parent WHERE conversation_id = ?",
            (conversation_id,),
        )
        ids = {row[0] for row in rows}
        if not complete:
            ids.update(self._scan_table().get(conversation_id, []))
        return sorted(ids)

    def _scan_table(self) -> dict[int, list[int]]:
        """Message ids by conversation from the table itself, block by block of ids (when an index fails)."""
        if self._by_table is None:
            self._by_table = {}
            top, _ = self.rows("SELECT max(id) FROM messages NOT INDEXED")
            last = top[0][0] if top and isinstance(top[0][0], int) else 0
            for start in range(0, last + 1, _CHUNK):
                for row in self._block("id, conversation_id", start, range(start, start + _CHUNK)):
                    self._by_table.setdefault(row[1], []).append(row[0])
        return self._by_table

    def _block(self, columns: str, start: int, ids: Iterable[int]) -> list[tuple[Any, ...]]:
        rows, complete = self.rows(
            f"SELECT {columns} FROM messages NOT INDEXED WHERE id >= ? AND id < ?", (start, start + _CHUNK)
        )
        if complete:
            return rows
        rows = []
        for message_id in ids:  # one row at a time: only the rows on the bad page are lost
            row, _ = self.rows(f"SELECT {columns} FROM messages NOT INDEXED WHERE id = ?", (message_id,))
            rows += row
        return rows

    def messages(self, ids: list[int]) -> list[tuple[Any, ...]]:
        found: list[tuple[Any, ...]] = []
        for index in range(0, len(ids), _CHUNK):
            chunk = ids[index : index + _CHUNK]
            marks = ",".join("?" * len(chunk))
            rows, complete = self.rows(
                f"SELECT {_MESSAGE} FROM messages NOT INDEXED WHERE id IN ({marks})", tuple(chunk)
            )
            if not complete:
                rows = []
                for message_id in chunk:
                    rows += self.rows(
                        f"SELECT {_MESSAGE} FROM messages NOT INDEXED WHERE id = ?", (message_id,)
                    )[0]
            found += rows
        return found


def _thinking_rows(reader: _Reader, ids: list[int]) -> list[tuple[int, str]]:
    """The thinking of replies that have one (none from a file older than the column, or where it fails)."""
    found: list[tuple[int, str]] = []
    for index in range(0, len(ids), _CHUNK):
        chunk = ids[index : index + _CHUNK]
        rows, _ = reader.rows(
            f"SELECT id, thinking FROM messages NOT INDEXED WHERE thinking != '' AND id IN"
            f" ({','.join('?' * len(chunk))})",
            tuple(chunk),
        )
        found += [(row[0], row[1]) for row in rows if isinstance(row[1], str)]
    return found


def salvage(source: Path, target: sqlite3.Connection) -> SalvageReport:
    """Copy every conversation that can be read from ``source`` (opened read-only) into ``target``."""
    report = SalvageReport()
    readable = _padded_copy(source) or source
    try:
        conn = sqlite3.connect(readable.resolve().as_uri() + "?mode=ro", uri=True, check_same_thread=False)
    except sqlite3.Error as exc:
        report.failure = str(exc)
        _remove_copy(source, readable)
        return report
    try:
        reader = _Reader(conn)
        ids = reader.conversation_ids()
        if not ids and not reader.rows("SELECT count(*) FROM sqlite_master")[1]:
            report.failure = "the file is not a readable SQLite database"
        for conversation_id in ids:
            _salvage_one(reader, target, conversation_id, report)
    finally:
        conn.close()
        _remove_copy(source, readable)
    log.info(
        "salvaged %d conversations from %s (%d unreadable, %d messages lost)",
        report.recovered,
        source,
        report.unreadable,
        report.lost_messages,
    )
    return report


def _padded_copy(source: Path) -> Path | None:
    """A copy of a file cut short (its header counts more pages than it has), padded to its full size.

    SQLite refuses to read any of a database whose tables start past the end of the file; padded
    with pages of 0xFF bytes, which SQLite reports as damaged wherever one is used (a zero page
    would read as an empty end of a long text), everything before the cut can be read again.
    None when the file is whole, or so short that nearly nothing is left.
    """
    try:
        with open(source, "rb") as file:
            header = file.read(100)
        size = source.stat().st_size
    except OSError:
        return None
    if len(header) < 100 or not header.startswith(b"SQLite format 3\x00"):
        return None
    page_size = int.from_bytes(header[16:18], "big")
    page_size = 65536 if page_size == 1 else page_size
    pages = int.from_bytes(header[28:32], "big")
    counted = header[24:28] == header[92:96]  # SQLite trusts the page count only then
    missing = pages * page_size - size
    if not counted or not 0 < missing <= 4 * size + 2**20:
        return None
    copy = source.with_name(source.name + ".salvage")
    try:
        shutil.copyfile(source, copy)
        with open(copy, "ab") as file:
            while missing > 0:
                piece = min(missing, 2**20)
                file.write(b"\xff" * piece)
                missing -= piece
        wal = source.with_name(source.name + "-wal")
        if wal.exists():
            shutil.copyfile(wal, copy.with_name(copy.name + "-wal"))
    except OSError as exc:
        log.info("could not make a padded copy of %s: %s", source, exc)
        _remove_copy(source, copy)
        return None
    return copy


def _remove_copy(source: Path, copy: Path) -> None:
    if copy == source:
        return
    for suffix in ("", "-wal", "-shm"):
        try:
            os.remove(copy.with_name(copy.name + suffix))
        except OSError:
            pass


def _salvage_one(
    reader: _Reader, target: sqlite3.Connection, conversation_id: int, report: SalvageReport
) -> None:
    rows, _ = reader.rows(
        f"SELECT {_CONVERSATION} FROM conversations NOT INDEXED WHERE id = ?", (conversation_id,)
    )
    importing, _ = reader.rows(
        "SELECT importing FROM conversations NOT INDEXED WHERE id = ?", (conversation_id,)
    )
    if importing and importing[0][0]:
        return  # an import that was cut short: the file it came from still has it
    wanted = reader.message_ids(conversation_id)
    messages = sorted(row for row in reader.messages(wanted) if row[1] == conversation_id)
    if not rows and not messages:
        report.unreadable += 1
        return
    if rows:
        conversation = list(rows[0])
    else:  # its own row is lost: rebuild it from its messages, titled by the first user message
        first, last = min(row[8] for row in messages), max(row[8] for row in messages)
        conversation = [conversation_id, "", 0, first, last, None, None, "{}", 0, None]
    kept: set[int] = set()
    try:
        target.execute("BEGIN IMMEDIATE")
        target.execute(
            f"INSERT INTO conversations ({_CONVERSATION}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, NULL)",
            conversation[:9],
        )
        for message in messages:
            values = list(message)
            if values[2] not in kept:  # a parent that is lost, damaged or out of order
                values[2] = None
            if values[5] == "streaming":
                values[5] = "interrupted"
            target.execute(f"INSERT INTO messages ({_MESSAGE}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", values)
            kept.add(values[0])
        for message_id, thinking in _thinking_rows(reader, sorted(kept)):
            target.execute("UPDATE messages SET thinking = ? WHERE id = ?", (thinking, message_id))
        leaf = conversation[9] if conversation[9] in kept else max(kept, default=None)
        title = conversation[1]
        if not title and not conversation[2]:
            title = next((make_title(row[4]) for row in messages if row[3] == "user"), "")
        target.execute(
            "UPDATE conversations SET active_leaf_id = ?, title = ? WHERE id = ?",
            (leaf, title, conversation_id),
        )
        target.execute("COMMIT")
    except sqlite3.Error as exc:  # a value the new schema refuses: count the conversation as unreadable
        if target.in_transaction:
            target.execute("ROLLBACK")
        log.info("could not recover conversation %d: %s", conversation_id, exc)
        report.unreadable += 1
        return
    report.recovered += 1
    report.untitled += 0 if rows else 1
    lost = len(wanted) - len(messages)
    if lost:
        report.incomplete += 1
        report.lost_messages += lost
