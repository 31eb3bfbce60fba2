"""Downloads from a local server speaking the Hub's protocol: verify, resume, cancel, fail clearly."""

from __future__ import annotations

import errno
import hashlib
import json
import logging
import os
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

import pytest

from hub_server import FakeHub, make_gguf
from llamadesk.hub import (
    Downloader,
    DownloadProgress,
    DownloadQueue,
    DownloadState,
    DownloadTask,
    HubCatalog,
    HubError,
    ModelLibrary,
)
from llamadesk.hub.download import open_part_file
from llamadesk.paths import Paths

REPO = "test/Tiny-GGUF"
FILE = "Tiny-Q4_K_M.gguf"
GATED = "test/Gated-GGUF"
TOKEN = "hf_downloadSecretToken456"
STARTER_REPO = "HuggingFaceTB/SmolLM2-135M-Instruct-GGUF"
STARTER_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


@pytest.fixture(scope="module")
def gguf_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("served")
    make_gguf(folder / "tiny.gguf", name="Tiny", data_bytes=1_000_000, seed=11)
    make_gguf(folder / "p1.gguf", name="Split", data_bytes=400_000, split=(1, 2), seed=12)
    make_gguf(folder / "p2.gguf", name="Split", data_bytes=400_000, split=(2, 2), seed=13)
    return folder


@pytest.fixture
def hub(gguf_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeHub]:
    with FakeHub() as server:
        server.add_repo(REPO)
        server.add_file(REPO, FILE, gguf_dir / "tiny.gguf")
        server.add_file(REPO, "Split-Q8_0-00001-of-00002.gguf", gguf_dir / "p1.gguf")
        server.add_file(REPO, "Split-Q8_0-00002-of-00002.gguf", gguf_dir / "p2.gguf")
        server.add_file(REPO, "notes.txt", b"plain file, not in LFS\n", lfs=False)
        server.add_repo(GATED, gated="auto")
        server.add_file(GATED, "Gated-Q4_0.gguf", gguf_dir / "tiny.gguf")
        monkeypatch.setenv("HF_ENDPOINT", server.url)
        yield server


@pytest.fixture
def downloader(hub: FakeHub, paths: Paths) -> Downloader:
    return Downloader(paths.models_dir, endpoint=hub.url, retries=3, backoff=(0.01, 0.02))


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


class Recorder:
    """Collects progress snapshots; ``reached(n)`` is set once ``n`` bytes are done."""

    def __init__(self, threshold: int = 0) -> None:
        self.items: list[DownloadProgress] = []
        self.threshold = threshold
        self.reached = threading.Event()
        self.lock = threading.Lock()

    def __call__(self, progress: DownloadProgress) -> None:
        with self.lock:
            self.items.append(progress)
        if self.threshold and progress.done >= self.threshold:
            self.reached.set()

    @property
    def states(self) -> list[DownloadState]:
        return [p.state for p in self.items]


def test_download_is_verified_recorded_and_listed(hub: FakeHub, downloader: Downloader, paths: Paths) -> None:
    served = hub.repos[REPO].files[FILE]
    recorder = Recorder()
    path = downloader.download(REPO, FILE, progress=recorder)
    assert path == paths.models_dir / "test__Tiny-GGUF" / FILE
    assert sha256_of(path) == served.sha256
    assert not list(path.parent.glob("*.part"))
    sidecar = json.loads(path.with_name(FILE + ".source.json").read_text())
    assert sidecar["repo_id"] == REPO and sidecar["sha256"] == served.sha256
    assert sidecar["commit"] == hub.repos[REPO].sha and sidecar["revision"] == "main"
    done = [p.done for p in recorder.items]
    assert done == sorted(done) and recorder.items[-1].done == recorder.items[-1].total == served.size
    assert recorder.states[-1] is DownloadState.DONE and DownloadState.DOWNLOADING in recorder.states
    # The file request is pinned to the commit and follows the Hub's redirect to the CDN.
    gets = hub.file_requests(FILE)
    assert any(hub.repos[REPO].sha in r.path for r in gets)
    assert any("/__cdn/" in r.path for r in gets)

    entry = next(e for e in ModelLibrary(paths).list() if e.source == "downloaded")
    assert (entry.path, entry.repo_id, entry.state, entry.size) == (path, REPO, "ok", served.size)
    assert entry.info is not None and entry.info.name == "Tiny" and entry.loadable

    # Asking again finds the verified file and does not download it a second time.
    hub.clear_requests()
    assert downloader.download(REPO, FILE) == path
    assert hub.byte_requests(FILE) == []


