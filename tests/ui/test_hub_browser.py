"""The Discover window, downloads panel and My models page, against the real huggingface_hub client
talking to a local Hub on 127.0.0.1 (tests/hub_server.py), in the real main window."""

from __future__ import annotations

import os
import shutil
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from PySide6.QtCore import QMimeData, QPoint, QPointF, Qt, QUrl
from PySide6.QtGui import QDesktopServices, QDragEnterEvent, QDropEvent, QGuiApplication
from pytestqt.qtbot import QtBot

from hub_server import FakeHub, make_gguf
from llamadesk.app import create_main_window
from llamadesk.hub import Downloader, DownloadState, DownloadTask, HubCatalog
from llamadesk.paths import get_paths
from llamadesk.settings import Settings, SettingsStore
from llamadesk.ui.hub_browser import FilesModel, HubBrowser
from llamadesk.ui.main_window import MainWindow
from llamadesk.ui.model_library import ModelLibraryPage

# The offscreen platform plugin says these on show() and raise(); they are not about our code.
pytestmark = pytest.mark.qt_log_ignore("does not support propagateSizeHints", "does not support raise")

STARTER_REPO = "HuggingFaceTB/SmolLM2-135M-Instruct-GGUF"
STARTER_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
TINY_REPO = "test/Tiny-GGUF"
GATED_REPO = "test/Gated-GGUF"
HUB_TIMEOUT = 20_000
DOWNLOAD_TIMEOUT = 60_000
README = b"""---
license: apache-2.0
---
# Tiny test model

A *small* model for tests. See [the project](https://example.com/tiny) and [the licence](LICENSE).

```sh
llamadesk chat -m Tiny-Q8_0.gguf "Hello"
```
"""


@pytest.fixture(scope="module")
def gguf_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("served")
    make_gguf(folder / "tiny.gguf", name="Tiny", data_bytes=1_000_000, seed=11)
    make_gguf(folder / "small.gguf", name="Tiny", data_bytes=300_000, seed=12)
    make_gguf(folder / "proj.gguf", name="Projector", data_bytes=50_000, seed=13)
    return folder


@pytest.fixture
def hub(gguf_dir: Path, starter_model: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeHub]:
    with FakeHub(page_size=2) as server:
        server.add_repo(STARTER_REPO, downloads=5000, likes=40)
        server.add_file(STARTER_REPO, STARTER_FILE, starter_model)
        gguf = {"architecture": "llama", "total": 1_100_000_000, "context_length": 2048}
        server.add_repo(TINY_REPO, downloads=4000, likes=10, gguf=gguf)
        server.add_file(TINY_REPO, "Tiny-Q8_0.gguf", gguf_dir / "tiny.gguf")
        server.add_file(TINY_REPO, "Tiny-Q4_K_M.gguf", gguf_dir / "small.gguf")
        server.add_file(TINY_REPO, "mmproj-Tiny-F16.gguf", gguf_dir / "proj.gguf")
        server.add_file(TINY_REPO, "README.md", README, lfs=False)
        server.add_repo(GATED_REPO, gated="auto", downloads=3000)
        server.add_file(GATED_REPO, "Gated-Q4_0.gguf", gguf_dir / "small.gguf")
        server.add_file(GATED_REPO, "README.md", b"# Gated\n", lfs=False)
        for number in range(2):
            repo = f"other/Extra-{number}-GGUF"
            server.add_repo(repo, downloads=100 - number)
            server.add_file(repo, "Extra-Q4_0.gguf", gguf_dir / "proj.gguf")
        monkeypatch.setenv("HF_ENDPOINT", server.url)
        yield server


@pytest.fixture
def window(qtbot: QtBot, llamadesk_home: Path) -> Iterator[MainWindow]:
    settings = Settings()
    settings.generation.max_tokens = 8
    settings.generation.temperature = 0.0
    settings.generation.seed = 1
    settings.runtime.n_ctx = 1024
    SettingsStore(get_paths(llamadesk_home).ensure().settings_file).save(settings)
    main = create_main_window(llamadesk_home)
    qtbot.addWidget(main)
    main.show()
    qtbot.waitUntil(lambda: main.models.library_ready, timeout=HUB_TIMEOUT)
    yield main
    main.close()


