"""The one place that imports llama_cpp: lazily, with its log routed to Python logging.

Importing llama_cpp costs time at start-up, so nothing imports it until a model is
needed. llama.cpp's own log goes through ``llama_log_set`` into the ``llama.cpp``
logger; we pass ``verbose=False`` to ``Llama`` for its Python-side prints but neutralise
its stdout/stderr fd redirection, which would hide load errors and other threads' output.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import threading
from collections import deque
from collections.abc import Callable, Iterator
from types import ModuleType
from typing import Any

log = logging.getLogger("llama.cpp")

_lock = threading.Lock()
_module: ModuleType | None = None
_callback_ref: Any = None
_recent: deque[str] = deque(maxlen=40)
_partial: list[str] = []
# ggml.h: NONE=0, DEBUG=1, INFO=2, WARN=3, ERROR=4, CONT=5 (continues the previous line).
_LEVELS = {0: logging.DEBUG, 1: logging.DEBUG, 2: logging.INFO, 3: logging.WARNING, 4: logging.ERROR}
_last_level = logging.DEBUG
# Set while a stop the user asked for aborts llama.cpp mid-decode: the errors it then logs
# ("llama_decode: failed to decode, ret = 2") are the stop working, not a failure.
_stopping = False


def set_stopping(value: bool) -> None:
    global _stopping
    _stopping = value


class _NoRedirect:
    """Stands in for llama_cpp's suppress_stdout_stderr: leaves the process's fds alone."""

    def __init__(self, disable: bool = True) -> None:
        self.disable = disable

    def __enter__(self) -> _NoRedirect:
        return self

    def __exit__(self, *exc: object) -> None:
        return None


def _on_log(level: int, text: bytes, _user_data: Any) -> None:
    global _last_level
    try:
        message = text.decode("utf-8", errors="replace")
    except Exception:  # never let an exception cross into C
        return
    py_level = _last_level if level == 5 else _LEVELS.get(level, logging.DEBUG)
    _last_level = py_level
    _partial.append(message)
    if not message.endswith("\n"):
        return
    line = "".join(_partial).rstrip()
    _partial.clear()
    if not line:
        return
    _recent.append(line)
    # llama.cpp logs routine loading detail at INFO; keep it at DEBUG for Python logging, and
    # the errors of a decode the user stopped too.
    quiet = py_level == logging.INFO or (_stopping and py_level >= logging.WARNING)
    log.log(logging.DEBUG if quiet else py_level, "%s", line)


def recent_errors() -> list[str]:
    """llama.cpp log lines from the last operation that look like failures."""
    return [
        line for line in _recent if any(w in line.lower() for w in ("error", "failed", "invalid", "unable"))
    ]


def clear_recent() -> None:
    _recent.clear()


def llama_cpp() -> ModuleType:
    """The imported llama_cpp module, set up for LlamaDesk on first use."""
    global _module, _callback_ref
    with _lock:
        if _module is not None:
            return _module
        import llama_cpp as module
        import llama_cpp._internals as internals
        import llama_cpp.llama as llama_mod

        callback = module.llama_log_callback(_on_log)
        module.llama_log_set(callback, ctypes.c_void_p(0))
        _callback_ref = callback  # keep the C callback alive for the process's lifetime
        llama_mod.suppress_stdout_stderr = _NoRedirect  # type: ignore[assignment,misc]
        internals.suppress_stdout_stderr = _NoRedirect  # type: ignore[assignment,misc]
        _module = module
        return module


def version() -> str:
    """llama-cpp-python's version, without importing the native library."""
    from importlib import metadata

    try:
        return metadata.version("llama-cpp-python")
    except metadata.PackageNotFoundError:
        return "not installed"


@contextlib.contextmanager
def load_progress(callback: Callable[[float], bool] | None) -> Iterator[None]:
    """Route llama.cpp's model-load progress to ``callback`` (return False to cancel)."""
    module = llama_cpp()
    low = module.llama_cpp
    if callback is None:
        yield
        return
    original = low.llama_model_default_params

    @low.llama_progress_callback
    def progress(value: float, _data: Any) -> bool:
        try:
            return bool(callback(float(value)))
        except Exception:
            return False

    def params_with_progress() -> Any:
        params = original()
        params.progress_callback = progress
        return params

    low.llama_model_default_params = params_with_progress
    try:
        yield
    finally:
        low.llama_model_default_params = original
