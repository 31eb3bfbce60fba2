"""The Compare window: one prompt to two or more models, replies side by side with their costs,
and a table of the quantizations of one model with their measured perplexity and speed.

Models answer one after another (each loaded, asked and freed in turn, so they need not fit in
memory together) as one job of the inference service; progress, time left and Cancel as in
every lab run.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from PySide6.QtCore import Qt
from PySide6.QtGui import QFont
from PySide6.QtWidgets import (
    QDialog,
    QHBoxLayout,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QPlainTextEdit,
    QProgressBar,
    QPushButton,
    QScrollArea,
    QTableWidget,
    QTableWidgetItem,
    QTextBrowser,
    QVBoxLayout,
    QWidget,
)

from ..engine.lab_compare import CompareResult, QuantRow, quant_table
from ..engine.lab_results import LabProgress, LabResults
from ..engine.service import InferenceService
from ..settings import GenerationSettings, RuntimeSettings
from .lab_dialog import LabRunner, time_left_text

if TYPE_CHECKING:
    from ..hub import LibraryModel

__all__ = ["CompareWindow", "quant_variants"]


def quant_variants(
    models: Sequence[LibraryModel], chosen: LibraryModel
) -> list[tuple[Path, str, int, int | None]]:
    """The loadable files that are quantizations of ``chosen``'s model (same repository, or the same
    name before the quantization), as :func:`quant_table` takes them."""

    def family(model: LibraryModel) -> str:
        if model.repo_id:
            return model.repo_id.lower()
        name = Path(model.path).stem.lower()
        quant = (model.quantization or "").lower()
        return name.replace(quant, "").strip("-_.") if quant else name

    key = family(chosen)
    return [
        (
            Path(m.path),
            m.quantization or "?",
            m.size,
            m.info.parameter_count if m.info is not None else None,
        )
        for m in models
        if m.loadable and family(m) == key
    ]


class CompareWindow(QDialog):
    """Pick models, write a prompt, Compare: the replies come side by side."""

    def __init__(
        self,
        models: Sequence[LibraryModel],
        results: LabResults,
        *,
        service: InferenceService | None = None,
        generation: Callable[[], GenerationSettings] = GenerationSettings,
        runtime: Callable[[], RuntimeSettings] = RuntimeSettings,
        chosen: LibraryModel | None = None,
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self.setObjectName("compareWindow")
        self.setWindowTitle("Compare models")
        self.setAccessibleName("Compare models")
        self.results = results
        self.generation = generation
        self.runtime = runtime
        self.runner = LabRunner(service, self)
        self.replies: list[CompareResult] = []
        self.models = QListWidget(self)
        self.models.setObjectName("compareModels")
        self.models.setAccessibleName("Models to compare")
        for model in models:
            if not model.loadable:
                continue
            item = QListWidgetItem(model.name, self.models)
            item.setData(Qt.ItemDataRole.UserRole, str(model.path))
            item.setFlags(item.flags() | Qt.ItemFlag.ItemIsUserCheckable)
            picked = chosen is not None and model.key == chosen.key
            item.setCheckState(Qt.CheckState.Checked if picked else Qt.CheckState.Unchecked)
        self.prompt = QPlainTextEdit(self)
        self.prompt.setObjectName("comparePrompt")
        self.prompt.setPlaceholderText("The message every model answers")
        self.prompt.setMaximumHeight(80)
        self.run_button = QPushButton("Compare", self)
        self.run_button.setObjectName("compareRunButton")
        self.run_button.clicked.connect(self.compare)
        self.cancel_button = QPushButton("Cancel", self)
        self.cancel_button.setObjectName("compareCancelButton")
        self.cancel_button.clicked.connect(self.runner.cancel)
        self.cancel_button.hide()
        self.bar = QProgressBar(self)
        self.bar.setRange(0, 1000)
        self.bar.hide()
        self.status = QLabel("", self)
        self.status.setObjectName("compareStatus")
        self.status.setWordWrap(True)
        self.columns = QWidget(self)
        self.columns_layout = QHBoxLayout(self.columns)
        scroll = QScrollArea(self)
        scroll.setWidgetResizable(True)
        scroll.setWidget(self.columns)
        self.quant = QTableWidget(0, 5, self)
        self.quant.setObjectName("quantTable")
        self.quant.setAccessibleName("Quantizations of this model")
        self.quant.setHorizontalHeaderLabels(
            ["Quantization", "Size", "Bits per weight", "Perplexity", "tok/s"]
        )
        self.quant.verticalHeader().hide()
        row = QHBoxLayout()
        row.addWidget(self.bar, 1)
        row.addWidget(self.status, 1)
        row.addWidget(self.cancel_button)
        row.addWidget(self.run_button)
        layout = QVBoxLayout(self)
        layout.addWidget(QLabel("Models (they answer one after another):", self))
        layout.addWidget(self.models)
        layout.addWidget(self.prompt)
        layout.addLayout(row)
        layout.addWidget(scroll, 3)
        layout.addWidget(QLabel("Quantizations of this model on this computer:", self))
        layout.addWidget(self.quant, 1)
        self.resize(1100, 760)
        self.runner.progressed.connect(self._on_progress)
        self.runner.finished.connect(self._on_finished)
        self.runner.failed.connect(lambda message: self._ended(message))
        self.runner.cancelled.connect(lambda: self._ended("Cancelled."))
        if chosen is not None:
            self.show_quantizations(quant_variants(models, chosen), Path(chosen.path))

    def checked_paths(self) -> list[Path]:
        items = (self.models.item(i) for i in range(self.models.count()))
        return [
            Path(item.data(Qt.ItemDataRole.UserRole))
            for item in items
            if item.checkState() == Qt.CheckState.Checked
        ]

    def compare(self) -> bool:
        """Start the comparison; False (with a reason shown) when it can't start."""
        paths = self.checked_paths()
        prompt = self.prompt.toPlainText().strip()
        if len(paths) < 2:
            self.status.setText("Tick two or more models to compare.")
            return False
        if not prompt:
            self.status.setText("Write the message the models should answer.")
            return False
        if self.runner.running:
            return False
        from ..engine.lab_compare import compare_models

        settings, rs = self.generation(), self.runtime()

        def work(stop: threading.Event, report: Callable[[LabProgress], None]) -> list[CompareResult]:
            return compare_models(paths, prompt, settings, rs, progress=report, stop_event=stop)

        self.run_button.setEnabled(False)
        self.cancel_button.show()
        self.bar.setValue(0)
        self.bar.show()
        self.status.setText("Waiting for the model to be free…")
        self.runner.start("lab-compare", work)
        return True

    def _on_progress(self, progress: LabProgress) -> None:
        self.bar.setValue(int(progress.fraction * 1000))
        left = time_left_text(progress.seconds_left) if progress.fraction < 1 else ""
        self.status.setText(f"{progress.text} · {left}" if left else progress.text)

    def _ended(self, text: str) -> None:
        self.run_button.setEnabled(True)
        self.cancel_button.hide()
        self.bar.hide()
        self.status.setText(text)

    def _on_finished(self, replies: list[CompareResult]) -> None:
        self._ended("Done.")
        self.replies = list(replies)
        while self.columns_layout.count():
            item = self.columns_layout.takeAt(0)
            widget = item.widget() if item is not None else None
            if widget is not None:
                widget.deleteLater()
        for reply in self.replies:
            self.columns_layout.addWidget(self._column(reply), 1)

    def _column(self, reply: CompareResult) -> QWidget:
        box = QWidget(self.columns)
        box.setObjectName("compareColumn")
        layout = QVBoxLayout(box)
        title = QLabel(Path(reply.model_path).name, box)
        title.setWordWrap(True)
        font = QFont(title.font())
        font.setBold(True)
        title.setFont(font)
        text = QTextBrowser(box)
        text.setPlainText(reply.error or reply.text)
        stats = QLabel(box)
        stats.setObjectName("compareStats")
        stats.setWordWrap(True)
        if reply.error:
            stats.setText("Failed.")
        else:
            stats.setText(
                f"First token after {reply.ttft_s:.2f} s · {reply.tokens_per_s:.1f} tok/s · "
                f"{reply.completion_tokens} tokens · {reply.peak_rss_bytes / (1 << 20):,.0f} MB · "
                f"loaded in {reply.load_s:.1f} s"
            )
        layout.addWidget(title)
        layout.addWidget(text, 1)
        layout.addWidget(stats)
        return box

    def show_quantizations(
        self, variants: list[tuple[Path, str, int, int | None]], chosen: Path | None
    ) -> None:
        """Fill the quantization table, the chosen file in bold."""
        from ..hub import format_size

        rows: list[QuantRow] = quant_table(variants, self.results, chosen)
        self.quant.setRowCount(len(rows))
        for r, row in enumerate(rows):
            cells = [
                row.quantization,
                format_size(row.size),
                f"{row.bits_per_weight:.2f}" if row.bits_per_weight else "—",
                f"{row.perplexity:.3f} ± {row.perplexity_stderr:.3f}"
                if row.perplexity is not None and row.perplexity_stderr is not None
                else "not measured",
                f"{row.tokens_per_s:.1f}" if row.tokens_per_s is not None else "not measured",
            ]
            for c, value in enumerate(cells):
                item = QTableWidgetItem(value)
                if row.chosen:
                    font = item.font()
                    font.setBold(True)
                    item.setFont(font)
                self.quant.setItem(r, c, item)

    def closeEvent(self, event: object) -> None:
        self.runner.cancel()
        super().closeEvent(event)  # type: ignore[arg-type]
