"""Finding the library's model files on disk without reading them.

Everything here costs directory listings and ``stat`` calls only: the models folder
(downloads, partial downloads, copied imports), the Hugging Face cache's snapshots, the
download sidecars and ``library.json``. Only regular files count as models: a named pipe
or device called ``x.gguf`` is passed over (opening one would block). Everything read from
disk is treated as untrusted: JSON goes through ``safejson`` and odd values are dropped.
"""

from __future__ import annotations

import contextlib
import glob
import logging
import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from .. import safejson
from ..files import NotARegularFileError, read_regular_bytes
from .download.files import read_sidecar as read_source_record
from .errors import valid_repo_id
from .quant import SPLIT_RE, split_part

log = logging.getLogger(__name__)


MAX_LIBRARY_BYTES = 16 << 20


def regular_stat(path: Path | str) -> os.stat_result | None:
    """``stat`` of a regular file (following links), None for anything else or an error."""
    try:
        status = os.stat(path)
    except (OSError, ValueError):
        return None
    return status if stat.S_ISREG(status.st_mode) else None


def is_inside(path: Path | str, folder: Path | str) -> bool:
    """True if ``path``'s folder, links resolved, is ``folder`` or below it."""
    real_folder = os.path.realpath(folder)
    parent = os.path.realpath(os.path.dirname(os.path.abspath(path)))
    return parent == real_folder or parent.startswith(real_folder.rstrip(os.sep) + os.sep)


def parts_of(path: Path) -> list[Path]:
    """All files of the model whose first file is ``path`` (just ``path`` unless split)."""
    part = split_part(path.name)
    if part is None:
        return [path]
    return [path.with_name(f"{part.stem}-{i:05d}-of-{part.count:05d}.gguf") for i in range(1, part.count + 1)]


def split_glob(final: Path) -> str:
    """A glob for every part of the split model ``final`` belongs to (or just its name)."""
    match = SPLIT_RE.match(final.name if final.name.endswith(".gguf") else final.name + ".gguf")
    if not match:
        return glob.escape(final.name)
    return f"{glob.escape(match['stem'])}-?????-of-{match['count']}.gguf"


def mtime_of(status: os.stat_result | None) -> datetime | None:
    return datetime.fromtimestamp(status.st_mtime, tz=timezone.utc) if status is not None else None


def parse_date(value: object) -> datetime | None:
    if not isinstance(value, str) or len(value) > 64:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


def read_sidecar(path: Path) -> dict[str, Any]:
    """The download's source record next to ``path``; empty when missing, odd or damaged."""
    return read_source_record(path) or {}


def _text(value: object) -> str | None:
    """``value`` if it is text that can be sent and saved (no lone surrogate from a "\\ud800"); else None."""
    if not isinstance(value, str):
        return None
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return None
    return value


def origin(record: dict[str, Any]) -> dict[str, Any]:
    """LibraryModel fields from a download's sidecar record (nothing when there is none)."""
    fields: dict[str, Any] = {}
    if valid_repo_id(record.get("repo_id")):
        fields["repo_id"] = record["repo_id"]
    if _text(record.get("revision")) is not None:
        fields["revision"] = record["revision"]
    parts = record.get("parts")
    if isinstance(parts, list) and all(_text(p) is not None for p in parts):
        fields["repo_files"] = tuple(parts)
    return fields


# -- library.json ------------------------------------------------------------------------------


@dataclass(frozen=True)
class ImportRecord:
    """One import remembered in ``library.json``."""

    path: Path
    copied: bool
    added: datetime | None
    raw: dict[str, Any]  # the record as saved, written back unchanged


