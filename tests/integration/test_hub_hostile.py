"""Hostile or broken Hub servers: the catalog and the downloader end with a clear HubError, never
a hang, a traceback, a full disk or an unchecked file."""

from __future__ import annotations

import errno
import itertools
import json
import logging
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

import pytest

from hub_server import Exchange, FakeHub, Route, make_gguf
from llamadesk.engine import Hardware
from llamadesk.engine.hardware import GiB
from llamadesk.hub import Downloader, FilePart, HubCatalog, HubError
from llamadesk.hub.download import open_part_file
from llamadesk.paths import Paths

REPO = "acme/Tiny-GGUF"
FILE = "Tiny-Q4_K_M.gguf"
TOKEN = "hf_hostileTestToken789"
INFO = f"/api/models/{REPO}/revision/main"  # where the catalog asks about the repository
BIG_PC = Hardware(total_ram=64 * GiB, available_ram=48 * GiB, cpu_count=16, backend="CPU", gpu_offload=False)


@pytest.fixture(scope="module")
def gguf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_gguf(tmp_path_factory.mktemp("served") / "tiny.gguf", name="Tiny", data_bytes=200_000)


@pytest.fixture
def hub(gguf: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeHub]:
    with FakeHub() as server:
        server.add_repo(REPO, gguf={"total": 50_000_000, "architecture": "llama", "context_length": 2048})
        server.add_file(REPO, FILE, gguf)
        monkeypatch.setenv("HF_ENDPOINT", server.url)
        yield server


@pytest.fixture
def downloader(hub: FakeHub, paths: Paths) -> Downloader:
    return Downloader(paths.models_dir, endpoint=hub.url, retries=2, backoff=(0.01,))


def folder_of(downloader: Downloader) -> Path:
    return downloader.repo_dir(REPO)


def leftovers(downloader: Downloader, name: str) -> list[str]:
    folder = folder_of(downloader)
    return sorted(p.name for p in folder.glob(name + "*")) if folder.exists() else []


def no_tracebacks(caplog: pytest.LogCaptureFixture) -> bool:
    return not any(r.exc_info for r in caplog.records)


def at(path: str, answer: Route) -> Route:
    """A route that answers requests for exactly ``path`` and leaves the others to the fake Hub."""
    return lambda exchange: answer(exchange) if exchange.path == path else exchange.default()


# -- an overall deadline on API calls ------------------------------------------------------------


def one_byte_at_a_time(body: bytes, interval: float = 0.1) -> Any:
    """A route that sends a valid answer one byte every ``interval`` seconds (about 10 s in all)."""
    padded = body + b" " * max(0, 100 - len(body))

    def answer(exchange: Exchange) -> None:
        exchange.stream(
            (padded[i : i + 1] for i in range(len(padded))),
            headers={"Content-Type": "application/json"},
            length=len(padded),
            interval=interval,
        )

    return answer


@pytest.mark.parametrize("call", ["search", "files", "model_card", "whoami"])
def test_a_trickled_answer_runs_into_the_deadline(hub: FakeHub, call: str) -> None:
    # Every byte arrives well within the read timeout, so only an overall deadline ends the call.
    body = json.dumps({"id": REPO, "sha": hub.repos[REPO].sha, "name": "x"}).encode()
    hub.route("/", one_byte_at_a_time(body if call != "search" else b"[]"))
    catalog = HubCatalog(endpoint=hub.url, token=TOKEN, hardware=BIG_PC, timeout=20, deadline=1.0)
    calls = {
        "search": lambda: catalog.search("tiny"),
        "files": lambda: catalog.files(REPO),
        "model_card": lambda: catalog.model_card(REPO),
        "whoami": catalog.whoami,
    }
    with pytest.raises(HubError, match="took more than 1 second to answer") as caught:
        calls[call]()
    assert caught.value.kind == "offline"


def test_trickled_file_headers_run_into_the_downloader_deadline(hub: FakeHub, paths: Paths) -> None:
    headers = f"X-Repo-Commit: {hub.repos[REPO].sha}\r\nContent-Length: 10\r\n\r\n".encode()
    hub.route(
        f"/{REPO}/resolve/",
        lambda exchange: exchange.trickle_headers(b"HTTP/1.1 200 OK\r\n", headers, 0.1),
    )
    slow = Downloader(paths.models_dir, endpoint=hub.url, timeout=20, deadline=1.0)
    with pytest.raises(HubError, match="did not answer in time") as caught:
        slow.download(REPO, "notes.txt")
    assert caught.value.kind == "offline"
    assert leftovers(slow, "notes.txt") == []