def open_browser(qtbot: QtBot, window: MainWindow) -> HubBrowser:
    """Open Discover through the real action and wait for the first page of results."""
    window.commands.browse_action.trigger()
    browser = window.hub.hub_browser
    assert browser is not None and browser.isVisible()
    assert browser.objectName() == "hubBrowser" and browser.accessibleName() == "Discover models"
    qtbot.waitUntil(
        lambda: browser.results.rowCount() > 0 or bool(browser.message_text()), timeout=HUB_TIMEOUT
    )
    return browser


def pick_repo(qtbot: QtBot, browser: HubBrowser, repo_id: str) -> None:
    """Search for ``repo_id`` and select it as a user would; wait for its files."""
    browser.search_edit.setText(repo_id.split("/")[1])
    with qtbot.waitSignal(browser.searchFinished, timeout=HUB_TIMEOUT):
        qtbot.keyClick(browser.search_edit, Qt.Key.Key_Return)
    row = next(i for i, r in enumerate(browser.results.repos) if r.repo_id == repo_id)
    with qtbot.waitSignal(browser.filesLoaded, timeout=HUB_TIMEOUT):
        browser.results_view.selectRow(row)


def select_file(browser: HubBrowser, name: str) -> None:
    row = next(i for i, f in enumerate(browser.files.files) if f.name == name)
    browser.files_view.selectRow(row)


def cell(model: FilesModel, row: int, column: int) -> str:
    return str(model.data(model.index(row, column)))


def start_download(qtbot: QtBot, browser: HubBrowser, name: str) -> DownloadTask:
    select_file(browser, name)
    assert browser.download_button.isEnabled()
    with qtbot.waitSignal(browser.downloadStarted, timeout=5000) as started:
        qtbot.mouseClick(browser.download_button, Qt.MouseButton.LeftButton)
    task = started.args[0]
    assert isinstance(task, DownloadTask)
    return task


def screenshot(widget: object, name: str) -> None:
    """Save a picture of ``widget`` when LLAMADESK_SCREENSHOTS names a folder (for the docs)."""
    folder = os.environ.get("LLAMADESK_SCREENSHOTS")
    if folder:
        widget.grab().save(str(Path(folder) / name))  # type: ignore[attr-defined]


def test_search_sort_and_load_more(qtbot: QtBot, hub: FakeHub, window: MainWindow) -> None:
    browser = open_browser(qtbot, window)
    assert [r.repo_id for r in browser.results.repos] == [STARTER_REPO, TINY_REPO]
    assert browser.load_more_button.isEnabled()
    with qtbot.waitSignal(browser.searchFinished, timeout=HUB_TIMEOUT):
        qtbot.mouseClick(browser.load_more_button, Qt.MouseButton.LeftButton)
    assert browser.results.rowCount() == 4
    with qtbot.waitSignal(browser.searchFinished, timeout=HUB_TIMEOUT):
        browser.load_more_button.click()
    assert browser.results.rowCount() == 5 and not browser.load_more_button.isEnabled()
    assert "Gated" in [browser.results.data(browser.results.index(r, 7)) for r in range(5)]
    tiny = browser.results.index(1, 0)
    assert browser.results.data(tiny) == TINY_REPO
    assert browser.results.data(browser.results.index(1, 5)) == "llama"  # architecture
    assert browser.results.data(browser.results.index(1, 4)) == "1.1B"  # parameters

    browser.search_edit.setText("extra")
    browser.sort_combo.setCurrentIndex(browser.sort_combo.findData("likes"))
    with qtbot.waitSignal(browser.searchFinished, timeout=HUB_TIMEOUT):
        qtbot.keyClick(browser.search_edit, Qt.Key.Key_Return)
    assert [r.repo_id for r in browser.results.repos] == ["other/Extra-0-GGUF", "other/Extra-1-GGUF"]
    assert browser.message_text() == ""
    assert any(r.query.get("sort") == ["likes"] for r in hub.requests if r.path == "/api/models")