def test_split_model_downloads_all_parts(hub: FakeHub, downloader: Downloader, paths: Paths) -> None:
    model = HubCatalog(endpoint=hub.url).files(REPO).find("Split-Q8_0")
    assert model is not None and model.is_split
    recorder = Recorder()
    path = downloader.download(REPO, model, progress=recorder)
    assert path.name == "Split-Q8_0-00001-of-00002.gguf"
    for part in model.parts:
        assert sha256_of(path.parent / part.path) == part.sha256
    assert recorder.items[-1].total == model.size and recorder.items[-1].parts == 2
    entries = [e for e in ModelLibrary(paths).list() if e.source == "downloaded"]
    assert [(e.name, e.size, e.state) for e in entries] == [("Split-Q8_0", model.size, "ok")]


def test_split_model_is_all_or_nothing(hub: FakeHub, downloader: Downloader) -> None:
    second = hub.repos[REPO].files["Split-Q8_0-00002-of-00002.gguf"]
    hub.faults.status, hub.faults.status_path = 500, f"/__cdn/{REPO}/{second.sha256}"
    files = ["Split-Q8_0-00001-of-00002.gguf", "Split-Q8_0-00002-of-00002.gguf"]
    with pytest.raises(HubError, match="server error") as caught:
        downloader.download(REPO, files)
    assert caught.value.kind == "server"
    folder = downloader.repo_dir(REPO)
    assert not list(folder.glob("*.gguf"))  # the verified first part is not installed alone
    assert (folder / (files[0] + ".part")).exists()
    hub.faults.status = None
    path = downloader.download(REPO, files)
    assert sorted(p.name for p in folder.glob("*.gguf")) == files and path.name == files[0]


SPLIT_FILES = ["Split-Q8_0-00001-of-00002.gguf", "Split-Q8_0-00002-of-00002.gguf"]


@pytest.mark.parametrize("failing", SPLIT_FILES, ids=["first-part", "second-part"])
def test_split_model_install_rolls_back_when_a_move_fails(
    hub: FakeHub, downloader: Downloader, paths: Paths, monkeypatch: pytest.MonkeyPatch, failing: str
) -> None:
    real_replace = os.replace
    moved: list[str] = []

    def flaky_replace(src: Any, dst: Any) -> None:
        if Path(dst).name == failing:
            raise OSError(errno.EIO, "Input/output error")
        real_replace(src, dst)
        moved.append(Path(dst).name)

    monkeypatch.setattr(os, "replace", flaky_replace)
    with pytest.raises(HubError, match="Input/output error") as caught:
        downloader.download(REPO, SPLIT_FILES)
    assert caught.value.kind == "disk"
    folder = downloader.repo_dir(REPO)
    assert not list(folder.glob("*.gguf"))  # no part is left in its final place ...
    assert not list(folder.glob("*.gguf.source.json"))  # ... nor recorded as installed
    for name in SPLIT_FILES:  # the verified bytes are kept for the retry
        part = folder / (name + ".part")
        assert sha256_of(part) == hub.repos[REPO].files[name].sha256
        assert (folder / (name + ".part.source.json")).exists()
    entries = [e for e in ModelLibrary(paths).list() if e.source == "downloaded"]
    assert [(e.name, e.state) for e in entries] == [("Split-Q8_0", "partial")]
    if failing == SPLIT_FILES[0]:
        assert moved == [SPLIT_FILES[1], SPLIT_FILES[1] + ".part"]  # moved, then moved back

    monkeypatch.setattr(os, "replace", real_replace)
    hub.clear_requests()
    path = downloader.download(REPO, SPLIT_FILES)
    assert path.name == SPLIT_FILES[0]
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        [name for f in SPLIT_FILES for name in (f, f + ".source.json")]
    )
    for name in SPLIT_FILES:
        assert sha256_of(folder / name) == hub.repos[REPO].files[name].sha256
        assert all(r.range is not None for r in hub.byte_requests(name))  # nothing fetched again
    entries = [e for e in ModelLibrary(paths).list() if e.source == "downloaded"]
    assert [(e.name, e.state) for e in entries] == [("Split-Q8_0", "ok")]


