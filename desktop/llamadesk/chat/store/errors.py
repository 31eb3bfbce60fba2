"""The store's error type, readable sentences for SQLite failures, and checks on numbers from outside."""

from __future__ import annotations

import sqlite3

from ...errors import LlamaDeskError

# SQLite primary result codes (the sqlite3.SQLITE_* names exist from Python 3.11 only).
SQLITE_BUSY = 5
SQLITE_LOCKED = 6
SQLITE_READONLY = 8
SQLITE_CORRUPT = 11
SQLITE_FULL = 13
SQLITE_CANTOPEN = 14
SQLITE_NOTADB = 26

# SQLite stores integers in 64 bits: a larger Python int cannot even be passed to a query.
MAX_INTEGER = 2**63 - 1


class StoreError(LlamaDeskError):
    """A conversation could not be read or saved; the message says why."""


class Damaged(Exception):
    """The database file is not a readable SQLite database (internal)."""


def error_code(exc: sqlite3.Error) -> int | None:
    """SQLite's primary result code for ``exc``, from the exception or, failing that, its text."""
    code = getattr(exc, "sqlite_errorcode", None)
    if isinstance(code, int):
        return code & 0xFF
    text = str(exc).lower()
    for needle, value in (
        ("disk is full", SQLITE_FULL),
        ("malformed", SQLITE_CORRUPT),
        ("not a database", SQLITE_NOTADB),
        ("readonly", SQLITE_READONLY),
        ("is locked", SQLITE_BUSY),
    ):
        if needle in text:
            return value
    return None


def is_damage(exc: sqlite3.Error) -> bool:
    """True when ``exc`` says the file is damaged or not a database at all."""
    return error_code(exc) in (SQLITE_CORRUPT, SQLITE_NOTADB)


def describe(exc: sqlite3.Error, action: str) -> str:
    """A sentence for the user about a failed database operation."""
    code = error_code(exc)
    if code == SQLITE_FULL:
        return f"the disk is full: could not {action}. Free some space and try again."
    if code == SQLITE_READONLY:
        return f"the conversation database is read-only: could not {action}"
    if code in (SQLITE_BUSY, SQLITE_LOCKED):
        return f"the conversation database is busy (another program is using it): could not {action}"
    if code in (SQLITE_CORRUPT, SQLITE_NOTADB):
        return (
            f"the conversation database is damaged ({exc}): could not {action}. "
            "Restart LlamaDesk to set it aside and recover what can be read."
        )
    if "no such module: fts5" in str(exc):
        return f"could not {action}: this Python's SQLite library has no full-text search (FTS5)"
    if code == SQLITE_CANTOPEN:
        return f"could not {action}: the database file cannot be opened ({exc})"
    return f"could not {action}: {exc}"


def check_id(value: object, what: str) -> int:
    """An id from outside (a command line, a file): one SQLite can hold, or "<what> N does not exist"."""
    if not isinstance(value, int) or isinstance(value, bool) or not 0 < value <= MAX_INTEGER:
        raise StoreError(f"{what} {value} does not exist (it may have been deleted)")
    return value


def check_count(value: object, what: str) -> int:
    """A limit or offset from outside: 0 or more; one past SQLite's range means "all of them"."""
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise StoreError(f"the {what} must be a whole number, 0 or more, not {value!r}")
    return min(value, MAX_INTEGER)