def test_repo_files_card_and_recommendation(
    qtbot: QtBot, hub: FakeHub, window: MainWindow, monkeypatch: pytest.MonkeyPatch
) -> None:
    browser = open_browser(qtbot, window)
    with qtbot.waitSignal(browser.searchFinished, timeout=HUB_TIMEOUT):
        browser.load_more_button.click()
    assert browser.results.repos[1].repo_id == TINY_REPO
    with qtbot.waitSignals([browser.filesLoaded, browser.cardLoaded], timeout=HUB_TIMEOUT):
        browser.results_view.selectRow(1)
    files = browser.files
    assert browser.files_view.objectName() == "hubFilesView"
    names = [f.name for f in files.files]
    assert names == ["Tiny-Q4_K_M", "Tiny-Q8_0", "mmproj-Tiny-F16"]
    assert [cell(files, r, 1) for r in range(3)] == ["Q4_K_M", "Q8_0", "F16"]
    assert cell(files, 0, 2) == "4.83" and cell(files, 1, 3).endswith("MB")
    tip = files.data(files.index(0, 1), Qt.ItemDataRole.ToolTipRole)
    assert tip.startswith("Q4_K_M: about 4.83 bits per weight.")  # what the quantization means
    fits = {"Fits on GPU", "Fits (GPU + RAM)", "Fits in RAM"}
    assert cell(files, 0, 4) in fits and cell(files, 1, 4) in fits
    # The largest file that fits is recommended, marked, and selected for download.
    assert files.recommended is not None and files.recommended.name == "Tiny-Q8_0"
    assert "recommended" in cell(files, 1, 0) and "recommended" not in cell(files, 0, 0)
    assert browser.selected_file() == files.recommended and browser.download_button.isEnabled()
    # The vision projector is labelled and can't be downloaded as a model.
    assert "vision projector" in cell(files, 2, 4)
    select_file(browser, "mmproj-Tiny-F16")
    assert not browser.download_button.isEnabled() and "vision projector" in browser.file_hint.text()
    # The model card is rendered Markdown without its metadata block; links open in the web
    # browser (relative ones inside the repo), "Copy" copies the code, and the card stays put.
    card = browser.card.toPlainText()
    assert "Tiny test model" in card and "license:" not in card
    opened: list[str] = []
    monkeypatch.setattr(QDesktopServices, "openUrl", lambda url: opened.append(url.toString()) or True)
    for href in ("https://example.com/tiny", "LICENSE", "javascript:alert(1)", "file:///etc/passwd"):
        browser.card.anchorClicked.emit(QUrl(href))
    assert opened == ["https://example.com/tiny", f"{hub.url}/{TINY_REPO}/blob/main/LICENSE"]
    browser.card.anchorClicked.emit(QUrl("copy-code:0"))
    assert QGuiApplication.clipboard().text() == 'llamadesk chat -m Tiny-Q8_0.gguf "Hello"'
    assert "Tiny test model" in browser.card.toPlainText()  # still showing the card
    select_file(browser, "Tiny-Q8_0")
    screenshot(browser, "hub-browser.png")