def test_dropped_connection_resumes_from_the_byte_it_had(hub: FakeHub, downloader: Downloader) -> None:
    served = hub.repos[REPO].files[FILE]
    hub.faults.drop_after = 300_000
    path = downloader.download(REPO, FILE)
    assert sha256_of(path) == served.sha256
    ranges = [r.range for r in hub.byte_requests(FILE)]
    assert ranges == [None, "bytes=300000-"]  # nothing was fetched twice


def _pause_at(downloader: Downloader, hub: FakeHub, at: int) -> Path:
    """Start a download, let the server stall at ``at`` bytes, pause: leaves a .part of ``at`` bytes."""
    hub.faults.hold_after = at
    recorder = Recorder(threshold=at)
    task = downloader.task(REPO, FILE, progress=recorder)
    task.start()
    assert recorder.reached.wait(10)
    task.pause()
    assert task.wait(10)
    assert task.state is DownloadState.PAUSED
    hub.faults.hold_after = None
    hub.faults.release.set()
    part = downloader.repo_dir(REPO) / (FILE + ".part")
    assert part.stat().st_size == at
    return part


def test_resume_after_restart_with_a_new_downloader(
    hub: FakeHub, downloader: Downloader, paths: Paths
) -> None:
    _pause_at(downloader, hub, 400_000)
    entry = next(e for e in ModelLibrary(paths).list() if e.source == "downloaded")
    assert entry.state == "partial" and not entry.loadable and entry.repo_id == REPO
    assert (entry.repo_files, entry.revision) == ((FILE,), "main")  # enough to resume it later
    hub.clear_requests()
    recorder = Recorder()
    fresh = Downloader(paths.models_dir, endpoint=hub.url)
    path = fresh.download(
        entry.repo_id, list(entry.repo_files), revision=entry.revision or "main", progress=recorder
    )
    assert sha256_of(path) == hub.repos[REPO].files[FILE].sha256
    assert [r.range for r in hub.byte_requests(FILE)] == ["bytes=400000-"]
    assert DownloadState.HASHING in recorder.states  # the bytes already on disk were checked first
    assert sorted(p.name for p in path.parent.iterdir()) == [FILE, FILE + ".source.json"]


@pytest.mark.parametrize("data_bytes", [1_000_000, 1_200_000], ids=["same-size", "new-size"])
def test_resume_restarts_when_the_file_changed_on_the_hub(
    hub: FakeHub,
    downloader: Downloader,
    paths: Paths,
    tmp_path: Path,
    data_bytes: int,
    caplog: pytest.LogCaptureFixture,
) -> None:
    _pause_at(downloader, hub, 400_000)
    old = hub.repos[REPO].files[FILE]
    # The repo re-uploads the file (a new commit) before the download is resumed.
    source = make_gguf(tmp_path / "reuploaded.gguf", name="Tiny", data_bytes=data_bytes, seed=99)
    new = hub.add_file(REPO, FILE, source)
    hub.repos[REPO].sha = hashlib.sha1(b"re-upload").hexdigest()
    assert new.sha256 != old.sha256 and (new.size == old.size) == (data_bytes == 1_000_000)
    hub.clear_requests()
    caplog.set_level(logging.INFO, logger="llamadesk.hub.download")
    path = Downloader(paths.models_dir, endpoint=hub.url).download(REPO, FILE)
    assert sha256_of(path) == new.sha256
    assert [r.range for r in hub.byte_requests(FILE)] == [None]  # started again from byte 0
    assert all(new.sha256 in r.path for r in hub.byte_requests(FILE))
    assert "changed on the Hub" in caplog.text
    sidecar = json.loads(path.with_name(FILE + ".source.json").read_text())
    assert (sidecar["sha256"], sidecar["commit"]) == (new.sha256, hub.repos[REPO].sha)
    assert sorted(p.name for p in path.parent.iterdir()) == [FILE, FILE + ".source.json"]


def test_pause_and_resume_the_same_task(hub: FakeHub, downloader: Downloader) -> None:
    hub.faults.hold_after = 250_000
    recorder = Recorder(threshold=250_000)
    task = downloader.task(REPO, FILE, progress=recorder)
    task.start()
    assert recorder.reached.wait(10)
    task.pause()
    assert task.wait(10) and task.state is DownloadState.PAUSED
    hub.faults.hold_after = None
    hub.faults.release.set()
    task.start()
    assert task.wait(10) and task.state is DownloadState.DONE, task.error
    assert sha256_of(task.path) == hub.repos[REPO].files[FILE].sha256
    assert [r.range for r in hub.byte_requests(FILE)][-1] == "bytes=250000-"


