"""Opening SQLite files that several threads or processes may create at the same moment."""

from __future__ import annotations

import sqlite3
import time

__all__ = ["use_wal"]


def use_wal(conn: sqlite3.Connection, wait_s: float = 30.0) -> str:
    """Switch ``conn``'s database to WAL and return the journal mode now in use.

    The switch on a brand-new file answers "database is locked" at once, without SQLite's busy wait,
    while another connection makes the same switch: try again for a while before giving up.
    """
    deadline = time.monotonic() + wait_s
    delay = 0.005
    while True:
        try:
            return str(conn.execute("PRAGMA journal_mode=WAL").fetchone()[0])
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
        time.sleep(delay)
        delay = min(delay * 2, 0.2)
