"""``DocumentIndex``: named collections of files in their own SQLite file, searched by words and vectors.

Each file is read, chunked and written in one transaction of its own, so a crash or a kill in
the middle of indexing leaves every file either fully indexed or untouched. Re-adding a path or
``refresh`` compares size and modification time, then the content hash, and re-reads only what
changed; files that are gone leave the index. Every thread gets its own connection (WAL lets
one thread index while others search); writes in one process are serialized by a lock.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import sqlite3
import stat
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from .chunking import chunk_blocks
from .extract import Unreadable, extract
from .schema import connect, migrate
from .search import fts_query, fuse, to_blob, top_indices
from .types import (
    CollectionInfo,
    DocsError,
    Embedder,
    FileInfo,
    IndexProgress,
    IndexReport,
    Passage,
    SkippedFile,
)
from .walk import NOT_REGULAR, NotRegularFile, normalize, read_regular, storable, under, walk

__all__ = ["FILE_NAME", "MAX_FILE_BYTES", "DocumentIndex"]

log = logging.getLogger(__name__)

FILE_NAME = "documents.sqlite3"
MAX_FILE_BYTES = 200 * 1024 * 1024  # larger files are skipped: a 1 GB log is not a document
MAX_NAME_LENGTH = 64
MAX_RESULTS = 1000  # the most passages one search returns, whatever ``k`` asks for
CANDIDATES = 50  # passages each ranking contributes before fusion
EMBED_BATCH = 32
_NAME = re.compile(r"[^\W_][\w .'()+&-]*", re.UNICODE)

Progress = Callable[[IndexProgress], None]
Counter = Callable[[str], int]


def quoted(name: object) -> str:
    """``name`` quoted for a message, cut short: a name can be as long as the user typed or pasted."""
    text = repr(name)
    return text if len(text) <= 80 else text[:77] + "..."


def _check_name(name: str) -> str:
    if not isinstance(name, str) or not name or len(name) > MAX_NAME_LENGTH or not _NAME.fullmatch(name):
        raise DocsError(
            f"{quoted(name)} is not a valid collection name: use 1 to {MAX_NAME_LENGTH} letters, digits, "
            "spaces or . ' ( ) + & - _, starting with a letter or digit."
        )
    return name


class DocumentIndex:
    """Collections of indexed files in the SQLite file ``path`` (created when missing)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._local = threading.local()
        self._connections: list[sqlite3.Connection] = []
        self._guard = threading.Lock()  # the connection list and the vector cache
        self._write = threading.RLock()  # one writer at a time in this process
        self._closed = False
        self._generation = 0  # bumped by every write here; other processes show in data_version
        self._vector_cache: dict[tuple[Any, ...], tuple[list[int], Any]] = {}
        migrate(self._conn(), self.path)

    @classmethod
    def in_folder(cls, data_dir: Path) -> DocumentIndex:
        """The index kept in ``data_dir`` (the app's data folder)."""
        return cls(Path(data_dir) / FILE_NAME)

    # -- connections

    def _conn(self) -> sqlite3.Connection:
        if self._closed:
            raise DocsError("The documents index is closed.")
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = connect(self.path)
            with self._guard:
                self._connections.append(conn)
            self._local.conn = conn
        return conn

    def _transaction(self, work: Callable[[sqlite3.Connection], Any]) -> Any:
        with self._write:
            conn = self._conn()
            try:
                conn.execute("BEGIN IMMEDIATE")
                try:
                    result = work(conn)
                    conn.execute("COMMIT")
                except BaseException:
                    conn.execute("ROLLBACK")
                    raise
            except sqlite3.Error as exc:
                raise DocsError(f"The documents index could not be written: {exc}") from exc
            self._generation += 1
            return result

    def _query(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        try:
            return self._conn().execute(sql, params).fetchall()
        except sqlite3.Error as exc:
            raise DocsError(f"The documents index could not be read: {exc}") from exc

    def close(self) -> None:
        """Close every connection; later calls raise ``DocsError``."""
        with self._guard:
            self._closed = True
            connections, self._connections = self._connections, []
            self._vector_cache.clear()
        for conn in connections:
            try:
                conn.close()
            except sqlite3.Error:  # pragma: no cover - closing never fails in practice
                log.warning("closing a documents connection failed", exc_info=True)

    def __enter__(self) -> DocumentIndex:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- collections

    def _collection_id(self, name: str) -> int:
        rows = self._query("SELECT id FROM collections WHERE name = ?", (name,))
        if not rows:
            raise DocsError(f"There is no document collection named {quoted(name)}.")
        return int(rows[0][0])

    def collections(self) -> list[CollectionInfo]:
        """Every collection with its counts of indexed files, chunks and skipped files, by name."""
        rows = self._query(
            """SELECT c.name,
                      (SELECT COUNT(*) FROM files f WHERE f.collection_id = c.id AND f.status = 'indexed'),
                      (SELECT COUNT(*) FROM chunks k JOIN files f ON f.id = k.file_id
                        WHERE f.collection_id = c.id),
                      (SELECT COUNT(*) FROM files f WHERE f.collection_id = c.id AND f.status = 'skipped')
               FROM collections c ORDER BY c.name COLLATE NOCASE, c.name"""
        )
        return [CollectionInfo(str(n), int(f), int(k), int(s)) for n, f, k, s in rows]

    def create(self, name: str) -> None:
        """Create an empty collection; nothing happens if it exists."""
        _check_name(name)
        self._transaction(
            lambda conn: conn.execute(
                "INSERT OR IGNORE INTO collections (name, created) VALUES (?, ?)", (name, time.time())
            )
        )

    def remove(self, name: str) -> None:
        """Forget a collection and everything indexed in it (the files themselves are untouched)."""
        collection = self._collection_id(name)

        def work(conn: sqlite3.Connection) -> None:
            conn.execute(
                "DELETE FROM chunks WHERE file_id IN (SELECT id FROM files WHERE collection_id = ?)",
                (collection,),
            )
            conn.execute("DELETE FROM collections WHERE id = ?", (collection,))

        self._transaction(work)

    def files(self, name: str) -> list[FileInfo]:
        """The collection's files, indexed and skipped, by path."""
        collection = self._collection_id(name)
        rows = self._query(
            """SELECT f.path, f.size, f.mtime, f.status, f.reason,
                      (SELECT COUNT(*) FROM chunks k WHERE k.file_id = f.id)
               FROM files f WHERE f.collection_id = ? ORDER BY f.path""",
            (collection,),
        )
        return [FileInfo(str(p), int(s), float(m), int(k), str(st), str(r)) for p, s, m, st, r, k in rows]

    def sources(self, name: str) -> list[str]:
        """The files and folders added to the collection (what ``refresh`` checks again)."""
        collection = self._collection_id(name)
        rows = self._query("SELECT path FROM sources WHERE collection_id = ? ORDER BY path", (collection,))
        return [str(r[0]) for r in rows]

    # -- indexing

    def add(
        self,
        name: str,
        paths: Sequence[Path],
        *,
        progress: Progress | None = None,
        cancel: threading.Event | None = None,
        count_tokens: Counter | None = None,
        embedder: Embedder | None = None,
    ) -> IndexReport:
        """Index files and folders into ``name`` (created if missing); unchanged files are not re-read."""
        self.create(name)
        collection = self._collection_id(name)
        roots = list(dict.fromkeys(normalize(p) for p in paths))
        present = [r for r in roots if storable(r) and os.path.lexists(r)]
        self._transaction(
            lambda conn: conn.executemany(
                "INSERT OR IGNORE INTO sources (collection_id, path) VALUES (?, ?)",
                [(collection, r) for r in present],
            )
        )
        return self._sync(collection, roots, progress, cancel, count_tokens, embedder)

    def refresh(
        self,
        name: str,
        *,
        progress: Progress | None = None,
        cancel: threading.Event | None = None,
        count_tokens: Counter | None = None,
        embedder: Embedder | None = None,
    ) -> IndexReport:
        """Check every file and folder added before: index new and changed files, drop deleted ones."""
        collection = self._collection_id(name)
        return self._sync(collection, self.sources(name), progress, cancel, count_tokens, embedder)

    def _sync(
        self,
        collection: int,
        roots: list[str],
        progress: Progress | None,
        cancel: threading.Event | None,
        count_tokens: Counter | None,
        embedder: Embedder | None,
    ) -> IndexReport:
        report = IndexReport()
        found = walk(roots, cancel)
        if found.cancelled:
            report.cancelled = True
            return report
        rows = self._query(
            "SELECT path, id, size, mtime, sha256, status FROM files WHERE collection_id = ?", (collection,)
        )
        existing = {str(r[0]): r[1:] for r in rows}
        seen = set(found.files) | {s.path for s in found.skipped}
        gone = [p for p in existing if p not in seen and any(under(p, r) for r in roots)]
        report.removed = sum(1 for p in gone if existing[p][4] == "indexed")

        def forget(conn: sqlite3.Connection) -> None:
            for path in gone:
                conn.execute("DELETE FROM chunks WHERE file_id = ?", (existing[path][0],))
                conn.execute("DELETE FROM files WHERE id = ?", (existing[path][0],))
            for missing in found.missing:
                conn.execute(
                    "DELETE FROM sources WHERE collection_id = ? AND path = ?", (collection, missing)
                )

        if gone or found.missing:
            self._transaction(forget)

        def skip_all(conn: sqlite3.Connection) -> None:
            for skipped in found.skipped:
                self._skip_row(conn, collection, skipped.path, 0, 0.0, skipped.reason)

        if found.skipped:
            self._transaction(skip_all)
        report.skipped.extend(found.skipped)
        report.skipped.extend(SkippedFile(p, "not found") for p in found.missing)

        total = len(found.files)
        for done, path in enumerate(found.files):
            if cancel is not None and cancel.is_set():
                report.cancelled = True
                break
            if progress is not None:
                progress(IndexProgress(done, total, path))
            if not self._query("SELECT 1 FROM collections WHERE id = ?", (collection,)):
                report.cancelled = True  # the collection was removed meanwhile (another thread)
                break
            outcome = self._index_file(collection, path, existing.get(path), count_tokens, embedder)
            if isinstance(outcome, SkippedFile):
                report.skipped.append(outcome)
            elif outcome == "added":
                report.added += 1
            elif outcome == "updated":
                report.updated += 1
            else:
                report.unchanged += 1
        else:
            if progress is not None:
                progress(IndexProgress(total, total, ""))
        return report

    def _skip(self, collection: int, path: str, size: int, mtime: float, reason: str) -> SkippedFile:
        self._transaction(lambda conn: self._skip_row(conn, collection, path, size, mtime, reason))
        return SkippedFile(path, reason)

    @staticmethod
    def _skip_row(
        conn: sqlite3.Connection, collection: int, path: str, size: int, mtime: float, reason: str
    ) -> None:
        """List ``path`` as skipped with ``reason``; passages it had before leave the index.

        A path that cannot be stored as text (see ``storable``) is only reported, not listed."""
        if not storable(path):
            return
        row = conn.execute(
            "SELECT id FROM files WHERE collection_id = ? AND path = ?", (collection, path)
        ).fetchone()
        if row is not None:
            conn.execute("DELETE FROM chunks WHERE file_id = ?", (row[0],))
        conn.execute(
            """INSERT INTO files (collection_id, path, size, mtime, sha256, title, status, reason)
               VALUES (?, ?, ?, ?, '', ?, 'skipped', ?)
               ON CONFLICT (collection_id, path) DO UPDATE SET size = excluded.size,
               mtime = excluded.mtime, sha256 = '', status = 'skipped', reason = excluded.reason""",
            (collection, path, size, mtime, os.path.basename(path), reason),
        )

    def _index_file(
        self,
        collection: int,
        path: str,
        row: tuple[Any, ...] | None,
        count_tokens: Counter | None,
        embedder: Embedder | None,
    ) -> str | SkippedFile:
        """Index one file in one transaction: "added", "updated", "unchanged" or why it was skipped."""
        was_indexed = row is not None and row[4] == "indexed"
        try:
            st = os.stat(path)
        except OSError as exc:
            return self._skip(collection, path, 0, 0.0, f"not readable ({exc.strerror or exc})")
        size, mtime = int(st.st_size), float(st.st_mtime)
        if not stat.S_ISREG(st.st_mode):  # replaced by a pipe or a device since the walk
            return self._skip(collection, path, 0, mtime, NOT_REGULAR)
        if was_indexed and row is not None and row[1] == size and row[2] == mtime:
            self._backfill(row[0], embedder)
            return "unchanged"
        if size > MAX_FILE_BYTES:
            return self._skip(
                collection, path, size, mtime,
                f"too large ({size / 2**20:,.0f} MB; the limit is {MAX_FILE_BYTES >> 20} MB)",
            )  # fmt: skip
        try:
            data = read_regular(path, MAX_FILE_BYTES + 1)
        except NotRegularFile:
            return self._skip(collection, path, 0, mtime, NOT_REGULAR)
        except PermissionError:
            return self._skip(collection, path, size, mtime, "not readable (permission denied)")
        except OSError as exc:
            return self._skip(collection, path, size, mtime, f"not readable ({exc.strerror or exc})")
        digest = hashlib.sha256(data).hexdigest()
        if was_indexed and row is not None and row[3] == digest:
            self._transaction(
                lambda conn: conn.execute(
                    "UPDATE files SET size = ?, mtime = ? WHERE id = ?", (size, mtime, row[0])
                )
            )
            self._backfill(row[0], embedder)
            return "unchanged"
        try:
            document = extract(Path(path), data)
        except Unreadable as exc:
            return self._skip(collection, path, size, mtime, str(exc))
        del data
        chunks = chunk_blocks(document.blocks, count_tokens)
        headings = [f"{document.title} {c.location}".strip() for c in chunks]
        vectors = self._embed(embedder, [f"{h}\n{c.text}" for h, c in zip(headings, chunks, strict=True)])

        def work(conn: sqlite3.Connection) -> None:
            if row is not None:
                conn.execute("DELETE FROM chunks WHERE file_id = ?", (row[0],))
            file_id = conn.execute(
                """INSERT INTO files (collection_id, path, size, mtime, sha256, title, status, reason)
                   VALUES (?, ?, ?, ?, ?, ?, 'indexed', '')
                   ON CONFLICT (collection_id, path) DO UPDATE SET size = excluded.size,
                   mtime = excluded.mtime, sha256 = excluded.sha256, title = excluded.title,
                   status = 'indexed', reason = '' RETURNING id""",
                (collection, path, size, mtime, digest, document.title),
            ).fetchone()[0]
            for seq, (chunk, heading) in enumerate(zip(chunks, headings, strict=True)):
                chunk_id = conn.execute(
                    """INSERT INTO chunks (file_id, seq, location, heading, text, tokens)
                       VALUES (?, ?, ?, ?, ?, ?)""",
                    (file_id, seq, chunk.location, heading, chunk.text, chunk.tokens),
                ).lastrowid
                if vectors is not None and embedder is not None:
                    conn.execute(
                        "INSERT INTO vectors (chunk_id, model, data) VALUES (?, ?, ?)",
                        (chunk_id, embedder.name, vectors[seq]),
                    )

        self._transaction(work)
        return "updated" if was_indexed else "added"

    def _embed(self, embedder: Embedder | None, texts: list[str]) -> list[bytes] | None:
        if embedder is None:
            return None
        blobs: list[bytes] = []
        for start in range(0, len(texts), EMBED_BATCH):
            batch = texts[start : start + EMBED_BATCH]
            vectors = embedder.embed(batch)
            if len(vectors) != len(batch) or any(len(v) != embedder.dim for v in vectors):
                raise DocsError(f"The embedding model {embedder.name} returned vectors of the wrong size.")
            blobs.extend(to_blob(v) for v in vectors)
        return blobs

    def _backfill(self, file_id: int, embedder: Embedder | None) -> None:
        """Give an unchanged file's chunks vectors from ``embedder`` if they have none yet."""
        if embedder is None:
            return
        rows = self._query(
            """SELECT k.id, k.heading, k.text FROM chunks k WHERE k.file_id = ? AND NOT EXISTS
               (SELECT 1 FROM vectors v WHERE v.chunk_id = k.id AND v.model = ?) ORDER BY k.seq""",
            (file_id, embedder.name),
        )
        if not rows:
            return
        blobs = self._embed(embedder, [f"{h}\n{t}" for _, h, t in rows]) or []
        self._transaction(
            lambda conn: conn.executemany(
                "INSERT OR REPLACE INTO vectors (chunk_id, model, data) VALUES (?, ?, ?)",
                [(r[0], embedder.name, b) for r, b in zip(rows, blobs, strict=True)],
            )
        )

    # -- search

    def search(
        self, names: Sequence[str], query: str, *, k: int = 5, embedder: Embedder | None = None
    ) -> list[Passage]:
        """The ``k`` passages of the collections ``names`` that best answer ``query``, best first.

        Always by words (FTS5, BM25); with ``embedder``, also by cosine similarity over the stored
        vectors of that model, the two rankings fused by reciprocal rank.
        """
        ids = [self._collection_id(n) for n in dict.fromkeys(names)]
        if not ids or k < 1:
            return []
        k = min(k, MAX_RESULTS)
        depth = max(CANDIDATES, k)
        lexical = self._lexical(ids, query, depth)
        if embedder is None:
            ranked = [(chunk, score) for chunk, score in lexical]
        else:
            semantic = self._semantic(ids, query, depth, embedder)
            ranked = fuse([[c for c, _ in lexical], [c for c, _ in semantic]])
        passages = []
        for chunk_id, score in ranked[:k]:
            passage = self._passage(chunk_id, score)
            if passage is not None:
                passages.append(passage)
        return passages

    def _lexical(self, ids: list[int], query: str, depth: int) -> list[tuple[int, float]]:
        expression = fts_query(query)
        if not expression:
            return []
        marks = ",".join("?" * len(ids))
        rows = self._query(
            f"""SELECT chunks_fts.rowid, bm25(chunks_fts, 1.0, 2.0) AS rank FROM chunks_fts
                JOIN chunks k ON k.id = chunks_fts.rowid JOIN files f ON f.id = k.file_id
                WHERE chunks_fts MATCH ? AND f.collection_id IN ({marks})
                ORDER BY rank LIMIT ?""",
            (expression, *ids, depth),
        )
        return [(int(r[0]), -float(r[1])) for r in rows]

    def _semantic(
        self, ids: list[int], query: str, depth: int, embedder: Embedder
    ) -> list[tuple[int, float]]:
        import numpy as np

        chunk_ids, matrix = self._vectors(ids, embedder)
        if not chunk_ids or not query.strip():
            return []
        vector = embedder.embed([query])[0]
        q = np.frombuffer(to_blob(vector), dtype=np.float32)
        if q.shape[0] != matrix.shape[1]:
            raise DocsError(f"The embedding model {embedder.name} returned a query vector of the wrong size.")
        scores = matrix @ q
        return [(chunk_ids[i], float(scores[i])) for i in top_indices(scores, depth)]

    def _vectors(self, ids: list[int], embedder: Embedder) -> tuple[list[int], Any]:
        """The stored vectors of ``embedder`` in the collections ``ids`` as one matrix (cached)."""
        import numpy as np

        conn = self._conn()
        version = conn.execute("PRAGMA data_version").fetchone()[0]
        key = (embedder.name, embedder.dim, tuple(sorted(ids)), id(conn), version, self._generation)
        with self._guard:
            cached = self._vector_cache.get(key)
        if cached is not None:
            return cached
        marks = ",".join("?" * len(ids))
        rows = self._query(
            f"""SELECT v.chunk_id, v.data FROM vectors v JOIN chunks k ON k.id = v.chunk_id
                JOIN files f ON f.id = k.file_id WHERE v.model = ? AND f.collection_id IN ({marks})""",
            (embedder.name, *ids),
        )
        size = 4 * embedder.dim
        rows = [r for r in rows if len(r[1]) == size]
        matrix = np.frombuffer(b"".join(r[1] for r in rows), dtype=np.float32).reshape(
            len(rows), embedder.dim
        )
        result = ([int(r[0]) for r in rows], matrix)
        with self._guard:
            self._vector_cache.clear()
            self._vector_cache[key] = result
        return result

    def passage(self, chunk_id: int) -> Passage | None:
        """The passage with this id (as cited in a stored message), or None if it left the index."""
        return self._passage(chunk_id, 0.0)

    def _passage(self, chunk_id: int, score: float) -> Passage | None:
        rows = self._query(
            """SELECT k.id, c.name, f.path, f.title, k.location, k.text FROM chunks k
               JOIN files f ON f.id = k.file_id JOIN collections c ON c.id = f.collection_id
               WHERE k.id = ?""",
            (chunk_id,),
        )
        if not rows:
            return None
        i, collection, path, title, location, text = rows[0]
        return Passage(int(i), str(collection), str(path), str(title), str(location), str(text), score)
