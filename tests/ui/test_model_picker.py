"""The toolbar's model picker: a model loads only when the user picks it from the open list."""

from __future__ import annotations

from pathlib import Path

import pytest
from PySide6.QtCore import QPoint, QPointF, Qt
from PySide6.QtGui import QStandardItemModel, QWheelEvent
from PySide6.QtWidgets import QApplication
from pytestqt.qtbot import QtBot

from llamadesk.ui.model_picker import ModelEntry, ModelPicker

# Opening a popup on the offscreen platform logs these harmless warnings.
pytestmark = pytest.mark.qt_log_ignore(
    "does not support raise", "grabbing the keyboard", "propagateSizeHints"
)


def make_picker(qtbot: QtBot) -> ModelPicker:
    picker = ModelPicker()
    qtbot.addWidget(picker)
    picker.set_models(
        [
            ModelEntry("a", "Alpha", Path("/m/alpha.gguf"), 100_000_000, "Q4_K_M", "Fits in RAM"),
            ModelEntry("b", "Beta", Path("/m/beta.gguf"), 200_000_000, "Q8_0", "Fits in RAM"),
            ModelEntry("c", "Gamma", Path("/m/gamma.gguf.part"), 5_000, "", "", ok=False, message="partial"),
        ]
    )
    return picker


def test_arrow_keys_and_wheel_never_load_a_model(qtbot: QtBot) -> None:
    picker = make_picker(qtbot)
    picker.set_current_path("/m/alpha.gguf")
    with qtbot.assertNotEmitted(picker.modelChosen), qtbot.assertNotEmitted(picker.openFileRequested):
        for _ in range(5):
            qtbot.keyClick(picker, Qt.Key.Key_Down)
            picker.hidePopup()
        wheel = QWheelEvent(
            QPointF(5, 5),
            QPointF(picker.mapToGlobal(QPoint(5, 5))),
            QPoint(0, 0),
            QPoint(0, -120),
            Qt.MouseButton.NoButton,
            Qt.KeyboardModifier.NoModifier,
            Qt.ScrollPhase.NoScrollPhase,
            False,
        )
        QApplication.sendEvent(picker, wheel)
    assert picker.currentText().startswith("Alpha")


def test_down_arrow_opens_the_list_and_a_pick_loads(qtbot: QtBot) -> None:
    picker = make_picker(qtbot)
    picker.show()
    qtbot.keyClick(picker, Qt.Key.Key_Down)
    qtbot.waitUntil(picker.view().isVisible)
    with qtbot.waitSignal(picker.modelChosen) as chosen:
        picker.choose_index(picker.index_of("/m/beta.gguf"))
    assert chosen.args == ["/m/beta.gguf"]
    picker.hidePopup()


def test_unusable_models_are_listed_but_cannot_be_chosen(qtbot: QtBot) -> None:
    picker = make_picker(qtbot)
    index = picker.index_of("/m/gamma.gguf.part")
    model = picker.model()
    assert isinstance(model, QStandardItemModel)
    item = model.item(index)
    assert "partial" in item.text() and not item.isEnabled()
    assert model.item(picker.index_of("/m/alpha.gguf")).isEnabled()
