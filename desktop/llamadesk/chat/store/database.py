"""Opening the conversation database: checks, migrations, damage, other processes, transactions.

One file in the data dir, in WAL mode with foreign keys on. ``synchronous=NORMAL`` in WAL mode
loses nothing when the process crashes or is killed; a power cut may lose the last commits but
never corrupts the file. One connection (``check_same_thread=False``) guarded by a lock makes
the store safe to share between threads; writes are tiny, so the GUI thread may call it directly.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import stat
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from ...sqlite_wal import use_wal
from .errors import SQLITE_BUSY, SQLITE_LOCKED, Damaged, StoreError, describe, error_code, is_damage
from .events import Listener, Listeners
from .salvage import salvage
from .schema import MIGRATIONS, SCHEMA_VERSION
from .tree import damaged_conversations

log = logging.getLogger(__name__)

# Far beyond any schema LlamaDesk will have: a version past this was not written by LlamaDesk.
_PLAUSIBLE_VERSION = 1000


class Database:
    """The connection, its transactions and its listeners; ``ConversationStore`` adds the operations.

    A damaged file is never overwritten: it is moved aside (``conversations.sqlite3.corrupt-<time>``
    with its -wal/-shm), what can be read is copied into a new database and ``warning`` says how
    much. Replies left 'streaming' by a crash become 'interrupted' on open (``interrupted_count``
    says how many), unless another process (a second window, ``llamadesk chat``) has the database
    open: its replies may be streaming right now, so they are left for the next open that finds
    itself alone. Every failure a user can meet raises ``StoreError``.
    """

    def __init__(self, path: Path | str, *, recover_interrupted: bool = True) -> None:
        self.path = Path(path)
        self.warning: str | None = None
        self.backup_path: Path | None = None
        self.interrupted_count = 0
        self.recovered_count = 0
        self._lock = threading.RLock()
        self._depth = 0
        self._conn: sqlite3.Connection | None = None
        self._presence: sqlite3.Connection | None = None
        self._listeners = Listeners()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(
                f"could not create the folder {self.path.parent}: {exc.strerror or exc}"
            ) from exc
        try:
            self._conn = self._connect()
        except Damaged as exc:
            self._start_over(str(exc))
        alone = self._announce_presence()
        try:
            self._check_chains()
            if recover_interrupted and not alone:
                log.info(
                    "another process has the conversation database open: "
                    "streaming replies are left as they are"
                )
            if recover_interrupted and alone:
                self._recover()
        except BaseException:
            self.close()
            raise

    # -- opening and closing

    def _start_over(self, reason: str) -> None:
        """Move the damaged file aside, start a new database and copy into it what can be read."""
        self.backup_path = self._move_aside()
        try:
            self._conn = self._connect()
        except Damaged as again:
            raise StoreError(f"could not start a new conversation database: {again}") from again
        report = salvage(self.backup_path, self._conn)
        self.recovered_count = report.recovered
        # Given to the caller to show once (a dialog, stderr); only logged at info level here.
        self.warning = (
            f"Your conversation database could not be read ({' '.join(reason.split())}). It was set aside as "
            f"{self.backup_path.name}. {report.sentence()}"
        )
        log.info("%s", self.warning)

    def _check_chains(self) -> None:
        """Warn about conversations whose message links were damaged into a loop (read-only)."""
        with self._read("check the conversations") as conn:
            damaged = damaged_conversations(conn)
        if damaged:
            shown = ", ".join(str(number) for number in damaged[:10]) + ("…" if len(damaged) > 10 else "")
            note = (
                f"The message chain of {len(damaged)} conversation(s) is damaged ({shown}): "
                "LlamaDesk shows each from the first message it can follow."
            )
            log.info("%s", note)
            self.warning = f"{self.warning} {note}" if self.warning else note

    def _recover(self) -> None:
        """Mark replies a crash cut short as interrupted and drop imports a crash cut short."""
        with self._write("recover interrupted replies") as conn:
            cursor = conn.execute("UPDATE messages SET status = 'interrupted' WHERE status = 'streaming'")
            self.interrupted_count = cursor.rowcount
            conn.execute("DELETE FROM conversations WHERE importing != 0")

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
                if error_code(exc) not in (SQLITE_BUSY, SQLITE_LOCKED):
                    raise
                alone = False
            # Another store may be in the middle of the same exclusive test: wait for the shared lock
            # rather than take "busy" for "no one else is here" (which would recover its live replies).
            conn.execute("PRAGMA busy_timeout = 5000")
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
            status = self.path.stat()
        except FileNotFoundError:
            return
        except OSError as exc:
            raise StoreError(f"could not open {self.path}: {exc.strerror or exc}") from exc
        if not stat.S_ISREG(status.st_mode):  # SQLite would say only "disk I/O error"
            what = "a folder" if stat.S_ISDIR(status.st_mode) else "not a regular file (a pipe or a device)"
            raise StoreError(
                f"{self.path} is {what}, not a conversation database: move it elsewhere and start "
                "LlamaDesk again to create a new one."
            )
        if status.st_size == 0:
            return
        try:
            conn = sqlite3.connect(
                self.path.resolve().as_uri() + "?mode=ro", uri=True, timeout=5.0, check_same_thread=False
            )
        except sqlite3.Error as exc:
            raise StoreError(describe(exc, f"open {self.path}")) from exc
        try:
            problems = [row[0] for row in conn.execute("PRAGMA quick_check(3)")]
            if problems != ["ok"]:
                raise Damaged("; ".join(str(problem) for problem in problems))
            self._check_version(conn.execute("PRAGMA user_version").fetchone()[0])
        except sqlite3.DatabaseError as exc:
            if is_damage(exc):
                raise Damaged(str(exc)) from exc
            raise StoreError(describe(exc, f"open {self.path}")) from exc
        finally:
            conn.close()

    def _check_version(self, version: int) -> None:
        if version < 0 or version > _PLAUSIBLE_VERSION:
            raise StoreError(
                f"{self.path} has schema version {version}, which no LlamaDesk writes: it is not a "
                "LlamaDesk conversation database, or it was changed by another program. "
                "Move it elsewhere and restart LlamaDesk to start a new one."
            )
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
            raise StoreError(describe(exc, f"open {self.path}")) from exc
        try:
            conn.execute("PRAGMA foreign_keys = ON")
            mode = use_wal(conn, wait_s=5.0)
            if mode != "wal":
                log.warning("the conversation database is in %s mode, not WAL", mode)
            conn.execute("PRAGMA synchronous = NORMAL")
            conn.execute("PRAGMA analysis_limit = 1000")  # keeps PRAGMA optimize quick on a large file
            self._migrate(conn)
        except sqlite3.DatabaseError as exc:
            conn.close()
            if is_damage(exc):
                raise Damaged(str(exc)) from exc
            raise StoreError(describe(exc, f"open {self.path}")) from exc
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
                # another process may have migrated meanwhile
                version = conn.execute("PRAGMA user_version").fetchone()[0]
                self._check_version(version)
                if version < SCHEMA_VERSION:
                    try:
                        MIGRATIONS[version](conn)
                    except sqlite3.OperationalError as exc:  # tables that do not match the version
                        raise StoreError(
                            f"the conversation database {self.path} does not match its schema version "
                            f"{version} ({exc}): it was changed by another program. Move it elsewhere "
                            "and restart LlamaDesk to start a new one."
                        ) from exc
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

    # -- listeners

    def subscribe(self, callback: Listener) -> Callable[[], None]:
        """Call ``callback(StoreEvent)`` after every committed change; returns the unsubscribe function.

        Callbacks run on the thread that wrote, after the commit; within ``batch()`` they run once,
        when the batch ends. A callback that raises is logged and changes nothing.
        """
        return self._listeners.subscribe(callback)

    def _notify(self, conversation_id: int | None, kind: str) -> None:
        """Tell listeners about this change once the transaction in progress commits."""
        self._listeners.add(conversation_id, kind)

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
                raise StoreError(describe(exc, action)) from exc

    @contextmanager
    def _write(self, action: str) -> Iterator[sqlite3.Connection]:
        """One transaction (nested calls join the outer one); sqlite errors become StoreError.

        The events it collected go to the listeners after the commit, outside the lock.
        """
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
                events = self._listeners.take()
            except sqlite3.Error as exc:
                self._rollback(conn)
                raise StoreError(describe(exc, action)) from exc
            except BaseException:
                self._rollback(conn)
                raise
            finally:
                self._depth = 0
        self._listeners.fire(events)

    def _rollback(self, conn: sqlite3.Connection) -> None:
        self._listeners.discard()
        try:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
        except sqlite3.Error:
            log.exception("rollback failed")

    @contextmanager
    def batch(self) -> Iterator[None]:
        """Group many writes into one commit (imports, benchmarks): all of them or none.

        Listeners hear about the batch once, when it commits.
        """
        with self._write("save the changes"):
            yield