def test_cancel_stops_a_stalled_download_and_deletes_the_part(hub: FakeHub, downloader: Downloader) -> None:
    # The server goes silent: only closing the socket can stop the read (no read timeout involved).
    hub.faults.hold_after = 100_000
    recorder = Recorder(threshold=100_000)
    task = downloader.task(REPO, FILE, progress=recorder)
    task.start()
    assert recorder.reached.wait(10)
    task.cancel()
    assert task.wait(10)
    assert task.state is DownloadState.CANCELLED and recorder.states[-1] is DownloadState.CANCELLED
    assert not (downloader.repo_dir(REPO) / (FILE + ".part")).exists()
    assert not (downloader.repo_dir(REPO) / FILE).exists()


def test_checksum_mismatch_deletes_the_file(hub: FakeHub, downloader: Downloader) -> None:
    hub.faults.corrupt = True
    with pytest.raises(HubError, match="SHA-256") as caught:
        downloader.download(REPO, FILE)
    assert caught.value.kind == "checksum" and "download it again" in str(caught.value)
    assert not list(downloader.repo_dir(REPO).glob(FILE + "*"))


def test_missing_file_and_repo(hub: FakeHub, downloader: Downloader) -> None:
    with pytest.raises(HubError, match=r"no file named nope\.gguf") as caught:
        downloader.download(REPO, "nope.gguf")
    assert caught.value.kind == "not_found"
    assert not downloader.repo_dir(REPO).exists()  # no empty folder left behind
    with pytest.raises(HubError, match="no model test/Missing-GGUF") as caught:
        downloader.download("test/Missing-GGUF", FILE)
    assert caught.value.kind == "not_found"


