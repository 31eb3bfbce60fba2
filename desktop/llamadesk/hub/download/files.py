"""Where a download's bytes live on disk: ``<file>.part``, its ``.source.json`` record, free space.

A file is written to ``<file>.part`` and moved into place once verified; a JSON record next
to it (the "sidecar") says which repository, commit and hash it came from, so the library can
list it and a later run can resume it.
"""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from ... import safejson
from ...files import read_regular_bytes

log = logging.getLogger(__name__)

SIDECAR_SUFFIX = ".source.json"
PART_SUFFIX = ".part"
LOCK_SUFFIX = ".lock"
CHUNK_SIZE = 1 << 20
MAX_SIDECAR_BYTES = 1 << 20  # a record LlamaDesk writes is under 1 KB (a split model's lists a few more)

FreeSpace = Callable[[Path], int]
OpenPart = Callable[[Path, int], BinaryIO]


def format_size(size: float) -> str:
    """A byte count as people read it: "950 MB", "4.1 GB"."""
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(size) < 1000 or unit == "TB":
            if unit == "B":
                return f"{int(size)} B"
            return f"{size:.1f} {unit}" if abs(size) < 100 else f"{size:.0f} {unit}"
        size /= 1000
    return f"{size:.1f} TB"  # pragma: no cover


def default_free_space(path: Path) -> int:
    """Free bytes on the disk holding ``path`` (or its nearest existing parent)."""
    probe = Path(path)
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    return shutil.disk_usage(probe).free


def open_part_file(path: Path, offset: int) -> BinaryIO:
    """Open ``path`` for writing at ``offset``, dropping anything after it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle = path.open("r+b" if path.exists() else "wb")
    handle.seek(offset)
    handle.truncate()
    return handle


def repo_folder_name(repo_id: str) -> str:
    """``owner/name`` -> ``owner__name``: one folder per repository under the models folder."""
    return repo_id.replace("/", "__")


def sidecar_path(path: Path) -> Path:
    """The source record of ``path``: ``<path>.source.json``."""
    return path.with_name(path.name + SIDECAR_SUFFIX)


def read_sidecar_text(path: Path) -> str | None:
    """The text of the source record next to ``path``; None when missing, odd or unreadable.

    A named pipe, device or folder with the record's name is never opened (a pipe would block).
    """
    try:
        return read_regular_bytes(sidecar_path(path), limit=MAX_SIDECAR_BYTES).decode("utf-8")
    except (OSError, UnicodeDecodeError):
        return None


def read_sidecar(path: Path) -> dict[str, object] | None:
    """The source record written next to a downloaded file, if any (None when missing or unreadable)."""
    text = read_sidecar_text(path)
    try:
        data = safejson.loads(text) if text is not None else None
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


def flush_to_disk(path: Path) -> None:
    """fsync a verified file before it is moved into place, so a power cut can't leave a hollow model."""
    try:
        with path.open("rb+") as handle:
            os.fsync(handle.fileno())
    except OSError as exc:
        log.info("could not flush %s to disk: %s", path.name, exc.strerror or exc)


def nearest_existing(folder: Path) -> Path:
    """``folder`` or its nearest existing parent: the disk its free space is counted on."""
    probe = folder
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    return probe
