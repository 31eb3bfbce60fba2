"""The window first, the library after: models known to the header cache are listed at once, new
files are read in the background ("Checking…" until then), and the GUI thread never reads a
model file, neither at start-up nor when a model loads."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from PySide6.QtGui import QStandardItemModel
from pytestqt.qtbot import QtBot

from hub_server import make_gguf
from llamadesk.engine import gguf_info, header_cache
from llamadesk.hub.library import ModelLibrary
from llamadesk.paths import Paths, get_paths
from llamadesk.settings import Settings, SettingsStore
from llamadesk.ui.main_window import MainWindow

pytestmark = pytest.mark.qt_log_ignore("does not support propagateSizeHints", "does not support raise")

MakeWindow = Callable[[], MainWindow]  # the make_window fixture (tests/ui/conftest.py)
TIMEOUT = 60_000


@dataclass
class Reads:
    """Who reads model files: every header read and every ``inspect_gguf`` call, with its thread."""

    headers: list[tuple[threading.Thread, Path]] = field(default_factory=list)
    inspections: list[tuple[threading.Thread, Path, bool]] = field(default_factory=list)
    hold: dict[Path, threading.Event] = field(default_factory=dict)  # a read of this file waits

    def on_gui_thread(self) -> list[str]:
        gui = threading.main_thread()
        found = [f"read {path.name}" for thread, path in self.headers if thread is gui]
        found += [f"inspect {path.name}" for thread, path, read in self.inspections if read and thread is gui]
        return found


@pytest.fixture
def reads(monkeypatch: pytest.MonkeyPatch) -> Iterator[Reads]:
    """Record header reads; start from an empty in-memory header cache, as a new process does."""
    seen = Reads()
    read_facts, inspect = gguf_info._read_facts, gguf_info._inspect

    def recording_read(path: Path, *, remember: bool = True) -> dict[str, Any]:
        seen.headers.append((threading.current_thread(), Path(path)))
        gate = seen.hold.get(Path(path))
        if gate is not None:
            assert gate.wait(30), "the test never let the read go on"
        return read_facts(path, remember=remember)

    def recording_inspect(path: Path, *, read: bool) -> Any:
        seen.inspections.append((threading.current_thread(), Path(path), read))
        return inspect(path, read=read)

    monkeypatch.setattr(gguf_info, "_read_facts", recording_read)
    monkeypatch.setattr(gguf_info, "_inspect", recording_inspect)
    monkeypatch.setattr(header_cache, "_current", header_cache.HeaderCache())
    yield seen
    for gate in seen.hold.values():
        gate.set()


@pytest.fixture
def paths(llamadesk_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Paths:
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-hf-cache"))  # only our models are listed
    return get_paths(llamadesk_home).ensure()


def add_model(paths: Paths, number: int) -> Path:
    return make_gguf(paths.models_dir / f"acme__Model{number}-GGUF" / f"Model{number}-Q8_0.gguf", seed=number)


def warm_header_cache(paths: Paths, reads: Reads, monkeypatch: pytest.MonkeyPatch) -> None:
    """List the library once, as an earlier run of LlamaDesk did; then forget everything this
    process remembers, so only the cache file can answer."""
    header_cache.configure(paths.data_dir / header_cache.CACHE_FILE_NAME)
    ModelLibrary(paths).list()
    header_cache.flush()
    monkeypatch.setattr(header_cache, "_current", header_cache.HeaderCache())
    reads.headers.clear()
    reads.inspections.clear()


def picker_entry(window: MainWindow, path: Path) -> tuple[str, bool]:
    """(text, can be chosen) of ``path``'s row in the model picker."""
    picker = window.model_picker
    index = picker.index_of(path)
    assert index > 0, f"{path.name} is not in the picker"
    model = picker.model()
    assert isinstance(model, QStandardItemModel)
    return picker.itemText(index), model.item(index).isEnabled()


