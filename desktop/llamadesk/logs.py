"""The log file, and a last line of defence for errors nobody caught.

:func:`setup_logging` writes LlamaDesk's log to a rotating file in the log folder (1 MB, three old
files kept) so a user can send it with a bug report; ``verbose`` copies everything to stderr
too. :func:`install_excepthooks` logs an exception that escapes any thread, with its traceback,
and hands a one-line message to the app to show instead of a silent crash or a traceback.
"""

from __future__ import annotations

import errno
import logging
import os
import stat
import sys
import threading
from collections.abc import Callable
from logging.handlers import RotatingFileHandler
from pathlib import Path
from types import TracebackType
from typing import Any

from .errors import LlamaDeskError
from .files import NotARegularFileError

log = logging.getLogger(__name__)

LOG_FILE_NAME = "llamadesk.log"
MAX_BYTES = 1_000_000
BACKUP_COUNT = 3
FORMAT = "%(asctime)s %(levelname)s [%(threadName)s] %(name)s: %(message)s"


class _LogFile(RotatingFileHandler):
    """The log file handler this module installs (told apart from others by its type)."""


class _Stderr(logging.StreamHandler):
    """The stderr handler this module installs."""


def setup_logging(log_dir: Path, *, verbose: bool = False) -> Path | None:
    """Log to ``log_dir``/llamadesk.log (and to stderr when ``verbose``); returns the file's path.

    LlamaDesk's own messages from INFO up are kept, other libraries' from WARNING up (everything
    when ``verbose``). A folder that cannot be written gives stderr-only logging and None, never
    an error. Calling it again replaces what the last call installed.
    """
    close_logging()
    root = logging.getLogger()
    formatter = logging.Formatter(FORMAT)
    path: Path | None = None
    problem: OSError | None = None
    try:
        log_dir.mkdir(parents=True, exist_ok=True)
        _refuse_odd_file(log_dir / LOG_FILE_NAME)
        # backslashreplace: a lone surrogate in a message (an odd file name) is written escaped,
        # instead of "--- Logging error ---" and a traceback on stderr.
        handler = _LogFile(
            log_dir / LOG_FILE_NAME,
            maxBytes=MAX_BYTES,
            backupCount=BACKUP_COUNT,
            encoding="utf-8",
            errors="backslashreplace",
        )
    except OSError as exc:
        problem = exc
    else:
        handler.setFormatter(formatter)
        root.addHandler(handler)
        path = log_dir / LOG_FILE_NAME
    if verbose or path is None:
        stderr = _Stderr(sys.stderr)
        stderr.setFormatter(formatter)
        stderr.setLevel(logging.DEBUG if verbose else logging.WARNING)
        root.addHandler(stderr)
    root.setLevel(logging.DEBUG if verbose else logging.WARNING)
    logging.getLogger("llamadesk").setLevel(logging.DEBUG if verbose else logging.INFO)
    if problem is not None:
        log.warning("no log file in %s (%s); logging to stderr only", log_dir, problem.strerror or problem)
    return path


def _refuse_odd_file(path: Path) -> None:
    """Raise ``NotARegularFileError`` when ``path`` is a named pipe, device or folder.

    Opening a named pipe to append would wait for a reader for ever, so the app would never start.
    """
    try:
        status = os.stat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISREG(status.st_mode):
        raise NotARegularFileError(errno.EINVAL, f"{path} is not a regular file", str(path))


def close_logging() -> None:
    """Remove and close the handlers :func:`setup_logging` installed (at exit, and in tests)."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        if isinstance(handler, (_LogFile, _Stderr)):
            root.removeHandler(handler)
            handler.close()


def log_file(log_dir: Path) -> Path:
    """Where :func:`setup_logging` writes for ``log_dir`` (e.g. for "Open log folder")."""
    return log_dir / LOG_FILE_NAME


ErrorCallback = Callable[[str], None]
_saved_hooks: dict[str, Any] = {}


def install_excepthooks(on_error: ErrorCallback | None = None) -> None:
    """Log every uncaught exception, in the main thread or any other, and pass ``on_error`` a message.

    ``on_error`` runs on the thread that failed: a GUI must forward the message to its own thread
    (a queued signal). Ctrl+C still stops the program as usual. Calling it again replaces the hooks.
    """
    if not _saved_hooks:
        _saved_hooks["sys"] = sys.excepthook
        _saved_hooks["threading"] = threading.excepthook
    previous = _saved_hooks["sys"]

    def main_hook(exc_type: type[BaseException], exc: BaseException | None, tb: TracebackType | None) -> None:
        if issubclass(exc_type, KeyboardInterrupt):
            previous(exc_type, exc, tb)
            return
        _report(on_error, exc_type, exc, tb, None)

    def thread_hook(args: threading.ExceptHookArgs) -> None:
        if issubclass(args.exc_type, SystemExit):  # threading ignores a thread's SystemExit too
            return
        _report(on_error, args.exc_type, args.exc_value, args.exc_traceback, args.thread)

    sys.excepthook = main_hook
    threading.excepthook = thread_hook


def uninstall_excepthooks() -> None:
    """Put back the hooks that were there before :func:`install_excepthooks`."""
    if _saved_hooks:
        sys.excepthook = _saved_hooks.pop("sys")
        threading.excepthook = _saved_hooks.pop("threading")


def describe_exception(exc_type: type[BaseException], exc: BaseException | None) -> str:
    """One line for a dialog: a LlamaDesk error's own message, else the exception's type and text."""
    if isinstance(exc, LlamaDeskError):
        return str(exc)
    text = str(exc) if exc is not None else ""
    return f"{exc_type.__name__}: {text}" if text else exc_type.__name__


def _report(
    on_error: ErrorCallback | None,
    exc_type: type[BaseException],
    exc: BaseException | None,
    tb: TracebackType | None,
    thread: threading.Thread | None,
) -> None:
    where = f" in thread {thread.name}" if thread is not None else ""
    if exc is None:  # a thread hook may get only the type
        log.critical("uncaught exception%s: %s", where, exc_type.__name__)
    else:
        log.critical("uncaught exception%s", where, exc_info=(exc_type, exc, tb))
    if on_error is None:
        return
    try:
        on_error(f"Unexpected error{where}: {describe_exception(exc_type, exc)}")
    except Exception:  # the error display itself failed: keep that in the log, don't recurse
        log.exception("showing an uncaught exception failed")
