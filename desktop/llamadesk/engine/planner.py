"""Will this model fit, and how should it be loaded? Estimates before anything loads.

Memory = weights (the file size) + KV cache (2 x layers x context x KV heads x head size, at
2 bytes a number for f16, about 1 for q8_0 and a half for q4_0) + a working buffer. The plan
tries all layers on the GPU first, then a GPU/CPU split, then the CPU alone, and finds the
longest context that still fits.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from .gguf_info import GGUFInfo
from .hardware import GiB, Hardware
from .kv_options import KV_BYTES_PER_VALUE

MiB = 1024**2
AUTO_CTX_CAP = 8192
MIN_CTX = 512
DEFAULT_CTX = 4096
RAM_RESERVE = 1 * GiB  # left for the OS, the app and everything else the user runs
VRAM_RESERVE = 512 * MiB
MAX_LAYERS = 1024  # real models have up to about 200; the plan tries every count from all to none
MAX_CTX = 2**32 - 1  # llama.cpp's context size is a 32-bit number


@dataclass(frozen=True)
class MemoryEstimate:
    """Bytes a loaded model needs."""

    weights: int
    kv_cache: int
    overhead: int

    @property
    def total(self) -> int:
        return self.weights + self.kv_cache + self.overhead


@dataclass(frozen=True)
class FitPlan:
    """How to load a model on this machine, and whether it fits at all."""

    verdict: str  # "gpu" | "hybrid" | "cpu" | "too_large"
    n_gpu_layers: int
    n_ctx: int
    max_ctx: int
    estimate: MemoryEstimate
    summary: str

    @property
    def fits(self) -> bool:
        return self.verdict != "too_large"

    @property
    def label(self) -> str:
        return {
            "gpu": "Fits on GPU",
            "hybrid": "Fits (GPU + RAM)",
            "cpu": "Fits in RAM",
            "too_large": "Too large",
        }[self.verdict]


@dataclass(frozen=True)
class ModelShape:
    """The numbers the estimate needs, from GGUF metadata or guessed from a file size."""

    weights: int
    n_layers: int
    kv_bytes_per_token: int
    trained_ctx: int
    embedding: int


def _positive(value: int | None, default: int, limit: int) -> int:
    """``value`` if it is a count from 1 to ``limit``, else ``default``: headers may say anything."""
    return value if isinstance(value, int) and 0 < value <= limit else default


def shape_of(info: GGUFInfo) -> ModelShape:
    """The shape the estimate uses, from the header; counts a real model can't have are ignored."""
    layers = _positive(info.block_count, 32, MAX_LAYERS)
    heads = _positive(info.head_count, 32, MAX_CTX)
    kv_heads = _positive(info.head_count_kv, heads, MAX_CTX)
    embedding = _positive(info.embedding_length, 4096, MAX_CTX)
    key_len = _positive(info.key_length, max(embedding // heads, 1), MAX_CTX)
    value_len = _positive(info.value_length, key_len, MAX_CTX)
    per_token = layers * kv_heads * (key_len + value_len) * 2  # f16 K and V
    return ModelShape(
        weights=max(info.file_size, 0),
        n_layers=layers,
        kv_bytes_per_token=per_token,
        trained_ctx=_positive(info.context_length, DEFAULT_CTX, MAX_CTX),
        embedding=embedding,
    )


def shape_from_size(size_bytes: int, parameter_count: int | None = None) -> ModelShape:
    """A rough shape for a file we only know the size of (a Hub listing)."""
    params = parameter_count or int(size_bytes * 8 / 4.8)
    # Modern GQA models keep about 16 KB of KV cache per token per billion parameters.
    per_token = max(int(params * 1.6e-5), 8 * 1024)
    layers = max(16, min(128, int(22 * (params / 1e9) ** 0.3)))
    embedding = max(1024, min(16384, int((params / (12 * layers)) ** 0.5)))
    return ModelShape(size_bytes, layers, per_token, 32768, embedding)


def with_kv_type(shape: ModelShape, kv_cache_type: str) -> ModelShape:
    """``shape`` with its KV cache stored as ``kv_cache_type`` ("f16", "q8_0" or "q4_0") instead of f16."""
    factor = KV_BYTES_PER_VALUE.get(kv_cache_type, 2.0) / 2.0
    if factor == 1.0:
        return shape
    return dataclasses.replace(shape, kv_bytes_per_token=max(int(shape.kv_bytes_per_token * factor), 1))


def estimate(shape: ModelShape, n_ctx: int, n_batch: int = 512) -> MemoryEstimate:
    kv = shape.kv_bytes_per_token * n_ctx
    # Compute buffers grow with batch x context; plus fixed runtime allocations.
    overhead = 160 * MiB + shape.weights // 50 + min(n_batch, n_ctx) * shape.embedding * 16
    overhead += n_ctx * 1024
    return MemoryEstimate(weights=shape.weights, kv_cache=kv, overhead=overhead)


def estimate_memory(info: GGUFInfo, n_ctx: int, *, kv_cache_type: str = "f16") -> MemoryEstimate:
    """Memory needed to run ``info`` with a context of ``n_ctx`` tokens."""
    return estimate(with_kv_type(shape_of(info), kv_cache_type), n_ctx)


def _gib(value: int) -> str:
    """Decimal units, as disks and the Hub show sizes."""
    return f"{value / 1e9:.1f} GB" if value >= 100_000_000 else f"{value / 1e6:.0f} MB"


def _split(shape: ModelShape, ctx: int, layers_on_gpu: int) -> tuple[int, int]:
    """(GPU bytes, RAM bytes) with ``layers_on_gpu`` of the model's layers offloaded."""
    est = estimate(shape, ctx)
    if layers_on_gpu >= shape.n_layers:
        return est.total, 0
    layer_weight = shape.weights / (shape.n_layers + 1)  # +1: embeddings and output head
    layer_kv = shape.kv_bytes_per_token / shape.n_layers
    gpu_bytes = int(layers_on_gpu * (layer_weight + layer_kv * ctx) + (est.overhead if layers_on_gpu else 0))
    return gpu_bytes, est.total - gpu_bytes


def gpu_layers_for_context(info: GGUFInfo, hw: Hardware, n_ctx: int, *, kv_cache_type: str = "f16") -> int:
    """The most layers whose share fits the free VRAM at ``n_ctx`` tokens (-1: all of them).

    For a load the user asked for although the plan says it doesn't fit ("Load anyway"): the
    plan's layer count was made for a smaller context, and its KV cache would overflow the GPU.
    """
    if not hw.gpu_offload:
        return 0
    shape = with_kv_type(shape_of(info), kv_cache_type)
    vram = max(hw.vram_free - VRAM_RESERVE, 0)
    for layers in range(shape.n_layers, 0, -1):
        if _split(shape, n_ctx, layers)[0] <= vram:
            return -1 if layers >= shape.n_layers else layers
    return 0


def plan(
    shape: ModelShape, hw: Hardware, *, n_ctx: int = 0, n_gpu_layers: int = -2, kv_cache_type: str = "f16"
) -> FitPlan:
    """Plan layers and context for ``shape`` on ``hw``; see the module docstring."""
    shape = with_kv_type(shape, kv_cache_type)
    ram = max(hw.available_ram - RAM_RESERVE, 0)
    vram = max(hw.vram_free - VRAM_RESERVE, 0) if hw.gpu_offload else 0
    wanted_ctx = n_ctx if n_ctx > 0 else min(shape.trained_ctx, AUTO_CTX_CAP)

    def split_for(ctx: int, layers_on_gpu: int) -> tuple[int, int]:
        return _split(shape, ctx, layers_on_gpu)

    def best_layers(ctx: int) -> int | None:
        """Most layers on the GPU that leave the rest fitting in RAM, or None."""
        if n_gpu_layers >= 0 or n_gpu_layers == -1:
            layers = shape.n_layers if n_gpu_layers == -1 else min(n_gpu_layers, shape.n_layers)
            if not hw.gpu_offload:
                layers = 0
            gpu, cpu = split_for(ctx, layers)
            return layers if gpu <= vram + (0 if layers else 1) and cpu <= ram else None
        top = shape.n_layers if hw.gpu_offload else 0
        for layers in range(top, -1, -1):
            gpu, cpu = split_for(ctx, layers)
            if gpu <= vram or layers == 0:
                return layers if cpu <= ram else None
        return None

    def fits(ctx: int) -> bool:
        return best_layers(ctx) is not None

    max_ctx = 0
    if fits(MIN_CTX):
        lo, hi = MIN_CTX, max(shape.trained_ctx, MIN_CTX)
        while lo < hi:
            mid = (lo + hi + 1) // 2
            lo, hi = (mid, hi) if fits(mid) else (lo, mid - 1)
        max_ctx = lo // 256 * 256 if lo >= 1024 else lo
    ctx = min(wanted_ctx, max_ctx) if max_ctx else wanted_ctx
    layers = best_layers(ctx) if max_ctx else None
    est = estimate(shape, ctx)
    if layers is None:
        need = est.total
        have = ram + vram
        summary = (
            f"Too large for this machine: needs about {_gib(need)} at {ctx:,} tokens of context, "
            f"{_gib(have)} is free. Choose a smaller quantization or a smaller model."
        )
        return FitPlan("too_large", 0, ctx, max_ctx, est, summary)
    if layers >= shape.n_layers and hw.gpu_offload:
        verdict, where = "gpu", f"all layers on the GPU ({_gib(vram)} free)"
    elif layers > 0:
        verdict, where = "hybrid", f"{layers} of {shape.n_layers} layers on the GPU, the rest in RAM"
    else:
        verdict, where = "cpu", f"in RAM ({_gib(ram)} free)"
    summary = f"Needs about {_gib(est.total)} at {ctx:,} tokens of context: {where}."
    if ctx < wanted_ctx:
        summary += f" Context reduced from {wanted_ctx:,} to {ctx:,} tokens to fit."
    gpu_layers = -1 if verdict == "gpu" else layers
    return FitPlan(verdict, gpu_layers, ctx, max_ctx, est, summary)


def plan_fit(
    info: GGUFInfo, hardware: Hardware, *, n_ctx: int = 0, n_gpu_layers: int = -2, kv_cache_type: str = "f16"
) -> FitPlan:
    """The load plan for a model file on this machine (LM Studio's and Jan's "fits" light);
    ``kv_cache_type`` ("f16", "q8_0", "q4_0") is how the context's cache is stored."""
    return plan(shape_of(info), hardware, n_ctx=n_ctx, n_gpu_layers=n_gpu_layers, kv_cache_type=kv_cache_type)


def estimate_for_size(
    size_bytes: int,
    hardware: Hardware,
    *,
    n_ctx: int = DEFAULT_CTX,
    parameter_count: int | None = None,
    kv_cache_type: str = "f16",
) -> FitPlan:
    """A plan for a Hub file known only by its size (and maybe parameter count)."""
    return plan(
        shape_from_size(size_bytes, parameter_count), hardware, n_ctx=n_ctx, kv_cache_type=kv_cache_type
    )


@dataclass(frozen=True)
class DeviceShare:
    """One device's part of a model spread over llama.cpp RPC workers (and local GPUs)."""

    name: str  # a worker's HOST:PORT (with "#n" for its further devices) or a local GPU's name
    free: int
    first_layer: int
    layers: int  # repeating layers; the output layer is counted in ``has_output``
    has_output: bool
    need: int  # bytes: its layers' weights and KV cache

    @property
    def fits(self) -> bool:
        return self.need <= max(self.free - VRAM_RESERVE, 0)


@dataclass(frozen=True)
class WorkerPlan:
    """How llama.cpp would split a model over workers before it loads, and whether each part fits."""

    shares: tuple[DeviceShare, ...]
    local_bytes: int  # what stays on this machine: token embeddings and working buffers
    n_ctx: int
    summary: str

    @property
    def fits(self) -> bool:
        return all(share.fits for share in self.shares)


def split_layers(n_layers: int, free: list[int]) -> list[int]:
    """Which device gets each of ``n_layers`` layers plus the output layer (index ``n_layers``).

    llama.cpp's default with every layer offloaded: cut points in proportion to each device's free
    memory, layer ``i`` going to the first device whose cumulative share exceeds ``i / (n_layers + 1)``.
    """
    if not free:
        return []
    weights = [max(value, 0) for value in free]
    total = sum(weights) or len(weights)
    if not sum(weights):
        weights = [1] * len(weights)
    cuts, running = [], 0
    for weight in weights:
        running += weight
        cuts.append(running / total)
    result = []
    for layer in range(n_layers + 1):
        point = layer / (n_layers + 1)
        device = next((i for i, cut in enumerate(cuts) if cut > point), len(cuts) - 1)
        result.append(device)
    return result


def plan_workers(
    info: GGUFInfo,
    devices: list[tuple[str, int]],
    *,
    n_ctx: int = 0,
    kv_cache_type: str = "f16",
) -> WorkerPlan:
    """The split of ``info`` over ``devices`` ((name, free bytes), workers first as llama.cpp orders
    them, then local GPUs) with all layers offloaded, and what each part needs."""
    shape = with_kv_type(shape_of(info), kv_cache_type)
    ctx = n_ctx if n_ctx > 0 else min(shape.trained_ctx, AUTO_CTX_CAP)
    est = estimate(shape, ctx)
    layer_weight = shape.weights / (shape.n_layers + 1)
    layer_kv = shape.kv_bytes_per_token / shape.n_layers * ctx
    owners = split_layers(shape.n_layers, [free for _name, free in devices])
    shares = []
    for index, (name, free) in enumerate(devices):
        mine = [layer for layer, owner in enumerate(owners) if owner == index]
        repeating = [layer for layer in mine if layer < shape.n_layers]
        has_output = shape.n_layers in mine
        need = int(len(repeating) * (layer_weight + layer_kv) + (layer_weight if has_output else 0))
        first = repeating[0] if repeating else 0
        shares.append(DeviceShare(name, free, first, len(repeating), has_output, need))
    local = int(layer_weight + est.overhead)
    parts = []
    for share in shares:
        if share.layers:
            span = (
                f"layer {share.first_layer}"
                if share.layers == 1
                else (f"layers {share.first_layer}–{share.first_layer + share.layers - 1}")
            )
        else:
            span = "no layers"
        if share.has_output:
            span += " + output"
        verdict = "" if share.fits else ", too little free"
        parts.append(f"{span} on {share.name} (needs {_gib(share.need)}, {_gib(share.free)} free{verdict})")
    summary = (
        f"At {ctx:,} tokens of context: " + "; ".join(parts) + f"; this machine keeps the embeddings "
        f"and working buffers (about {_gib(local)})."
    )
    return WorkerPlan(tuple(shares), local, ctx, summary)
