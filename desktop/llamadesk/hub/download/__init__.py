"""Download model files from the Hub: resumable, cancellable, verified, one or two at a time.

huggingface_hub's ``hf_hub_download`` cannot be cancelled, does not resume across runs and
checks sizes only, so this package keeps its URL helper and adds its own HTTP Range loop.
A file is written to ``<file>.part``, checked as it arrives (SHA-256 for LFS files, the git
blob SHA-1 for the others, its size, and the GGUF magic for models) and moved into place
only once it passes; a split model is installed all parts or none. Threads only, no Qt:
the interface wraps the callbacks in signals.

Modules: ``files`` (.part files and their records), ``lock`` (one writer per file),
``transport`` (HTTP, redirects, headers), ``progress``, ``part`` (checks), ``transfer`` and
``install`` (the two halves of a task), ``task``, ``downloader`` and ``queue``. Names are
imported on first use, so ``llamadesk.hub.download.files`` (the names of .part files and
records) can be read without loading huggingface_hub.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .downloader import Downloader
    from .files import (
        CHUNK_SIZE,
        LOCK_SUFFIX,
        PART_SUFFIX,
        SIDECAR_SUFFIX,
        FreeSpace,
        OpenPart,
        default_free_space,
        format_size,
        open_part_file,
        read_sidecar,
        repo_folder_name,
        sidecar_path,
    )
    from .progress import DownloadProgress, DownloadState, ProgressCallback
    from .queue import DownloadQueue
    from .task import DownloadTask

_WHERE = {
    "Downloader": "downloader",
    "CHUNK_SIZE": "files",
    "LOCK_SUFFIX": "files",
    "PART_SUFFIX": "files",
    "SIDECAR_SUFFIX": "files",
    "FreeSpace": "files",
    "OpenPart": "files",
    "default_free_space": "files",
    "format_size": "files",
    "open_part_file": "files",
    "read_sidecar": "files",
    "repo_folder_name": "files",
    "sidecar_path": "files",
    "DownloadProgress": "progress",
    "DownloadState": "progress",
    "ProgressCallback": "progress",
    "DownloadQueue": "queue",
    "DownloadTask": "task",
}

__all__ = [
    "CHUNK_SIZE",
    "LOCK_SUFFIX",
    "PART_SUFFIX",
    "SIDECAR_SUFFIX",
    "DownloadProgress",
    "DownloadQueue",
    "DownloadState",
    "DownloadTask",
    "Downloader",
    "FreeSpace",
    "OpenPart",
    "ProgressCallback",
    "default_free_space",
    "format_size",
    "open_part_file",
    "read_sidecar",
    "repo_folder_name",
    "sidecar_path",
]


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)
