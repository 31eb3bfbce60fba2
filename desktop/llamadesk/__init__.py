"""LlamaDesk: chat with local GGUF models, offline.

``__version__`` is looked up on first use: reading the installed package's metadata imports
``importlib.metadata`` and the email parser (about 30 ms), which a command-line chat never needs.
"""

from __future__ import annotations

from typing import Any

__all__ = ["__version__"]

_version: str | None = None


def _installed_version() -> str:
    from importlib import metadata

    try:
        return metadata.version("llamadesk")
    except metadata.PackageNotFoundError:  # running from a source tree without install
        return "0.0.0+source"


def __getattr__(name: str) -> Any:
    global _version
    if name == "__version__":
        if _version is None:
            _version = _installed_version()
        return _version
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
