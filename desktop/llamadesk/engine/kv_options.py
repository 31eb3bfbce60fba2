"""How the KV cache is stored: its number type and whether flash attention is used.

A quantized cache (q8_0, q4_0) fits a longer context in the same memory; llama.cpp stores a
quantized V cache only with flash attention, so asking for one turns flash attention on (Auto) or
is refused with a clear message (Off).

"Auto" with layers on a GPU leaves the choice to llama.cpp, which uses flash attention where the
device supports it. On the CPU alone it means off: measured with llama.cpp's CPU kernels (2
cores, SmolLM2 135M), reading 27 new tokens after 100 / 900 cached ones took 119 / 147 ms
without flash attention and 152 / 444 ms with it, which llama.cpp's own "auto" would choose.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from typing import Any

from .errors import EngineError

__all__ = ["GGML_TYPES", "KV_BYTES_PER_VALUE", "context_flash_attention", "resolve_flash_attention"]

# ggml.h type ids.
GGML_TYPES = {"f16": 1, "q8_0": 8, "q4_0": 2}
# Bytes per stored number: q8_0 keeps 32 values in 34 bytes, q4_0 in 18.
KV_BYTES_PER_VALUE = {"f16": 2.0, "q8_0": 34 / 32, "q4_0": 18 / 32}

_hook_lock = threading.Lock()


def resolve_flash_attention(mode: str, kv_cache_type: str, *, gpu: bool) -> str:
    """The flash attention mode to load with ("auto", "on" or "off") for ``kv_cache_type``, with
    layers on a GPU (``gpu``) or not; "auto" is then llama.cpp's own choice."""
    if kv_cache_type not in GGML_TYPES:
        raise EngineError(f"Unknown KV cache type {kv_cache_type!r}: choose f16, q8_0 or q4_0.")
    if mode not in ("auto", "on", "off"):
        raise EngineError(f"Unknown flash attention setting {mode!r}: choose Auto, On or Off.")
    if kv_cache_type != "f16":
        if mode == "off":
            raise EngineError(
                f"A {kv_cache_type} KV cache needs flash attention, which is set to Off. Set Flash attention "
                "to Auto or On, or the KV cache type to f16 (Preferences → Model & hardware)."
            )
        return "on"
    if mode == "auto" and not gpu:
        return "off"  # slower on the CPU, and more so the longer the context (see the module docstring)
    return mode


@contextlib.contextmanager
def context_flash_attention(module: Any, mode: str) -> Iterator[None]:
    """While a ``Llama`` is built, ask llama.cpp for flash attention ``mode``.

    llama-cpp-python takes only on/off; for "auto" its context parameters are set to llama.cpp's
    own AUTO just before the context is created.
    """
    low = module.llama_cpp
    auto = getattr(low, "LLAMA_FLASH_ATTN_TYPE_AUTO", None)
    if mode != "auto" or auto is None:
        yield
        return
    import llama_cpp._internals as internals

    with _hook_lock:
        original = internals.LlamaContext

        def with_auto(*args: Any, **kwargs: Any) -> Any:
            params = kwargs.get("params")
            if params is not None:
                params.flash_attn_type = auto
            return original(*args, **kwargs)

        internals.LlamaContext = with_auto  # type: ignore[assignment,misc]
        try:
            yield
        finally:
            internals.LlamaContext = original  # type: ignore[misc]
