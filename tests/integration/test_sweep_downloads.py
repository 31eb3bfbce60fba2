"""Downloads against odd things in the models folder and odd names from the Hub (real HTTP on 127.0.0.1).

A named pipe with the name of a download's record is never opened (reading or writing one waits
for the other end for ever), a folder where a file belongs ends in a HubError that names it, and
a file name or revision that can't be encoded is refused before any URL or path is built.
"""

from __future__ import annotations

import hashlib
import os
import stat
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from hub_server import FakeHub, make_gguf
from llamadesk.hub import Downloader, FilePart, HubCatalog, HubError, ModelLibrary
from llamadesk.paths import Paths

REPO = "acme/Tiny-GGUF"
FILE = "Tiny-Q4_K_M.gguf"
posix_only = pytest.mark.skipif(sys.platform == "win32", reason="named pipes are POSIX files")


@pytest.fixture(scope="module")
def gguf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_gguf(tmp_path_factory.mktemp("served") / "tiny.gguf", name="Tiny", data_bytes=50_000)


@pytest.fixture
def hub(gguf: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeHub]:
    with FakeHub() as server:
        server.add_repo(REPO)
        server.add_file(REPO, FILE, gguf)
        server.add_file(REPO, "Odd-\ud800-Q4_0.gguf", gguf)  # listed with an escaped "\ud800"
        monkeypatch.setenv("HF_ENDPOINT", server.url)
        yield server


@pytest.fixture
def downloader(hub: FakeHub, paths: Paths) -> Downloader:
    return Downloader(paths.models_dir, endpoint=hub.url, retries=1, backoff=(0.01,))


@contextmanager
def pipe(path: Path) -> Iterator[list[str]]:
    """A named pipe at ``path``; the list says whether anything opened it for reading.

    A writer waits on the other end, so a reader that wrongly opens it gets an end of file
    instead of blocking for ever.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    os.mkfifo(path)
    holder = path.with_name(f".{path.name}.held")
    os.link(path, holder)  # the pipe stays reachable if the download removes ``path``
    opened: list[str] = []

    def writer() -> None:
        fd = os.open(holder, os.O_WRONLY)
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


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@posix_only
@pytest.mark.parametrize("record", [FILE + ".source.json", FILE + ".part.source.json"])
def test_a_named_pipe_as_a_download_record_is_never_opened(
    hub: FakeHub, downloader: Downloader, record: str
) -> None:
    fifo = downloader.repo_dir(REPO) / record
    with pipe(fifo) as opened:
        path = downloader.download(REPO, FILE)
        assert opened == []
    assert sha256_of(path) == hub.repos[REPO].files[FILE].sha256
    assert not os.path.lexists(fifo) or stat.S_ISFIFO(os.lstat(fifo).st_mode)  # left alone or removed


def test_a_folder_where_the_part_file_belongs_is_a_hub_error_naming_it(downloader: Downloader) -> None:
    folder = downloader.repo_dir(REPO) / (FILE + ".part")
    (folder / "inside").mkdir(parents=True)
    with pytest.raises(HubError, match=r"Can't download there: .*Tiny-Q4_K_M\.gguf\.part") as caught:
        downloader.download(REPO, FILE)
    assert caught.value.kind == "disk"
    assert (folder / "inside").is_dir()  # nothing of the user's was removed
    assert not (downloader.repo_dir(REPO) / FILE).exists()


def test_a_folder_where_the_part_record_belongs_is_left_alone(hub: FakeHub, downloader: Downloader) -> None:
    folder = downloader.repo_dir(REPO) / (FILE + ".part.source.json")
    (folder / "inside").mkdir(parents=True)
    path = downloader.download(REPO, FILE)
    assert sha256_of(path) == hub.repos[REPO].files[FILE].sha256
    assert (folder / "inside").is_dir()


def test_a_file_name_with_a_lone_surrogate_is_neither_listed_nor_downloaded(
    hub: FakeHub, downloader: Downloader, paths: Paths
) -> None:
    listed = HubCatalog(endpoint=hub.url).files(REPO)
    assert [f.path for f in listed.files] == [FILE]
    size = hub.repos[REPO].files[FILE].size
    for name in ("Odd-\ud800-Q4_0.gguf", os.fsdecode(b"Odd-\xff-Q4_0.gguf")):
        with pytest.raises(HubError, match="not a name a file can have"):
            downloader.download(REPO, FilePart(name, size))
    assert [e.source for e in ModelLibrary(paths, scan_hf_cache=False).list() if e.source != "starter"] == []


@pytest.mark.parametrize("revision", ["main\udcff", "", "ma\nin"])
def test_a_revision_that_fits_in_no_url_is_refused_clearly(
    hub: FakeHub, downloader: Downloader, revision: str
) -> None:
    with pytest.raises(HubError, match="revision"):
        HubCatalog(endpoint=hub.url).files(REPO, revision=revision)
    with pytest.raises(HubError, match="revision"):
        HubCatalog(endpoint=hub.url).model_card(REPO, revision=revision)
    with pytest.raises(HubError, match="revision"):
        downloader.download(REPO, FILE, revision=revision)
    assert hub.byte_requests(FILE) == []
