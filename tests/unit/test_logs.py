"""The log file (rotation, stderr when verbose, fallback) and the hooks for uncaught exceptions."""

from __future__ import annotations

import logging
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from llamadesk.errors import LlamaDeskError
from llamadesk.logs import (
    BACKUP_COUNT,
    LOG_FILE_NAME,
    MAX_BYTES,
    close_logging,
    install_excepthooks,
    setup_logging,
    uninstall_excepthooks,
)

log = logging.getLogger("llamadesk.tests")


@pytest.fixture(autouse=True)
def restore_logging() -> Iterator[None]:
    """Leave the process's logging and hooks as this test found them."""
    root, ours = logging.getLogger(), logging.getLogger("llamadesk")
    levels = root.level, ours.level
    yield
    close_logging()
    uninstall_excepthooks()
    root.setLevel(levels[0])
    ours.setLevel(levels[1])


def our_handlers() -> list[logging.Handler]:
    return [h for h in logging.getLogger().handlers if type(h).__module__ == "llamadesk.logs"]


def test_messages_go_to_the_log_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = setup_logging(tmp_path / "logs")
    assert path == tmp_path / "logs" / LOG_FILE_NAME
    log.info("model loaded")
    log.debug("detail only when verbose")
    logging.getLogger("httpx").info("HTTP Request: GET https://example.org")
    logging.getLogger("huggingface_hub").warning("slow server")
    text = path.read_text(encoding="utf-8")
    assert "INFO" in text and "llamadesk.tests: model loaded" in text
    assert "slow server" in text
    assert "detail only" not in text and "HTTP Request" not in text
    assert capsys.readouterr().err == ""  # not verbose: nothing on the terminal


def test_verbose_copies_everything_to_stderr(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = setup_logging(tmp_path, verbose=True)
    log.debug("tokenizer details")
    assert "tokenizer details" in capsys.readouterr().err
    assert path is not None and "tokenizer details" in path.read_text(encoding="utf-8")


def test_setting_up_twice_adds_no_second_handler(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    setup_logging(tmp_path, verbose=True)
    path = setup_logging(tmp_path, verbose=True)
    assert len(our_handlers()) == 2  # one file, one stderr
    log.warning("once")
    assert path is not None and path.read_text(encoding="utf-8").count("once") == 1
    assert capsys.readouterr().err.count("once") == 1
    setup_logging(tmp_path)
    assert len(our_handlers()) == 1


def test_the_file_rotates_and_keeps_three_old_ones(tmp_path: Path) -> None:
    folder = tmp_path / "logs"
    path = setup_logging(folder)
    assert path is not None
    line = "x" * 1000
    for _ in range((BACKUP_COUNT + 2) * MAX_BYTES // len(line)):
        log.info(line)
    names = sorted(p.name for p in folder.iterdir())
    assert names == [LOG_FILE_NAME] + [f"{LOG_FILE_NAME}.{n}" for n in range(1, BACKUP_COUNT + 1)]
    assert all(p.stat().st_size <= MAX_BYTES for p in folder.iterdir())


def test_an_unwritable_log_folder_falls_back_to_stderr(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the log folder should be")
    assert setup_logging(blocker / "logs") is None
    err = capsys.readouterr().err
    assert "no log file" in err and str(blocker / "logs") in err
    log.warning("still reported")
    log.info("quiet")
    err = capsys.readouterr().err
    assert "still reported" in err and "quiet" not in err


def test_an_exception_in_a_thread_is_logged_and_shown(tmp_path: Path) -> None:
    path = setup_logging(tmp_path)
    shown: list[str] = []
    install_excepthooks(shown.append)

    def work() -> None:
        raise ValueError("bad token count")

    thread = threading.Thread(target=work, name="download-worker")
    thread.start()
    thread.join()
    assert shown == ["Unexpected error in thread download-worker: ValueError: bad token count"]
    assert path is not None
    text = path.read_text(encoding="utf-8")
    assert "CRITICAL" in text and "Traceback" in text and "in work" in text


def test_a_thread_that_exits_is_not_an_error(tmp_path: Path) -> None:
    setup_logging(tmp_path)
    shown: list[str] = []
    install_excepthooks(shown.append)
    thread = threading.Thread(target=sys.exit)
    thread.start()
    thread.join()
    assert shown == []


def test_the_main_hook_reports_and_passes_ctrl_c_on(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    passed_on: list[type[BaseException]] = []
    monkeypatch.setattr(sys, "excepthook", lambda kind, value, tb: passed_on.append(kind))
    path = setup_logging(tmp_path)
    shown: list[str] = []
    install_excepthooks(shown.append)
    try:
        raise LlamaDeskError("The model file is damaged.")
    except LlamaDeskError as exc:
        sys.excepthook(type(exc), exc, exc.__traceback__)
    assert shown == ["Unexpected error: The model file is damaged."]
    try:
        raise KeyboardInterrupt
    except KeyboardInterrupt as exc:
        sys.excepthook(type(exc), exc, exc.__traceback__)
    assert len(shown) == 1 and passed_on == [KeyboardInterrupt]
    assert path is not None and "The model file is damaged." in path.read_text(encoding="utf-8")


def test_a_failing_error_display_is_logged_not_raised(tmp_path: Path) -> None:
    path = setup_logging(tmp_path)

    def broken_dialog(message: str) -> None:
        raise RuntimeError("no window any more")

    install_excepthooks(broken_dialog)
    thread = threading.Thread(target=lambda: 1 / 0)
    thread.start()
    thread.join()
    assert path is not None
    text = path.read_text(encoding="utf-8")
    assert "ZeroDivisionError" in text and "no window any more" in text


def test_an_uncaught_error_in_a_real_program_is_logged_without_a_traceback(tmp_path: Path) -> None:
    script = (
        "import sys\n"
        "from pathlib import Path\n"
        "from llamadesk.logs import install_excepthooks, setup_logging\n"
        "setup_logging(Path(sys.argv[1]))\n"
        "install_excepthooks(lambda message: print('SHOWN', message, flush=True))\n"
        "raise ValueError('boom')\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path)], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 1
    assert result.stdout == "SHOWN Unexpected error: ValueError: boom\n"
    assert "Traceback" not in result.stderr
    text = (tmp_path / LOG_FILE_NAME).read_text(encoding="utf-8")
    assert "Traceback" in text and "ValueError: boom" in text
