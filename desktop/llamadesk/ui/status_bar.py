"""The window's status bar: model, backend, GPU layers, context use and speed."""

from __future__ import annotations

from typing import Any

from PySide6.QtWidgets import QLabel, QProgressBar, QStatusBar, QWidget


class StatusBar(QStatusBar):
    """Facts about the loaded model and the last reply, always visible."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("statusBar")
        self.model_label = self._label("modelStatus", "No model loaded")
        self.backend_label = self._label("backendStatus", "")
        self.layers_label = self._label("gpuLayersStatus", "")
        self.context_meter = QProgressBar(self)
        self.context_meter.setObjectName("contextMeter")
        self.context_meter.setAccessibleName("contextMeter")
        self.context_meter.setToolTip("Tokens of the context used by the last reply (prompt + reply)")
        self.context_meter.setMaximumWidth(180)
        self.context_meter.setTextVisible(True)
        self.context_meter.setRange(0, 1)
        self.context_meter.setValue(0)
        self.context_meter.setFormat("— / —")
        self.addPermanentWidget(self.context_meter)
        self.speed_label = self._label("speedStatus", "")
        self.n_ctx = 0

    def _label(self, name: str, text: str) -> QLabel:
        label = QLabel(text, self)
        label.setObjectName(name)
        label.setAccessibleName(name)
        self.addPermanentWidget(label)
        return label

    def set_model(
        self,
        name: str | None,
        *,
        backend: str = "",
        n_gpu_layers: int = 0,
        n_ctx: int = 0,
        fallback_template: bool = False,
    ) -> None:
        """Show the loaded model (or none)."""
        self.n_ctx = n_ctx
        if not name:
            self.model_label.setText("No model loaded")
            self.backend_label.setText("")
            self.layers_label.setText("")
            self.set_context(0)
            self.speed_label.setText("")
            return
        suffix = " · ChatML fallback template" if fallback_template else ""
        self.model_label.setText(name + suffix)
        self.backend_label.setText(backend)
        self.layers_label.setText(f"GPU layers: {n_gpu_layers}" if backend != "CPU" else "GPU layers: 0")
        self.set_context(0)
        self.speed_label.setText("")

    def set_context(self, used: int) -> None:
        total = max(self.n_ctx, 1)
        self.context_meter.setRange(0, total)
        self.context_meter.setValue(min(used, total))
        self.context_meter.setFormat(f"{used} / {self.n_ctx}" if self.n_ctx else "— / —")

    def set_stats(self, stats: dict[str, Any] | None) -> None:
        """Show the last reply's context use and speed (``GenerationStats.to_dict()``)."""
        if not stats:
            self.speed_label.setText("")
            self.set_context(0)
            return
        used = int(stats.get("prompt_tokens", 0)) + int(stats.get("completion_tokens", 0))
        self.set_context(used)
        speed = float(stats.get("tokens_per_s", 0.0))
        self.speed_label.setText(f"{speed:.1f} tok/s")

    def speed_text(self) -> str:
        return self.speed_label.text()