@pytest.mark.model
def test_download_appears_in_picker_and_chats(
    qtbot: QtBot, hub: FakeHub, window: MainWindow, paths_home: Path
) -> None:
    hub.faults.throttle = 60_000_000  # about 1.6 s: long enough to see progress
    browser = open_browser(qtbot, window)
    pick_repo(qtbot, browser, STARTER_REPO)
    seen: list[str] = []
    manager = window.hub.download_manager()
    manager.progressChanged.connect(lambda _id, p: seen.append(p.state.value))
    task = start_download(qtbot, browser, "SmolLM2-135M-Instruct.Q4_1")
    row = browser.downloads_panel.row(task.id)
    assert row is not None and row.pause_button.isVisibleTo(row) and row.cancel_button.isVisibleTo(row)
    with qtbot.waitSignal(manager.downloadFinished, timeout=DOWNLOAD_TIMEOUT) as finished:
        pass
    path = Path(finished.args[0])
    assert path == paths_home / "models" / "HuggingFaceTB__SmolLM2-135M-Instruct-GGUF" / STARTER_FILE
    assert "downloading" in seen and seen.count("downloading") >= 2
    assert row.bar.value() == 1000 and row.status.text().startswith("Done")
    assert not row.cancel_button.isVisible()
    # It is in the model picker once the list is read again, and it chats.
    picker = window.model_picker
    qtbot.waitUntil(lambda: picker.index_of(path) > 0, timeout=HUB_TIMEOUT)
    index = picker.index_of(path)
    assert index > 0
    assert window.banner.isVisible() and "downloaded" in window.banner.text()
    with qtbot.waitSignal(window.controller.modelLoaded, timeout=DOWNLOAD_TIMEOUT):
        picker.choose_index(index)
    assert window.controller.loaded is not None and window.controller.loaded.path == path
    window.composer.set_text("Hello!")
    with qtbot.waitSignal(window.controller.generationFinished, timeout=120_000):
        qtbot.keyClick(window.composer.editor, Qt.Key.Key_Return)
    assert window.chat_view.last_reply_text().strip()


@pytest.fixture
def paths_home(llamadesk_home: Path) -> Path:
    return get_paths(llamadesk_home).models_dir.parent


def test_cancel_a_download(qtbot: QtBot, hub: FakeHub, window: MainWindow) -> None:
    hub.faults.hold_after = 200_000
    browser = open_browser(qtbot, window)
    pick_repo(qtbot, browser, TINY_REPO)
    task = start_download(qtbot, browser, "Tiny-Q8_0")
    qtbot.waitUntil(lambda: task.progress.done >= 200_000, timeout=HUB_TIMEOUT)
    row = browser.downloads_panel.row(task.id)
    assert row is not None
    qtbot.waitUntil(lambda: "Downloading" in row.status.text(), timeout=HUB_TIMEOUT)
    assert " of " in row.status.text()  # bytes done of total
    manager = window.hub.download_manager()
    with qtbot.waitSignal(manager.taskFinished, timeout=HUB_TIMEOUT):
        qtbot.mouseClick(row.cancel_button, Qt.MouseButton.LeftButton)
    assert task.state is DownloadState.CANCELLED and not task.running
    assert row.status.text().startswith("Cancelled") and not row.cancel_button.isVisible()
    assert not list(task.path.parent.glob("*.part")) if task.path.parent.exists() else True
    assert window.model_picker.index_of(task.path) < 0

    # "Clear finished" empties both lists (Discover's and My models') of done and cancelled rows;
    # a paused download stays, as it can still resume.
    paused = start_download(qtbot, browser, "Tiny-Q4_K_M")
    qtbot.waitUntil(lambda: paused.progress.done >= 200_000, timeout=HUB_TIMEOUT)
    with qtbot.waitSignal(manager.taskFinished, timeout=HUB_TIMEOUT):
        manager.pause(paused)
    page = open_library(window)
    assert page.downloads_panel is not None
    panels = [browser.downloads_panel, page.downloads_panel]
    assert all(set(p.rows) == {task.id, paused.id} for p in panels)
    assert all(p.clear_button.isEnabled() for p in panels)
    qtbot.mouseClick(page.downloads_panel.clear_button, Qt.MouseButton.LeftButton)
    assert all(set(p.rows) == {paused.id} and not p.clear_button.isEnabled() for p in panels)
    assert [t.id for t in manager.tasks] == [paused.id]


def test_closing_the_window_pauses_downloads(qtbot: QtBot, hub: FakeHub, window: MainWindow) -> None:
    hub.faults.hold_after = 200_000
    browser = open_browser(qtbot, window)
    pick_repo(qtbot, browser, TINY_REPO)
    task = start_download(qtbot, browser, "Tiny-Q8_0")
    qtbot.waitUntil(lambda: task.progress.done >= 200_000, timeout=HUB_TIMEOUT)
    window.close()
    assert not task.running and task.state is DownloadState.PAUSED
    assert task.path.with_name(task.path.name + ".part").stat().st_size == 200_000  # kept for next time


