"""Form rows generated from a pydantic model's JSON schema, so every setting is declared once.

Titles become labels, descriptions become tooltips and a short help line, ``ge``/``le`` become
spin box ranges and ``json_schema_extra`` hints (``tab``, ``widget``, ``step``, ``special``,
``suffix``, ``labels``, ``object_name``, ``required``, ``hidden``) tune the widget.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel
from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QColor, QPalette, QValidator
from PySide6.QtWidgets import (
    QApplication,
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPlainTextEdit,
    QPushButton,
    QSlider,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

_NAME_SUFFIX = {
    "bool": "Check",
    "int": "Spin",
    "float": "Spin",
    "choice": "Combo",
    "lines": "Edit",
    "text": "Edit",
    "multiline": "Edit",
    "folder": "Edit",
}


@dataclass(frozen=True)
class FieldSpec:
    """Everything needed to build one editor, read from the model's schema."""

    section: str
    name: str
    title: str
    description: str
    kind: str  # bool | int | float | choice | lines | text | multiline | folder
    default: Any
    tab: str
    object_name: str
    minimum: float | None = None
    maximum: float | None = None
    step: float | None = None
    choices: tuple[str, ...] = ()
    labels: Mapping[str, str] = field(default_factory=dict)
    special: Mapping[int, str] = field(default_factory=dict)
    suffix: str = ""
    slider: bool = False
    required: bool = False
    hidden: bool = False
    placeholder: str = ""  # shown in an empty editor (a "lines" field without one shows the stop-string hint)

    @property
    def key(self) -> str:
        return f"{self.section}.{self.name}"

    @property
    def help_text(self) -> str:
        """The description's first sentence, shown under the field."""
        match = re.match(r"(.+?[.!?])(\s|$)", self.description)
        return match.group(1) if match else self.description


def camel_case(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.capitalize() for part in rest)


def field_specs(model: type[BaseModel], section: str, default_tab: str) -> list[FieldSpec]:
    """One FieldSpec per field of ``model``, in declaration order."""
    properties: dict[str, Any] = model.model_json_schema()["properties"]
    specs = []
    for name, prop in properties.items():
        kind = _kind(prop)
        widget = prop.get("widget")
        if kind == "text" and widget in ("multiline", "folder"):
            kind = widget
        default = model.model_fields[name].get_default(call_default_factory=True)
        specs.append(
            FieldSpec(
                section=section,
                name=name,
                title=prop.get("title", name),
                description=prop.get("description", ""),
                kind=kind,
                default=default,
                tab=prop.get("tab", default_tab),
                object_name=prop.get("object_name", camel_case(name) + _NAME_SUFFIX[kind]),
                minimum=prop.get("minimum"),
                maximum=prop.get("maximum"),
                step=prop.get("step"),
                choices=tuple(prop.get("enum", ())),
                labels=dict(prop.get("labels", {})),
                special={int(k): v for k, v in prop.get("special", {}).items()},
                suffix=prop.get("suffix", ""),
                slider=widget == "slider",
                required=bool(prop.get("required", False)),
                hidden=bool(prop.get("hidden", False)),
                placeholder=str(prop.get("placeholder", "")),
            )
        )
    return specs


def _kind(prop: Mapping[str, Any]) -> str:
    if "enum" in prop:
        return "choice"
    kind = {"boolean": "bool", "integer": "int", "number": "float", "array": "lines", "string": "text"}
    return kind.get(prop.get("type", "string"), "text")


def error_color() -> QColor:
    """A red that reads well on the current palette."""
    app = QApplication.instance()
    dark = False
    if isinstance(app, QApplication):
        dark = app.palette().color(QPalette.ColorRole.Window).lightness() < 128
    return QColor("#ff7b72" if dark else "#c62828")


# --- stop strings: one per line, with \n \t \\ escapes -------------------------------------------

_ESCAPES = {"n": "\n", "t": "\t", "\\": "\\"}


def encode_lines(values: Iterable[str]) -> str:
    """Stop strings as editable text, one per line."""
    return "\n".join(v.replace("\\", "\\\\").replace("\n", "\\n").replace("\t", "\\t") for v in values)


