"""The Hub catalog against a local server speaking the Hub's API: search, files, fit, errors."""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import llamadesk
from hub_server import FakeHub, make_gguf
from llamadesk.engine import Hardware
from llamadesk.engine.hardware import GiB
from llamadesk.hub import HubCatalog, HubError

MiB = 1024**2
TOKEN = "hf_catalogSecretToken123"
# A machine with 1.2 GB of free RAM: small files fit with 4096 tokens of context, bigger ones don't.
SMALL_PC = Hardware(
    total_ram=8 * GiB, available_ram=GiB + 210 * MiB, cpu_count=4, backend="CPU", gpu_offload=False
)
TINY_PC = Hardware(
    total_ram=2 * GiB, available_ram=GiB + 100 * MiB, cpu_count=2, backend="CPU", gpu_offload=False
)
BIG_PC = Hardware(total_ram=64 * GiB, available_ram=48 * GiB, cpu_count=16, backend="CPU", gpu_offload=False)


@pytest.fixture(scope="module")
def files_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("gguf")
    make_gguf(folder / "small.gguf", data_bytes=1_000_000, seed=1)
    make_gguf(folder / "medium.gguf", data_bytes=4_000_000, seed=2)
    make_gguf(folder / "large.gguf", data_bytes=12_000_000, seed=3)
    make_gguf(folder / "part1.gguf", data_bytes=300_000, split=(1, 3), seed=4)
    make_gguf(folder / "part2.gguf", data_bytes=300_000, split=(2, 3), seed=5)
    make_gguf(folder / "part3.gguf", data_bytes=300_000, split=(3, 3), seed=6)
    make_gguf(folder / "mmproj.gguf", data_bytes=50_000, seed=7)
    return folder


@pytest.fixture
def hub(files_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeHub]:
    with FakeHub(page_size=100) as server:
        for i, (downloads, likes, trending, modified) in enumerate(
            [
                (500, 3, 10, "2024-03-01"),
                (900, 1, 30, "2024-01-01"),
                (100, 50, 20, "2024-05-01"),
                (700, 7, 5, "2024-02-01"),
                (300, 9, 40, "2024-04-01"),
            ]
        ):
            repo = server.add_repo(
                f"team{i}/Chat-Model-{i}-GGUF",
                downloads=downloads,
                likes=likes,
                trending=trending,
                last_modified=f"{modified}T00:00:00.000Z",
                gguf={"total": 1_500_000_000, "architecture": "qwen2", "context_length": 32768},
            )
            server.add_file(repo.repo_id, f"Chat-Model-{i}-Q4_K_M.gguf", files_dir / "small.gguf")
        server.add_file("team0/Chat-Model-0-GGUF", "Chat-Model-0-UD-Q8_K_XL.gguf", files_dir / "medium.gguf")
        server.add_repo("someone/not-a-gguf-model", downloads=10_000, tags=["safetensors"])
        repo = server.add_repo("acme/Mixed-GGUF")
        server.add_file(
            repo.repo_id, "README.md", b"---\nlicense: apache-2.0\n---\n# Mixed\n\nA test model.\n", lfs=False
        )
        server.add_file(repo.repo_id, "Mixed-Q2_K.gguf", files_dir / "small.gguf")
        server.add_file(repo.repo_id, "Mixed-Q4_K_M.gguf", files_dir / "medium.gguf")
        server.add_file(repo.repo_id, "Mixed-Q8_0.gguf", files_dir / "large.gguf")
        for n in (1, 2, 3):
            server.add_file(repo.repo_id, f"F16/Mixed-F16-0000{n}-of-00003.gguf", files_dir / f"part{n}.gguf")
        server.add_file(repo.repo_id, "mmproj-Mixed-f16.gguf", files_dir / "mmproj.gguf")
        server.add_file(repo.repo_id, "config.json", b"{}", lfs=False)
        server.add_repo("acme/Gated-GGUF", gated="manual")
        server.add_file("acme/Gated-GGUF", "Gated-Q4_0.gguf", files_dir / "small.gguf")
        monkeypatch.setenv("HF_ENDPOINT", server.url)
        yield server


