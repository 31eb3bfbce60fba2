"""Entry point of the packaged app: runs ``llamadesk.__main__.main()``.

With ``LLAMADESK_EXIT_AFTER_SHOWN=1`` and no arguments, the app prints "window shown" and
closes as soon as its main window appears, so packaging tests can prove the bundle starts.
"""

from __future__ import annotations

import os
import sys
from typing import Any

EXIT_AFTER_SHOWN_ENV = "LLAMADESK_EXIT_AFTER_SHOWN"
TIMEOUT_ENV = "LLAMADESK_EXIT_AFTER_SHOWN_TIMEOUT"


def _install_exit_after_shown() -> Any:
    """Creates the QApplication early and watches it for the main window's Show event."""
    from PySide6.QtCore import QEvent, QObject, QTimer
    from PySide6.QtWidgets import QApplication, QMainWindow

    app = QApplication.instance() or QApplication(sys.argv)

    class _ShownWatcher(QObject):
        """Closes the first main window shown (its closeEvent shuts the app down cleanly)."""

        def __init__(self) -> None:
            super().__init__()
            self.seen = False

        def eventFilter(self, watched: QObject, event: QEvent) -> bool:
            if (
                not self.seen
                and event.type() == QEvent.Type.Show
                and isinstance(watched, QMainWindow)
                and watched.isWindow()
            ):
                self.seen = True
                print("window shown", flush=True)
                QTimer.singleShot(0, watched.close)
                # If something keeps the app running after the close, end it anyway.
                QTimer.singleShot(10_000, lambda: QApplication.exit(0))
            return False

    def _give_up() -> None:
        if not watcher.seen:
            print("launcher: the main window was not shown in time", file=sys.stderr, flush=True)
            QApplication.exit(3)

    watcher = _ShownWatcher()
    app.installEventFilter(watcher)
    QTimer.singleShot(int(float(os.environ.get(TIMEOUT_ENV, "120")) * 1000), _give_up)
    return watcher  # the caller keeps it alive while the app runs


def main() -> int:
    """Run the app or the CLI, as ``llamadesk`` does."""
    watcher = None
    if os.environ.get(EXIT_AFTER_SHOWN_ENV) == "1" and len(sys.argv) == 1:
        watcher = _install_exit_after_shown()
    from llamadesk.__main__ import main as llamadesk_main

    try:
        return llamadesk_main()
    finally:
        del watcher


if __name__ == "__main__":
    sys.exit(main())
