"""llama.cpp RPC, the worker side: serve this machine's device to other machines' LlamaDesk.

``llamadesk worker`` calls :func:`start_worker`; the client side is :mod:`llamadesk.engine.rpc`.
"""

from __future__ import annotations

import ctypes
import os
from pathlib import Path

from .errors import EngineError
from .rpc import _DEVICE_CPU, _DEVICE_GPU, _DEVICE_IGPU, _is_rpc, _Libs, _libs

__all__ = ["start_worker", "worker_device_names"]


def _device_names(libs: _Libs) -> str:
    names = []
    for index in range(libs.ggml.ggml_backend_dev_count()):
        dev = libs.ggml.ggml_backend_dev_get(index)
        names.append((libs.ggml.ggml_backend_dev_name(dev) or b"").decode(errors="replace"))
    return ", ".join(names)


def _worker_devices(libs: _Libs, device: str | None) -> list[int]:
    g = libs.ggml
    if device:
        dev = g.ggml_backend_dev_by_name(device.encode())
        if not dev:
            raise EngineError(f"No device named {device!r} here. Devices: {_device_names(libs)}.")
        return [dev]
    accelerators = []
    cpu = None
    for index in range(g.ggml_backend_dev_count()):  # like llama.cpp's rpc-server: GPUs, else the CPU
        dev = g.ggml_backend_dev_get(index)
        kind = g.ggml_backend_dev_type(dev)
        if kind in (_DEVICE_GPU, _DEVICE_IGPU) and not _is_rpc(libs, dev):
            accelerators.append(dev)
        elif kind == _DEVICE_CPU and cpu is None:
            cpu = dev
    if accelerators:
        return accelerators
    if cpu is None:
        raise EngineError("llama.cpp found no device to serve.")
    return [cpu]


def worker_device_names(device: str | None = None) -> list[str]:
    """The devices ``start_worker`` would serve (for its start-up message)."""
    libs = _libs()
    return [
        (libs.ggml.ggml_backend_dev_name(dev) or b"").decode(errors="replace")
        for dev in _worker_devices(libs, device)
    ]


def start_worker(
    host: str,
    port: int,
    *,
    device: str | None = None,
    threads: int | None = None,
    cache_dir: str | Path | None = None,
) -> None:
    """Serve this machine's device to RPC clients on ``host:port``; blocks until the process ends.

    Returns only if llama.cpp could not start the server (it prints why on stderr).
    """
    libs = _libs()
    devices = _worker_devices(libs, device)
    array = (ctypes.c_void_p * len(devices))(*devices)
    endpoint = f"{host}:{port}".encode()
    cache = str(cache_dir).encode() if cache_dir else None
    n_threads = threads or max(1, (os.cpu_count() or 2) // 2)  # llama.cpp rpc-server's default
    libs.rpc.ggml_backend_rpc_start_server(endpoint, cache, n_threads, len(devices), array)