def decode_lines(text: str) -> list[str]:
    """Parse one string per line, without repeats; raises ValueError naming the line that is wrong."""
    result = []
    for number, line in enumerate(text.split("\n"), start=1):
        if not line:
            continue
        if not line.strip():
            raise ValueError(f"Line {number} holds only spaces; write \\n for a line break or remove it.")
        out, i = [], 0
        while i < len(line):
            char = line[i]
            if char == "\\":
                nxt = line[i + 1] if i + 1 < len(line) else ""
                if nxt not in _ESCAPES:
                    shown = f"\\{nxt}" if nxt else "a lone \\ at the end"
                    raise ValueError(
                        f"Line {number}: {shown} is not understood; use \\n (new line), \\t (tab) or \\\\."
                    )
                out.append(_ESCAPES[nxt])
                i += 2
            else:
                out.append(char)
                i += 1
        value = "".join(out)
        if value not in result:  # a repeated stop string changes nothing
            result.append(value)
    return result


def _check_writable_folder(path: Path) -> None:
    """Raise ValueError saying why files cannot be saved in ``path`` (created later when missing)."""
    existing = path
    while not existing.exists() and existing.parent != existing:
        existing = existing.parent
    if existing != path and not existing.is_dir():
        raise ValueError(f"This folder cannot be created: {existing} is a file.")
    if not os.access(existing, os.W_OK | os.X_OK):
        if existing == path:
            raise ValueError("You cannot save files in this folder. Choose one you can write to.")
        raise ValueError(f"This folder cannot be created: you cannot write to {existing}.")


# --- editors ------------------------------------------------------------------------------------


def _strip_affixes(box: QSpinBox | QDoubleSpinBox, text: str) -> str:
    """The number part of a spin box's text."""
    return text.removeprefix(box.prefix()).removesuffix(box.suffix()).strip()