def test_offline_shows_a_message_and_the_app_keeps_working(
    qtbot: QtBot, window: MainWindow, starter_model: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{port}")
    browser = open_browser(qtbot, window)
    message = browser.message_text()
    assert "Can't reach the Hugging Face Hub" in message and "keeps working" in message
    assert "Traceback" not in message and browser.results.rowCount() == 0
    # The rest of the app is unaffected.
    with qtbot.waitSignal(window.models.modelsListed, timeout=HUB_TIMEOUT):
        window.models.refresh_models()
    assert window.model_picker.index_of(starter_model) > 0
    window.commands.new_chat_action.trigger()
    assert window.isVisible() and not window.banner.isVisible()


def test_gated_repo_says_what_to_do(qtbot: QtBot, hub: FakeHub, window: MainWindow) -> None:
    browser = open_browser(qtbot, window)
    with qtbot.waitSignal(browser.errorShown, timeout=HUB_TIMEOUT) as shown:
        pick_repo(qtbot, browser, GATED_REPO)
    url = f"{hub.url}/{GATED_REPO}"
    assert shown.args[0] == (
        f"{GATED_REPO} needs a token: add it in Preferences → Hub, and accept the license at {url}."
    )
    assert f"href='{url}'" in browser.message.text() or f'href="{url}"' in browser.message.text()
    # Trying anyway fails with the same advice on the download row.
    manager = window.hub.download_manager()
    with qtbot.waitSignal(manager.downloadFailed, timeout=HUB_TIMEOUT) as failed:
        start_download(qtbot, browser, "Gated-Q4_0")
    row = browser.downloads_panel.row(failed.args[0])
    assert row is not None and row.error.isVisible() and "gated" in row.error.text()
    assert row.resume_button.isVisible()


def open_library(window: MainWindow) -> ModelLibraryPage:
    window.commands.my_models_action.trigger()
    page = window.hub.model_library_page
    assert page is not None and page.isVisible() and page.objectName() == "modelLibrary"
    return page


def test_my_models_import_and_delete(
    qtbot: QtBot, window: MainWindow, tmp_path: Path, starter_model: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    page = open_library(window)
    assert page.models()[0].source == "starter"
    tip = page.table.data(page.table.index(0, 2), Qt.ItemDataRole.ToolTipRole)
    assert tip.startswith("Q4_1: about 5 bits per weight.")
    page.select("starter")
    assert page.load_button.isEnabled() and not page.delete_button.isEnabled()
    assert "30 layers" in page.details.text() and "own chat template" in page.details.text()

    own = make_gguf(tmp_path / "mine" / "Mine-Q4_0.gguf", name="Mine")
    with qtbot.waitSignal(page.importFinished, timeout=HUB_TIMEOUT) as imported:
        page.import_file(own, copy=False)
    model = imported.args[0]
    assert model.source == "imported" and model.in_place and model.path == own
    assert "no chat template (ChatML is used)" in page.details.text()
    row = page.table.row_of(model.key)
    assert row >= 0 and page.table.data(page.table.index(row, 6)) == "Ready"
    assert "in place" in page.table.data(page.table.index(row, 3))
    # The main window's list follows.
    qtbot.waitUntil(lambda: window.model_picker.index_of(own) > 0, timeout=HUB_TIMEOUT)

    monkeypatch.setattr(page, "confirm", lambda _title, _text: True)
    assert page.select(model.key) and page.delete_button.isEnabled()
    qtbot.mouseClick(page.delete_button, Qt.MouseButton.LeftButton)
    assert page.table.row_of(model.key) < 0 and own.exists()  # forgotten; the user's file is kept
    qtbot.waitUntil(lambda: window.model_picker.index_of(own) < 0, timeout=HUB_TIMEOUT)

    # A copied import lives in the models folder, and deleting it frees the space.
    with qtbot.waitSignal(page.importFinished, timeout=HUB_TIMEOUT) as imported:
        page.import_file(own, copy=True)
    copied = imported.args[0]
    assert copied.path != own and copied.path.exists()
    page.select(copied.key)
    qtbot.mouseClick(page.delete_button, Qt.MouseButton.LeftButton)
    assert not copied.path.exists() and page.table.row_of(copied.key) < 0


def test_copying_a_model_in_shows_progress_and_can_be_cancelled(
    qtbot: QtBot, window: MainWindow, starter_model: Path, llamadesk_home: Path, tmp_path: Path
) -> None:
    source = tmp_path / "Downloads" / "SmolLM2-Q4_1.gguf"  # a model from elsewhere, 98 MB
    source.parent.mkdir()
    shutil.copyfile(starter_model, source)
    page = open_library(window)
    before = {m.key for m in page.models()}
    imported_dir = get_paths(llamadesk_home).models_dir / "imported"
    # Hold the copy at its first progress report (on the copying thread) until Cancel is clicked,
    # so the click always lands mid-copy however fast the disk is.
    clicked = threading.Event()
    reports: list[tuple[int, int]] = []

    def hold(done: int, total: int) -> None:
        reports.append((done, total))
        clicked.wait(10)

    page.importProgress.connect(hold, Qt.ConnectionType.DirectConnection)
    with qtbot.waitSignal(page.messageShown, timeout=HUB_TIMEOUT, check_params_cb=lambda t: "cancelled" in t):
        page.import_file(source, copy=True)
        qtbot.waitUntil(lambda: bool(reports))
        assert page.import_row.isVisible() and page.cancel_import_button.isEnabled()
        assert not page.import_button.isEnabled()
        qtbot.mouseClick(page.cancel_import_button, Qt.MouseButton.LeftButton)
        clicked.set()
    page.importProgress.disconnect(hold)
    done, total = reports[0]
    assert 0 < done < total == source.stat().st_size  # stopped part-way
    assert not page.import_row.isVisible() and page.import_button.isEnabled()
    assert "not copied" in page.message_text()
    assert {m.key for m in page.models()} == before
    assert not imported_dir.exists() or not any(imported_dir.rglob("*"))  # nothing left behind

    # Without cancelling, the bar follows the copy to the end and the model is added.
    seen: list[tuple[int, int]] = []
    page.importProgress.connect(lambda d, t: seen.append((d, t)))
    with qtbot.waitSignal(page.importFinished, timeout=HUB_TIMEOUT) as finished:
        page.import_file(source, copy=True)
    assert seen and seen[-1] == (total, total) and finished.args[0].path.exists()
    assert not page.import_row.isVisible()


@pytest.mark.model
def test_the_loaded_model_is_not_deleted_even_when_loaded_through_a_link(
    qtbot: QtBot,
    window: MainWindow,
    starter_model: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    source = tmp_path / "SmolLM2-Q4_1.gguf"
    shutil.copyfile(starter_model, source)
    page = open_library(window)
    with qtbot.waitSignal(page.importFinished, timeout=HUB_TIMEOUT) as imported:
        page.import_file(source, copy=True)
    copied = imported.args[0]
    link = tmp_path / "link" / "model.gguf"  # the same file under another name
    link.parent.mkdir()
    link.symlink_to(copied.path)
    qtbot.waitUntil(lambda: not window.controller.busy, timeout=HUB_TIMEOUT)
    with qtbot.waitSignal(window.controller.modelLoaded, timeout=60_000):
        window.models.load_model(link, confirm=False)
    monkeypatch.setattr(page, "confirm", lambda _title, _text: True)
    assert page.select(copied.key)
    assert not page.delete_selected()
    assert "is loaded" in page.message_text() and copied.path.exists()


def test_broken_file_is_listed_as_broken(
    qtbot: QtBot, window: MainWindow, llamadesk_home: Path, tmp_path: Path
) -> None:
    bad = get_paths(llamadesk_home).models_dir / "someone__Broken-GGUF" / "Broken-Q4_0.gguf"
    bad.parent.mkdir(parents=True)
    bad.write_bytes(b"GGUF but not really" * 10)
    page = open_library(window)
    # Listed at once as being checked, then as broken once its header was read in the background.
    qtbot.waitUntil(lambda: any(m.path == bad and m.state == "broken" for m in page.models()))
    model = next(m for m in page.models() if m.path == bad)
    assert page.select(model.key)
    state = page.table.data(page.table.index(page.table.row_of(model.key), 6))
    assert state.startswith("Broken")
    assert not page.load_button.isEnabled()
    with qtbot.assertNotEmitted(page.loadRequested):
        page.load_selected()
    assert page.message_text().startswith("Broken-Q4_0 can't be loaded")
    with qtbot.waitSignal(window.models.modelsListed, timeout=HUB_TIMEOUT):
        window.models.refresh_models()
    entry = next(e for e in window.model_picker.entries() if e.path == bad)
    assert not entry.ok

    own = make_gguf(tmp_path / "Llama-3.2-1B-Instruct-Q4_K_M.gguf", name="Llama 3.2 1B")
    with qtbot.waitSignal(page.importFinished, timeout=HUB_TIMEOUT):
        page.import_file(own)
    screenshot(page, "my-models.png")


def test_resume_a_download_left_from_last_time(
    qtbot: QtBot, hub: FakeHub, window: MainWindow, llamadesk_home: Path
) -> None:
    models_dir = get_paths(llamadesk_home).models_dir
    hub.faults.hold_after = 300_000
    task = Downloader(models_dir, endpoint=hub.url).task(TINY_REPO, "Tiny-Q8_0.gguf")
    task.start()
    qtbot.waitUntil(lambda: task.progress.done >= 300_000, timeout=HUB_TIMEOUT)
    task.pause()
    assert task.wait(10)
    hub.faults.hold_after = None
    hub.faults.release.set()

    page = open_library(window)
    qtbot.waitUntil(lambda: any(m.state == "partial" for m in page.models()), timeout=HUB_TIMEOUT)
    partial = next(m for m in page.models() if m.state == "partial")
    assert page.select(partial.key) and not page.load_button.isEnabled()
    assert page.resume_button.isVisibleTo(page)
    manager = window.hub.download_manager()
    with qtbot.waitSignal(manager.downloadFinished, timeout=DOWNLOAD_TIMEOUT) as finished:
        qtbot.mouseClick(page.resume_button, Qt.MouseButton.LeftButton)
    assert Path(finished.args[0]) == models_dir / "test__Tiny-GGUF" / "Tiny-Q8_0.gguf"
    ranges = [r.range for r in hub.byte_requests("Tiny-Q8_0.gguf")]
    assert ranges[-1] == "bytes=300000-"
    qtbot.waitUntil(lambda: any(m.path == Path(finished.args[0]) and m.state == "ok" for m in page.models()))


def test_dropping_a_gguf_file_imports_it(qtbot: QtBot, window: MainWindow, tmp_path: Path) -> None:
    own = make_gguf(tmp_path / "Dropped-Q4_0.gguf", name="Dropped")
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(own))])
    event = QDropEvent(
        QPointF(50, 50),
        Qt.DropAction.CopyAction,
        mime,
        Qt.MouseButton.LeftButton,
        Qt.KeyboardModifier.NoModifier,
    )
    enter = QDragEnterEvent(
        QPoint(50, 50),
        Qt.DropAction.CopyAction,
        mime,
        Qt.MouseButton.LeftButton,
        Qt.KeyboardModifier.NoModifier,
    )
    window.dragEnterEvent(enter)
    assert enter.isAccepted()
    window.dropEvent(event)
    assert event.isAccepted()
    qtbot.waitUntil(lambda: window.model_picker.index_of(own) > 0, timeout=HUB_TIMEOUT)
    assert "Added Dropped-Q4_0" in window.banner.text()


