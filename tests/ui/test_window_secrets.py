"""The Hub token the window saves and uses goes through the secret store: the system keyring
when there is one, a file only the user can read otherwise."""

from __future__ import annotations

import stat
from collections.abc import Callable, Iterator
from pathlib import Path

import keyring
import pytest
from keyring.backend import KeyringBackend
from keyring.backends import fail
from PySide6.QtCore import Qt
from pytestqt.qtbot import QtBot

from llamadesk.paths import get_paths
from llamadesk.secrets import HF_TOKEN, KEYRING_ENV, SERVICE
from llamadesk.ui.main_window import MainWindow

pytestmark = pytest.mark.qt_log_ignore("does not support propagateSizeHints")

MakeWindow = Callable[[], MainWindow]  # the make_window fixture (tests/ui/conftest.py)


class MemoryKeyring(KeyringBackend):
    """A keyring backend that keeps its entries in this process."""

    priority = 1

    def __init__(self) -> None:
        super().__init__()
        self.entries: dict[tuple[str, str], str] = {}

    def get_password(self, service: str, username: str) -> str | None:
        return self.entries.get((service, username))

    def set_password(self, service: str, username: str, password: str) -> None:
        self.entries[(service, username)] = password

    def delete_password(self, service: str, username: str) -> None:
        self.entries.pop((service, username), None)


@pytest.fixture
def memory_keyring(monkeypatch: pytest.MonkeyPatch) -> Iterator[MemoryKeyring]:
    monkeypatch.setenv(KEYRING_ENV, "system")  # as a portable install may ask for
    backend = MemoryKeyring()
    keyring.set_keyring(backend)
    yield backend
    keyring.set_keyring(fail.Keyring())  # nothing after this test may reach a real keyring


def save_in_preferences(qtbot: QtBot, window: MainWindow, token: str) -> None:
    dialog = window.open_preferences()
    dialog.token_edit.setText(token)
    qtbot.mouseClick(dialog.ok_button, Qt.MouseButton.LeftButton)


def test_the_token_goes_to_the_system_keyring_and_comes_back(
    qtbot: QtBot, make_window: MakeWindow, memory_keyring: MemoryKeyring, llamadesk_home: Path
) -> None:
    window = make_window()
    save_in_preferences(qtbot, window, "hf_in_keyring")
    assert memory_keyring.entries == {(SERVICE, HF_TOKEN): "hf_in_keyring"}
    assert not (get_paths(llamadesk_home).config_dir / HF_TOKEN).exists()  # no copy on disk
    assert window.hub.download_manager().downloader._token == "hf_in_keyring"
    window.close()

    again = make_window()  # a later start reads it back
    assert again.open_preferences().token_edit.text() == "hf_in_keyring"


def test_without_a_keyring_the_token_is_a_private_file(
    qtbot: QtBot, make_window: MakeWindow, llamadesk_home: Path
) -> None:
    window = make_window()
    save_in_preferences(qtbot, window, "hf_in_a_file")
    file = get_paths(llamadesk_home).config_dir / HF_TOKEN
    assert file.read_text().strip() == "hf_in_a_file"
    assert stat.S_IMODE(file.stat().st_mode) == 0o600
    save_in_preferences(qtbot, window, "")  # an empty token forgets it
    assert not file.exists()
    assert window.hub.token() == ""
