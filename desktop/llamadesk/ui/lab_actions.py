""" "Measure speed" and "Measure quality" for a model in My models, and the figures measured so far.

Each measurement runs through a :class:`LabRunner` (a job on the inference service's thread)
with a :class:`LabDialog` showing progress, time left and Cancel; the result is kept in the
lab results file and ``measured`` is emitted so the page shows it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from PySide6.QtCore import QObject, Signal
from PySide6.QtWidgets import QFileDialog, QWidget

from ..engine.lab_results import LabProgress, LabRecord, LabResults
from ..engine.service import InferenceService
from ..settings import RuntimeSettings
from .lab_dialog import LabDialog, LabRunner

__all__ = ["ModelLab", "figures_text"]

TEXT_FILTER = "Text files (*.txt *.md *.raw);;All files (*)"
QUALITY_CONTEXT = 512


def figures_text(results: LabResults, path: Path | str) -> str:
    """ "measured here: 41.2 tok/s (prompt 350 tok/s) · perplexity 18.32 ± 0.41 on wiki.txt", or ""."""
    facts = []
    speed = results.latest(path, "speed")
    if speed is not None:
        pp = float(speed.figures.get("pp_tps", 0.0))
        facts.append(f"measured here: {speed.summary} (prompt {pp:,.0f} tok/s)")
    quality = results.latest(path, "perplexity")
    if quality is not None:
        facts.append(f"{quality.summary} on {quality.settings.get('text', 'a text')}")
    return " · ".join(facts)


class ModelLab(QObject):
    """Starts measurements for a page; one at a time.

    Signals:
        measured(object): the :class:`LabRecord` just kept.
    """

    measured = Signal(object)

    def __init__(
        self,
        page: QWidget,
        results: LabResults,
        *,
        service: InferenceService | None = None,
        runtime: Callable[[], RuntimeSettings] = RuntimeSettings,
    ) -> None:
        super().__init__(page)
        self.page = page
        self.results = results
        self.runner = LabRunner(service, self)
        self.runtime = runtime
        self.dialog: LabDialog | None = None
        self.quality_context = QUALITY_CONTEXT  # perplexity window, as llama-perplexity's usual -c 512
        self.speed_options: dict[str, int] = {}  # pp_tokens, tg_tokens, repetitions (llama-bench's defaults)
        self.runner.finished.connect(self._on_finished)

    @property
    def running(self) -> bool:
        return self.runner.running

    def measure_speed(self, path: Path, name: str) -> LabDialog | None:
        """Measure pp512 and tg128 of ``path`` (3 runs each)."""
        from ..engine.lab_speed import measure_speed, speed_record

        rs = self.runtime().model_copy(update={"n_ctx": 0})

        def work(stop: threading.Event, report: Callable[[LabProgress], None]) -> LabRecord:
            result = measure_speed(path, rs, progress=report, stop_event=stop, **self.speed_options)
            record = speed_record(path, result, rs)
            self.results.add(record)
            return record

        return self._start(f"Measuring the speed of {name}", "lab-speed", work)

    def ask_quality(self, path: Path, name: str) -> LabDialog | None:
        """Ask for a text file, then measure the perplexity of ``path`` on it."""
        text, _ = QFileDialog.getOpenFileName(
            self.page, "Choose a text to measure perplexity on", str(Path.home()), TEXT_FILTER
        )
        return self.measure_quality(path, name, Path(text), self.quality_context) if text else None

    def measure_quality(
        self, path: Path, name: str, text_file: Path, n_ctx: int = QUALITY_CONTEXT
    ) -> LabDialog | None:
        """Measure the perplexity of ``path`` on ``text_file`` in windows of ``n_ctx``."""
        from ..engine.perplexity import measure_perplexity, perplexity_record, read_text_file

        rs = self.runtime()

        def work(stop: threading.Event, report: Callable[[LabProgress], None]) -> LabRecord:
            text = read_text_file(text_file)
            result = measure_perplexity(path, text, n_ctx, rs, progress=report, stop_event=stop)
            record = perplexity_record(path, text_file, result, rs)
            self.results.add(record)
            return record

        return self._start(f"Measuring the perplexity of {name} on {text_file.name}", "lab-perplexity", work)

    def _start(self, title: str, kind: str, work: Any) -> LabDialog | None:
        if self.runner.running:
            if self.dialog is not None:
                self.dialog.show()
                self.dialog.raise_()
            return None
        dialog = LabDialog(title, self.runner, self.page)
        self.dialog = dialog
        self.runner.start(kind, work)
        dialog.show()
        return dialog

    def _on_finished(self, record: LabRecord) -> None:
        if self.dialog is not None:
            figures = record.figures
            if record.kind == "speed":
                text = (
                    f"Prompt processing {figures['pp_tps']:,.1f} ± {figures['pp_std']:.1f} tok/s, "
                    f"generation {figures['tg_tps']:,.1f} ± {figures['tg_std']:.1f} tok/s. "
                    f"Loaded in {figures['load_s']:.1f} s; "
                    f"{figures['peak_rss_bytes'] / (1 << 20):,.0f} MB of memory at the peak."
                )
            else:
                text = (
                    f"Perplexity {figures['perplexity']:.3f} ± {figures['stderr']:.3f} over "
                    f"{figures['tokens_scored']:,} tokens (lower is better)."
                )
            self.dialog.show_result(text)
        self.measured.emit(record)

    def shutdown(self) -> None:
        self.runner.shutdown()


def measured_here(file_name: str, size: int | None = None, results: LabResults | None = None) -> str:
    """ "Measured here: 41.2 tok/s." for a Hub file already measured on this computer, else ""."""
    try:
        record = (results or LabResults.default()).latest_for_file(file_name, size)
    except OSError:
        return ""
    return f"Measured here: {record.summary}." if record is not None else ""
