"""KV cache type and flash attention: settings, the rules llama.cpp imposes, and the fit planner."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from llamadesk.engine import GPUInfo, Hardware, inspect_gguf, plan_fit
from llamadesk.engine.errors import EngineError
from llamadesk.engine.kv_options import resolve_flash_attention
from llamadesk.engine.planner import estimate_memory, gpu_layers_for_context
from llamadesk.settings import RuntimeSettings, Settings, SettingsError, SettingsStore, validated_update

GiB = 1024**3


def test_flash_attention_switches_in_old_settings_files_become_modes(tmp_path: Path) -> None:
    path = tmp_path / "settings.json"
    for old, new in ((True, "on"), (False, "auto")):
        path.write_text(json.dumps({"schema_version": 2, "runtime": {"flash_attn": old}}), encoding="utf-8")
        store = SettingsStore(path)
        assert store.load().runtime.flash_attn == new
        assert store.warning is None


def test_defaults_and_refused_values() -> None:
    runtime = RuntimeSettings()
    assert (runtime.flash_attn, runtime.kv_cache_type) == ("auto", "f16")
    assert Settings().generation.context_overflow == "drop_oldest"
    assert Settings().app.state_disk_budget_mb == 2048
    with pytest.raises(SettingsError, match="kv_cache_type"):
        validated_update(runtime, kv_cache_type="q2_k")
    with pytest.raises(SettingsError, match="flash_attn"):
        validated_update(runtime, flash_attn="sometimes")


@pytest.mark.parametrize(
    ("mode", "kv", "gpu", "expected"),
    [
        ("auto", "f16", True, "auto"),  # llama.cpp chooses for the device
        ("auto", "f16", False, "off"),  # slower on the CPU, the longer the context the more
        ("off", "f16", True, "off"),
        ("on", "f16", False, "on"),
        ("auto", "q8_0", False, "on"),  # llama.cpp stores a quantized V cache only with flash attention
        ("auto", "q4_0", True, "on"),
        ("on", "q4_0", False, "on"),
    ],
)
def test_flash_attention_for_each_kv_type(mode: str, kv: str, gpu: bool, expected: str) -> None:
    assert resolve_flash_attention(mode, kv, gpu=gpu) == expected


def test_a_quantized_cache_with_flash_attention_off_is_refused_clearly() -> None:
    with pytest.raises(EngineError, match=r"q8_0 KV cache needs flash attention.*Off"):
        resolve_flash_attention("off", "q8_0", gpu=True)


def _cpu(ram_gib: float) -> Hardware:
    return Hardware(int(ram_gib * 2 * GiB), int(ram_gib * GiB), 8, "CPU", False, [])


def _gpu(vram_gib: float, ram_gib: float = 16) -> Hardware:
    g = int(vram_gib * GiB)
    return Hardware(int(ram_gib * 2 * GiB), int(ram_gib * GiB), 8, "CUDA", True, [GPUInfo("Test GPU", g, g)])


def test_a_quantized_cache_takes_about_half_or_a_quarter(starter_model: Path) -> None:
    info = inspect_gguf(starter_model)
    f16 = estimate_memory(info, 8192).kv_cache
    assert estimate_memory(info, 8192, kv_cache_type="q8_0").kv_cache == pytest.approx(
        f16 * 34 / 64, rel=0.01
    )
    assert estimate_memory(info, 8192, kv_cache_type="q4_0").kv_cache == pytest.approx(
        f16 * 18 / 64, rel=0.01
    )


def test_the_planner_fits_a_longer_context_with_a_quantized_cache(starter_model: Path) -> None:
    info = inspect_gguf(starter_model)
    tight = _cpu(1.3)  # a little room after the reserve: the context is what is short
    f16 = plan_fit(info, tight)
    q8 = plan_fit(info, tight, kv_cache_type="q8_0")
    q4 = plan_fit(info, tight, kv_cache_type="q4_0")
    assert f16.fits and q8.fits and q4.fits
    assert f16.max_ctx < q8.max_ctx < q4.max_ctx


def test_gpu_layers_count_the_kv_type(starter_model: Path) -> None:
    info = inspect_gguf(starter_model)
    small = _gpu(0.7)  # the KV cache of 8192 tokens decides how many layers fit
    layers = [gpu_layers_for_context(info, small, 8192, kv_cache_type=kv) for kv in ("f16", "q8_0", "q4_0")]
    assert 0 < layers[0] < layers[1] < layers[2]
    plans = [
        plan_fit(info, small, n_ctx=8192, kv_cache_type=kv).n_gpu_layers for kv in ("f16", "q8_0", "q4_0")
    ]
    assert plans == layers