def test_my_models_follows_a_running_download_and_deleting_it_cancels_it(
    qtbot: QtBot, hub: FakeHub, window: MainWindow
) -> None:
    hub.faults.hold_after = 200_000
    browser = open_browser(qtbot, window)
    pick_repo(qtbot, browser, TINY_REPO)
    page = open_library(window)
    task = start_download(qtbot, browser, "Tiny-Q8_0")
    qtbot.waitUntil(lambda: task.progress.done >= 200_000, timeout=HUB_TIMEOUT)
    # The page lists the partial file of the running download by itself, without Resume.
    qtbot.waitUntil(lambda: any(m.state == "partial" for m in page.models()), timeout=HUB_TIMEOUT)
    partial = next(m for m in page.models() if m.state == "partial")
    assert page.select(partial.key)
    assert not page.resume_button.isVisibleTo(page)

    manager = window.hub.download_manager()
    with qtbot.waitSignal(manager.taskFinished, timeout=HUB_TIMEOUT):
        assert page.delete_selected(confirm=False)
    assert task.state is DownloadState.CANCELLED and not task.running
    assert not list(task.path.parent.glob("*.part*"))
    qtbot.waitUntil(lambda: not any(m.state == "partial" for m in page.models()), timeout=HUB_TIMEOUT)
    assert "Cancelled the download" in page.message_text()


