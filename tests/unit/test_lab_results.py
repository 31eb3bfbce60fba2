"""Kept lab results: replacing a run, lookups by path and by file name, a damaged file set aside."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from llamadesk.engine.lab_results import LabRecord, LabResults, ProgressClock
from llamadesk.engine.perplexity import summarize, token_nll


def record(path: str, tps: float, *, at: float, threads: int = 4, kind: str = "speed") -> LabRecord:
    figures = {"tg_tps": tps} if kind == "speed" else {"perplexity": tps, "stderr": 0.5}
    return LabRecord(kind, path, Path(path).name, 1000, {"n_threads": threads}, "CPU", "1.0", at, figures)


def test_same_run_is_replaced_other_settings_kept(tmp_path: Path) -> None:
    results = LabResults(tmp_path / "lab.json")
    results.add(record("/m/a.gguf", 10.0, at=1))
    results.add(record("/m/a.gguf", 12.0, at=2))
    results.add(record("/m/a.gguf", 20.0, at=3, threads=8))
    kept = results.for_model("/m/a.gguf", "speed")
    assert [r.figures["tg_tps"] for r in kept] == [20.0, 12.0]
    assert results.latest("/m/a.gguf", "speed") == kept[0]
    assert LabResults(tmp_path / "lab.json").records() == results.records()  # read back from disk


def test_latest_for_file_matches_name_and_size(tmp_path: Path) -> None:
    results = LabResults(tmp_path / "lab.json")
    results.add(record("/models/x/model-Q4_K_M.gguf", 41.0, at=5))
    found = results.latest_for_file("model-Q4_K_M.gguf", 1000)
    assert found is not None and found.summary == "41.0 tok/s"
    assert results.latest_for_file("model-Q4_K_M.gguf", 999) is None
    assert results.latest_for_file("other.gguf") is None


def test_damaged_file_is_set_aside_not_lost(tmp_path: Path) -> None:
    path = tmp_path / "lab.json"
    path.write_text("{not json", encoding="utf-8")
    results = LabResults(path)
    assert results.records() == []
    assert results.warning is not None and "damaged" in results.warning
    assert (tmp_path / "lab.json.damaged").read_text(encoding="utf-8") == "{not json"
    results.add(record("/m/a.gguf", 1.0, at=1))
    assert len(LabResults(path).records()) == 1


def test_token_nll_matches_a_direct_log_softmax() -> None:
    rng = np.random.default_rng(3)
    logits = rng.normal(scale=8.0, size=(5, 1000)).astype(np.float32)
    targets = rng.integers(0, 1000, size=5)
    direct = [
        -np.log(np.exp(row.astype(np.float64))[t] / np.exp(row.astype(np.float64)).sum())
        for row, t in zip(logits, targets, strict=True)
    ]
    assert np.allclose(token_nll(logits, targets), direct, rtol=1e-6)


def test_summary_follows_llama_perplexity() -> None:
    nll = np.array([1.0, 2.0, 3.0, 2.0])
    result = summarize(nll, windows=1, n_ctx=8, text_tokens=8, seconds=1.0)
    assert result.perplexity == np.exp(2.0)
    # sqrt((mean(x²) - mean(x)²) / (n - 1)) × ppl
    assert abs(result.stderr - np.sqrt((4.5 - 4.0) / 3) * np.exp(2.0)) < 1e-12


def test_progress_estimates_time_left() -> None:
    clock = ProgressClock()
    assert clock.progress(0, 4, "start").seconds_left is None
    half = clock.progress(2, 4, "half")
    assert half.fraction == 0.5 and half.seconds_left is not None and half.seconds_left >= 0