def test_search_sorts_and_loads_more_pages(hub: FakeHub) -> None:
    catalog = HubCatalog(endpoint=hub.url)
    first = catalog.search("chat-model", limit=2)
    assert [r.repo_id for r in first.results] == ["team1/Chat-Model-1-GGUF", "team3/Chat-Model-3-GGUF"]
    assert first.has_more
    second = catalog.search("chat-model", page_cursor=first.next_cursor)
    third = catalog.search("chat-model", page_cursor=second.next_cursor)
    assert [r.repo_id for r in second.results] == ["team0/Chat-Model-0-GGUF", "team4/Chat-Model-4-GGUF"]
    assert [r.repo_id for r in third.results] == ["team2/Chat-Model-2-GGUF"]
    assert third.next_cursor is None
    top = first.results[0]
    assert (top.downloads, top.likes, top.author) == (900, 1, "team1")
    assert (top.architecture, top.parameter_count, top.context_length) == ("qwen2", 1_500_000_000, 32768)
    assert top.last_modified is not None and top.last_modified.year == 2024
    assert "gguf" in top.tags and top.gated is False
    search = hub.requests[0].query
    assert search["filter"] == ["gguf"] and search["search"] == ["chat-model"] and search["limit"] == ["2"]
    assert {"gguf", "downloads", "likes", "gated", "lastModified"} <= set(search["expand"])


@pytest.mark.parametrize(
    ("sort", "first"),
    [("likes", "team2/"), ("trending", "team4/"), ("recent", "team2/"), ("downloads", "team1/")],
)
def test_search_sort_orders(hub: FakeHub, sort: str, first: str) -> None:
    page = HubCatalog().search("Chat-Model", sort=sort)  # type: ignore[arg-type]
    assert page.results[0].repo_id.startswith(first)
    assert len(page.results) == 5


def test_search_lists_only_gguf_repos_and_reads_the_endpoint_at_creation(hub: FakeHub) -> None:
    # No endpoint given: HF_ENDPOINT (set after huggingface_hub was imported) is honoured.
    page = HubCatalog().search("")
    ids = {r.repo_id for r in page.results}
    assert "someone/not-a-gguf-model" not in ids
    assert {"acme/Mixed-GGUF", "acme/Gated-GGUF"} <= ids
    gated = next(r for r in page.results if r.repo_id == "acme/Gated-GGUF")
    assert gated.gated == "manual"


def test_files_sizes_quants_split_groups_and_labels(hub: FakeHub, files_dir: Path) -> None:
    repo = HubCatalog(hardware=BIG_PC).files("acme/Mixed-GGUF")
    by_name = {f.name: f for f in repo.files}
    assert set(by_name) == {"Mixed-Q2_K", "Mixed-Q4_K_M", "Mixed-Q8_0", "Mixed-F16", "mmproj-Mixed-f16"}
    q4 = by_name["Mixed-Q4_K_M"]
    assert q4.size == (files_dir / "medium.gguf").stat().st_size
    assert q4.quantization == "Q4_K_M" and q4.bits_per_weight == pytest.approx(4.83)
    assert q4.parts[0].sha256 == hub.repos["acme/Mixed-GGUF"].files["Mixed-Q4_K_M.gguf"].sha256
    split = by_name["Mixed-F16"]
    assert split.is_split and split.complete and split.quantization == "F16"
    assert split.paths == [f"F16/Mixed-F16-0000{n}-of-00003.gguf" for n in (1, 2, 3)]
    assert split.size == sum((files_dir / f"part{n}.gguf").stat().st_size for n in (1, 2, 3))
    assert all(p.sha256 and len(p.sha256) == 64 for p in split.parts)
    mmproj = by_name["mmproj-Mixed-f16"]
    assert mmproj.kind == "mmproj" and mmproj.fit is None
    assert [f.kind for f in repo.files][-1] == "mmproj"  # models first
    assert repo.commit == hub.repos["acme/Mixed-GGUF"].sha
    assert repo.find("F16/Mixed-F16-00002-of-00003.gguf") is split
    assert repo.find("mixed-q8_0.gguf") is by_name["Mixed-Q8_0"]
    tree = [r for r in hub.requests if "/tree/" in r.path]
    assert tree and tree[0].query.get("recursive") in (["true"], ["True"])


def test_publishers_mixes_keep_their_names_and_get_measured_bits(hub: FakeHub, files_dir: Path) -> None:
    repo = HubCatalog(hardware=BIG_PC).files("team0/Chat-Model-0-GGUF")
    mix = next(f for f in repo.files if f.name == "Chat-Model-0-UD-Q8_K_XL")
    assert mix.quantization == "UD-Q8_K_XL"
    # no llama.cpp type of that name: the bits come from the file size and the parameter count
    size = (files_dir / "medium.gguf").stat().st_size
    assert mix.bits_per_weight == pytest.approx(size * 8 / 1_500_000_000, abs=0.01)


