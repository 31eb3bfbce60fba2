"""The chat-template editor: live preview, errors refused in place, override or model's own."""

from __future__ import annotations

from pytestqt.qtbot import QtBot

from llamadesk.chat import CHATML_TEMPLATE
from llamadesk.ui.template_dialog import TemplateDialog

OWN = (
    "{% for m in messages %}<{{ m.role }}>{{ m.content }}\n{% endfor %}"
    "{% if add_generation_prompt %}<assistant>{% endif %}"
)


def test_preview_shows_the_rendered_example(qtbot: QtBot) -> None:
    dialog = TemplateDialog("Test model", OWN, "")
    qtbot.addWidget(dialog)
    assert dialog.editor.toPlainText() == OWN
    assert dialog.preview.toPlainText().startswith("<system>You are a helpful assistant.\n<user>Hello!")
    assert dialog.preview.toPlainText().endswith("<assistant>")
    assert dialog.save_button.isEnabled()
    assert dialog.result_override() == ""


def test_broken_and_malicious_templates_are_refused_in_place(qtbot: QtBot) -> None:
    dialog = TemplateDialog("Test model", OWN, "")
    qtbot.addWidget(dialog)
    dialog.editor.setPlainText("{% for m in messages %}{{ m.content }")
    assert not dialog.save_button.isEnabled()
    assert "line 1" in dialog.status.text()
    dialog.editor.setPlainText("{{ ''.__class__.__mro__[1].__subclasses__() }}")
    assert not dialog.save_button.isEnabled()
    assert "security" in dialog.status.text()
    assert dialog.preview.toPlainText() == ""


def test_override_and_reset_to_the_models_own(qtbot: QtBot) -> None:
    dialog = TemplateDialog("Test model", OWN, "custom {{ messages|length }}")
    qtbot.addWidget(dialog)
    assert dialog.editor.toPlainText() == "custom {{ messages|length }}"
    # this template never writes the system turn, so it is merged into the first user turn
    assert dialog.preview.toPlainText() == "custom 3"
    assert dialog.result_override() == "custom {{ messages|length }}"
    dialog.reset_button.click()
    assert dialog.result_override() == ""


def test_model_without_template_starts_from_chatml(qtbot: QtBot) -> None:
    dialog = TemplateDialog("Bare model", None, "")
    qtbot.addWidget(dialog)
    assert dialog.editor.toPlainText() == CHATML_TEMPLATE
    assert "<|im_start|>user\nHello!<|im_end|>" in dialog.preview.toPlainText()
