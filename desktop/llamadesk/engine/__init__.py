"""Model inspection, hardware and fit planning, and the inference Engine (no Qt)."""

from __future__ import annotations

from .engine import Engine, Generation, GenerationStats, StopReason
from .errors import EngineError, ModelFileError
from .gguf_info import GGUFInfo, inspect_gguf
from .hardware import GPUInfo, Hardware, detect_hardware
from .planner import FitPlan, MemoryEstimate, estimate_for_size, estimate_memory, plan_fit

__all__ = [
    "Engine",
    "EngineError",
    "FitPlan",
    "GGUFInfo",
    "GPUInfo",
    "Generation",
    "GenerationStats",
    "Hardware",
    "MemoryEstimate",
    "ModelFileError",
    "StopReason",
    "detect_hardware",
    "estimate_for_size",
    "estimate_memory",
    "inspect_gguf",
    "plan_fit",
]