class SpecialSpinBox(QSpinBox):
    """A spin box that shows words for special values ("Auto", "All", "Random").

    A number out of range can be typed (the form explains the range under the field) and is
    brought to the nearest limit when the field is left.
    """

    def __init__(self, special: Mapping[int, str], parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._special = dict(special)
        self._words = dict(special)  # the plain words, which can be typed even when longer text is shown

    def set_special_text(self, value: int, text: str) -> None:
        """Change the word shown for a special value (e.g. explain what "Auto" will do)."""
        self._special[value] = text
        if value == self.minimum():
            self.setSpecialValueText(text)
        self._fit_width()

    def _fit_width(self) -> None:
        widest = max((self.fontMetrics().horizontalAdvance(t) for t in self._special.values()), default=0)
        self.setMinimumWidth(max(150, widest + 44))

    def _special_value(self, text: str) -> int | None:
        stripped = text.strip().lower()
        for table in (self._special, self._words):
            for value, word in table.items():
                if word.lower() == stripped:
                    return value
        return None

    def _typed_number(self, text: str) -> int | None:
        try:
            return int(_strip_affixes(self, text))
        except ValueError:
            return None

    def textFromValue(self, value: int) -> str:
        return self._special.get(value, super().textFromValue(value))

    def valueFromText(self, text: str) -> int:
        special = self._special_value(text)
        return special if special is not None else super().valueFromText(text)

    def validate(self, text: str, pos: int) -> tuple[QValidator.State, str, int]:
        if self._special_value(text) is not None:
            return QValidator.State.Acceptable, text, pos
        stripped = text.strip().lower()
        words = (*self._special.values(), *self._words.values())
        if stripped and any(word.lower().startswith(stripped) for word in words):
            return QValidator.State.Intermediate, text, pos
        state, text, pos = super().validate(text, pos)
        number = self._typed_number(text)
        if state == QValidator.State.Invalid and number is not None:
            return QValidator.State.Intermediate, text, pos
        return state, text, pos

    def fixup(self, text: str) -> str:
        number = self._typed_number(text)
        if number is None:
            return super().fixup(text)
        clamped = min(max(number, self.minimum()), self.maximum())
        return self.prefix() + super().textFromValue(clamped) + self.suffix()


class DecimalSpinBox(QDoubleSpinBox):
    """A number field that shows at least ``shown`` decimals and more only when the value has them.

    A value such as 0.025 is kept as it is instead of being rounded to the step's precision, and,
    like SpecialSpinBox, a number out of range can be typed and is explained by the form.
    """

    EXTRA_DECIMALS = 2

    def __init__(self, shown: int, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._shown = shown
        self.setDecimals(shown + self.EXTRA_DECIMALS)

    def textFromValue(self, value: float) -> str:
        text = super().textFromValue(value)
        point = self.locale().decimalPoint()
        if point not in text:
            return text
        whole, fraction = text.split(point, 1)
        fraction = fraction.rstrip("0").ljust(self._shown, "0")
        return f"{whole}{point}{fraction}" if fraction else whole

    def _typed_number(self, text: str) -> float | None:
        value, ok = self.locale().toDouble(_strip_affixes(self, text))
        return value if ok and math.isfinite(value) else None

    def validate(self, text: str, pos: int) -> tuple[QValidator.State, str, int]:
        state, text, pos = super().validate(text, pos)
        number = self._typed_number(text)
        out_of_range = number is not None and not self.minimum() <= number <= self.maximum()
        if state == QValidator.State.Invalid and out_of_range:
            return QValidator.State.Intermediate, text, pos
        return state, text, pos

    def fixup(self, text: str) -> str:
        number = self._typed_number(text)
        if number is None or self.minimum() <= number <= self.maximum():
            return super().fixup(text)
        clamped = min(max(number, self.minimum()), self.maximum())
        return self.prefix() + self.textFromValue(clamped) + self.suffix()


class FieldEditor:
    """Builds the input widget for one FieldSpec and converts its value both ways."""

    def __init__(self, spec: FieldSpec, parent: QWidget) -> None:
        self.spec = spec
        self.row = QWidget(parent)
        self._slider: QSlider | None = None
        self._shown_text = ""
        self.widget = self._build()
        self.widget.setObjectName(spec.object_name)
        self.widget.setAccessibleName(spec.title or spec.object_name)  # what a screen reader says
        self.widget.setAccessibleDescription(spec.description)
        self.widget.setToolTip(spec.description)
        self.set_value(spec.default)

    # building

    def _build(self) -> QWidget:
        spec = self.spec
        line = QHBoxLayout()
        line.setContentsMargins(0, 0, 0, 0)
        widget: QWidget
        if spec.kind == "bool":
            widget = QCheckBox(spec.title)
            line.addWidget(widget)
        elif spec.kind == "int":
            spin = SpecialSpinBox(spec.special)
            spin.setRange(
                int(spec.minimum or 0), int(spec.maximum if spec.maximum is not None else 2**31 - 1)
            )
            spin.setSingleStep(int(spec.step or 1))
            spin.setSuffix(spec.suffix)
            if spin.minimum() in spec.special:
                spin.setSpecialValueText(spec.special[spin.minimum()])
            spin._fit_width()
            widget = spin
            line.addWidget(widget)
            line.addStretch(1)
        elif spec.kind == "float":
            widget = self._build_float(line)
        elif spec.kind == "choice":
            combo = QComboBox()
            for choice in spec.choices:
                combo.addItem(spec.labels.get(choice, choice.capitalize()), choice)
            combo.setMinimumWidth(150)
            widget = combo
            line.addWidget(widget)
            line.addStretch(1)
        elif spec.kind in ("lines", "multiline"):
            edit = QPlainTextEdit()
            edit.setTabChangesFocus(True)
            edit.setFixedHeight(edit.fontMetrics().lineSpacing() * (3 if spec.kind == "lines" else 4) + 14)
            if spec.kind == "lines":
                edit.setPlaceholderText(spec.placeholder or "One per line, e.g. ### User:   (\\n = new line)")
            widget = edit
            line.addWidget(widget)
        elif spec.kind == "folder":
            widget = QLineEdit()
            browse = QPushButton("Browse…")
            browse.setObjectName(spec.object_name.removesuffix("Edit") + "BrowseButton")
            browse.setAccessibleName(browse.objectName())
            browse.setToolTip(f"Choose the {spec.title.lower()}")
            browse.clicked.connect(self._browse)
            line.addWidget(widget, 1)
            line.addWidget(browse)
        else:
            widget = QLineEdit()
            line.addWidget(widget)
        self.row.setLayout(line)
        return widget

    def _build_float(self, line: QHBoxLayout) -> QDoubleSpinBox:
        spec = self.spec
        step = spec.step or (0.01 if (spec.maximum or 1) - (spec.minimum or 0) <= 1 else 0.05)
        decimals = max(1, -math.floor(math.log10(step))) if step < 1 else 1
        spin = DecimalSpinBox(decimals)
        spin.setSingleStep(step)
        spin.setRange(spec.minimum or 0.0, spec.maximum if spec.maximum is not None else 1e9)
        spin.setSuffix(spec.suffix)
        spin.setMinimumWidth(150)
        if spec.slider and spec.minimum is not None and spec.maximum is not None:
            slider = QSlider(Qt.Orientation.Horizontal)
            slider.setRange(0, round((spec.maximum - spec.minimum) / step))
            slider.setObjectName(spec.object_name.removesuffix("Spin") + "Slider")
            slider.setAccessibleName(slider.objectName())
            slider.setToolTip(spec.description)
            slider.setMinimumWidth(160)
            minimum = spec.minimum
            # Only the user's slider moves write the spin box: a typed 0.33 stays 0.33, not a slider step.
            slider.actionTriggered.connect(
                lambda _action: spin.setValue(minimum + slider.sliderPosition() * step)
            )
            slider.sliderMoved.connect(lambda pos: spin.setValue(minimum + pos * step))

            def follow(value: float) -> None:
                slider.blockSignals(True)
                slider.setValue(round((value - minimum) / step))
                slider.blockSignals(False)

            spin.valueChanged.connect(follow)
            self._slider = slider
            line.addWidget(spin)
            line.addWidget(slider, 1)
        else:
            line.addWidget(spin)
            line.addStretch(1)
        return spin

    def _browse(self) -> None:
        assert isinstance(self.widget, QLineEdit)
        start = self.widget.text() or self.widget.placeholderText().removeprefix("Default: ")
        chosen = QFileDialog.getExistingDirectory(self.row, f"Choose the {self.spec.title.lower()}", start)
        if chosen:
            self.widget.setText(chosen)

    # values

    def value(self) -> Any:
        """The value in the model's type; raises ValueError with a message for bad text."""
        spec, w = self.spec, self.widget
        if isinstance(w, QCheckBox):
            return w.isChecked()
        if isinstance(w, QSpinBox | QDoubleSpinBox):
            if not w.hasAcceptableInput():
                raise ValueError(self._range_message())
            return w.value()
        if isinstance(w, QComboBox):
            return w.currentData()
        if isinstance(w, QPlainTextEdit):
            text = w.toPlainText()
            return decode_lines(text) if spec.kind == "lines" else text
        assert isinstance(w, QLineEdit)
        text = w.text().strip()
        if spec.required and not text:
            raise ValueError(f"{spec.title} cannot be empty.")
        if spec.kind == "folder" and text:
            path = Path(text).expanduser()
            if not path.is_absolute():
                raise ValueError("Enter a full path, for example /home/you/Models.")
            if path.exists() and not path.is_dir():
                raise ValueError("This is a file, not a folder.")
            if text != self._shown_text:  # a saved folder that is missing now (a drive unplugged) stays
                _check_writable_folder(path)
        return text

    def _range_message(self) -> str:
        """What a number field accepts, naming the field: "Top-k must be a whole number from 0 to 1000"."""
        spec, w = self.spec, self.widget
        words: list[str] = []
        if isinstance(w, QSpinBox):
            low = w.minimum()
            while low in spec.special and low < w.maximum():  # "Auto", "All": the words come first
                words.append(spec.special[low])
                low += 1
            kind, bounds = "a whole number", f"from {low} to {w.maximum()}"
        else:
            assert isinstance(w, QDoubleSpinBox)
            kind, bounds = "a number", f"from {w.minimum():g} to {w.maximum():g}"
        choices = f"{', '.join(words)} or " if words else ""
        return f"{spec.title} must be {choices}{kind} {bounds}."

    def set_value(self, value: Any) -> None:
        w = self.widget
        if isinstance(w, QCheckBox):
            w.setChecked(bool(value))
        elif isinstance(w, QSpinBox):
            w.setValue(int(value))
        elif isinstance(w, QDoubleSpinBox):
            w.setValue(float(value))
        elif isinstance(w, QComboBox):
            w.setCurrentIndex(max(0, w.findData(value)))
        elif isinstance(w, QPlainTextEdit):
            w.setPlainText(encode_lines(value) if self.spec.kind == "lines" else str(value))
        elif isinstance(w, QLineEdit):
            self._shown_text = str(value).strip()
            w.setText(str(value))

    def connect_changed(self, slot: Callable[..., None]) -> None:
        w = self.widget
        if isinstance(w, QCheckBox):
            w.toggled.connect(slot)
        elif isinstance(w, QSpinBox | QDoubleSpinBox):
            w.valueChanged.connect(slot)
            # Text out of range or half typed changes no value but needs its message.
            w.lineEdit().textChanged.connect(slot)
        elif isinstance(w, QComboBox):
            w.currentIndexChanged.connect(slot)
        elif isinstance(w, QPlainTextEdit | QLineEdit):
            w.textChanged.connect(slot)


class SettingsForm(QWidget):
    """A form of editors for some settings fields; reports changes and shows errors per field.

    Signals:
        changed: any value was edited.
    """

    changed = Signal()

    def __init__(self, specs: Iterable[FieldSpec], parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.form = QFormLayout(self)
        self.form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
        self.form.setLabelAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignTop)
        self.form.setVerticalSpacing(8)
        self.form.setHorizontalSpacing(14)
        self.editors: dict[str, FieldEditor] = {}
        self._errors: dict[str, QLabel] = {}
        for spec in specs:
            if not spec.hidden:
                self.add_field(spec)

    def add_field(self, spec: FieldSpec) -> FieldEditor:
        editor = FieldEditor(spec, self)
        cell = QWidget(self)
        column = QVBoxLayout(cell)
        column.setContentsMargins(0, 0, 0, 0)
        column.setSpacing(2)
        column.addWidget(editor.row)
        help_label = QLabel(spec.help_text, cell)
        help_label.setObjectName(camel_case(spec.name) + "Help")
        help_label.setProperty("role", "help")
        help_label.setWordWrap(len(spec.help_text) > 70)
        help_label.setForegroundRole(QPalette.ColorRole.PlaceholderText)
        font = help_label.font()
        font.setPointSizeF(max(7.0, font.pointSizeF() * 0.9))
        help_label.setFont(font)
        help_label.setToolTip(spec.description)
        column.addWidget(help_label)
        error = QLabel(cell)
        error.setObjectName(spec.object_name + "Error")
        error.setAccessibleName(spec.object_name + "Error")
        error.setProperty("role", "error")
        error.setWordWrap(True)
        error.setVisible(False)
        column.addWidget(error)
        column.addStretch(1)
        if spec.kind == "bool":
            self.form.addRow("", cell)
        else:
            label = QLabel(spec.title + ":", self)
            label.setBuddy(editor.widget)
            label.setToolTip(spec.description)
            label.setContentsMargins(0, 4, 0, 0)
            self.form.addRow(label, cell)
        editor.connect_changed(lambda *_: self.changed.emit())
        self.editors[spec.key] = editor
        self._errors[spec.key] = error
        return editor

    def values(self) -> tuple[dict[str, dict[str, Any]], dict[str, str]]:
        """Values by section and field, plus an error message per field key that could not be read."""
        values: dict[str, dict[str, Any]] = {}
        errors: dict[str, str] = {}
        for key, editor in self.editors.items():
            try:
                values.setdefault(editor.spec.section, {})[editor.spec.name] = editor.value()
            except ValueError as exc:
                errors[key] = str(exc)
        return values, errors

    def set_values(self, section: str, data: Mapping[str, Any]) -> None:
        for editor in self.editors.values():
            if editor.spec.section == section and editor.spec.name in data:
                editor.set_value(data[editor.spec.name])

    def reset_defaults(self) -> None:
        for editor in self.editors.values():
            editor.set_value(editor.spec.default)

    def show_errors(self, errors: Mapping[str, str]) -> None:
        """Show each message under its field in red; clear the others."""
        color = error_color().name()
        for key, label in self._errors.items():
            message = errors.get(key, "")
            label.setText(message)
            label.setStyleSheet(f"color: {color};")
            label.setVisible(bool(message))
