"""The fit planner: GPU first, then hybrid, then CPU, and the largest context that fits."""

from __future__ import annotations

from pathlib import Path

from llamadesk.engine import GPUInfo, Hardware, estimate_for_size, estimate_memory, inspect_gguf, plan_fit

GiB = 1024**3


def _cpu(ram_gib: float) -> Hardware:
    return Hardware(int(ram_gib * 2 * GiB), int(ram_gib * GiB), 8, "CPU", False, [])


def _gpu(vram_gib: float, ram_gib: float = 16) -> Hardware:
    g = int(vram_gib * GiB)
    return Hardware(int(ram_gib * 2 * GiB), int(ram_gib * GiB), 8, "CUDA", True, [GPUInfo("Test GPU", g, g)])


def test_kv_cache_matches_llama_cpp(starter_model: Path) -> None:
    info = inspect_gguf(starter_model)
    # llama.cpp reports "KV buffer size = 45.00 MiB" for this model at n_ctx=2048 (30 layers,
    # 3 KV heads of 64, f16 K and V).
    assert estimate_memory(info, 2048).kv_cache == 45 * 1024**2


def test_small_model_on_cpu_machine(starter_model: Path) -> None:
    plan = plan_fit(inspect_gguf(starter_model), _cpu(8))
    assert plan.verdict == "cpu"
    assert plan.n_gpu_layers == 0
    assert plan.n_ctx == 8192 and plan.max_ctx == 8192
    assert "in RAM" in plan.summary


def test_small_model_fully_on_gpu(starter_model: Path) -> None:
    plan = plan_fit(inspect_gguf(starter_model), _gpu(4))
    assert plan.verdict == "gpu" and plan.n_gpu_layers == -1


def test_hybrid_when_vram_is_short() -> None:
    plan = estimate_for_size(12 * GiB, _gpu(6, ram_gib=32))
    assert plan.verdict == "hybrid"
    assert plan.n_gpu_layers > 0
    assert "layers on the GPU" in plan.summary


def test_context_reduced_to_fit_then_too_large() -> None:
    reduced = estimate_for_size(int(6.2 * GiB), _cpu(8), n_ctx=32768)
    assert reduced.fits and reduced.n_ctx < 32768
    assert "Context reduced" in reduced.summary
    too_big = estimate_for_size(40 * GiB, _cpu(8))
    assert too_big.verdict == "too_large" and not too_big.fits
    assert "smaller quantization" in too_big.summary


def test_user_layer_count_is_respected() -> None:
    plan = estimate_for_size(4 * GiB, _gpu(24), n_ctx=4096)
    assert plan.verdict == "gpu"
    from llamadesk.engine.planner import plan as plan_shape
    from llamadesk.engine.planner import shape_from_size

    partial = plan_shape(shape_from_size(4 * GiB), _gpu(24), n_ctx=4096, n_gpu_layers=5)
    assert partial.verdict == "hybrid" and partial.n_gpu_layers == 5


def test_loading_more_context_than_fits_offloads_only_what_the_gpu_holds(starter_model: Path) -> None:
    from llamadesk.engine.planner import VRAM_RESERVE, _split, gpu_layers_for_context, shape_of

    info = inspect_gguf(starter_model)
    hw = Hardware(2 * GiB, GiB, 8, "CUDA", True, [GPUInfo("Test GPU", int(0.85 * GiB), int(0.85 * GiB))])
    planned = plan_fit(info, hw, n_ctx=8192)
    assert planned.verdict == "gpu" and planned.n_ctx < 8192  # all layers fit, at a smaller context
    # "Load anyway" at 8,192 tokens: all layers would overflow the GPU with the larger KV cache.
    shape, vram = shape_of(info), int(0.85 * GiB) - VRAM_RESERVE
    assert _split(shape, 8192, shape.n_layers)[0] > vram
    layers = gpu_layers_for_context(info, hw, 8192)
    assert 0 < layers < shape.n_layers and _split(shape, 8192, layers)[0] <= vram
    assert gpu_layers_for_context(info, _cpu(8), 8192) == 0
    assert gpu_layers_for_context(info, _gpu(8), 8192) == -1