def test_long_file_lists_are_paged(hub: FakeHub) -> None:
    hub.tree_page_size = 3  # the Hub pages trees too; huggingface_hub follows the Link header
    repo = HubCatalog(hardware=BIG_PC).files("acme/Mixed-GGUF")
    assert len(repo.files) == 5 and sum(len(f.parts) for f in repo.files) == 7
    assert len([r for r in hub.requests if "/tree/" in r.path]) > 2


def test_fit_verdicts_and_recommendation(hub: FakeHub) -> None:
    roomy = HubCatalog(hardware=BIG_PC).files("acme/Mixed-GGUF")
    assert all(f.verdict == "cpu" for f in roomy.models)
    assert roomy.recommended is not None and roomy.recommended.name == "Mixed-Q8_0"  # the largest

    small = HubCatalog(hardware=SMALL_PC).files("acme/Mixed-GGUF")
    verdicts = {f.name: f.verdict for f in small.models}
    assert verdicts["Mixed-Q2_K"] == "cpu"
    large = next(f for f in small.models if f.name == "Mixed-Q8_0")
    assert large.fit is not None and large.fit.max_ctx < 4096  # only fits with a shortened context
    assert small.recommended is not None and small.recommended.name == "Mixed-Q4_K_M"

    tiny = HubCatalog(hardware=TINY_PC).files("acme/Mixed-GGUF")
    assert {f.verdict for f in tiny.models} == {"too_large"}
    assert tiny.recommended is None


def test_model_card_without_front_matter(hub: FakeHub) -> None:
    catalog = HubCatalog()
    assert catalog.model_card("acme/Mixed-GGUF") == "# Mixed\n\nA test model.\n"
    assert catalog.model_card("acme/Mixed-GGUF", strip_metadata=False).startswith("---\nlicense")
    assert catalog.model_card("team0/Chat-Model-0-GGUF") == ""  # no README


def test_unknown_repo(hub: FakeHub) -> None:
    with pytest.raises(HubError, match="no model acme/Nope-GGUF") as caught:
        HubCatalog().files("acme/Nope-GGUF")
    assert caught.value.kind == "not_found"
    with pytest.raises(HubError, match="not a model name"):
        HubCatalog().files("not a repo")


def test_gated_repo_lists_files_but_is_labelled(hub: FakeHub) -> None:
    repo = HubCatalog().files("acme/Gated-GGUF")
    assert repo.gated == "manual" and [f.name for f in repo.files] == ["Gated-Q4_0"]


