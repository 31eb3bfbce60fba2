"""Repository names are checked the same way by the catalog and the downloader, before any use.

A name becomes a URL and a folder (``owner/name`` -> ``models/owner__name``): a hostile one
must not reach the disk or the network.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from hub_server import FakeHub
from llamadesk.hub import Downloader, DownloadQueue, HubCatalog, HubError
from llamadesk.paths import Paths

HOSTILE = [
    "..",
    "../x",
    "../../etc",
    "x/..",
    "a/../b",
    "/abs",
    "/etc/passwd",
    "a/b/c",
    "a//b",
    "a/",
    "/a",
    "a\0b",
    "a/b\n",
    "a\\b",
    "C:\\x",
    "C:x/y",
    "",
    " ",
    ".hidden/x",
    "owner/.x",
    "-a/b",
    "own er/x",
    "ünï/x",
    "a" * 97,
    "owner/" + "b" * 97,
]
GOOD = ["owner/name", "gpt2", "A-b_c.d/e.f-G_1", "bartowski/Llama-3.2-1B-Instruct-GGUF"]


@pytest.fixture
def hub(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeHub]:
    with FakeHub() as server:
        monkeypatch.setenv("HF_ENDPOINT", server.url)
        yield server


def tree(folder: Path) -> list[Path]:
    return sorted(folder.rglob("*")) if folder.exists() else []


@pytest.mark.parametrize("repo_id", HOSTILE, ids=ascii)
def test_hostile_repo_names_are_refused_everywhere(hub: FakeHub, paths: Paths, repo_id: str) -> None:
    downloader = Downloader(paths.models_dir, endpoint=hub.url)
    queue = DownloadQueue(downloader)
    catalog = HubCatalog(endpoint=hub.url)
    around = paths.models_dir.parent
    before = tree(around)
    calls = {
        "repo_dir": lambda: downloader.repo_dir(repo_id),
        "task": lambda: downloader.task(repo_id, "model.gguf"),
        "task into a folder": lambda: downloader.task(repo_id, "model.gguf", dest_dir=paths.models_dir / "x"),
        "download": lambda: downloader.download(repo_id, "model.gguf"),
        "queue": lambda: queue.add(repo_id, "model.gguf"),
        "files": lambda: catalog.files(repo_id),
        "model card": lambda: catalog.model_card(repo_id),
    }
    for name, call in calls.items():
        with pytest.raises(HubError, match="is not a model name") as caught:
            call()
        assert caught.value.kind == "not_found", name
        assert "\0" not in str(caught.value) and "\n" not in str(caught.value), name
    assert queue.tasks == []
    assert tree(around) == before  # nothing was created, inside the models folder or next to it
    assert hub.requests == []  # and nothing was asked of the server
    queue.shutdown()


@pytest.mark.parametrize("repo_id", GOOD)
def test_model_names_map_to_one_folder_inside_the_models_folder(paths: Paths, repo_id: str) -> None:
    folder = Downloader(paths.models_dir).repo_dir(repo_id)
    assert folder.parent == paths.models_dir
    assert folder.name == repo_id.replace("/", "__")
