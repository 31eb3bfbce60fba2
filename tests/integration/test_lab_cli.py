"""`llamadesk bench`, `perplexity` and `compare` as a user runs them: a real process on the starter model,
results kept in the data folder, one-line errors with exit status 2."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from llamadesk.engine.lab_results import RESULTS_FILE, LabResults
from llamadesk.paths import get_paths

pytestmark = pytest.mark.model

WORDS = "The river ran past the mill and under the old stone bridge into the town. " * 60


def run(*args: str, home: Path, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, LLAMADESK_HOME=str(home))
    return subprocess.run(
        [sys.executable, "-m", "llamadesk", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


def test_bench_json_and_kept(starter_model: Path, llamadesk_home: Path) -> None:
    result = run(
        "bench", str(starter_model), "-p", "32", "-n", "8", "--repetitions", "2", "--threads", "2",
        "--gpu-layers", "0", "--json", home=llamadesk_home,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["pp_tokens"] == 32 and data["tg_tokens"] == 8 and data["repetitions"] == 2
    assert len(data["pp_runs"]) == 2 and len(data["tg_runs"]) == 2
    assert data["pp_tps"] > 0 and data["tg_tps"] > 0 and data["pp_std"] >= 0
    assert data["load_s"] > 0 and data["peak_rss_bytes"] >= data["model_rss_bytes"] > 0
    kept = LabResults(get_paths(llamadesk_home).data_dir / RESULTS_FILE).latest(starter_model, "speed")
    assert kept is not None and kept.figures["tg_tps"] == data["tg_tps"]
    assert kept.settings["n_threads"] == 2 and kept.backend == data["backend"] and kept.version


def test_perplexity_text_output_and_kept(starter_model: Path, llamadesk_home: Path, tmp_path: Path) -> None:
    text = tmp_path / "river.txt"
    text.write_text(WORDS, encoding="utf-8")
    result = run(
        "perplexity", str(starter_model), str(text), "--ctx", "128", "--threads", "2", home=llamadesk_home
    )
    assert result.returncode == 0, result.stderr
    assert "perplexity" in result.stdout and "windows of 128" in result.stdout
    kept = LabResults(get_paths(llamadesk_home).data_dir / RESULTS_FILE).latest(starter_model, "perplexity")
    assert kept is not None and kept.settings["text"] == "river.txt" and kept.settings["n_ctx"] == 128
    # A repetitive text is easy to predict: far below a random guess over the vocabulary.
    assert 1.0 <= kept.figures["perplexity"] < 50


@pytest.mark.parametrize(
    ("content", "extra", "message"),
    [
        (b"", [], "is empty"),
        (b"\x00\x01\x02binary\x00", [], "binary file"),
        (b"A short text.", [], "shorter than one window"),
        (WORDS.encode(), ["--ctx", "100000"], "larger than"),
    ],
)
def test_perplexity_bad_input(
    starter_model: Path, llamadesk_home: Path, tmp_path: Path, content: bytes, extra: list[str], message: str
) -> None:
    text = tmp_path / "input.txt"
    text.write_bytes(content)
    result = run("perplexity", str(starter_model), str(text), *extra, home=llamadesk_home)
    assert result.returncode == 2
    assert message in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_compare_two_models(starter_model: Path, llamadesk_home: Path, tmp_path: Path) -> None:
    missing = tmp_path / "missing.gguf"
    result = run("compare", str(starter_model), str(missing), "Hi", home=llamadesk_home)
    assert result.returncode == 2 and "not found" in result.stderr
    result = run(
        "compare", str(starter_model), str(starter_model), "Name a colour.", "--max-tokens", "6",
        "--seed", "7", "--json", home=llamadesk_home,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    replies = json.loads(result.stdout)
    assert len(replies) == 2 and all(r["error"] is None for r in replies)
    assert replies[0]["text"] and replies[0]["text"] == replies[1]["text"]  # same seed, same model
    assert all(0 < r["completion_tokens"] <= 6 and r["ttft_s"] > 0 for r in replies)
