"""The Hugging Face Hub catalog, the downloader and the local model library (no Qt).

Names are imported on first use, so the command line (loaded by every start) does not pay
for huggingface_hub until a hub command runs.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .catalog import FilePart, HubCatalog, ModelFile, RepoFiles, RepoSummary, SearchPage
    from .download import (
        Downloader,
        DownloadProgress,
        DownloadQueue,
        DownloadState,
        DownloadTask,
        format_size,
    )
    from .errors import HubError
    from .library import LibraryModel, ModelLibrary
    from .quant import bits_per_weight, describe_quantization, file_kind, parse_quantization

_WHERE = {
    "FilePart": "catalog",
    "HubCatalog": "catalog",
    "ModelFile": "catalog",
    "RepoFiles": "catalog",
    "RepoSummary": "catalog",
    "SearchPage": "catalog",
    "Downloader": "download",
    "DownloadProgress": "download",
    "DownloadQueue": "download",
    "DownloadState": "download",
    "DownloadTask": "download",
    "format_size": "download",
    "HubError": "errors",
    "LibraryModel": "library",
    "ModelLibrary": "library",
    "bits_per_weight": "quant",
    "describe_quantization": "quant",
    "file_kind": "quant",
    "parse_quantization": "quant",
}

__all__ = [
    "DownloadProgress",
    "DownloadQueue",
    "DownloadState",
    "DownloadTask",
    "Downloader",
    "FilePart",
    "HubCatalog",
    "HubError",
    "LibraryModel",
    "ModelFile",
    "ModelLibrary",
    "RepoFiles",
    "RepoSummary",
    "SearchPage",
    "bits_per_weight",
    "describe_quantization",
    "file_kind",
    "format_size",
    "parse_quantization",
]


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)