def load_imports(file: Path) -> tuple[list[ImportRecord], str | None]:
    """The imports in ``library.json`` and, if it could not be read, why (missing is fine)."""
    try:
        data = safejson.loads(read_regular_bytes(file, limit=MAX_LIBRARY_BYTES))
    except FileNotFoundError:
        if file.is_symlink():
            return [], f"The model library file {file} is not a regular file; imported models are hidden."
        return [], None
    except NotARegularFileError:
        return [], f"The model library file {file} is not a regular file; imported models are hidden."
    except (OSError, ValueError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
        return [], f"The model library file {file} could not be read ({reason}); imported models are hidden."
    items = data.get("imports") if isinstance(data, dict) else None
    if not isinstance(items, list):
        return [], None
    records = []
    for item in items:
        if not isinstance(item, dict):
            continue
        path = item.get("path")
        if not isinstance(path, str) or not path or "\0" in path or not os.path.isabs(path):
            continue
        if not _encodable(path):  # a lone surrogate (an escaped "\ud800" in the JSON) names no file at all
            continue
        copied = item.get("copied") is True
        records.append(ImportRecord(Path(path), copied, parse_date(item.get("added")), item))
    return records, None


def _encodable(path: str) -> bool:
    """True when ``path`` can be given to the operating system (``os.fsencode`` accepts it)."""
    try:
        os.fsencode(path)
    except UnicodeEncodeError:
        return False
    return True


# -- the models folder -------------------------------------------------------------------------


@dataclass(frozen=True)
class FoundFile:
    """A model file found on disk, with its ``stat`` (the first part's for a split model)."""

    path: Path
    status: os.stat_result


def walk_models(root: Path) -> Iterator[FoundFile]:
    """Regular files under ``root`` (symlinked folders not followed), in path order."""
    found: list[FoundFile] = []
    pending = [str(root)]
    while pending:
        folder = pending.pop()
        try:
            with os.scandir(folder) as entries:
                for entry in entries:
                    try:
                        if entry.is_dir(follow_symlinks=False):
                            pending.append(entry.path)
                        elif entry.is_file():
                            found.append(FoundFile(Path(entry.path), entry.stat()))
                    except OSError:
                        continue
        except OSError:
            continue
    found.sort(key=lambda f: f.path)
    yield from found


def real_path_in(root_real: str, root: Path, found: FoundFile) -> str:
    """The resolved path of a file found by ``walk_models`` (cheap unless it is a link)."""
    if found.path.is_symlink():
        return os.path.realpath(found.path)
    return os.path.join(root_real, os.path.relpath(found.path, root))


# -- the Hugging Face cache ---------------------------------------------------------------------


@dataclass(frozen=True)
class CachedFile:
    """The newest revision of one GGUF file in the Hugging Face cache."""

    repo_id: str
    relative: str  # path inside the repo
    commit: str
    path: Path  # the snapshot's link to the blob
    modified: float


def hf_cache_files(cache: Path) -> list[CachedFile]:
    """GGUF files in a Hugging Face cache (model repos, newest revision of each), by repo and path.

    Walks ``models--*/snapshots/<commit>/`` and ``stat``s the ``.gguf`` names only, instead of
    huggingface_hub's full cache scan, which reads every file of every repo.
    """
    newest: dict[tuple[str, str], CachedFile] = {}
    for repo_dir in _subfolders(cache):
        if not repo_dir.name.startswith("models--"):
            continue
        repo_id = repo_dir.name[len("models--") :].replace("--", "/")
        by_revision: dict[str, list[tuple[str, Path, float]]] = {}
        for snapshot in _subfolders(repo_dir / "snapshots"):
            for dirpath, dirnames, filenames in os.walk(snapshot):
                dirnames.sort()
                for name in sorted(filenames):
                    if not name.lower().endswith(".gguf"):
                        continue
                    file = Path(dirpath, name)
                    status = regular_stat(file)
                    if status is None:
                        continue
                    relative = file.relative_to(snapshot).as_posix()
                    by_revision.setdefault(snapshot.name, []).append((relative, file, status.st_mtime))
        for commit, files in by_revision.items():
            modified = max(mtime for _, _, mtime in files)
            for relative, file, _ in files:
                part = split_part(relative)
                if part is not None and part.index != 1:
                    continue
                key = (repo_id, relative)
                if key not in newest or newest[key].modified < modified:
                    newest[key] = CachedFile(repo_id, relative, commit, file, modified)
    return [newest[key] for key in sorted(newest)]


def _subfolders(folder: Path) -> list[Path]:
    with contextlib.suppress(OSError), os.scandir(folder) as entries:
        return sorted(Path(e.path) for e in entries if _is_dir(e))
    return []


def _is_dir(entry: os.DirEntry[str]) -> bool:
    try:
        return entry.is_dir(follow_symlinks=False)
    except OSError:
        return False
