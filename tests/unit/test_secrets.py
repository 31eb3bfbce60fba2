"""Secrets: the system keyring through the real ``keyring`` API, private files where it can't be used."""

from __future__ import annotations

import logging
import os
import stat
import sys
from collections.abc import Iterator
from pathlib import Path

import keyring
import pytest
from keyring.backend import KeyringBackend
from keyring.backends import fail
from keyring.errors import KeyringLocked, PasswordDeleteError

from llamadesk.paths import HOME_ENV
from llamadesk.secrets import HF_TOKEN, KEYRING_ENV, SERVICE, SecretStore, keyring_wanted


class MemoryKeyring(KeyringBackend):
    """A keyring backend that keeps its entries in this process."""

    priority = 1

    def __init__(self) -> None:
        super().__init__()
        self.entries: dict[tuple[str, str], str] = {}
        self.calls = 0

    def get_password(self, service: str, username: str) -> str | None:
        self.calls += 1
        return self.entries.get((service, username))

    def set_password(self, service: str, username: str, password: str) -> None:
        self.calls += 1
        self.entries[(service, username)] = password

    def delete_password(self, service: str, username: str) -> None:
        self.calls += 1
        if (service, username) not in self.entries:
            raise PasswordDeleteError("no such password")
        del self.entries[(service, username)]


class LockedKeyring(MemoryKeyring):
    """A backend that exists but refuses every call, like a locked Secret Service."""

    def get_password(self, service: str, username: str) -> str | None:
        self.calls += 1
        raise KeyringLocked("the collection is locked")

    def set_password(self, service: str, username: str, password: str) -> None:
        self.calls += 1
        raise KeyringLocked("the collection is locked")


@pytest.fixture
def memory() -> Iterator[MemoryKeyring]:
    backend = MemoryKeyring()
    keyring.set_keyring(backend)
    yield backend
    keyring.set_keyring(fail.Keyring())  # nothing after this test may reach a real keyring


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """An empty config folder for the fallback files."""
    path = tmp_path / "config"
    path.mkdir()
    return path


@pytest.fixture
def system_keyring(monkeypatch: pytest.MonkeyPatch) -> None:
    """Ask for the keyring explicitly, as a user of a portable install could."""
    monkeypatch.setenv(KEYRING_ENV, "system")


def private(path: Path) -> bool:
    return sys.platform == "win32" or stat.S_IMODE(os.stat(path).st_mode) == 0o600


@pytest.mark.parametrize(
    ("home", "choice", "wanted"),
    [
        (None, None, True),
        ("/portable", None, False),
        ("/portable", "system", True),
        (None, "file", False),
        (None, "FILE", False),
        ("/portable", "file", False),
    ],
)
def test_environment_decides_whether_the_keyring_is_used(
    home: str | None, choice: str | None, wanted: bool
) -> None:
    env = {}
    if home is not None:
        env[HOME_ENV] = home
    if choice is not None:
        env[KEYRING_ENV] = choice
    assert keyring_wanted(env) is wanted


def test_an_unknown_choice_is_logged_and_the_default_used(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="llamadesk.secrets"):
        assert keyring_wanted({KEYRING_ENV: "kwallet"}) is True
    assert "kwallet" in caplog.text


def test_with_llamadesk_home_the_keyring_is_never_touched(memory: MemoryKeyring, folder: Path) -> None:
    assert os.environ.get(HOME_ENV)  # set for every test by conftest
    store = SecretStore(folder)
    store.set(HF_TOKEN, " hf_portable ")
    assert store.get(HF_TOKEN) == "hf_portable"
    assert not store.uses_keyring
    assert (folder / HF_TOKEN).read_text() == "hf_portable\n" and private(folder / HF_TOKEN)
    store.delete(HF_TOKEN)
    assert store.get(HF_TOKEN) is None and not (folder / HF_TOKEN).exists()
    assert memory.calls == 0 and memory.entries == {}