def test_bad_token_is_refused_and_never_shown(hub: FakeHub, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    catalog = HubCatalog(token=TOKEN)
    assert TOKEN not in repr(catalog)
    with pytest.raises(HubError) as caught:
        catalog.search("chat")
    assert caught.value.kind == "auth" and "token" in str(caught.value)
    assert TOKEN not in str(caught.value) and TOKEN not in caplog.text
    assert hub.requests[-1].authorized
    hub.valid_tokens.add(TOKEN)
    assert catalog.search("chat").results  # a valid token works


def test_whoami_checks_the_token(hub: FakeHub, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    with pytest.raises(HubError, match="No access token") as missing:
        HubCatalog().whoami()
    assert missing.value.kind == "auth"
    with pytest.raises(HubError) as refused:
        HubCatalog(token=TOKEN).whoami()
    assert refused.value.kind == "auth" and TOKEN not in str(refused.value) and TOKEN not in caplog.text
    hub.valid_tokens.add(TOKEN)
    assert HubCatalog(token=TOKEN).whoami() == "test-user"


def test_server_error(hub: FakeHub) -> None:
    hub.faults.status, hub.faults.status_path = 503, "/api/"
    with pytest.raises(HubError, match="server error") as caught:
        HubCatalog().search("chat")
    assert caught.value.kind == "server"
    with pytest.raises(HubError, match="HTTP 503"):
        HubCatalog().files("acme/Mixed-GGUF")


def test_a_failing_file_list_is_reported_at_once(hub: FakeHub) -> None:
    hub.faults.status, hub.faults.status_path = 503, "/api/models/acme/Mixed-GGUF/tree"
    with pytest.raises(HubError, match="HTTP 503"):
        HubCatalog().files("acme/Mixed-GGUF")
    # One try, not five retries with back-off (about 23 s of a spinning browser): the click retries.
    assert len([r for r in hub.requests if "/tree/" in r.path]) == 1


def test_rate_limited_says_when_to_retry(hub: FakeHub) -> None:
    hub.faults.status, hub.faults.retry_after = 429, 42
    with pytest.raises(HubError, match="try again in 42 seconds") as caught:
        HubCatalog().search("chat")
    assert caught.value.kind == "rate_limited" and caught.value.retry_after == 42


def test_offline_message_when_nothing_listens() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    catalog = HubCatalog(endpoint=f"http://127.0.0.1:{port}")
    for call in (
        lambda: catalog.search("x"),
        lambda: catalog.files("a/b"),
        lambda: catalog.model_card("a/b"),
    ):
        with pytest.raises(HubError, match="Can't reach the Hugging Face Hub") as caught:
            call()
        assert caught.value.kind == "offline"
        assert "downloaded models still work" in str(caught.value)


def test_recommendation_prefers_all_on_gpu_then_quantized_files() -> None:
    """An 8B model on an 8 GB GPU + 64 GB RAM: Q6_K fits on the GPU; Q8_0 and F16 only split."""
    from llamadesk.engine import FitPlan, MemoryEstimate
    from llamadesk.hub import FilePart, HubCatalog, ModelFile

    def model(quant: str, gb: float, verdict: str) -> ModelFile:
        size = int(gb * 1e9)
        plan = FitPlan(verdict, -1 if verdict == "gpu" else 20, 4096, 8192, MemoryEstimate(size, 0, 0), "")
        return ModelFile(
            f"M-{quant}", (FilePart(f"M-{quant}.gguf", size, None),), quant, None, "model", fit=plan
        )

    gpu_box = [model("Q4_K_M", 4.9, "gpu"), model("Q6_K", 6.6, "gpu"), model("Q8_0", 8.5, "hybrid")]
    gpu_box.append(model("F16", 16.1, "hybrid"))
    best = HubCatalog._recommend(gpu_box, 8192)
    assert best is not None and best.quantization == "Q6_K"

    cpu_box = [model("Q4_K_M", 4.9, "cpu"), model("Q8_0", 8.5, "cpu"), model("F16", 16.1, "cpu")]
    best = HubCatalog._recommend(cpu_box, 8192)
    assert best is not None and best.quantization == "Q8_0"  # the largest quantized one

    only_f16 = [model("F16", 16.1, "cpu"), model("BF16", 16.1, "too_large")]  # an unquantized-only repo
    best = HubCatalog._recommend(only_f16, 8192)
    assert best is not None and best.quantization == "F16"


def test_names_pointing_outside_the_models_folder_are_not_listed(
    hub: FakeHub, files_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # A hostile repo names its files so that saving them would land outside the models folder.
    hub.add_repo("evil/Trap-GGUF")
    for name in (
        "../../Trap-Q8_0.gguf",
        "..\\..\\Trap-Q6_K.gguf",
        "C:Trap-Q5_K_M.gguf",
        "/abs/Trap-Q3_K.gguf",
    ):
        hub.add_file("evil/Trap-GGUF", name, files_dir / "small.gguf")
    hub.add_file("evil/Trap-GGUF", "sub/Trap-Q4_K_M.gguf", files_dir / "small.gguf")
    caplog.set_level(logging.WARNING, logger="llamadesk.hub.catalog")
    repo = HubCatalog(hardware=BIG_PC).files("evil/Trap-GGUF")
    assert [f.path for f in repo.files] == ["sub/Trap-Q4_K_M.gguf"]
    assert repo.recommended is not None and repo.recommended.path == "sub/Trap-Q4_K_M.gguf"
    assert "outside the model's folder" in caplog.text


def test_translating_an_error_does_not_import_the_catalog() -> None:
    # hub.errors and hub.catalog used to import each other; errors come first and need no catalog.
    code = (
        "import sys; from llamadesk.hub.errors import translate; "
        "print(translate(ConnectionError('x'), endpoint='https://hub.example').kind); "
        "print('llamadesk.hub.catalog' in sys.modules)"
    )
    env = {**os.environ, "PYTHONPATH": str(Path(llamadesk.__file__).resolve().parents[1])}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    assert result.stdout.split() == ["offline", "False"]