# -- redirects ---------------------------------------------------------------------------------

REFUSED = ["ftp://files.example/Tiny.gguf", "file:///etc/passwd", "http://localhost:{port}/elsewhere"]


def redirect_to(target: str) -> Any:
    return lambda exchange: exchange.reply(302, headers={"Location": target})


@pytest.mark.parametrize("target", REFUSED)
def test_catalog_follows_no_redirect_off_https_or_the_hub(hub: FakeHub, target: str) -> None:
    target = target.format(port=hub.port)
    hub.route(f"/api/models/{REPO}", redirect_to(target))
    with pytest.raises(HubError, match=re.escape(target.split("?")[0])) as caught:
        HubCatalog(hardware=BIG_PC).files(REPO)
    assert caught.value.kind == "server" and "does not follow" in str(caught.value)
    assert not [r for r in hub.requests if r.path == "/elsewhere"]


def test_catalog_follows_a_redirect_on_the_hub(hub: FakeHub) -> None:
    # A renamed repository: the Hub answers with a relative redirect to the new name.
    renamed = hub.add_repo("acme/Renamed-GGUF")
    hub.add_file(renamed.repo_id, "Renamed-Q4_0.gguf", hub.repos[REPO].files[FILE].source)
    hub.route(
        "/api/models/acme/Old-GGUF",
        lambda exchange: exchange.reply(
            307, headers={"Location": exchange.handler.path.replace("Old", "Renamed")}
        ),
    )
    repo = HubCatalog(hardware=BIG_PC).files("acme/Old-GGUF")
    assert repo.commit == renamed.sha and [f.path for f in repo.files] == ["Renamed-Q4_0.gguf"]


def test_next_page_links_off_the_hub_are_not_followed(hub: FakeHub) -> None:
    elsewhere = f"http://localhost:{hub.port}/api/models/{REPO}/tree/main?cursor=1"
    hub.route(
        f"/api/models/{REPO}/tree/",
        lambda exchange: exchange.reply(200, b"[]", {"Link": f'<{elsewhere}>; rel="next"'}),
    )
    with pytest.raises(HubError, match=re.escape(f"localhost:{hub.port}/api/models")):
        HubCatalog(hardware=BIG_PC).files(REPO)
    with pytest.raises(HubError, match=re.escape("ftp://files.example/api/models")):
        HubCatalog().search("", page_cursor="ftp://files.example/api/models?cursor=2")


@pytest.mark.parametrize("target", REFUSED)
def test_downloader_follows_no_redirect_off_https_or_the_hub(
    hub: FakeHub, downloader: Downloader, target: str
) -> None:
    target = target.format(port=hub.port)
    hub.route(f"/{REPO}/resolve/", redirect_to(target))
    with pytest.raises(HubError, match=re.escape(target)) as caught:
        downloader.download(REPO, FILE)
    assert caught.value.kind == "server"
    assert leftovers(downloader, FILE) == []
    assert not [r for r in hub.requests if r.path == "/elsewhere"]


# -- numbers and JSON a parser must not trust ------------------------------------------------------


@pytest.mark.parametrize("number", ["Infinity", "-Infinity", "NaN", "1e999"])
def test_non_finite_numbers_are_refused(hub: FakeHub, number: str, caplog: pytest.LogCaptureFixture) -> None:
    body = f'{{"id": "{REPO}", "sha": "{hub.repos[REPO].sha}", "downloads": {number}}}'.encode()
    hub.route(f"/api/models/{REPO}", at(INFO, lambda exchange: exchange.reply(200, body)))
    with pytest.raises(HubError, match="could not understand") as caught:
        HubCatalog(hardware=BIG_PC).files(REPO)
    assert caught.value.kind == "server" and no_tracebacks(caplog)


@pytest.mark.parametrize("where", ["search", "info", "tree"])
def test_deeply_nested_answers_are_refused(hub: FakeHub, where: str) -> None:
    nested = b"[" * 100_000 + b"]" * 100_000
    send: Route = lambda exchange: exchange.reply(200, nested)  # noqa: E731
    routes = {"search": at("/api/models", send), "info": at(INFO, send), "tree": send}
    hub.route("/api/models" if where != "tree" else f"/api/models/{REPO}/tree/", routes[where])
    catalog = HubCatalog(hardware=BIG_PC)
    with pytest.raises(HubError, match="could not understand"):
        catalog.search("tiny") if where == "search" else catalog.files(REPO)


