"""Reading an import file and writing an imported conversation in steps, hidden until it is whole.

A large import commits every ``IMPORT_BATCH`` messages, so the write lock is never held for
long (another window can keep saving replies); the conversation stays hidden (``importing``)
until the last step, and an import cut short by a crash is removed the next time the store opens.
"""

from __future__ import annotations

import codecs
import logging
import time
from pathlib import Path
from typing import BinaryIO

from ... import safejson
from ...files import FileTooLargeError, NotARegularFileError, read_regular_bytes
from ..export import ImportedConversation
from ..records import DEFAULT_TITLE, clean_title, make_title
from .database import Database
from .documents import insert_sources
from .errors import StoreError
from .schema import dumps, rowid

log = logging.getLogger(__name__)

IMPORT_BATCH = 2000
MAX_IMPORT_BYTES = 512 << 20  # 300,000 messages are about 60 MB; parsing takes several times the size


def read_import_file(path: Path) -> object:
    """The JSON in an import file; StoreError says why a file cannot be read.

    UTF-8 with or without a byte-order mark, or UTF-16 with one (what Windows PowerShell writes).
    A named pipe, device or folder is refused without being opened, a file over
    ``MAX_IMPORT_BYTES`` without being read.
    """
    try:
        data = read_regular_bytes(Path(path), limit=MAX_IMPORT_BYTES)
    except FileTooLargeError as exc:
        raise StoreError(
            f"{path} is larger than {MAX_IMPORT_BYTES >> 20} MB: LlamaDesk imports one conversation at a time"
        ) from exc
    except NotARegularFileError as exc:
        raise StoreError(f"could not read {path}: {exc.strerror}") from exc
    except OSError as exc:
        raise StoreError(f"could not read {path}: {exc.strerror or exc}") from exc
    return parse_import_bytes(data, str(path))


def read_import_stream(stream: BinaryIO, source: str = "standard input") -> object:
    """The JSON in an import read from ``stream`` (a pipe); StoreError past ``MAX_IMPORT_BYTES``.

    At most one byte more than the limit is read, so ``yes | llamadesk conversations import -``
    ends with a message instead of filling the memory.
    """
    data = stream.read(MAX_IMPORT_BYTES + 1)
    if len(data) > MAX_IMPORT_BYTES:
        raise StoreError(
            f"{source} holds more than {MAX_IMPORT_BYTES >> 20} MB: "
            "LlamaDesk imports one conversation at a time"
        )
    return parse_import_bytes(bytes(data), source)


def parse_import_bytes(data: bytes, source: str) -> object:
    """The JSON in ``data`` (an import file's bytes, or standard input); ``source`` names it in errors."""
    encoding = "utf-8"
    if data.startswith(codecs.BOM_UTF8):
        data = data[len(codecs.BOM_UTF8) :]
    elif data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        encoding = "utf-16"
    try:
        text = data.decode(encoding)
    except UnicodeDecodeError as exc:
        raise StoreError(
            f"{source} is not UTF-8 text (byte {exc.start + 1} cannot be read): "
            "save it as UTF-8 and import it again"
        ) from exc
    if not text.strip():
        raise StoreError(f"{source} is empty: there is no conversation to import")
    try:
        return safejson.loads(text)
    except ValueError as exc:
        raise StoreError(f"{source} is not valid JSON: {exc}") from exc


def write_import(db: Database, parsed: ImportedConversation) -> int:
    """Add ``parsed`` as a new conversation, committing in steps; returns its id.

    Listeners hear "all" once it is complete; on failure the part written is removed again.
    """
    now = time.time()
    created = parsed.created_at if parsed.created_at is not None else now
    updated = parsed.updated_at if parsed.updated_at is not None else now
    with db._write("import the conversation") as conn:
        cursor = conn.execute(
            "INSERT INTO conversations (title, title_custom, created_at, updated_at, model,"
            " system_prompt, settings_json, pinned, importing) VALUES ('', 0, ?, ?, ?, ?, ?, ?, 1)",
            (
                created,
                updated,
                parsed.model,
                parsed.system_prompt,
                dumps(parsed.settings_overrides),
                int(parsed.pinned),
            ),
        )
        conversation_id = rowid(cursor)
    try:
        ids: dict[int, int] = {}
        for start in range(0, len(parsed.messages), IMPORT_BATCH):
            with db._write("import the conversation") as conn:
                for node in parsed.messages[start : start + IMPORT_BATCH]:
                    cursor = conn.execute(
                        "INSERT INTO messages (conversation_id, parent_id, role, content, status, model,"
                        " stats_json, created_at, thinking) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                        (
                            conversation_id,
                            None if node.parent is None else ids[node.parent],
                            node.role,
                            node.content,
                            node.status,
                            node.model,
                            dumps(node.stats),
                            node.created_at if node.created_at is not None else created,
                            node.thinking,
                        ),
                    )
                    ids[node.key] = rowid(cursor)
                    if node.sources is not None:  # the context and passages the question was sent with
                        insert_sources(conn, ids[node.key], node.sources)
        auto = _automatic_title(parsed)
        title = clean_title(parsed.title or "")
        custom = title not in ("", DEFAULT_TITLE, auto)
        with db._write("import the conversation") as conn:
            leaf = None if parsed.active_leaf is None else ids[parsed.active_leaf]
            conn.execute(
                "UPDATE conversations SET active_leaf_id = ?, title = ?, title_custom = ?, importing = 0"
                " WHERE id = ?",
                (leaf, title if custom else auto, int(custom), conversation_id),
            )
            db._notify(None, "all")
    except BaseException:
        _remove_partial(db, conversation_id)
        raise
    return conversation_id


def _automatic_title(parsed: ImportedConversation) -> str:
    """The title the first user message of the shown branch gives, found in the file, not the database."""
    nodes = {node.key: node for node in parsed.messages}
    first_user = ""
    key = parsed.active_leaf
    while key is not None:  # the parser lets a message name only an earlier one as parent: no loops
        node = nodes[key]
        if node.role == "user":
            first_user = node.content
        key = node.parent
    return make_title(first_user)


def _remove_partial(db: Database, conversation_id: int) -> None:
    try:
        with db._write("remove the unfinished import") as conn:
            conn.execute("DELETE FROM conversations WHERE id = ? AND importing != 0", (conversation_id,))
    except StoreError as exc:  # it stays hidden and goes when the store next opens alone
        log.warning("could not remove an unfinished import: %s", exc)