def test_file_choice_keeps_secrets_out_of_the_keyring(
    memory: MemoryKeyring, folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(HOME_ENV)
    monkeypatch.setenv(KEYRING_ENV, "file")
    SecretStore(folder).set("openai_api_key", "sk-123")
    assert (folder / "openai_api_key").read_text() == "sk-123\n"
    assert memory.calls == 0


def test_secrets_go_to_the_keyring(memory: MemoryKeyring, system_keyring: None, folder: Path) -> None:
    store = SecretStore(folder)
    assert store.uses_keyring
    store.set(HF_TOKEN, "hf_abc\n")
    store.set("openai_api_key", "sk-xyz")
    assert memory.entries == {(SERVICE, HF_TOKEN): "hf_abc", (SERVICE, "openai_api_key"): "sk-xyz"}
    assert list(folder.iterdir()) == []  # nothing on disk
    assert SecretStore(folder).get(HF_TOKEN) == "hf_abc"  # a new store (next start) reads it back
    store.set(HF_TOKEN, "  ")  # emptied in Preferences
    assert store.get(HF_TOKEN) is None and (SERVICE, HF_TOKEN) not in memory.entries
    store.delete(HF_TOKEN)  # deleting what is not there is fine
    store.delete("openai_api_key")
    assert memory.entries == {}


def test_an_old_token_file_moves_into_the_keyring(
    memory: MemoryKeyring, system_keyring: None, folder: Path, caplog: pytest.LogCaptureFixture
) -> None:
    token_file = folder / HF_TOKEN
    token_file.write_text("hf_from_before\n")
    token_file.chmod(0o600)
    with caplog.at_level(logging.INFO, logger="llamadesk.secrets"):
        assert SecretStore(folder).get(HF_TOKEN) == "hf_from_before"
    assert memory.entries == {(SERVICE, HF_TOKEN): "hf_from_before"}
    assert not token_file.exists() and "moved" in caplog.text
    assert SecretStore(folder).get(HF_TOKEN) == "hf_from_before"


def test_no_keyring_backend_falls_back_to_a_private_file(
    system_keyring: None, folder: Path, caplog: pytest.LogCaptureFixture
) -> None:
    keyring.set_keyring(fail.Keyring())
    store = SecretStore(folder)
    with caplog.at_level(logging.WARNING, logger="llamadesk.secrets"):
        store.set(HF_TOKEN, "hf_file")
        assert store.get(HF_TOKEN) == "hf_file"
        store.set("openai_api_key", "sk-1")
        assert not store.uses_keyring
    assert (folder / HF_TOKEN).read_text() == "hf_file\n" and private(folder / HF_TOKEN)
    assert len(caplog.records) == 1 and "no keyring backend" in caplog.text


def test_a_keyring_that_fails_at_work_falls_back_once(
    system_keyring: None, folder: Path, caplog: pytest.LogCaptureFixture
) -> None:
    locked = LockedKeyring()
    keyring.set_keyring(locked)
    try:
        store = SecretStore(folder)
        with caplog.at_level(logging.WARNING, logger="llamadesk.secrets"):
            store.set(HF_TOKEN, "hf_locked")
            assert store.get(HF_TOKEN) == "hf_locked"
            store.delete(HF_TOKEN)
        assert locked.calls == 1  # after the first refusal the keyring is left alone
        assert len(caplog.records) == 1 and "locked" in caplog.text
        assert not (folder / HF_TOKEN).exists()
    finally:
        keyring.set_keyring(fail.Keyring())


def test_a_failed_move_keeps_the_file(system_keyring: None, folder: Path) -> None:
    token_file = folder / HF_TOKEN
    token_file.write_text("hf_keep\n")
    keyring.set_keyring(LockedKeyring())
    try:
        assert SecretStore(folder).get(HF_TOKEN) == "hf_keep"
    finally:
        keyring.set_keyring(fail.Keyring())
    assert token_file.read_text() == "hf_keep\n"


def test_a_value_written_while_the_keyring_failed_wins_later(
    memory: MemoryKeyring, system_keyring: None, folder: Path
) -> None:
    memory.entries[(SERVICE, HF_TOKEN)] = "hf_stale"
    (folder / HF_TOKEN).write_text("hf_newer\n")
    assert SecretStore(folder).get(HF_TOKEN) == "hf_newer"
    assert memory.entries[(SERVICE, HF_TOKEN)] == "hf_newer" and not (folder / HF_TOKEN).exists()


@pytest.mark.parametrize("name", ["../hf_token", "a/b", "", "Token", "x" * 65])
def test_a_secret_name_cannot_leave_the_folder(folder: Path, name: str) -> None:
    with pytest.raises(ValueError, match="secret names"):
        SecretStore(folder, use_keyring=False).set(name, "v")
