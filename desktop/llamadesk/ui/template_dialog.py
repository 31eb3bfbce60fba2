"""Edit the chat template used for one model, with a live preview of the rendered prompt."""

from __future__ import annotations

from PySide6.QtGui import QFontDatabase
from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QLabel,
    QPlainTextEdit,
    QPushButton,
    QSplitter,
    QVBoxLayout,
    QWidget,
)

from ..chat import CHATML_TEMPLATE, TemplateError, render_prompt

SAMPLE = [
    {"role": "system", "content": "You are a helpful assistant."},
    {"role": "user", "content": "Hello!"},
    {"role": "assistant", "content": "Hi! How can I help?"},
    {"role": "user", "content": "What is a llama?"},
]


class TemplateDialog(QDialog):
    """Shows the model's own template, lets the user override it, previews the result.

    ``result_override()`` is the template to store ("" = use the model's own).
    """

    def __init__(
        self,
        model_name: str,
        model_template: str | None,
        override: str,
        *,
        bos_token: str = "",
        eos_token: str = "",
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self.setObjectName("templateDialog")
        self.setAccessibleName("Chat template")
        self.setWindowTitle(f"Chat template — {model_name}")
        self.resize(820, 620)
        self._model_template = model_template or ""
        self._bos, self._eos = bos_token, eos_token
        own = "its own template" if model_template else "no template of its own (ChatML is used)"
        intro = QLabel(
            f"<b>{model_name}</b> has {own}. The template turns the conversation into the text the model "
            "was trained on; a wrong one makes good models babble. Edit it only if replies look broken. "
            "Templates run in a sandbox: they cannot reach files or the network."
        )
        intro.setWordWrap(True)
        mono = QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont)
        self.editor = QPlainTextEdit(override or self._model_template or CHATML_TEMPLATE)
        self.editor.setObjectName("templateEdit")
        self.editor.setAccessibleName("Template")
        self.editor.setFont(mono)
        self.preview = QPlainTextEdit()
        self.preview.setObjectName("templatePreview")
        self.preview.setAccessibleName("Rendered example")
        self.preview.setReadOnly(True)
        self.preview.setFont(mono)
        self.status = QLabel()
        self.status.setObjectName("templateStatus")
        self.status.setWordWrap(True)
        split = QSplitter()
        split.addWidget(self.editor)
        split.addWidget(self.preview)
        buttons = QDialogButtonBox(
            QDialogButtonBox.StandardButton.Save | QDialogButtonBox.StandardButton.Cancel
        )
        self.reset_button = QPushButton("Use the Model's Own")
        self.reset_button.setObjectName("templateResetButton")
        buttons.addButton(self.reset_button, QDialogButtonBox.ButtonRole.ResetRole)
        self.save_button = buttons.button(QDialogButtonBox.StandardButton.Save)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        self.reset_button.clicked.connect(self._reset)
        layout = QVBoxLayout(self)
        layout.addWidget(intro)
        layout.addWidget(split, 1)
        layout.addWidget(self.status)
        layout.addWidget(buttons)
        self.editor.textChanged.connect(self._render)
        self._render()

    def _reset(self) -> None:
        self.editor.setPlainText(self._model_template or CHATML_TEMPLATE)

    def _render(self) -> None:
        try:
            text = render_prompt(self.editor.toPlainText(), SAMPLE, bos_token=self._bos, eos_token=self._eos)
        except TemplateError as exc:
            self.preview.setPlainText("")
            self.status.setText(f"<span style='color:#c62828'>{exc}</span>")
            self.save_button.setEnabled(False)
            return
        self.preview.setPlainText(text)
        self.status.setText("The example conversation above renders without errors.")
        self.save_button.setEnabled(True)

    def result_override(self) -> str:
        """The override to store: empty when the text is the model's own template."""
        text = self.editor.toPlainText()
        own = self._model_template or CHATML_TEMPLATE
        return "" if text.strip() == own.strip() else text
