"""Copying a model into the models folder for ``ModelLibrary.import_model(copy=True)``.

Each part is copied to a ``.part`` file, synced and renamed, so a crash or a cancel never
leaves a half file that looks whole; a source that changes size while it is copied is
refused. Sources are opened as model files only (regular files, never blocking).
"""

from __future__ import annotations

import os
import shutil
import threading
from collections.abc import Callable
from pathlib import Path

from ..engine.errors import ModelFileError
from ..engine.gguf_reader import open_model_file
from .download.files import PART_SUFFIX
from .errors import HubError
from .library_files import parts_of, regular_stat
from .quant import display_name

IMPORTED_FOLDER = "imported"


def copy_in(
    source: Path,
    models_dir: Path,
    free_space: Callable[[Path], int],
    progress: Callable[[int, int], None] | None = None,
    cancel: threading.Event | None = None,
) -> Path:
    """Copy ``source`` (every part of a split model) into ``models_dir/imported/<name>/``; the new path."""
    parts = parts_of(source)
    sizes: dict[Path, int] = {}
    for part in parts:
        status = regular_stat(part)
        if status is None:
            raise HubError(f"Can't import {source.name}: {part.name} is missing.", kind="library")
        sizes[part] = status.st_size
    total = sum(sizes.values())
    folder = models_dir / IMPORTED_FOLDER / display_name(source.name)
    suffix = 2
    while folder.exists():
        folder = folder.with_name(f"{display_name(source.name)}-{suffix}")
        suffix += 1
    free = free_space(folder)
    if total > free:
        from .download import format_size

        raise HubError(
            f"Not enough space: needs {format_size(total)}, have {format_size(free)} free in "
            f"{models_dir}. Free some space, or import the file in place instead of copying it.",
            kind="disk",
        )
    try:  # never exist_ok: the folder removed on failure must be one this import made
        folder.mkdir(parents=True)
    except OSError as exc:
        raise HubError(
            f"Can't copy {source.name} into {folder.parent}: {exc.strerror or exc}", kind="disk"
        ) from exc
    try:
        done = 0
        for part in parts:
            done = _copy_part(part, folder / part.name, sizes[part], done, total, progress, cancel)
    except (HubError, ModelFileError, OSError) as exc:
        shutil.rmtree(folder, ignore_errors=True)
        if isinstance(exc, HubError):
            raise
        if isinstance(exc, ModelFileError):
            raise HubError(f"Can't import {source.name}: {exc}", kind="library") from exc
        raise HubError(f"Can't copy {source.name}: {exc.strerror or exc}", kind="disk") from exc
    return folder / source.name


def _copy_part(
    part: Path,
    target: Path,
    size: int,
    done: int,
    total: int,
    progress: Callable[[int, int], None] | None,
    cancel: threading.Event | None,
) -> int:
    """Copy one file through a ``.part`` file; the bytes done so far, this part included."""
    temp = target.with_name(target.name + PART_SUFFIX)
    src, _ = open_model_file(part)
    with src, temp.open("wb") as dst:
        while chunk := src.read(8 << 20):
            if cancel is not None and cancel.is_set():
                raise HubError("Import cancelled.", kind="cancelled")
            dst.write(chunk)
            done += len(chunk)
            if progress is not None:
                progress(done, total)
        dst.flush()
        os.fsync(dst.fileno())
    copied, current = regular_stat(temp), regular_stat(part)
    if copied is None or current is None or not copied.st_size == current.st_size == size:
        raise HubError(
            f"Can't import {part.name}: the file changed while it was being copied. Try again.",
            kind="library",
        )
    os.replace(temp, target)
    return done
