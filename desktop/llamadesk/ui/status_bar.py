"""The window's status bar: model, backend, GPU layers, context use and speed, and how many
model headers are still being read."""

from __future__ import annotations

from typing import Any

from PySide6.QtWidgets import QLabel, QProgressBar, QStatusBar, QWidget

from ..chat.records import stat_number


def gpu_layers_text(n_gpu_layers: int, block_count: int, backend: str) -> str:
    """How many of the model's layers run on the GPU, as a user reads it (-1 means all)."""
    if backend == "CPU" or n_gpu_layers == 0:
        return "0"
    if n_gpu_layers < 0 or (block_count and n_gpu_layers >= block_count):
        return "all"
    return f"{n_gpu_layers} of {block_count}" if block_count else str(n_gpu_layers)


METER_TIP = "Tokens of the context used by the last reply (prompt + reply)"


def left_out_text(count: int) -> str:
    """What the context meter's tooltip adds when the oldest messages no longer fit."""
    noun = "message" if count == 1 else "messages"
    return (
        f".\n{count} older {noun} no longer fit in the context: the model did not see them "
        "(marked “not in context” in the chat)."
    )


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
        self.context_meter.setToolTip(METER_TIP)
        self.context_meter.setMaximumWidth(180)
        self.context_meter.setTextVisible(True)
        self.context_meter.setRange(0, 1)
        self.context_meter.setValue(0)
        self.context_meter.setFormat("— / —")
        self.addPermanentWidget(self.context_meter)
        self.speed_label = self._label("speedStatus", "")
        self.reading_label = QLabel(self)
        self.reading_label.setObjectName("libraryStatus")
        self.reading_label.setAccessibleName("libraryStatus")
        self.reading_label.hide()
        self.addWidget(self.reading_label)
        self.server_label = self._label("serverStatus", "")
        self.server_label.hide()
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
        block_count: int = 0,
    ) -> None:
        """Show the loaded model (or none); ``block_count`` is the model's number of layers."""
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
        self.layers_label.setText(f"GPU layers: {gpu_layers_text(n_gpu_layers, block_count, backend)}")
        self.set_context(0)
        self.speed_label.setText("")

    def set_context(self, used: int) -> None:
        total = max(self.n_ctx, 1)
        self.context_meter.setRange(0, total)
        self.context_meter.setValue(min(used, total))
        self.context_meter.setFormat(f"{used} / {self.n_ctx}" if self.n_ctx else "— / —")

    def set_stats(self, stats: dict[str, Any] | None) -> None:
        """Show the last reply's context use and speed (``GenerationStats.to_dict()``), and in the
        meter's tooltip how many older messages the model no longer saw."""
        left_out = min(int(stat_number(stats, "left_out") or 0), 10**9) if stats else 0
        self.context_meter.setToolTip(METER_TIP + (left_out_text(left_out) if left_out > 0 else ""))
        if not stats:
            self.speed_label.setText("")
            self.set_context(0)
            return
        used = (stat_number(stats, "prompt_tokens") or 0) + (stat_number(stats, "completion_tokens") or 0)
        self.set_context(int(used))
        speed = stat_number(stats, "tokens_per_s") or 0.0
        # Stopped or failed before a second token: there is no speed to tell.
        self.speed_label.setText(f"{speed:.1f} tok/s" if speed > 0 else "")

    def set_reading(self, count: int) -> None:
        """Say that ``count`` model files are being read (new to the library); 0 hides it."""
        self.reading_label.setText(f"Reading {count} model{'s' if count != 1 else ''}…")
        self.reading_label.setVisible(count > 0)

    def reading_text(self) -> str:
        return self.reading_label.text() if not self.reading_label.isHidden() else ""

    def speed_text(self) -> str:
        return self.speed_label.text()

    def set_server(self, url: str, served: int = 0, error: str = "") -> None:
        """Show the local API server's address and requests served ("" hides it), or why it is off."""
        if error:
            self.server_label.setText("API server off")
            self.server_label.setToolTip(error)
        elif url:
            address = url.removeprefix("http://").removesuffix("/v1")
            self.server_label.setText(f"API {address} · {served} request{'s' if served != 1 else ''}")
            self.server_label.setToolTip(f"The local API server: point OpenAI clients at {url}")
        self.server_label.setVisible(bool(url or error))

    def server_text(self) -> str:
        return self.server_label.text() if not self.server_label.isHidden() else ""
