"""The list of downloads: progress with bytes, speed and time left, and pause/resume/cancel per item."""

from __future__ import annotations

import html
from typing import TYPE_CHECKING

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QFrame,
    QHBoxLayout,
    QLabel,
    QProgressBar,
    QPushButton,
    QScrollArea,
    QVBoxLayout,
    QWidget,
)

from .hub_worker import DownloadManager

if TYPE_CHECKING:
    from ..hub import DownloadProgress, DownloadTask

_STATE_TEXT = {
    "queued": "Waiting",
    "starting": "Starting",
    "hashing": "Checking the part already downloaded",
    "downloading": "Downloading",
    "verifying": "Verifying",
    "paused": "Paused",
    "cancelled": "Cancelled",
    "done": "Done",
    "failed": "Failed",
}


def format_duration(seconds: float) -> str:
    """Seconds as "45 s", "3 min 20 s", "1 h 5 min"."""
    seconds = round(seconds)
    if seconds < 60:
        return f"{seconds} s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min {seconds:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


def describe(progress: DownloadProgress) -> str:
    """One line: state, bytes done of total, speed and time left."""
    from ..hub import format_size

    state = progress.state.value
    parts = [_STATE_TEXT.get(state, state)]
    if progress.total > 0:
        parts.append(f"{format_size(progress.done)} of {format_size(progress.total)}")
    if state == "downloading" and progress.speed > 0:
        parts.append(f"{format_size(progress.speed)}/s")
        if progress.eta is not None:
            parts.append(f"{format_duration(progress.eta)} left")
    if progress.parts > 1:
        parts.append(f"part {progress.part} of {progress.parts}")
    return " · ".join(parts)


class DownloadRow(QFrame):
    """One download: its name, a progress bar, a status line, the error text and its buttons."""

    def __init__(self, manager: DownloadManager, task: DownloadTask, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("downloadRow")
        self.setFrameShape(QFrame.Shape.StyledPanel)
        self.manager = manager
        self.task = task
        name = task.filenames[0].rsplit("/", 1)[-1]
        repo = html.escape(task.repo_id)
        self.title = QLabel(
            f"<b>{html.escape(name)}</b> <span style='color: palette(mid)'>— {repo}</span>", self
        )
        self.title.setTextFormat(Qt.TextFormat.RichText)
        self.bar = QProgressBar(self)
        self.bar.setObjectName("downloadProgress")
        self.bar.setRange(0, 1000)
        self.bar.setTextVisible(True)
        self.bar.setAccessibleName(f"Download progress of {name}")
        self.status = QLabel(self)
        self.status.setObjectName("downloadStatus")
        self.error = QLabel(self)
        self.error.setObjectName("downloadError")
        self.error.setWordWrap(True)
        self.error.setStyleSheet("color: #cf222e;")
        self.error.hide()
        self.pause_button = QPushButton("Pause", self)
        self.pause_button.setObjectName("pauseDownloadButton")
        self.resume_button = QPushButton("Resume", self)
        self.resume_button.setObjectName("resumeDownloadButton")
        self.cancel_button = QPushButton("Cancel", self)
        self.cancel_button.setObjectName("cancelDownloadButton")
        self.pause_button.clicked.connect(lambda: manager.pause(task))
        self.resume_button.clicked.connect(lambda: manager.resume(task))
        self.cancel_button.clicked.connect(lambda: manager.cancel(task))

        buttons = QHBoxLayout()
        buttons.setSpacing(4)
        for button in (self.pause_button, self.resume_button, self.cancel_button):
            buttons.addWidget(button)
        top = QHBoxLayout()
        top.addWidget(self.title, 1)
        top.addLayout(buttons)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(8, 6, 8, 6)
        layout.setSpacing(3)
        layout.addLayout(top)
        layout.addWidget(self.bar)
        layout.addWidget(self.status)
        layout.addWidget(self.error)
        self.update_progress(task.progress)

    def update_progress(self, progress: DownloadProgress) -> None:
        state = progress.state.value
        self.bar.setValue(int(progress.fraction * 1000) if state != "done" else 1000)
        self.bar.setFormat(f"{progress.fraction * 100:.0f} %" if state != "done" else "100 %")
        self.status.setText(describe(progress))
        failed = state == "failed"
        if failed:
            self.error.setText(progress.message or (str(self.task.error) if self.task.error else ""))
        self.error.setVisible(failed and bool(self.error.text()))
        active = state in ("queued", "starting", "hashing", "downloading", "verifying")
        self.pause_button.setVisible(active)
        self.resume_button.setVisible(state in ("paused", "failed"))
        self.cancel_button.setVisible(state not in ("done", "cancelled"))

    @property
    def finished(self) -> bool:
        """Done or cancelled: nothing more will happen to it."""
        return self.task.state.value in ("done", "cancelled")


class DownloadsPanel(QWidget):
    """Every download of this session, newest last; a view of the shared ``DownloadManager``."""

    def __init__(self, manager: DownloadManager, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("downloadsPanel")
        self.setAccessibleName("Downloads")
        self.manager = manager
        self.rows: dict[str, DownloadRow] = {}
        self.heading = QLabel("<b>Downloads</b>", self)
        self.clear_button = QPushButton("Clear finished", self)
        self.clear_button.setObjectName("clearDownloadsButton")
        self.clear_button.setToolTip("Remove done and cancelled downloads from this list (the files stay)")
        self.clear_button.clicked.connect(manager.clear_finished)
        self.empty = QLabel("No downloads yet.", self)
        self.empty.setObjectName("downloadsEmpty")
        self.empty.setStyleSheet("color: palette(mid);")
        self._list = QWidget()
        self._list_layout = QVBoxLayout(self._list)
        self._list_layout.setContentsMargins(0, 0, 0, 0)
        self._list_layout.setSpacing(4)
        self._list_layout.addStretch(1)
        scroll = QScrollArea(self)
        scroll.setWidgetResizable(True)
        scroll.setFrameShape(QFrame.Shape.NoFrame)
        scroll.setWidget(self._list)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        header = QHBoxLayout()
        header.addWidget(self.heading, 1)
        header.addWidget(self.clear_button)
        layout.addLayout(header)
        layout.addWidget(self.empty)
        layout.addWidget(scroll, 1)
        for task in manager.tasks:
            self._add_row(task)
        manager.taskAdded.connect(self._add_row)
        manager.progressChanged.connect(self._on_progress)
        manager.taskFinished.connect(self._on_finished)
        manager.taskRemoved.connect(self._remove_row)
        self._update_clear()

    def row(self, task_id: str) -> DownloadRow | None:
        return self.rows.get(task_id)

    def _add_row(self, task: DownloadTask) -> None:
        if task.id in self.rows:
            return
        row = DownloadRow(self.manager, task, self._list)
        self.rows[task.id] = row
        self._list_layout.insertWidget(self._list_layout.count() - 1, row)
        self.empty.hide()
        self._update_clear()

    def _remove_row(self, task_id: str) -> None:
        row = self.rows.pop(task_id, None)
        if row is not None:
            row.hide()
            row.deleteLater()
        self.empty.setVisible(not self.rows)
        self._update_clear()

    def _update_clear(self) -> None:
        self.clear_button.setEnabled(any(row.finished for row in self.rows.values()))

    def _on_progress(self, task_id: str, progress: DownloadProgress) -> None:
        row = self.rows.get(task_id)
        if row is not None:
            row.update_progress(progress)

    def _on_finished(self, task_id: str, task: DownloadTask) -> None:
        row = self.rows.get(task_id)
        if row is not None:
            row.update_progress(task.progress)
        self._update_clear()