def test_failed_repo_retries_on_click_and_failed_search_has_no_stale_load_more(
    qtbot: QtBot, hub: FakeHub, window: MainWindow
) -> None:
    browser = open_browser(qtbot, window)
    # A new search that fails leaves no "Load more" for the previous search's results.
    assert browser.load_more_button.isEnabled()
    hub.faults.status, hub.faults.status_path = 500, "/api/models"
    browser.search_edit.setText("Tiny")
    with qtbot.waitSignal(browser.errorShown, timeout=HUB_TIMEOUT):
        browser.search()
    assert not browser.load_more_button.isEnabled()

    hub.faults.status = None
    with qtbot.waitSignal(browser.searchFinished, timeout=HUB_TIMEOUT):
        browser.search()
    hub.faults.status, hub.faults.status_path = 503, f"/api/models/{TINY_REPO}"
    row = next(r for r, repo in enumerate(browser.results.repos) if repo.repo_id == TINY_REPO)
    with qtbot.waitSignal(browser.errorShown, timeout=HUB_TIMEOUT):
        browser.results_view.selectRow(row)
    assert browser.files.rowCount() == 0 and "retry" in browser.file_hint.text()
    # Clicking the failed repo again (it is still the selected row) tries again.
    hub.faults.status = None
    with qtbot.waitSignal(browser.filesLoaded, timeout=HUB_TIMEOUT):
        qtbot.mouseClick(
            browser.results_view.viewport(),
            Qt.MouseButton.LeftButton,
            pos=browser.results_view.visualRect(browser.results.index(row, 0)).center(),
        )
    assert browser.files.rowCount() == 3 and browser.message_text() == ""


