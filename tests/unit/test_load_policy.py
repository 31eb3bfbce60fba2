"""The loading policy without a display: the hardware a new model finds, the picker's fit label,
and when a load is questioned first, with what texts and what smaller context."""

from __future__ import annotations

from pathlib import Path

import pytest

from llamadesk.engine import GGUFInfo, Hardware, inspect_gguf
from llamadesk.engine.load_policy import (
    auto_gpu_layers,
    check_load,
    fit_label,
    needs_warning,
    plan_for,
    planning_hardware,
)
from llamadesk.engine.planner import RAM_RESERVE

GB = 1_000_000_000


@pytest.fixture(scope="module")
def info(starter_model: Path) -> GGUFInfo:
    return inspect_gguf(starter_model)


def _ram(spare: int, total: int = 0) -> Hardware:
    """A CPU machine with ``spare`` bytes free beyond the planner's reserve."""
    return Hardware(max(total, RAM_RESERVE + spare), RAM_RESERVE + spare, 2, "CPU", False)


def test_the_loaded_models_memory_counts_as_free_for_the_next_one() -> None:
    busy = _ram(300_000_000, total=16 * GB)
    assert planning_hardware(busy, 0) is busy
    freed = planning_hardware(busy, 400_000_000)
    assert freed.available_ram == busy.available_ram + 400_000_000
    assert planning_hardware(busy, 100 * GB).available_ram == busy.total_ram  # never more than there is


def test_fit_label_says_when_only_a_smaller_context_fits(info: GGUFInfo) -> None:
    roomy = plan_for(info, _ram(8 * GB), 8192, -2)
    assert fit_label(roomy, 8192) == "Fits in RAM"
    tight = plan_for(info, _ram(300_000_000), 8192, -2)  # 8192 tokens need about 470 MB
    assert tight.verdict != "too_large" and tight.n_ctx < 8192
    assert fit_label(tight, 8192) == f"Fits with ≤ {tight.max_ctx:,} tokens of context"
    assert fit_label(tight, 0) == tight.label  # automatic context: whatever fits is fine


def test_a_load_that_fits_goes_ahead(info: GGUFInfo) -> None:
    check = check_load(info, _ram(8 * GB), 2048, -2)
    assert check.plan is not None and check.warning is None


def test_a_context_too_long_for_free_memory_offers_the_largest_that_fits(info: GGUFInfo) -> None:
    check = check_load(info, _ram(400_000_000), 8192, -2)
    assert check.plan is not None and needs_warning(check.plan, 8192)
    warning = check.warning
    assert warning is not None
    assert warning.title == "This model may not fit"
    assert "8,192 tokens" in warning.text and "0.5 GB" in warning.text
    assert warning.smaller_ctx == check.plan.max_ctx and 1024 <= warning.smaller_ctx < 8192
    assert warning.smaller_button == f"Load with {warning.smaller_ctx:,} tokens"
    assert f"up to {warning.smaller_ctx:,} tokens (set now: 8,192)" in warning.informative


def test_a_model_too_large_for_any_context_offers_only_load_anyway(info: GGUFInfo) -> None:
    check = check_load(info, _ram(1_000_000), 2048, -2)
    assert check.plan is not None and check.plan.verdict == "too_large"
    warning = check.warning
    assert warning is not None and warning.smaller_ctx is None and warning.smaller_button == ""
    assert warning.text == check.plan.summary and "Too large for this machine" in warning.text
    assert warning.anyway_button == "Load anyway" and "Loading it anyway" in warning.informative


def test_auto_gpu_layers_is_what_the_planner_picks_on_this_machine(info: GGUFInfo) -> None:
    from llamadesk.engine.hardware import GPUInfo

    gib = 1024**3
    gpu = Hardware(32 * gib, 16 * gib, 8, "CUDA", True, [GPUInfo("Test GPU", 8 * gib, 8 * gib)])
    assert auto_gpu_layers(info, gpu, 2048) == -1  # all of them
    assert auto_gpu_layers(info, _ram(8 * GB), 2048) == 0
