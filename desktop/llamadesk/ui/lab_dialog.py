"""The model lab in the window: a measurement running as a job of the inference service, with a
progress bar, the time left and Cancel.

The work (``engine.lab_speed``, ``engine.perplexity``, ``engine.lab_compare``) runs on the
service's own thread, in turn with the window's replies: llama.cpp decodes best from one
long-lived thread, and the GUI thread never waits on it. Progress and the result come back
through queued signals.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from PySide6.QtCore import QObject, Signal
from PySide6.QtWidgets import QDialog, QHBoxLayout, QLabel, QProgressBar, QPushButton, QVBoxLayout, QWidget

from ..engine.lab_results import LabProgress
from ..engine.service import InferenceService, Job

__all__ = ["LabDialog", "LabRunner", "time_left_text"]

CLIENT = "lab"
Work = Callable[[threading.Event, Callable[[LabProgress], None]], Any]


def time_left_text(seconds: float | None) -> str:
    """ "about 40 s left", "about 3 min left", or "estimating…" before the first step ends."""
    if seconds is None:
        return "estimating the time left…"
    if seconds < 90:
        return f"about {max(seconds, 1):.0f} s left"
    return f"about {seconds / 60:.0f} min left"


class LabRunner(QObject):
    """Runs one lab measurement at a time as a service job; signals arrive on the GUI thread.

    Signals:
        progressed(object): a :class:`LabProgress`.
        finished(object): the result of the work.
        failed(str): why it failed (a message for the user).
        cancelled: it was stopped with :meth:`cancel`.
    """

    progressed = Signal(object)
    finished = Signal(object)
    failed = Signal(str)
    cancelled = Signal()
    _ended = Signal(object)  # the job, from the service thread

    def __init__(self, service: InferenceService | None = None, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._service = service  # without the window's service, one of its own, made on first use
        self._own: InferenceService | None = None
        self.job: Job | None = None
        self._ended.connect(self._on_ended)

    @property
    def service(self) -> InferenceService:
        if self._service is not None:
            return self._service
        if self._own is None:
            self._own = InferenceService()
        return self._own

    @property
    def running(self) -> bool:
        return self.job is not None and not self.job.done()

    def start(self, kind: str, work: Work) -> Job:
        """Run ``work(stop_event, report)`` on the service thread."""
        if self.running:
            raise RuntimeError("a lab measurement is already running")

        def run(job: Job) -> Any:
            return work(job.stop_event, self.progressed.emit)

        self.job = self.service.run(kind, run, client=CLIENT)
        self.job.add_done_callback(self._ended.emit)
        return self.job

    def cancel(self) -> None:
        if self.job is not None:
            self.job.stop()

    def _on_ended(self, job: Job) -> None:
        if job is not self.job:
            return
        if job.error is None:
            self.finished.emit(job.result)
        elif job.stopped:
            self.cancelled.emit()
        else:
            self.failed.emit(str(job.error))

    def shutdown(self, timeout_s: float = 2.0) -> None:
        """Stop a running measurement (and the service, when it is this runner's own)."""
        self.cancel()
        if self._own is not None:
            self._own.close(timeout_s)


class LabDialog(QDialog):
    """Progress of one measurement: what it is doing, a bar, the time left, Cancel, then the result."""

    def __init__(self, title: str, runner: LabRunner, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("labDialog")
        self.setWindowTitle(title)
        self.setAccessibleName(title)
        self.runner = runner
        self.result: Any = None
        self.status = QLabel("Waiting for the model to be free…", self)
        self.status.setObjectName("labStatus")
        self.status.setWordWrap(True)
        self.bar = QProgressBar(self)
        self.bar.setObjectName("labProgress")
        self.bar.setAccessibleName("Progress")
        self.bar.setRange(0, 1000)
        self.left = QLabel("", self)
        self.left.setObjectName("labTimeLeft")
        self.cancel_button = QPushButton("Cancel", self)
        self.cancel_button.setObjectName("labCancelButton")
        self.cancel_button.clicked.connect(self.cancel)
        self.close_button = QPushButton("Close", self)
        self.close_button.setObjectName("labCloseButton")
        self.close_button.clicked.connect(self.accept)
        self.close_button.hide()
        row = QHBoxLayout()
        row.addWidget(self.left, 1)
        row.addWidget(self.cancel_button)
        row.addWidget(self.close_button)
        layout = QVBoxLayout(self)
        layout.addWidget(self.status)
        layout.addWidget(self.bar)
        layout.addLayout(row)
        self.resize(460, 140)
        runner.progressed.connect(self._on_progress)
        runner.finished.connect(self._on_finished)
        runner.failed.connect(self._on_failed)
        runner.cancelled.connect(self._on_cancelled)

    def cancel(self) -> None:
        self.runner.cancel()
        self.cancel_button.setEnabled(False)
        self.status.setText("Cancelling…")

    def reject(self) -> None:  # Escape or the window's close button: stop the run too
        if self.runner.running:
            self.cancel()
        super().reject()

    def _on_progress(self, progress: LabProgress) -> None:
        self.bar.setValue(int(progress.fraction * 1000))
        self.status.setText(progress.text)
        self.left.setText(time_left_text(progress.seconds_left) if progress.fraction < 1 else "")

    def _ended(self, text: str) -> None:
        self.status.setText(text)
        self.left.setText("")
        self.cancel_button.hide()
        self.close_button.show()

    def show_result(self, text: str) -> None:
        """Show the finished measurement (the page that started it words it)."""
        self.bar.setValue(1000)
        self._ended(text)

    def _on_finished(self, result: Any) -> None:
        self.result = result
        if self.close_button.isHidden():
            self._ended("Done.")

    def _on_failed(self, message: str) -> None:
        self._ended(message)

    def _on_cancelled(self) -> None:
        self._ended("Cancelled: nothing was measured.")
