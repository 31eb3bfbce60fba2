"""``llamadesk hub ...`` and ``llamadesk models ...`` against the local Hub server."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from hub_server import FakeHub, make_gguf
from llamadesk.cli import main
from llamadesk.paths import Paths

REPO = "acme/Tiny-GGUF"
FILE = "Tiny-Q4_K_M.gguf"


@pytest.fixture
def hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeHub]:
    with FakeHub() as server:
        server.add_repo(
            REPO,
            downloads=1234,
            likes=5,
            gguf={"total": 50_000_000, "architecture": "llama", "context_length": 2048},
        )
        server.add_file(REPO, FILE, make_gguf(tmp_path / "tiny.gguf", name="Tiny", data_bytes=600_000))
        server.add_file(REPO, "Tiny-Q8_0.gguf", make_gguf(tmp_path / "q8.gguf", data_bytes=900_000, seed=2))
        server.add_repo("acme/Other-GGUF", downloads=10)
        monkeypatch.setenv("HF_ENDPOINT", server.url)
        monkeypatch.delenv("HF_TOKEN", raising=False)
        yield server


def test_search_json_and_text(hub: FakeHub, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["hub", "search", "gguf", "--json", "--limit", "1"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert [r["repo_id"] for r in data["results"]] == [REPO]
    assert data["results"][0]["parameter_count"] == 50_000_000 and data["next_cursor"]
    assert main(["hub", "search", "tiny", "--sort", "likes"]) == 0
    out = capsys.readouterr().out
    assert REPO in out and "1,234 downloads" in out


def test_files_lists_sizes_quants_and_recommendation(
    hub: FakeHub, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["hub", "files", REPO]) == 0
    out = capsys.readouterr().out
    assert FILE in out and "Q4_K_M" in out and "recommended" in out
    assert main(["hub", "files", REPO, "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    sizes = {f["name"]: f["size"] for f in data["files"]}
    assert sizes["Tiny-Q4_K_M"] == hub.repos[REPO].files[FILE].size
    assert {f["quantization"] for f in data["files"]} == {"Q4_K_M", "Q8_0"}


def test_download_progress_resume_and_library(
    hub: FakeHub, paths: Paths, capsys: pytest.CaptureFixture[str]
) -> None:
    served = hub.repos[REPO].files[FILE]
    # An earlier run was interrupted after 200,000 bytes.
    folder = paths.models_dir / "acme__Tiny-GGUF"
    folder.mkdir(parents=True)
    (folder / (FILE + ".part")).write_bytes(served.read(0, 200_000))
    assert main(["hub", "download", REPO, FILE]) == 0
    captured = capsys.readouterr()
    path = Path(captured.out.strip())
    assert path == folder / FILE and path.stat().st_size == served.size
    assert "done" in captured.err and "100.0%" in captured.err
    assert [r.range for r in hub.byte_requests(FILE)] == ["bytes=200000-"]

    assert main(["models", "list", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    mine = [m for m in listed if m["source"] == "downloaded"]
    assert [(m["name"], m["repo_id"], m["state"]) for m in mine] == [("Tiny-Q4_K_M", REPO, "ok")]
    assert listed[0]["key"] == "starter"

    assert main(["models", "remove", "tiny-q4_k_m"]) == 0
    assert "freed" in capsys.readouterr().out and not path.exists()


def test_download_by_quantization_into_a_folder(
    hub: FakeHub, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "elsewhere"
    assert main(["hub", "download", REPO, "q8_0", "--to", str(target)]) == 0
    assert Path(capsys.readouterr().out.strip()) == target / "Tiny-Q8_0.gguf"


def test_download_failures_exit_2_with_one_line(hub: FakeHub, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["hub", "download", REPO, "missing.gguf"]) == 2
    err = capsys.readouterr().err
    last = err.strip().splitlines()[-1]
    assert last.startswith("llamadesk: error: ") and "no file named missing.gguf" in last
    assert "Traceback" not in err
    assert main(["hub", "files", "acme/Nope-GGUF"]) == 2
    assert "no model acme/Nope-GGUF" in capsys.readouterr().err
    hub.faults.status = 503
    assert main(["hub", "search", "x"]) == 2
    assert "server error" in capsys.readouterr().err


def test_models_import_in_place_and_copy(
    paths: Paths, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    mine = make_gguf(tmp_path / "Mine-Q5_K_M.gguf")
    assert main(["models", "import", str(mine)]) == 0
    assert "added in place" in capsys.readouterr().out
    assert main(["models", "remove", "Mine-Q5_K_M"]) == 0
    assert "the file stays" in capsys.readouterr().out and mine.exists()
    assert main(["models", "import", str(mine), "--copy"]) == 0
    assert "copied" in capsys.readouterr().out
    assert list((paths.models_dir / "imported").rglob("Mine-Q5_K_M.gguf"))
    assert main(["models", "list"]) == 0
    assert "Mine-Q5_K_M" in capsys.readouterr().out
    assert main(["models", "remove", "starter"]) == 2
    assert "can't be removed" in capsys.readouterr().err
    assert main(["models", "import", str(tmp_path / "nope.gguf")]) == 2


def test_download_by_an_ambiguous_quantization_names_the_candidates(
    hub: FakeHub, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    hub.add_file(REPO, "Tiny-Chat-Q8_0.gguf", make_gguf(tmp_path / "chat.gguf", data_bytes=700_000, seed=5))
    assert main(["hub", "download", REPO, "Q8_0"]) == 2
    err = capsys.readouterr().err
    assert "Q8_0 matches several files" in err
    assert "Tiny-Q8_0.gguf" in err and "Tiny-Chat-Q8_0.gguf" in err
    assert hub.byte_requests("Q8_0") == []
