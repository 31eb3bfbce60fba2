"""Indexing in a separate process: reading PDFs and Word files never holds the window's GIL.

Parsers (python-docx's XML, pypdf) hold Python's global lock for tens of milliseconds at a time; run
on a thread of the app they made the window stutter (a 78 ms stall measured on 60 .docx files). The
index is written by a child process started with ``spawn``; progress and the report come back over a
queue. Qt-free on purpose: the child imports only this module and ``llamadesk.docs``. A child killed
mid-file loses nothing already committed (the index is SQLite in WAL mode).
"""

from __future__ import annotations

import multiprocessing
import queue
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

from ..docs import DocumentIndex, IndexProgress, IndexReport
from ..errors import LlamaDeskError

__all__ = ["POLL_S", "cancel_event", "run_indexing"]

POLL_S = 0.1  # how often the parent looks for a child that died without a word


def _child(data_dir: Path, name: str, paths: list[Path] | None, events: Any, cancel: Any) -> None:
    """The child process: index, sending ("progress", IndexProgress) then ("finished", IndexReport)
    or ("failed", message)."""
    # The index only asks ``cancel.is_set()`` between files. Nothing here waits on the event: a
    # process that ends while waiting on a multiprocessing event would block the next ``set()``.
    stop = cast(threading.Event, cancel)

    def progress(update: IndexProgress) -> None:
        events.put(("progress", update))

    try:
        with DocumentIndex.in_folder(data_dir) as index:
            if paths is None:
                report = index.refresh(name, progress=progress, cancel=stop)
            else:
                report = index.add(name, paths, progress=progress, cancel=stop)
    except LlamaDeskError as exc:
        events.put(("failed", str(exc)))
        return
    except Exception as exc:  # a bug: reported in one line, never a traceback in the window
        events.put(("failed", f"Something went wrong while indexing: {exc!r}"))
        return
    events.put(("finished", report))


def cancel_event() -> Any:
    """An event that cancels a :func:`run_indexing` from any thread of the app, seen by the child at once."""
    return multiprocessing.get_context("spawn").Event()


def run_indexing(
    data_dir: Path,
    name: str,
    paths: list[Path] | None,
    *,
    cancel: Any,
    on_progress: Callable[[IndexProgress], None],
) -> IndexReport:
    """Index ``paths`` into ``name`` (None: refresh it) in a child process and wait for it.

    ``cancel`` comes from :func:`cancel_event`. Raises LlamaDeskError with the child's message, or
    when the child ended without a report.
    """
    context = multiprocessing.get_context("spawn")
    events = context.Queue()
    child = context.Process(
        target=_child, args=(data_dir, name, paths, events, cancel), name="llamadesk-index", daemon=True
    )
    child.start()
    try:
        while True:
            try:
                kind, value = events.get(timeout=POLL_S)
            except queue.Empty:
                if child.is_alive():
                    continue
                try:  # it may have sent its last word just before it ended
                    kind, value = events.get(timeout=POLL_S)
                except queue.Empty:
                    raise LlamaDeskError(
                        f"indexing stopped unexpectedly (exit code {child.exitcode}); "
                        "what was indexed before is kept"
                    ) from None
            if kind == "progress":
                on_progress(value)
            elif kind == "finished":
                return value
            else:
                raise LlamaDeskError(str(value))
    finally:
        cancel.set()  # a child still running (the parent gave up on it) stops after its file
        child.join(5.0)
        if child.is_alive():
            child.kill()
            child.join(1.0)
        events.close()
