"""The command line with a big model library: a second run reads no model header again.

Each run is a real ``llamadesk`` process; it reports on stderr how many GGUF headers it read
from model files (the header cache's ``reads``). The first run reads what it needs and
remembers it in the header cache file; a second run takes every fact from that file.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from hub_server import make_gguf
from llamadesk.paths import get_paths

LIBRARY_SIZE = 40

# `llamadesk ARGS...`, then the number of headers the process read.
COUNTING = (
    "import sys\n"
    "from llamadesk.__main__ import main\n"
    "from llamadesk.engine import header_cache\n"
    "status = main(sys.argv[1:])\n"
    "print(f'headers read: {header_cache.current().reads}', file=sys.stderr)\n"
    "sys.exit(status)\n"
)


def run(*args: str, home: Path, hf_cache: Path) -> tuple[subprocess.CompletedProcess[str], int]:
    """The finished process and how many model headers it read."""
    env = dict(os.environ, LLAMADESK_HOME=str(home), HF_HUB_CACHE=str(hf_cache))
    result = subprocess.run(
        [sys.executable, "-c", COUNTING, *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=180,
        stdin=subprocess.DEVNULL,
    )
    found = re.search(r"^headers read: (\d+)$", result.stderr, re.MULTILINE)
    assert found is not None, result.stderr
    return result, int(found.group(1))


def fill_library(models_dir: Path, count: int = LIBRARY_SIZE) -> list[Path]:
    """``count`` downloads, each in its own repository folder (small valid GGUF files)."""
    return [
        make_gguf(
            models_dir / f"acme__Model{i:02d}-GGUF" / f"Model{i:02d}-Q4_0.gguf", data_bytes=2_000, seed=i
        )
        for i in range(count)
    ]


def link_or_copy(source: Path, target: Path) -> Path:
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(source, target)
    except OSError:  # another file system
        shutil.copyfile(source, target)
    return target


@pytest.fixture
def hf_cache(tmp_path: Path) -> Path:
    """An empty Hugging Face cache, so only the library made here is listed."""
    folder = tmp_path / "hf-cache"
    folder.mkdir()
    return folder


def test_models_list_reads_each_header_once(
    starter_model: Path, llamadesk_home: Path, hf_cache: Path
) -> None:
    fill_library(get_paths(llamadesk_home).models_dir)
    first, first_reads = run("models", "list", "--json", home=llamadesk_home, hf_cache=hf_cache)
    assert first.returncode == 0, first.stderr
    listed = json.loads(first.stdout)
    assert len(listed) == LIBRARY_SIZE + 1 and all(m["state"] == "ok" for m in listed)
    assert first_reads == LIBRARY_SIZE + 1  # every model, the starter too, read once

    second, second_reads = run("models", "list", "--json", home=llamadesk_home, hf_cache=hf_cache)
    assert second.returncode == 0, second.stderr
    assert json.loads(second.stdout) == listed
    assert second_reads == 0


@pytest.mark.model
def test_chat_with_the_starter_reads_no_library_header(
    starter_model: Path, llamadesk_home: Path, hf_cache: Path
) -> None:
    fill_library(get_paths(llamadesk_home).models_dir)
    args = ("chat", "-m", "starter", "--max-tokens", "4", "--seed", "1", "hi")
    first, first_reads = run(*args, home=llamadesk_home, hf_cache=hf_cache)
    assert first.returncode == 0, first.stderr
    assert first_reads == 1  # the starter's own header, none of the library's

    second, second_reads = run(*args, home=llamadesk_home, hf_cache=hf_cache)
    assert second.returncode == 0, second.stderr
    assert second.stdout == first.stdout and first.stdout.strip()
    assert second_reads == 0


@pytest.mark.model
def test_a_name_is_found_in_the_configured_models_folder(
    starter_model: Path, llamadesk_home: Path, hf_cache: Path, tmp_path: Path
) -> None:
    """The models folder chosen in Preferences is the library `chat -m` and `inspect` search."""
    folder = tmp_path / "my-models"
    fill_library(folder)
    mine = link_or_copy(starter_model, folder / "acme__Mine-GGUF" / "Mine-Q4_1.gguf")
    paths = get_paths(llamadesk_home).ensure()
    paths.settings_file.write_text(json.dumps({"schema_version": 2, "app": {"models_dir": str(folder)}}))

    inspected, _ = run("inspect", "Mine-Q4_1", "--json", home=llamadesk_home, hf_cache=hf_cache)
    assert inspected.returncode == 0, inspected.stderr
    assert json.loads(inspected.stdout)["path"] == str(mine)

    args = ("chat", "-m", "Mine-Q4_1", "--max-tokens", "4", "--seed", "1", "--json", "hi")
    first, first_reads = run(*args, home=llamadesk_home, hf_cache=hf_cache)
    assert first.returncode == 0, first.stderr
    assert json.loads(first.stdout)["model"] == str(mine)
    assert first_reads == 0  # `inspect` read and remembered it

    paths.data_dir.joinpath("gguf-headers.json").unlink()  # forgotten: read once, only that model
    again, again_reads = run(*args, home=llamadesk_home, hf_cache=hf_cache)
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["text"] == json.loads(first.stdout)["text"]
    assert again_reads == 1
