"""Quitting never waits for a silent server: the queue's shutdown returns within a second and
keeps the partial files and their records, so each download resumes next time."""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from hub_server import FakeHub, Faults, make_gguf
from llamadesk.hub import Downloader, DownloadProgress, DownloadQueue, DownloadState, DownloadTask
from llamadesk.paths import Paths

REPO = "acme/Tiny-GGUF"
FILE = "Tiny-Q4_K_M.gguf"
HELD_AT = 120_000


@pytest.fixture(scope="module")
def gguf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_gguf(tmp_path_factory.mktemp("served") / "tiny.gguf", name="Tiny", data_bytes=400_000)


@pytest.fixture
def hub(gguf: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeHub]:
    with FakeHub() as server:
        server.add_file(REPO, FILE, gguf)
        monkeypatch.setenv("HF_ENDPOINT", server.url)
        yield server


def wait_until(predicate: Callable[[], bool], timeout: float = 10.0) -> bool:
    """Poll ``predicate`` (a count kept by the server, which has no event to wait on)."""
    tick = threading.Event()
    for _ in range(int(timeout / 0.01)):
        if predicate():
            return True
        tick.wait(0.01)
    return predicate()


@pytest.mark.parametrize("stall", ["metadata", "file-headers", "file-body"])
def test_shutdown_returns_at_once_and_the_download_resumes_later(
    hub: FakeHub, paths: Paths, stall: str
) -> None:
    # A 30-second socket timeout: waiting for it would hold the quit for half a minute.
    downloader = Downloader(paths.models_dir, endpoint=hub.url, timeout=30, deadline=30)
    if stall == "metadata":
        hub.faults.stall_path = f"/{REPO}/resolve/"  # no answer to HEAD
    elif stall == "file-headers":
        hub.faults.stall_path = "/__cdn/"  # no answer to the GET of the bytes
    else:
        hub.faults.hold_after = HELD_AT  # the body stops after HELD_AT bytes, connection open
    reached = threading.Event()

    def on_progress(task: DownloadTask, progress: DownloadProgress) -> None:
        if progress.done >= HELD_AT:
            reached.set()

    queue = DownloadQueue(downloader, on_progress=on_progress)
    task = queue.add(REPO, FILE)
    if stall == "file-body":
        assert reached.wait(10)
    else:
        assert wait_until(lambda: hub.stalled == 1)

    assert queue.shutdown(timeout=1.0), "a download thread was still waiting for the server"
    assert task.state is DownloadState.PAUSED and not task.running
    folder = downloader.repo_dir(REPO)
    part = folder / (FILE + ".part")
    if stall == "file-body":
        assert part.stat().st_size == HELD_AT
        assert (folder / (FILE + ".part.source.json")).exists()
    assert not (folder / FILE).exists()

    hub.faults.release.set()
    hub.faults = Faults()
    hub.clear_requests()
    path = Downloader(paths.models_dir, endpoint=hub.url).download(REPO, FILE)  # the next start
    assert hashlib.sha256(path.read_bytes()).hexdigest() == hub.repos[REPO].files[FILE].sha256
    ranges = [r.range for r in hub.byte_requests(FILE)]
    assert ranges == ([f"bytes={HELD_AT}-"] if stall == "file-body" else [None])
