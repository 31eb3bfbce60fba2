"""Files others may have placed: settings, secrets, the log file, through one reader that never blocks.

A named pipe where a file is expected must never be opened (opening it waits for a writer), a
folder or device gives a clear reason, a file too large is not read, and text with lone
surrogates (JSON allows ``"\\ud800"``) never stops a file from being saved.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from llamadesk.files import FileTooLargeError, NotARegularFileError, read_regular_bytes, write_regular_text
from llamadesk.logs import close_logging, setup_logging
from llamadesk.secrets import SecretStore
from llamadesk.settings import MAX_FILE_BYTES, Settings, SettingsStore

posix_only = pytest.mark.skipif(sys.platform == "win32", reason="named pipes and devices are POSIX files")


@contextmanager
def pipe(path: Path) -> Iterator[list[str]]:
    """A named pipe at ``path``; the list records whether anything opened it for reading.

    A writer waits on the other end (through a second name, since the code under test may move
    ``path`` aside), so code that wrongly opens the pipe gets an end of file instead of blocking
    for ever, and the test can tell that it did.
    """
    holder = path.parent / f".{path.name}.held"
    os.mkfifo(holder)
    os.link(holder, path)
    opened: list[str] = []

    def writer() -> None:
        fd = os.open(holder, os.O_WRONLY)  # returns once someone opens the pipe for reading
        opened.append("read")
        os.close(fd)

    thread = threading.Thread(target=writer, daemon=True)
    thread.start()
    try:
        yield opened
    finally:
        release = os.open(holder, os.O_RDONLY | os.O_NONBLOCK)
        thread.join()
        os.close(release)
        holder.unlink()


# -- the reader ---------------------------------------------------------------------------------


def test_a_regular_file_is_read_whole_up_to_the_limit(tmp_path: Path) -> None:
    path = tmp_path / "data.json"
    path.write_bytes(b"x" * 1000)
    assert read_regular_bytes(path, limit=1000) == b"x" * 1000
    with pytest.raises(FileTooLargeError, match="larger than 999 bytes") as caught:
        read_regular_bytes(path, limit=999)
    assert isinstance(caught.value, OSError) and caught.value.strerror


def test_a_missing_file_and_an_impossible_name_are_file_not_found(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        read_regular_bytes(tmp_path / "missing", limit=10)
    with pytest.raises(FileNotFoundError):
        read_regular_bytes(tmp_path / "nul\0name", limit=10)


@posix_only
def test_a_named_pipe_is_refused_without_being_opened(tmp_path: Path) -> None:
    path = tmp_path / "settings.json"
    with pipe(path) as opened:
        with pytest.raises(NotARegularFileError, match="named pipe"):
            read_regular_bytes(path, limit=1 << 20)
        assert opened == []


@posix_only
def test_a_device_and_a_folder_are_refused_with_their_kind(tmp_path: Path) -> None:
    link = tmp_path / "zero.json"
    link.symlink_to("/dev/zero")  # reading it would never end
    with pytest.raises(NotARegularFileError, match="a device"):
        read_regular_bytes(link, limit=1 << 20)
    with pytest.raises(NotARegularFileError, match="a folder"):
        read_regular_bytes(tmp_path, limit=1 << 20)


def test_a_record_is_written_in_place_and_shorter_text_leaves_nothing_behind(tmp_path: Path) -> None:
    path = tmp_path / "model.gguf.source.json"
    write_regular_text(path, '{"repo_id": "acme/a-long-name"}')
    write_regular_text(path, '{"repo_id": "é"}')
    assert path.read_text(encoding="utf-8") == '{"repo_id": "é"}'


@posix_only
def test_writing_a_record_never_waits_on_a_named_pipe(tmp_path: Path) -> None:
    path = tmp_path / "model.gguf.source.json"
    os.mkfifo(path)
    with pytest.raises(NotARegularFileError, match="named pipe"):
        write_regular_text(path, "{}")  # nobody reads it: opening it the usual way waits for ever
    read_end = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    try:
        with pytest.raises(NotARegularFileError, match="named pipe"):
            write_regular_text(path, "{}")  # somebody reads it: still not a file to write records to
        assert os.read(read_end, 10) == b""
    finally:
        os.close(read_end)
    with pytest.raises(NotARegularFileError, match="a folder"):
        write_regular_text(tmp_path, "{}")


# -- settings -------------------------------------------------------------------------------------


@posix_only
def test_a_named_pipe_as_the_settings_file_gives_defaults_and_a_reason(tmp_path: Path) -> None:
    path = tmp_path / "settings.json"
    with pipe(path) as opened:
        store = SettingsStore(path)
        assert store.load() == Settings()
        assert opened == []
    assert store.warning is not None and "named pipe" in store.warning


def test_a_folder_as_the_settings_file_is_named_as_one(tmp_path: Path) -> None:
    path = tmp_path / "settings.json"
    path.mkdir()
    store = SettingsStore(path)
    assert store.load() == Settings()
    assert store.warning is not None and "is a folder, not a regular file" in store.warning


def test_a_settings_file_too_large_is_not_read(tmp_path: Path) -> None:
    path = tmp_path / "settings.json"
    with path.open("wb") as handle:  # sparse: no disk is used
        handle.truncate(MAX_FILE_BYTES + 1)
    store = SettingsStore(path)
    assert store.load() == Settings()
    assert store.warning is not None and f"larger than {MAX_FILE_BYTES >> 20} MB" in store.warning


def test_lone_surrogates_in_settings_never_stop_them_from_being_saved(tmp_path: Path) -> None:
    path = tmp_path / "settings.json"
    text = {
        "schema_version": 2,
        "app": {"default_system_prompt": "Be \ud800 brief", "code_font": "Mono\udc00"},
        "generation": {"stop": ["\ud83d"]},
        "template_overrides": {"model\ud800": "{{ x }}\udfff"},
    }
    path.write_text(json.dumps(text), encoding="ascii")  # json.dumps escapes them as \ud800
    store = SettingsStore(path)
    settings = store.load()
    assert settings.app.default_system_prompt == "Be \ufffd brief"
    assert settings.generation.stop == ["\ufffd"]
    assert settings.template_overrides == {"model\ufffd": "{{ x }}\ufffd"}
    settings.app.code_font = "Typed \udc80 in a dialog"
    store.save(settings)
    again = SettingsStore(path).load()
    assert (
        again.app.code_font == "Typed \ufffd in a dialog"
        and again.app.default_system_prompt == "Be \ufffd brief"
    )


def test_a_second_broken_settings_file_never_overwrites_the_first_backup(tmp_path: Path) -> None:
    path = tmp_path / "settings.json"
    now = time.time()
    # Backups named for this second and the next ones, as an earlier broken file left them.
    for offset in range(3):
        stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(now + offset))
        path.with_name(f"settings.json.broken-{stamp}").write_text(f"earlier backup {offset}")
    path.write_text("{not json")
    store = SettingsStore(path)
    assert store.load() == Settings()
    backups = {p.read_text() for p in tmp_path.glob("settings.json.broken-*")}
    assert backups == {"earlier backup 0", "earlier backup 1", "earlier backup 2", "{not json"}


# -- secrets and the log --------------------------------------------------------------------------


@posix_only
def test_a_named_pipe_as_the_token_file_is_not_opened(tmp_path: Path) -> None:
    store = SecretStore(tmp_path, use_keyring=False)
    with pipe(store.file_for("hf_token")) as opened:
        assert store.get("hf_token") is None
        assert opened == []


def test_a_token_file_too_large_is_not_a_token(tmp_path: Path) -> None:
    store = SecretStore(tmp_path, use_keyring=False)
    with store.file_for("hf_token").open("wb") as handle:
        handle.truncate(1 << 20)  # sparse: a megabyte of NULs
    assert store.get("hf_token") is None


@posix_only
def test_a_named_pipe_as_the_log_file_never_blocks_the_start(tmp_path: Path) -> None:
    log_dir = tmp_path / "logs"
    log_dir.mkdir()
    fifo = log_dir / "llamadesk.log"
    os.mkfifo(fifo)
    reader_opened: list[bool] = []

    def reader() -> None:  # lets a wrongly opened pipe go on instead of blocking for ever
        fd = os.open(fifo, os.O_RDONLY)
        reader_opened.append(True)
        os.close(fd)

    thread = threading.Thread(target=reader, daemon=True)
    thread.start()
    try:
        assert setup_logging(log_dir) is None  # stderr only, with a warning saying why
        assert reader_opened == []
    finally:
        close_logging()
        release = os.open(fifo, os.O_WRONLY)  # waits for the reader thread, which is waiting for it
        thread.join()
        os.close(release)


def test_a_lone_surrogate_in_a_log_message_is_written_escaped(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    path = setup_logging(tmp_path / "logs")
    assert path is not None
    try:
        logging.getLogger("llamadesk.test").warning("odd file name %s", "model-\udcff.gguf")
    finally:
        close_logging()
    assert "odd file name model-\\udcff.gguf" in path.read_text(encoding="utf-8")
    assert "Logging error" not in capfd.readouterr().err
