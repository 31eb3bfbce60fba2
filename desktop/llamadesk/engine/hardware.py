"""What this machine offers a model: memory, the llama.cpp backend compiled in, GPUs.

Detection avoids importing llama_cpp (slow at start-up): the compiled backends are read
from the shared libraries llama-cpp-python installed, VRAM from ``nvidia-smi``.
"""

from __future__ import annotations

import functools
import importlib.util
import os
import platform
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

GiB = 1024**3

_COUNT = re.compile(r"[0-9]{1,12}")  # ASCII digits only: "²".isdigit() is True, int("²") fails


@dataclass(frozen=True)
class GPUInfo:
    """One GPU llama.cpp can offload to."""

    name: str
    vram_total: int
    vram_free: int


@dataclass(frozen=True)
class Hardware:
    """The resources a model plan is made against."""

    total_ram: int
    available_ram: int
    cpu_count: int
    backend: str
    gpu_offload: bool
    gpus: list[GPUInfo] = field(default_factory=list)
    compiled_backends: tuple[str, ...] = ()

    @property
    def vram_free(self) -> int:
        return sum(gpu.vram_free for gpu in self.gpus) if self.gpu_offload else 0

    @property
    def vram_total(self) -> int:
        return sum(gpu.vram_total for gpu in self.gpus) if self.gpu_offload else 0

    def describe(self) -> str:
        ram = f"{self.available_ram / GiB:.1f} of {self.total_ram / GiB:.1f} GiB RAM free"
        if self.gpu_offload and self.gpus:
            gpus = ", ".join(f"{g.name} ({g.vram_free / GiB:.1f} GiB free)" for g in self.gpus)
            return f"{self.backend}: {gpus}; {ram}; {self.cpu_count} CPU threads"
        if self.backend != "CPU":
            return f"{self.backend} build, no usable GPU found; {ram}; {self.cpu_count} CPU threads"
        return f"CPU; {ram}; {self.cpu_count} CPU threads"


def memory() -> tuple[int, int]:
    """(total, available) RAM in bytes."""
    if sys.platform.startswith("linux"):
        try:
            fields = {}
            for line in Path("/proc/meminfo").read_text().splitlines():
                key, _, rest = line.partition(":")
                fields[key] = int(rest.split()[0]) * 1024
            total = fields["MemTotal"]
            return total, fields.get("MemAvailable", fields.get("MemFree", total // 2))
        except (OSError, KeyError, ValueError, IndexError):
            pass
    if sys.platform == "win32":
        return _windows_memory()
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return 8 * GiB, 4 * GiB
    available = _macos_available() if sys.platform == "darwin" else None
    return total, available if available is not None else total // 2


def _macos_available() -> int | None:
    try:
        out = subprocess.run(["vm_stat"], capture_output=True, text=True, timeout=2, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    page = 4096
    pages = 0
    for line in out.splitlines():
        if "page size of" in line:
            page = int("".join(ch for ch in line.split("page size of")[1] if "0" <= ch <= "9") or page)
        for key in ("Pages free", "Pages inactive", "Pages speculative", "Pages purgeable"):
            if line.startswith(key):
                count = line.split(":")[1].strip().rstrip(".")
                pages += int(count) if _COUNT.fullmatch(count) else 0
    return pages * page if pages else None


def _windows_memory() -> tuple[int, int]:
    import ctypes

    class MemoryStatus(ctypes.Structure):
        _fields_ = [
            ("dwLength", ctypes.c_ulong),
            ("dwMemoryLoad", ctypes.c_ulong),
            ("ullTotalPhys", ctypes.c_ulonglong),
            ("ullAvailPhys", ctypes.c_ulonglong),
            ("ullTotalPageFile", ctypes.c_ulonglong),
            ("ullAvailPageFile", ctypes.c_ulonglong),
            ("ullTotalVirtual", ctypes.c_ulonglong),
            ("ullAvailVirtual", ctypes.c_ulonglong),
            ("sullAvailExtendedVirtual", ctypes.c_ulonglong),
        ]

    status = MemoryStatus()
    status.dwLength = ctypes.sizeof(MemoryStatus)
    ctypes.windll.kernel32.GlobalMemoryStatusEx(ctypes.byref(status))  # type: ignore[attr-defined]
    return int(status.ullTotalPhys), int(status.ullAvailPhys)


def compiled_backends() -> tuple[str, ...]:
    """GPU backends present in the installed llama-cpp-python build, e.g. ("CUDA",)."""
    spec = importlib.util.find_spec("llama_cpp")
    if spec is None or not spec.submodule_search_locations:
        return ()
    names: set[str] = set()
    for location in spec.submodule_search_locations:
        lib_dir = Path(location) / "lib"
        if not lib_dir.is_dir():
            continue
        for lib in lib_dir.iterdir():
            lower = lib.name.lower()
            for key, label in (
                ("cuda", "CUDA"),
                ("metal", "Metal"),
                ("vulkan", "Vulkan"),
                ("hip", "ROCm"),
                ("sycl", "SYCL"),
            ):
                if f"ggml-{key}" in lower or f"ggml_{key}" in lower:
                    names.add(label)
    if not names and sys.platform == "darwin" and platform.machine() == "arm64":
        names.add("Metal")  # Metal is compiled into libggml on Apple Silicon builds
    return tuple(sorted(names))


def nvidia_gpus() -> list[GPUInfo]:
    """GPUs reported by nvidia-smi; empty when there is none or no driver."""
    exe = shutil.which("nvidia-smi")
    if not exe:
        return []
    try:
        out = subprocess.run(
            [exe, "--query-gpu=name,memory.total,memory.free", "--format=csv,noheader,nounits"],
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return parse_nvidia_smi(out)


def parse_nvidia_smi(out: str) -> list[GPUInfo]:
    """GPUs from ``nvidia-smi --query-gpu=name,memory.total,memory.free --format=csv,noheader,nounits``."""
    gpus = []
    for line in out.strip().splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) == 3 and _COUNT.fullmatch(parts[1]) and _COUNT.fullmatch(parts[2]):
            gpus.append(GPUInfo(parts[0], int(parts[1]) * 1024**2, int(parts[2]) * 1024**2))
    return gpus


@functools.lru_cache(maxsize=1)
def _static_hardware() -> tuple[int, tuple[str, ...], str, tuple[GPUInfo, ...]]:
    backends = compiled_backends()
    cpu = os.cpu_count() or 1
    gpus: list[GPUInfo] = []
    backend = "CPU"
    if "CUDA" in backends:
        backend = "CUDA"
        gpus = nvidia_gpus()
    elif "Metal" in backends:
        backend = "Metal"
        total, _ = memory()
        # Apple GPUs share memory; macOS lets the GPU wire about two thirds of it.
        gpus = [GPUInfo("Apple GPU (unified memory)", total * 2 // 3, total * 2 // 3)]
    elif backends:
        backend = backends[0]
    return cpu, backends, backend, tuple(gpus)


def detect_hardware(*, refresh_gpus: bool = False) -> Hardware:
    """This machine's resources; RAM is read fresh, the rest is cached."""
    if refresh_gpus:
        _static_hardware.cache_clear()
    cpu, backends, backend, gpus = _static_hardware()
    total, available = memory()
    return Hardware(
        total_ram=total,
        available_ram=available,
        cpu_count=cpu,
        backend=backend,
        gpu_offload=bool(gpus),
        gpus=list(gpus),
        compiled_backends=backends,
    )