def test_gated_repo_needs_a_token_and_the_license(
    hub: FakeHub, paths: Paths, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    anonymous = Downloader(paths.models_dir, endpoint=hub.url)
    with pytest.raises(HubError) as caught:
        anonymous.download(GATED, "Gated-Q4_0.gguf")
    message = str(caught.value)
    assert caught.value.kind == "gated" and f"{hub.url}/{GATED}" in message
    assert "license" in message and "token" in message

    hub.valid_tokens.add(TOKEN)  # a valid token whose owner has not accepted the license yet
    with_token = Downloader(paths.models_dir, endpoint=hub.url, token=TOKEN)
    with pytest.raises(HubError, match="accept the model's license") as caught:
        with_token.download(GATED, "Gated-Q4_0.gguf")
    assert caught.value.kind == "gated"

    hub.grant(TOKEN, GATED)
    path = with_token.download(GATED, "Gated-Q4_0.gguf")
    assert sha256_of(path) == hub.repos[GATED].files["Gated-Q4_0.gguf"].sha256
    resolve = [r for r in hub.file_requests("Gated-Q4_0.gguf") if "/resolve/" in r.path]
    cdn = [r for r in hub.file_requests("Gated-Q4_0.gguf") if "/__cdn/" in r.path]
    assert resolve and all(r.authorized for r in resolve)
    assert cdn and not any(r.authorized for r in cdn)  # the token never leaves the Hub's origin
    assert TOKEN not in caplog.text and TOKEN not in message and TOKEN not in repr(with_token)


def test_invalid_token_is_refused(hub: FakeHub, paths: Paths) -> None:
    bad = Downloader(paths.models_dir, endpoint=hub.url, token="hf_notValid")
    with pytest.raises(HubError, match="refused your access token") as caught:
        bad.download(REPO, FILE)
    assert caught.value.kind == "auth" and "hf_notValid" not in str(caught.value)


def test_server_errors_are_retried_then_reported(hub: FakeHub, downloader: Downloader) -> None:
    hub.faults.status, hub.faults.status_path = 500, "/__cdn/"
    with pytest.raises(HubError, match="server error") as caught:
        downloader.download(REPO, FILE)
    assert caught.value.kind == "server"
    assert len(hub.byte_requests(FILE)) == 1 + downloader.retries
    # A passing hiccup is ridden out.
    hub.clear_requests()
    hub.faults.status_times = 2
    assert downloader.download(REPO, FILE).exists()


def test_rate_limit_on_the_file(hub: FakeHub, downloader: Downloader) -> None:
    hub.faults.status, hub.faults.status_path, hub.faults.retry_after = 429, f"/{REPO}/resolve/", 30
    with pytest.raises(HubError, match="try again in 30 seconds") as caught:
        downloader.download(REPO, FILE)
    assert caught.value.retry_after == 30


def test_offline(paths: Paths) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    offline = Downloader(paths.models_dir, endpoint=f"http://127.0.0.1:{port}")
    with pytest.raises(HubError, match="Can't reach the Hugging Face Hub") as caught:
        offline.download(REPO, FILE)
    assert caught.value.kind == "offline"


def test_not_enough_disk_space_before_starting(hub: FakeHub, paths: Paths) -> None:
    cramped = Downloader(paths.models_dir, endpoint=hub.url, free_space=lambda path: 250_000)
    with pytest.raises(HubError, match=r"Not enough space: needs 1\.0 MB, have 250 KB") as caught:
        cramped.download(REPO, FILE)
    assert caught.value.kind == "disk"
    assert hub.byte_requests(FILE) == []  # nothing was fetched


class FillingDisk:
    """A part-file opener whose disk fills up after ``room`` bytes (ENOSPC)."""

    def __init__(self, room: int) -> None:
        self.room = room

    def __call__(self, path: Path, offset: int) -> BinaryIO:
        handle = open_part_file(path, offset)
        opener = self

        class Full:
            def write(self, data: bytes) -> int:
                if len(data) > opener.room:
                    handle.write(data[: opener.room])
                    opener.room = 0
                    raise OSError(errno.ENOSPC, "No space left on device")
                opener.room -= len(data)
                return handle.write(data)

            def __enter__(self) -> Full:
                return self

            def __exit__(self, *exc: Any) -> None:
                handle.close()

        return Full()  # type: ignore[return-value]


def test_disk_filling_up_keeps_the_part_for_resume(hub: FakeHub, paths: Paths) -> None:
    full = Downloader(
        paths.models_dir, endpoint=hub.url, open_part=FillingDisk(300_000), free_space=lambda path: 10**12
    )
    with pytest.raises(HubError, match=r"Not enough space: needs .* more") as caught:
        full.download(REPO, FILE)
    assert caught.value.kind == "disk" and "resume" in str(caught.value)
    part = full.repo_dir(REPO) / (FILE + ".part")
    assert part.stat().st_size == 300_000
    hub.clear_requests()
    path = Downloader(paths.models_dir, endpoint=hub.url).download(REPO, FILE)
    assert sha256_of(path) == hub.repos[REPO].files[FILE].sha256
    assert [r.range for r in hub.byte_requests(FILE)] == ["bytes=300000-"]


def test_server_ignoring_range_restarts_cleanly(hub: FakeHub, downloader: Downloader) -> None:
    _pause_at(downloader, hub, 200_000)
    hub.clear_requests()
    hub.faults.ignore_range = True
    path = downloader.download(REPO, FILE)
    assert sha256_of(path) == hub.repos[REPO].files[FILE].sha256
    assert [r.range for r in hub.byte_requests(FILE)] == ["bytes=200000-"]  # asked, got 200, used it


def test_non_lfs_file_downloads(hub: FakeHub, downloader: Downloader) -> None:
    path = downloader.download(REPO, "notes.txt")
    assert path.read_bytes() == b"plain file, not in LFS\n"


def test_queue_runs_a_limited_number_at_once(hub: FakeHub, downloader: Downloader) -> None:
    hub.faults.throttle = 4_000_000  # bytes per second: long enough for downloads to overlap
    for n in range(3):
        hub.add_file(REPO, f"copy{n}-Q4_0.gguf", hub.repos[REPO].files[FILE].source)
    running: set[str] = set()
    most = 0
    finished: list[str] = []
    lock = threading.Lock()

    def on_progress(task: Any, progress: DownloadProgress) -> None:
        nonlocal most
        with lock:
            if progress.state is DownloadState.DOWNLOADING:
                running.add(task.id)
                most = max(most, len(running))
            elif progress.state.finished:
                running.discard(task.id)

    def on_finished(task: Any) -> None:
        with lock:
            finished.append(task.state.value)

    queue = DownloadQueue(downloader, max_parallel=2, on_progress=on_progress, on_finished=on_finished)
    tasks = [queue.add(REPO, f"copy{n}-Q4_0.gguf") for n in range(3)]
    assert queue.add(REPO, "copy0-Q4_0.gguf") is tasks[0]  # the same file is not queued twice
    assert queue.wait_idle(60)
    assert [t.state for t in tasks] == [DownloadState.DONE] * 3
    assert finished == ["done"] * 3 and 1 <= most <= 2
    queue.shutdown()


def test_queue_pause_resume_cancel_and_shutdown(hub: FakeHub, downloader: Downloader) -> None:
    hub.faults.hold_after = 100_000
    reached = threading.Event()
    queue = DownloadQueue(
        downloader,
        max_parallel=1,
        on_progress=lambda task, p: reached.set() if p.done >= 100_000 else None,
    )
    first = queue.add(REPO, FILE)
    second = queue.add(REPO, "notes.txt")
    assert reached.wait(10)
    assert second.state is DownloadState.QUEUED  # one at a time
    queue.pause(first)
    assert first.wait(10) and first.state is DownloadState.PAUSED
    assert queue.wait_idle(10) and second.state is DownloadState.DONE  # the next one ran
    hub.faults.hold_after = None
    hub.faults.release.set()
    queue.resume(first)
    assert queue.wait_idle(10) and first.state is DownloadState.DONE
    third = queue.add(REPO, "Split-Q8_0-00001-of-00002.gguf")
    queue.cancel(third)
    assert third.wait(10) and third.state is DownloadState.CANCELLED
    queue.shutdown()
    with pytest.raises(HubError):
        queue.add(REPO, "notes.txt")


def test_queue_resumes_a_paused_task_instead_of_adding_a_second_one(
    hub: FakeHub, downloader: Downloader
) -> None:
    hub.faults.hold_after = 300_000
    reached = threading.Event()
    queue = DownloadQueue(
        downloader, on_progress=lambda task, p: reached.set() if p.done >= 300_000 else None
    )
    first = queue.add(REPO, FILE)
    assert reached.wait(10)
    queue.pause(first)
    assert first.wait(10) and first.state is DownloadState.PAUSED
    hub.faults.hold_after = None
    hub.faults.release.set()
    # "Download" again (or "Resume download" in My models) picks up the paused task.
    _added_again_resumes(hub, queue, first)
    # A finished download is not resumed: asking again makes a new task (which finds the file).
    assert queue.add(REPO, FILE) is not first
    assert queue.wait_idle(10)
    queue.shutdown()


def _added_again_resumes(hub: FakeHub, queue: DownloadQueue, first: DownloadTask) -> None:
    """Adding the same file again takes up ``first`` and fetches only the bytes after 300,000."""
    hub.clear_requests()
    again = queue.add(REPO, FILE)
    assert again is first and queue.tasks == [first]
    assert queue.wait_idle(10) and first.state is DownloadState.DONE, first.error
    assert sha256_of(first.path) == hub.repos[REPO].files[FILE].sha256
    assert [r.range for r in hub.byte_requests(FILE)] == ["bytes=300000-"]


def test_queue_retries_a_failed_task_instead_of_adding_a_second_one(hub: FakeHub, paths: Paths) -> None:
    disk = FillingDisk(300_000)
    downloader = Downloader(
        paths.models_dir, endpoint=hub.url, open_part=disk, free_space=lambda path: 10**12
    )
    queue = DownloadQueue(downloader)
    first = queue.add(REPO, FILE)
    assert queue.wait_idle(10) and first.state is DownloadState.FAILED
    assert first.error is not None and first.error.kind == "disk"
    disk.room = 10**12  # space was freed
    _added_again_resumes(hub, queue, first)
    queue.shutdown()


@pytest.mark.model
def test_downloaded_model_loads_in_llama_cpp(
    hub: FakeHub, downloader: Downloader, paths: Paths, starter_model: Path
) -> None:
    llama_cpp = pytest.importorskip("llama_cpp")
    hub.add_repo(STARTER_REPO)
    hub.add_file(STARTER_REPO, STARTER_FILE, starter_model)
    path = downloader.download(STARTER_REPO, STARTER_FILE)
    entry = ModelLibrary(paths).find(str(path))
    assert entry is not None and entry.source == "downloaded" and entry.loadable
    llm = llama_cpp.Llama(str(path), n_ctx=256, verbose=False)
    try:
        assert llm.n_ctx() == 256
        assert llm.tokenize(b"Hello")
    finally:
        llm.close()


def test_file_replaced_after_its_listing_downloads_the_new_version(
    hub: FakeHub, paths: Paths, tmp_path: Path
) -> None:
    # The user picks a file from a list read earlier; the repo re-uploads it before the click.
    model = HubCatalog(endpoint=hub.url).files(REPO).find(FILE)
    assert model is not None
    source = make_gguf(tmp_path / "reuploaded.gguf", name="Tiny", data_bytes=1_100_000, seed=42)
    new = hub.add_file(REPO, FILE, source)
    hub.repos[REPO].sha = hashlib.sha1(b"re-upload").hexdigest()
    assert model.parts[0].sha256 != new.sha256
    path = Downloader(paths.models_dir, endpoint=hub.url).download(REPO, model)
    assert sha256_of(path) == new.sha256
    sidecar = json.loads(path.with_name(FILE + ".source.json").read_text())
    assert (sidecar["sha256"], sidecar["size"]) == (new.sha256, new.size)


def _wait_for(predicate: Any, timeout: float = 10.0) -> bool:
    done = threading.Event()
    deadline = threading.Timer(timeout, done.set)
    deadline.start()
    try:
        while not predicate():
            if done.wait(0.01):
                return bool(predicate())
        return True
    finally:
        deadline.cancel()


@pytest.mark.parametrize(
    ("stall", "action"),
    [(f"/{REPO}/resolve/", "cancel"), ("/__cdn/", "cancel"), ("/__cdn/", "pause")],
    ids=["metadata-cancel", "file-cancel", "file-pause"],
)
def test_stop_does_not_wait_for_a_server_that_never_answers(
    hub: FakeHub, paths: Paths, stall: str, action: str
) -> None:
    # The connection is accepted but no answer comes: only the 30-second timeout would end it.
    downloader = Downloader(paths.models_dir, endpoint=hub.url, timeout=30)
    hub.faults.stall_path = stall
    task = downloader.task(REPO, FILE)
    task.start()
    assert _wait_for(lambda: hub.stalled == 1)
    getattr(task, action)()
    assert task.wait(10), "the download kept waiting for the server"
    expected = DownloadState.CANCELLED if action == "cancel" else DownloadState.PAUSED
    assert task.state is expected
    assert not (downloader.repo_dir(REPO) / FILE).exists()


def test_expired_file_server_link_on_resume_gets_a_fresh_one(hub: FakeHub, downloader: Downloader) -> None:
    _pause_at(downloader, hub, 400_000)
    hub.clear_requests()
    # The resumed request meets a file server that refuses its signed link once.
    hub.faults.status, hub.faults.status_path, hub.faults.status_times = 403, "/__cdn/", 1
    path = downloader.download(REPO, FILE)
    assert sha256_of(path) == hub.repos[REPO].files[FILE].sha256
    assert [r.range for r in hub.byte_requests(FILE)] == ["bytes=400000-", "bytes=400000-"]
    resolves = [r for r in hub.file_requests(FILE) if "/resolve/" in r.path]
    assert len(resolves) == 2  # the Hub was asked for a new link


def test_file_server_refusing_every_link_does_not_blame_the_token(
    hub: FakeHub, downloader: Downloader
) -> None:
    hub.faults.status, hub.faults.status_path = 403, "/__cdn/"
    with pytest.raises(HubError, match="file server refused") as caught:
        downloader.download(REPO, FILE)
    assert caught.value.kind == "server" and "token" not in str(caught.value)
    assert len(hub.byte_requests(FILE)) == 1 + downloader.retries


def test_second_download_of_the_same_file_is_refused_while_the_first_runs(
    hub: FakeHub, downloader: Downloader, paths: Paths
) -> None:
    hub.faults.hold_after = 200_000
    recorder = Recorder(threshold=200_000)
    first = downloader.task(REPO, FILE, progress=recorder)
    first.start()
    assert recorder.reached.wait(10)
    # Another window or a `llamadesk hub download` of the same file, with its own downloader.
    second = Downloader(paths.models_dir, endpoint=hub.url).task(REPO, FILE)
    second.start()
    assert second.wait(10) and second.state is DownloadState.FAILED
    assert second.error is not None and "already being downloaded" in str(second.error)
    folder = downloader.repo_dir(REPO)
    assert (folder / (FILE + ".part")).stat().st_size == 200_000  # left alone
    hub.faults.hold_after = None
    hub.faults.release.set()
    assert first.wait(10) and first.state is DownloadState.DONE, first.error
    assert sha256_of(first.path) == hub.repos[REPO].files[FILE].sha256
    assert sorted(p.name for p in folder.iterdir()) == [FILE, FILE + ".source.json"]  # no lock left
    hub.clear_requests()
    assert Downloader(paths.models_dir, endpoint=hub.url).download(REPO, FILE) == first.path
    assert hub.byte_requests(FILE) == []


def test_complete_part_is_installed_without_fetching_it_again(hub: FakeHub, downloader: Downloader) -> None:
    # An earlier run fetched all of the first part but stopped before the second.
    first = hub.repos[REPO].files[SPLIT_FILES[0]]
    folder = downloader.repo_dir(REPO)
    folder.mkdir(parents=True)
    (folder / (SPLIT_FILES[0] + ".part")).write_bytes(first.read(0, first.size))
    hub.faults.ignore_range = True  # a server that would send the whole file again
    path = downloader.download(REPO, SPLIT_FILES)
    assert path.name == SPLIT_FILES[0] and sha256_of(path) == first.sha256
    assert hub.byte_requests(SPLIT_FILES[0]) == []
    assert len(hub.byte_requests(SPLIT_FILES[1])) == 1


class LosingClose:
    """A part-file opener whose first close fails (ENOSPC) and loses the last bytes written."""

    def __init__(self) -> None:
        self.failed = False
        self.kept: int | None = None

    def __call__(self, path: Path, offset: int) -> BinaryIO:
        handle = open_part_file(path, offset)
        opener = self

        class Losing:
            last = 0

            def write(self, data: bytes) -> int:
                self.last = len(data)
                return handle.write(data)

            def __enter__(self) -> Losing:
                return self

            def __exit__(self, *exc: Any) -> None:
                if opener.failed:
                    handle.close()
                    return
                opener.failed = True
                opener.kept = handle.tell() - self.last
                handle.truncate(opener.kept)
                handle.close()
                raise OSError(errno.ENOSPC, "No space left on device")

        return Losing()  # type: ignore[return-value]


def test_bytes_lost_when_closing_the_part_are_fetched_again(hub: FakeHub, paths: Paths) -> None:
    losing = LosingClose()
    flaky = Downloader(paths.models_dir, endpoint=hub.url, open_part=losing, backoff=(0.01,))
    with pytest.raises(HubError, match="Not enough space") as caught:
        flaky.download(REPO, FILE)
    assert caught.value.kind == "disk"
    folder = flaky.repo_dir(REPO)
    assert not (folder / FILE).exists()  # nothing installed from a file with a hole in it
    assert losing.kept and (folder / (FILE + ".part")).stat().st_size == losing.kept
    hub.clear_requests()
    path = flaky.download(REPO, FILE)
    assert sha256_of(path) == hub.repos[REPO].files[FILE].sha256
    assert [r.range for r in hub.byte_requests(FILE)] == [f"bytes={losing.kept}-"]


@pytest.mark.parametrize("name", ["..\\..\\escape-Q4_0.gguf", "C:escape-Q4_0.gguf", "../escape-Q4_0.gguf"])
def test_names_pointing_outside_the_models_folder_are_refused(
    hub: FakeHub, downloader: Downloader, tmp_path: Path, name: str
) -> None:
    # Windows reads "\\" as a folder separator and "C:" as a drive: a hostile repo's names.
    hub.add_file(REPO, name, b"GGUF" + b"\0" * 100)
    with pytest.raises(HubError, match="outside the model's folder"):
        downloader.download(REPO, name)
    assert not list(tmp_path.rglob("*escape*"))


def test_cancelling_a_paused_copy_leaves_the_running_download_alone(
    hub: FakeHub, downloader: Downloader, paths: Paths
) -> None:
    _pause_at(downloader, hub, 150_000)
    paused = downloader.task(REPO, FILE)  # e.g. the app's paused entry for this file
    hub.faults.release.clear()
    hub.faults.hold_after = 300_000
    recorder = Recorder(threshold=300_000)
    running = Downloader(paths.models_dir, endpoint=hub.url).task(REPO, FILE, progress=recorder)
    running.start()  # e.g. `llamadesk hub download` of the same file
    assert recorder.reached.wait(10)
    paused.cancel()
    assert paused.state is DownloadState.CANCELLED
    hub.faults.hold_after = None
    hub.faults.release.set()
    assert running.wait(10) and running.state is DownloadState.DONE, running.error
    assert sha256_of(running.path) == hub.repos[REPO].files[FILE].sha256