def test_closing_discover_mid_search_still_shows_the_results(
    qtbot: QtBot, hub: FakeHub, window: MainWindow
) -> None:
    browser = open_browser(qtbot, window)
    browser.search_edit.setText("extra")
    with qtbot.waitSignal(browser.searchFinished, timeout=HUB_TIMEOUT):
        browser.search()
        browser.close()
    window.commands.browse_action.trigger()
    assert browser.isVisible()
    assert [r.repo_id for r in browser.results.repos] == ["other/Extra-0-GGUF", "other/Extra-1-GGUF"]
    assert browser.status_label.text().startswith("2 models")


def test_quitting_does_not_wait_for_a_hub_call_that_hangs(
    qtbot: QtBot, hub: FakeHub, window: MainWindow, monkeypatch: pytest.MonkeyPatch
) -> None:
    ended: list[str] = []
    files = HubCatalog.files

    def watched_files(self: HubCatalog, repo_id: str, *args: Any, **kwargs: Any) -> Any:
        try:
            return files(self, repo_id, *args, **kwargs)
        finally:
            ended.append(repo_id)

    monkeypatch.setattr(HubCatalog, "files", watched_files)
    browser = open_browser(qtbot, window)
    hub.faults.stall_path = f"/api/models/{TINY_REPO}"  # the network swallows this call
    row = next(r for r, repo in enumerate(browser.results.repos) if repo.repo_id == TINY_REPO)
    browser.results_view.selectRow(row)
    qtbot.waitUntil(lambda: hub.stalled == 1, timeout=HUB_TIMEOUT)
    window.close()
    # The window closed while the call still hangs: quitting did not sit out its 20 s timeout.
    assert not window.isVisible() and ended == []
