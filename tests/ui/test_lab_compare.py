"""The Compare window: two models answer one prompt one after another, side by side; the
quantization table shows kept measurements with the chosen file in bold."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from PySide6.QtCore import Qt
from pytestqt.qtbot import QtBot

from llamadesk.engine.lab_results import LabRecord, LabResults
from llamadesk.engine.service import InferenceService
from llamadesk.hub.library import LibraryModel
from llamadesk.settings import GenerationSettings, RuntimeSettings
from llamadesk.ui.lab_compare import CompareWindow, quant_variants

pytestmark = pytest.mark.qt_log_ignore("does not support propagateSizeHints", "does not support raise")
TIMEOUT = 240_000


@pytest.fixture
def service() -> Iterator[InferenceService]:
    svc = InferenceService()
    yield svc
    svc.close()


def entry(key: str, path: Path, quant: str, size: int, repo: str | None = "org/Model-GGUF") -> LibraryModel:
    return LibraryModel(key, f"{key} {quant}", path, size, "downloaded", repo_id=repo, quantization=quant)


def test_quantization_table_bold_chosen(qtbot: QtBot, tmp_path: Path) -> None:
    results = LabResults(tmp_path / "lab.json")
    q4, q8 = tmp_path / "Model-Q4_K_M.gguf", tmp_path / "Model-Q8_0.gguf"
    results.add(LabRecord("speed", str(q4), q4.name, 0, {}, "CPU", "1", 1.0, {"tg_tps": 41.0}))
    results.add(LabRecord("perplexity", str(q4), q4.name, 0, {"text": "w.txt"}, "", "1", 2.0,
                          {"perplexity": 12.5, "stderr": 0.25}))  # fmt: skip
    models = [
        entry("b", q8, "Q8_0", 800),
        entry("a", q4, "Q4_K_M", 500),
        entry("other", tmp_path / "Other-Q4_0.gguf", "Q4_0", 100, repo="org/Other-GGUF"),
    ]
    variants = quant_variants(models, models[1])
    assert [v[1] for v in variants] == ["Q8_0", "Q4_K_M"]
    window = CompareWindow(models, results, chosen=models[1])
    qtbot.addWidget(window)
    table = window.quant
    assert table.rowCount() == 2
    first = [table.item(0, c).text() for c in range(5)]
    assert first[0] == "Q4_K_M" and first[3] == "12.500 ± 0.250" and first[4] == "41.0"  # smallest first
    assert table.item(0, 0).font().bold() and not table.item(1, 0).font().bold()
    assert table.item(1, 3).text() == "not measured"


@pytest.mark.model
def test_two_models_answer_side_by_side(
    qtbot: QtBot, service: InferenceService, starter_model: Path, tmp_path: Path
) -> None:
    size = starter_model.stat().st_size
    models = [
        LibraryModel("one", "Starter one", starter_model, size, "starter", quantization="Q4_1"),
        LibraryModel("two", "Starter two", starter_model, size, "imported", quantization="Q4_1"),
    ]
    window = CompareWindow(
        models,
        LabResults(tmp_path / "lab.json"),
        service=service,
        generation=lambda: GenerationSettings(max_tokens=6, seed=3, temperature=0.0),
        runtime=lambda: RuntimeSettings(n_ctx=512, n_threads=2, n_gpu_layers=0),
        chosen=models[0],
    )
    qtbot.addWidget(window)
    window.prompt.setPlainText("Name a fruit.")
    assert not window.compare() and "two or more" in window.status.text()
    window.models.item(1).setCheckState(Qt.CheckState.Checked)
    with qtbot.waitSignal(window.runner.finished, timeout=TIMEOUT):
        assert window.compare()
    assert len(window.replies) == 2 and all(r.error is None for r in window.replies)
    assert window.replies[0].text == window.replies[1].text != ""
    assert window.columns_layout.count() == 2 and window.status.text() == "Done."
