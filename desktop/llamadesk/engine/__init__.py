"""Model inspection, hardware and fit planning, and the inference Engine (no Qt).

Names are imported on first use, so reading a GGUF header or the header cache does not load
llama.cpp, pydantic or the settings.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .engine import Engine, Generation, GenerationStats, StopReason
    from .errors import EngineError, ModelFileError
    from .gguf_info import GGUFInfo, inspect_gguf
    from .hardware import GPUInfo, Hardware, detect_hardware
    from .planner import FitPlan, MemoryEstimate, estimate_for_size, estimate_memory, plan_fit

_WHERE = {
    "Engine": "engine",
    "Generation": "engine",
    "GenerationStats": "engine",
    "StopReason": "engine",
    "EngineError": "errors",
    "ModelFileError": "errors",
    "GGUFInfo": "gguf_info",
    "inspect_gguf": "gguf_info",
    "GPUInfo": "hardware",
    "Hardware": "hardware",
    "detect_hardware": "hardware",
    "FitPlan": "planner",
    "MemoryEstimate": "planner",
    "estimate_for_size": "planner",
    "estimate_memory": "planner",
    "plan_fit": "planner",
}

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
]  # the keys of _WHERE, listed for linters and readers


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)