def test_impossible_numbers_in_a_model_are_dropped(hub: FakeHub) -> None:
    body = {
        "id": REPO,
        "sha": hub.repos[REPO].sha,
        "downloads": 10**400,
        "likes": -3,
        "gguf": {"total": 10**400, "context_length": -1, "architecture": ["x"]},
        "tags": "gguf",
    }
    info, results = json.dumps(body).encode(), json.dumps([body, {"id": 5}]).encode()
    hub.route(f"/api/models/{REPO}", at(INFO, lambda exchange: exchange.reply(200, info)))
    hub.route("/api/models", at("/api/models", lambda exchange: exchange.reply(200, results)))
    repo = HubCatalog(hardware=BIG_PC).files(REPO)
    assert (repo.parameter_count, repo.context_length, repo.architecture) == (None, None, None)
    [result] = HubCatalog().search("tiny").results
    assert (result.repo_id, result.downloads, result.likes, result.tags) == (REPO, 0, 0, ())


def test_impossible_file_sizes_are_left_out(
    hub: FakeHub, gguf: Path, caplog: pytest.LogCaptureFixture
) -> None:
    good = hub.repos[REPO].files[FILE]
    entries = [{"type": "file", "path": FILE, "size": good.size, "lfs": {"oid": good.sha256}}]
    for name, size in [("Neg", -5), ("Huge", 10**30), ("Float", 12.5), ("Bool", True), ("Text", "7")]:
        entries.append(
            {"type": "file", "path": f"{name}-Q4_0.gguf", "size": size, "lfs": {"oid": good.sha256}}
        )
    hub.route(f"/api/models/{REPO}/tree/", lambda exchange: exchange.reply(200, json.dumps(entries).encode()))
    caplog.set_level(logging.INFO)
    repo = HubCatalog(hardware=BIG_PC).files(REPO)
    assert [f.path for f in repo.files] == [FILE]
    assert caplog.text.count("impossible size") == 5 and no_tracebacks(caplog)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("²", None),  # "²".isdigit() is True, int("²") raises
        ("¹²", None),
        ("-5", None),
        ("1e3", None),
        ("99999999999999999999999", None),
        (" 12 ", 12),
        ("Wed, 21 Oct 2015 07:28:00 GMT", 0),  # a date in the past: now
        ("Fri, 31 Dec 9999 23:59:59 GMT", 3600),  # far away: at most an hour
    ],
)
def test_retry_after_is_parsed_safely(hub: FakeHub, value: str, expected: int | None) -> None:
    hub.faults.status, hub.faults.status_path, hub.faults.retry_after = 429, "/api/", value
    with pytest.raises(HubError) as caught:
        HubCatalog().search("tiny")
    assert caught.value.kind == "rate_limited" and caught.value.retry_after == expected


def test_retry_after_from_the_file_server_is_parsed_safely(hub: FakeHub, downloader: Downloader) -> None:
    hub.faults.status, hub.faults.status_path, hub.faults.retry_after = 503, "/__cdn/", "²"
    with pytest.raises(HubError, match="server error") as caught:
        downloader.download(REPO, FILE)
    assert caught.value.kind == "server"
    hub.faults.status, hub.faults.status_path = 429, f"/{REPO}/resolve/"
    with pytest.raises(HubError, match="in a few minutes") as caught:
        downloader.download(REPO, FILE)
    assert caught.value.kind == "rate_limited" and caught.value.retry_after is None


@pytest.mark.parametrize("size", ["²", "-5", "1" + "0" * 30, "12.0"])
def test_an_impossible_size_header_is_refused(hub: FakeHub, downloader: Downloader, size: str) -> None:
    def answer(exchange: Exchange) -> None:
        if exchange.method != "HEAD":
            exchange.default()
            return
        headers = {"X-Repo-Commit": hub.repos[REPO].sha, "X-Linked-Size": size, "X-Linked-Etag": '"abc"'}
        exchange.reply(302, headers={**headers, "Location": f"{hub.cdn_url}/__cdn/x"})

    hub.route(f"/{REPO}/resolve/", answer)
    with pytest.raises(HubError, match="impossible size") as caught:
        downloader.download(REPO, FILE)
    assert caught.value.kind == "server"
    assert leftovers(downloader, FILE) == [] and hub.byte_requests(FILE) == []


# -- endless bodies ------------------------------------------------------------------------------


