"""The Think switch and a thinking reply through the real window: real llama.cpp on the starter model,
real SQLite. The starter model does not reason, so a template override in SmolLM3's style (``/think``
and ``/no_think`` in the system prompt) opens ``<think>`` in the generation prompt when thinking is on:
the model's reply is then its thinking, exactly as a reasoning model stopped mid-thought writes it."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from PySide6.QtCore import Qt
from pytestqt.qtbot import QtBot

from llamadesk.paths import get_paths
from llamadesk.settings import ModelPreset, Settings, SettingsStore
from llamadesk.ui.main_window import MainWindow
from llamadesk.ui.message_widget import MessageCard

pytestmark = [pytest.mark.model, pytest.mark.qt_log_ignore("does not support propagateSizeHints")]

MakeWindow = Callable[[], MainWindow]
TIMEOUT = 120_000
FLAG_TEMPLATE = (
    "{%- set ns = namespace(mode='/think') -%}"
    "{%- for m in messages -%}{%- if m.role == 'system' and '/no_think' in m.content -%}"
    "{%- set ns.mode = '/no_think' -%}{%- endif -%}{%- endfor -%}"
    "{% for m in messages %}<|im_start|>{{ m.role }}\n"
    "{{ m.content.replace('/no_think', '').replace('/think', '').strip() }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n"
    "{% if ns.mode == '/no_think' %}<think>\n\n</think>\n\n{% else %}<think>\n{% endif %}{% endif %}"
)


def _send(qtbot: QtBot, window: MainWindow, text: str) -> str:
    """Send ``text``; returns the prompt the model was given once the reply has finished."""
    with qtbot.waitSignal(window.controller.contextPrepared, timeout=TIMEOUT) as prepared:  # noqa: SIM117
        with qtbot.waitSignal(window.controller.generationFinished, timeout=TIMEOUT):
            window.replies.send(text)
    return str(prepared.args[0].prompt)


def _card(window: MainWindow, message_id: int) -> MessageCard:
    card = next((c for c in window.chat_view.findChildren(MessageCard) if c.item.id == message_id), None)
    assert card is not None
    return card


def test_think_switch_and_a_thinking_reply(
    qtbot: QtBot, make_window: MakeWindow, llamadesk_home: Path, starter_model: Path
) -> None:
    settings = Settings()
    settings.generation.max_tokens = 8
    settings.generation.temperature = 0.0
    settings.generation.seed = 1
    settings.runtime.n_ctx = 2048
    SettingsStore(get_paths(llamadesk_home).ensure().settings_file).save(settings)
    window = make_window()
    key = window.models.model_key(starter_model)
    preset = ModelPreset(generation=settings.generation, runtime=settings.runtime, thinking="off")
    window.settings = window.settings.model_copy(
        update={"template_overrides": {key: FLAG_TEMPLATE}, "presets": {key: preset}}
    )
    with qtbot.waitSignal(window.controller.modelLoaded, timeout=TIMEOUT):
        window.models.load_model(starter_model)
    composer = window.composer
    assert composer.think_button.isVisibleTo(window) and composer.thinking_choice() == "off"  # the preset's
    qtbot.mouseClick(composer.think_button, Qt.MouseButton.LeftButton)
    assert composer.thinking_choice() == "on"

    prompt = _send(qtbot, window, "Name a fruit.")
    assert prompt.endswith("<think>\n")
    conversation_id = window.conversation_id
    assert conversation_id is not None
    first = window.store.active_path(conversation_id)[-1]
    assert first.thinking.strip() and first.content == ""  # never closed: all of it is thinking
    assert first.stats is not None and first.stats["thinking_s"] >= 0
    block = _card(window, first.id).thinking_block
    assert block is not None and block.label().startswith("Thought for") and not block.expanded
    assert first.thinking not in window.chat_view.rendered_text(first.id)
    qtbot.mouseClick(block.toggle, Qt.MouseButton.LeftButton)
    assert first.thinking.strip() in window.chat_view.rendered_text(first.id)

    qtbot.mouseClick(composer.think_button, Qt.MouseButton.LeftButton)
    assert composer.thinking_choice() == "off"
    prompt = _send(qtbot, window, "Another one.")
    assert prompt.endswith("<think>\n\n</think>\n\n")
    assert first.thinking.strip() not in prompt  # earlier thinking is not sent back
    second = window.store.active_path(conversation_id)[-1]
    assert second.thinking == "" and second.content.strip()
    assert _card(window, second.id).thinking_block is None