def test_models_in_the_header_cache_are_listed_without_reading_a_file(
    qtbot: QtBot, make_window: MakeWindow, paths: Paths, reads: Reads, monkeypatch: pytest.MonkeyPatch
) -> None:
    models = [add_model(paths, number) for number in range(3)]
    warm_header_cache(paths, reads, monkeypatch)

    window = make_window()
    qtbot.waitUntil(lambda: window.models.library_ready, timeout=TIMEOUT)
    for path in models:
        text, usable = picker_entry(window, path)
        assert usable and "Q8_0" in text and "Checking" not in text
    assert header_cache.current().reads == 0 and reads.headers == []
    assert window.status.reading_text() == ""


def test_new_files_are_checked_in_the_background_and_then_listed(
    qtbot: QtBot, make_window: MakeWindow, paths: Paths, reads: Reads, monkeypatch: pytest.MonkeyPatch
) -> None:
    known = add_model(paths, 1)
    warm_header_cache(paths, reads, monkeypatch)
    new = add_model(paths, 2)
    reads.hold[new] = threading.Event()  # its header read waits until the test has looked

    window = make_window()
    qtbot.waitUntil(lambda: window.model_picker.index_of(new) > 0, timeout=TIMEOUT)
    text, usable = picker_entry(window, new)
    assert not usable and "Checking…" in text  # listed at once, but it can't be chosen yet
    assert picker_entry(window, known)[1]
    assert window.status.reading_text() == "Reading 1 model…"
    assert window.status.reading_label.isVisibleTo(window)

    page = window.hub.open_model_library()  # My models shows the same list, with the same state
    row = next(m for m in page.models() if m.path == new)
    assert page.select(row.key) and not page.load_button.isEnabled()
    assert page.table.data(page.table.index(page.table.row_of(row.key), 6)) == "Checking…"
    with qtbot.assertNotEmitted(page.loadRequested):
        page.load_selected()
    assert "being checked" in page.message_text()

    with qtbot.waitSignal(window.models.modelsListed, timeout=TIMEOUT):
        reads.hold[new].set()
    text, usable = picker_entry(window, new)
    assert usable and "Checking" not in text
    assert window.status.reading_text() == "" and not window.status.reading_label.isVisibleTo(window)
    qtbot.waitUntil(lambda: page.table.data(page.table.index(page.table.row_of(row.key), 6)) == "Ready")
    assert page.load_button.isEnabled()
    assert [path for _thread, path in reads.headers] == [new]  # only the new file was read
    assert reads.on_gui_thread() == []


@pytest.mark.model
def test_the_gui_thread_never_reads_a_model_file(
    qtbot: QtBot,
    make_window: MakeWindow,
    paths: Paths,
    reads: Reads,
    starter_model: Path,
) -> None:
    for number in range(3):
        add_model(paths, number)
    settings = Settings()
    settings.runtime.n_ctx = 512
    settings.app.last_model = str(starter_model)  # loaded at start-up
    SettingsStore(paths.settings_file).save(settings)

    window = make_window()
    window.show()
    with qtbot.waitSignal(window.controller.modelLoaded, timeout=TIMEOUT):
        pass
    qtbot.waitUntil(lambda: window.models.library_ready, timeout=TIMEOUT)
    qtbot.waitUntil(lambda: not window.controller.busy, timeout=TIMEOUT)
    window.models.unload_model()
    qtbot.waitUntil(lambda: window.controller.loaded is None, timeout=TIMEOUT)
    reads.inspections.clear()
    picker = window.model_picker
    with qtbot.waitSignal(window.controller.modelLoaded, timeout=TIMEOUT):
        picker.choose_index(picker.index_of(starter_model))

    # The load checked the file first, on a worker of the window.
    assert any(
        path == starter_model and read and thread.name.startswith("llamadesk-window")
        for thread, path, read in reads.inspections
    )
    assert len(reads.headers) >= 4  # every model was read (the cache was cold), none on the GUI thread
    assert reads.on_gui_thread() == []