class FillingDisk:
    """A part-file opener whose disk is full after ``room`` bytes (ENOSPC)."""

    def __init__(self, room: int) -> None:
        self.room = room

    def __call__(self, path: Path, offset: int) -> BinaryIO:
        handle = open_part_file(path, offset)
        disk = self

        class Full:
            def write(self, data: bytes) -> int:
                if len(data) > disk.room:
                    raise OSError(errno.ENOSPC, "No space left on device")
                disk.room -= len(data)
                return handle.write(data)

            def __enter__(self) -> Full:
                return self

            def __exit__(self, *exc: Any) -> None:
                handle.close()

        return Full()  # type: ignore[return-value]


def endless(hub: FakeHub, name: str, first: bytes = b"GGUF") -> Any:
    """A route: HEAD answers without any size, GET sends ``first`` then zeros forever (no Content-Length)."""

    def answer(exchange: Exchange) -> None:
        if not exchange.path.endswith("/" + name):
            exchange.default()
            return
        headers = {"X-Repo-Commit": hub.repos[REPO].sha, "Content-Type": "application/octet-stream"}
        body = itertools.chain([first], itertools.repeat(b"\0" * 65536))
        exchange.stream(body, headers=headers)

    return answer


def test_a_file_of_unknown_size_is_not_downloaded(hub: FakeHub, paths: Paths) -> None:
    # Listed with size 0, no size on HEAD, no Content-Length and an endless body: it once filled
    # the disk, then said "needs 0 B more, have 0 B free".
    hub.route(f"/{REPO}/resolve/", endless(hub, "endless-Q4_0.gguf"))
    disk = FillingDisk(2_000_000)
    downloader = Downloader(paths.models_dir, endpoint=hub.url, open_part=disk, free_space=lambda p: 10**12)
    with pytest.raises(HubError, match=r"did not say how large endless-Q4_0\.gguf is") as caught:
        downloader.download(REPO, FilePart("endless-Q4_0.gguf", 0))
    assert caught.value.kind == "server" and "0 B" not in str(caught.value)
    assert disk.room == 2_000_000 and leftovers(downloader, "endless") == []


def test_a_body_longer_than_the_listed_size_is_stopped(hub: FakeHub, downloader: Downloader) -> None:
    notes = hub.add_file(REPO, "notes.txt", b"plain text, not in LFS\n" * 50, lfs=False)

    def answer(exchange: Exchange) -> None:
        if exchange.method == "HEAD" or not exchange.path.endswith("/notes.txt"):
            exchange.default()  # the HEAD gives the true size
            return
        endless(hub, "notes.txt", notes.read(0, notes.size))(exchange)

    hub.route(f"/{REPO}/resolve/", answer)
    with pytest.raises(HubError, match=f"more than the {notes.size:,} bytes the Hub lists") as caught:
        downloader.download(REPO, "notes.txt")
    assert caught.value.kind == "server"
    part = folder_of(downloader) / "notes.txt.part"
    assert not (folder_of(downloader) / "notes.txt").exists()
    assert part.stat().st_size <= notes.size
    assert len(hub.file_requests("notes.txt")) == 1  # stopped at once, not retried


# -- files the Hub lists without a SHA-256 -------------------------------------------------------


def test_a_web_page_served_as_a_model_is_not_installed(hub: FakeHub, downloader: Downloader) -> None:
    # A plain (non-LFS) file whose size and git SHA-1 match what is served: only the GGUF
    # magic can tell that it is not a model.
    page = b"<!doctype html><html><body>Please sign in</body></html>\n"
    served = hub.add_file(REPO, "model.gguf", page, lfs=False)
    listed = HubCatalog(hardware=BIG_PC).files(REPO).find("model.gguf")
    assert listed is not None and listed.parts[0].git_sha1 == served.git_oid
    assert listed.parts[0].sha256 is None
    with pytest.raises(HubError, match=r"model\.gguf is not a GGUF model file") as caught:
        downloader.download(REPO, listed)
    assert caught.value.kind == "checksum"
    assert leftovers(downloader, "model.gguf") == []


def test_a_damaged_plain_file_fails_its_git_checksum(hub: FakeHub, downloader: Downloader) -> None:
    hub.add_file(REPO, "config.json", b'{"context_length": 2048}\n' * 40, lfs=False)
    hub.faults.corrupt = True
    with pytest.raises(HubError, match="git SHA-1") as caught:
        downloader.download(REPO, "config.json")
    assert caught.value.kind == "checksum"
    assert leftovers(downloader, "config.json") == []
    hub.faults.corrupt = False
    path = downloader.download(REPO, "config.json")
    assert path.read_bytes() == hub.repos[REPO].files["config.json"].source
