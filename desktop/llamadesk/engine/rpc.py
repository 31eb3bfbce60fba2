"""llama.cpp RPC: lend this machine's device to others (a worker), or spread a model over workers.

All ctypes for ``libggml-rpc`` live here. A worker is ``ggml_backend_rpc_start_server``; a client
adds each worker with ``ggml_backend_rpc_add_server`` + ``ggml_backend_register`` (once per process:
llama.cpp has no way to remove one) and then loads with all layers offloaded, so llama.cpp splits
them over the workers (and a local GPU) in proportion to their free memory.

What the protocol cannot do, and how this module copes:

- llama.cpp's RPC client aborts the whole process (``GGML_ABORT``) when it cannot connect to a
  worker, when the handshake fails, and when a connection breaks mid-decode ("Remote RPC server
  crashed or returned malformed response"). So every worker is probed here in plain Python
  (:func:`probe_worker`: connect, HELLO, device memory) before llama.cpp ever touches it, and a
  worker that is down, busy, or from another llama.cpp revision is named in an :class:`EngineError`.
- A worker lost mid-reply or mid-load makes llama.cpp's connection thread call ``ggml_abort``; the
  abort callback here tells the :func:`set_lost_handler` handler (the service) and parks that thread
  for good, so ``abort()`` never runs. The model is abandoned, never freed (that would wait on the
  dead connection); the worker is refused until LlamaDesk restarts. Other fatal errors still abort.
- A worker serves one client at a time; a probe while another client holds it times out as "busy".
- The protocol has no authentication or encryption: workers bind 127.0.0.1 unless told otherwise.
"""

from __future__ import annotations

import contextlib
import ctypes
import importlib.util
import logging
import re
import socket
import struct
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from ..settings_sections import parse_worker_address
from .errors import EngineError

__all__ = [
    "PROBE_TIMEOUT_S",
    "WorkerInfo",
    "abandon_model",
    "find_lost",
    "lost_workers",
    "parse_workers",
    "probe_worker",
    "probe_workers",
    "protocol_version",
    "register_workers",
    "registered_workers",
    "rpc_available",
    "set_lost_handler",
    "start_worker",
    "use_workers",
    "worker_device_names",
    "worker_memory",
    "workers_in_use",
]

PROBE_TIMEOUT_S = 3.0
# The protocol of the llama.cpp this package was tested with; the installed header wins when present.
_DEFAULT_VERSION = (7, 0, 0)
_CMD_GET_DEVICE_MEMORY = 11
_CMD_HELLO = 14
_CMD_DEVICE_COUNT = 15
_CAPS_SIZE = 24  # RPC_CONN_CAPS_SIZE: transport capabilities exchanged in HELLO (all zero: plain TCP)
_DEVICE_CPU, _DEVICE_GPU, _DEVICE_IGPU = 0, 1, 2
_MAX_DEVICES = 16
_MAX_DEVICE_MEMORY = 1 << 50  # 1 PiB: more on one device is a corrupt answer, not a device

log = logging.getLogger(__name__)
_lock = threading.Lock()
_registered: dict[str, list[int]] = {}  # endpoint -> its llama.cpp device handles
_in_use: tuple[str, ...] = ()
_loading: tuple[str, ...] = ()  # the workers of the load under way
_lost: set[str] = set()  # workers whose connection broke: llama.cpp keeps its dead link to them
LostHandler = Callable[[tuple[str, ...], str], None]
_lost_handler: LostHandler | None = None
# Workers still connected through an abandoned model's open llama.cpp connection: a new connection
# would wait behind it, so they are not probed over the wire but asked through that connection.
_held: set[str] = set()
_abandoned: list[Any] = []
# llama.cpp's message when a worker's connection breaks under its connection thread (ggml-rpc.cpp).
_BROKEN = "Remote RPC server crashed or returned malformed response"


@dataclass(frozen=True)
class WorkerInfo:
    """What a worker answered to a probe: its protocol version and each device's (free, total) bytes."""

    endpoint: str
    version: tuple[int, int, int]
    devices: tuple[tuple[int, int], ...]

    @property
    def free(self) -> int:
        return sum(free for free, _total in self.devices)

    @property
    def total(self) -> int:
        return sum(total for _free, total in self.devices)


def parse_workers(text: str | Sequence[str]) -> list[str]:
    """``"a:50052,b:50052"`` (or a list of addresses) as normalised ``host:port`` strings, no duplicates.

    Raises EngineError naming the address that is not ``host:port``.
    """
    items = text.split(",") if isinstance(text, str) else list(text)
    result: list[str] = []
    for item in items:
        if not item.strip():
            continue
        try:
            address = parse_worker_address(item)
        except ValueError as exc:
            raise EngineError(str(exc)) from exc
        if address not in result:
            result.append(address)
    return result


# --- the libraries -------------------------------------------------------------------------------


def _lib_dir() -> Path:
    spec = importlib.util.find_spec("llama_cpp")
    if spec is None or not spec.submodule_search_locations:
        raise EngineError("llama-cpp-python is not installed.")
    return Path(next(iter(spec.submodule_search_locations))) / "lib"


def _find(lib_dir: Path, stem: str) -> Path | None:
    """The library file llama.cpp's own libraries load: on Linux the SONAME copy (``libggml.so.0``).

    The wheel holds separate copies (libx.so, libx.so.0, libx.so.0.1.2); opening another copy than
    llama_cpp's would load a second libggml with its own backend registry.
    """
    suffix = {"win32": ".dll", "darwin": ".dylib"}.get(sys.platform, ".so")
    if suffix == ".so":
        versioned = sorted(lib_dir.glob(f"lib{stem}.so.[0-9]*"), key=lambda p: len(p.name))
        if versioned:
            return versioned[0]
    for name in (f"lib{stem}{suffix}", f"{stem}{suffix}"):
        if (lib_dir / name).exists():
            return lib_dir / name
    return None


def rpc_available() -> bool:
    """True when the installed llama-cpp-python was built with RPC (has libggml-rpc)."""
    try:
        return _find(_lib_dir(), "ggml-rpc") is not None
    except EngineError:
        return False


class _Libs:
    def __init__(self) -> None:
        lib_dir = _lib_dir()
        rpc_path, ggml_path = _find(lib_dir, "ggml-rpc"), _find(lib_dir, "ggml")
        if rpc_path is None or ggml_path is None:
            raise EngineError(
                f"This llama-cpp-python was built without llama.cpp RPC (no libggml-rpc in {lib_dir}). "
                'Rebuild it with CMAKE_ARGS="-DGGML_RPC=on" (make setup does).'
            )
        mode = getattr(ctypes, "RTLD_GLOBAL", 0)
        # The same libraries llama_cpp loads (the loader shares them by name), so devices are shared too.
        self.ggml = ctypes.CDLL(str(ggml_path), mode=mode)
        self.rpc = ctypes.CDLL(str(rpc_path), mode=mode)
        g, r = self.ggml, self.rpc
        vp, sz = ctypes.c_void_p, ctypes.c_size_t
        server_args: list[Any] = [ctypes.c_char_p, ctypes.c_char_p, sz, sz, ctypes.POINTER(vp)]
        r.ggml_backend_rpc_start_server.argtypes = server_args
        r.ggml_backend_rpc_start_server.restype = None
        r.ggml_backend_rpc_add_server.argtypes = [ctypes.c_char_p]
        r.ggml_backend_rpc_add_server.restype = vp
        memory_args: list[Any] = [ctypes.c_char_p, ctypes.c_uint32, ctypes.POINTER(sz), ctypes.POINTER(sz)]
        r.ggml_backend_rpc_get_device_memory.argtypes = memory_args
        r.ggml_backend_rpc_get_device_memory.restype = None
        for name, args, res in (
            ("ggml_backend_register", [vp], None),
            ("ggml_backend_reg_dev_count", [vp], sz),
            ("ggml_backend_reg_dev_get", [vp, sz], vp),
            ("ggml_backend_reg_name", [vp], ctypes.c_char_p),
            ("ggml_backend_dev_count", [], sz),
            ("ggml_backend_dev_get", [sz], vp),
            ("ggml_backend_dev_by_name", [ctypes.c_char_p], vp),
            ("ggml_backend_dev_type", [vp], ctypes.c_int),
            ("ggml_backend_dev_name", [vp], ctypes.c_char_p),
            ("ggml_backend_dev_description", [vp], ctypes.c_char_p),
            ("ggml_backend_dev_memory", [vp, ctypes.POINTER(sz), ctypes.POINTER(sz)], None),
            ("ggml_backend_dev_backend_reg", [vp], vp),
        ):
            fn = getattr(g, name)
            fn.argtypes, fn.restype = args, res


_libs_cache: _Libs | None = None


def _libs() -> _Libs:
    global _libs_cache
    with _lock:
        if _libs_cache is None:
            _libs_cache = _Libs()
        return _libs_cache


def protocol_version() -> tuple[int, int, int]:
    """The RPC protocol of the installed llama.cpp (from its installed ggml-rpc.h when present)."""
    try:
        header = _lib_dir().parent.parent / "include" / "ggml-rpc.h"
        text = header.read_text(encoding="utf-8", errors="replace")
    except (OSError, EngineError):
        return _DEFAULT_VERSION
    parts = [re.search(rf"RPC_PROTO_{p}_VERSION\s+(\d+)", text) for p in ("MAJOR", "MINOR", "PATCH")]
    if not all(parts):
        return _DEFAULT_VERSION
    major, minor, patch = (int(m.group(1)) for m in parts if m)
    return major, minor, patch


# --- probing a worker in plain Python (llama.cpp would abort the process instead) --------------------


def _recv_exact(sock: socket.socket, size: int, deadline: float | None = None) -> bytes:
    """``size`` bytes from ``sock``; past ``deadline`` (a monotonic time) TimeoutError, even when a
    worker trickles a byte at a time (a socket timeout bounds each read, not the whole reply)."""
    data = bytearray()
    while len(data) < size:
        if deadline is not None:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("timed out")
            sock.settimeout(left)
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise ConnectionError("it closed the connection mid-answer")
        data += chunk
    return bytes(data)


def _call(
    sock: socket.socket, cmd: int, payload: bytes, reply_size: int, deadline: float | None = None
) -> bytes:
    sock.sendall(struct.pack("<BQ", cmd, len(payload)) + payload)
    (size,) = struct.unpack("<Q", _recv_exact(sock, 8, deadline))
    if size != reply_size:
        raise ValueError(f"answered {size} bytes where {reply_size} were expected")
    return _recv_exact(sock, reply_size, deadline)


def probe_worker(endpoint: str, timeout: float = PROBE_TIMEOUT_S) -> WorkerInfo:
    """Connect to a worker, check its protocol version and read its devices' memory; never aborts.

    Raises EngineError naming the worker: down, unreachable, busy with another client, not a
    llama.cpp RPC worker, or built from a llama.cpp whose protocol differs from ours.
    """
    address = parse_workers([endpoint])[0]
    if address in _lost:
        raise EngineError(
            f"Worker {address} was lost during this LlamaDesk session: llama.cpp cannot connect to it "
            "again until LlamaDesk restarts. Load without it, or restart LlamaDesk."
        )
    if address in _held:
        return _held_info(address)
    host, _, port = address.rpartition(":")
    mine = protocol_version()
    try:
        sock = socket.create_connection((host, int(port)), timeout=timeout)
    except TimeoutError as exc:
        raise EngineError(
            f"Worker {address} did not answer within {timeout:g} s: is the address right?"
        ) from exc
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise EngineError(
            f"Can't reach worker {address} ({reason}). Is `llamadesk worker` running there, on that port?"
        ) from exc
    deadline = time.monotonic() + timeout  # the whole handshake, however the worker paces its bytes
    with sock:
        sock.settimeout(timeout)
        try:
            hello = _call(sock, _CMD_HELLO, bytes(_CAPS_SIZE), 4 + _CAPS_SIZE, deadline)
            version = (hello[0], hello[1], hello[2])
            if version[0] != mine[0] or version[1] > mine[1]:
                raise EngineError(
                    f"Worker {address} speaks RPC protocol {'.'.join(map(str, version))}, this LlamaDesk "
                    f"{'.'.join(map(str, mine))}: it was built from a different llama.cpp. Install the "
                    "same LlamaDesk version on both machines."
                )
            (count,) = struct.unpack("<I", _call(sock, _CMD_DEVICE_COUNT, b"", 4, deadline))
            if not 0 < count <= _MAX_DEVICES:
                raise ValueError(f"reported {count} devices")
            devices = []
            for index in range(count):
                reply = _call(sock, _CMD_GET_DEVICE_MEMORY, struct.pack("<I", index), 16, deadline)
                free, total = struct.unpack("<QQ", reply)
                if free > total or total > _MAX_DEVICE_MEMORY:
                    raise ValueError(f"reported impossible memory for device {index}: {free} free of {total}")
                devices.append((free, total))
        except TimeoutError as exc:
            raise EngineError(
                f"Worker {address} accepted the connection but did not answer the llama.cpp RPC handshake "
                f"within {timeout:g} s: it is serving another client (a worker serves one at a time), or it "
                "is not a LlamaDesk worker."
            ) from exc
        except (ConnectionError, ValueError, OSError) as exc:
            raise EngineError(
                f"Worker {address} refused the llama.cpp RPC handshake ({exc}). It is not a LlamaDesk "
                "worker, or one built from a different llama.cpp version."
            ) from exc
    return WorkerInfo(address, version, tuple((int(f), int(t)) for f, t in devices))


def _held_info(address: str) -> WorkerInfo:
    """A worker's memory asked over llama.cpp's connection to it (for a held worker: its open one)."""
    rpc_lib = _libs().rpc
    devices = []
    for device in range(len(_registered.get(address, ())) or 1):
        free, total = ctypes.c_size_t(0), ctypes.c_size_t(0)
        rpc_lib.ggml_backend_rpc_get_device_memory(
            address.encode(), device, ctypes.byref(free), ctypes.byref(total)
        )
        devices.append((int(free.value), int(total.value)))
    return WorkerInfo(address, protocol_version(), tuple(devices))


def probe_workers(endpoints: Sequence[str], timeout: float = PROBE_TIMEOUT_S) -> list[WorkerInfo]:
    """:func:`probe_worker` for each endpoint, in order; the first failure raises."""
    return [probe_worker(endpoint, timeout) for endpoint in parse_workers(endpoints)]


# --- the client side ---------------------------------------------------------------------------------


def worker_memory(endpoint: str) -> tuple[int, int]:
    """(free, total) bytes of a worker's devices, asked through llama.cpp's own RPC client.

    llama.cpp aborts the process when the worker is unreachable: the worker is probed first.
    """
    devices = _held_info(probe_worker(endpoint).endpoint).devices
    return sum(free for free, _ in devices), sum(total for _, total in devices)


_ABORT_CALLBACK = ctypes.CFUNCTYPE(None, ctypes.c_char_p)
_abort_ref: Any = None


def set_lost_handler(handler: LostHandler | None) -> None:
    """Call ``handler(workers, detail)`` when a worker's connection breaks while llama.cpp uses it.

    ``workers`` are those the loaded model was spread over (see :func:`lost_workers` for which one
    went). The handler runs on llama.cpp's connection thread, which is then parked for good: it must
    return soon and leave slow work (probing) to another thread. Without a handler the process ends.
    """
    global _lost_handler
    _lost_handler = handler


def lost_workers() -> tuple[str, ...]:
    """Workers whose connection broke in this process: llama.cpp cannot use them again until it restarts."""
    return tuple(sorted(_lost))


def _on_llama_thread() -> bool:
    """True on a thread llama.cpp started itself (its RPC connection threads), not one of Python's."""
    return isinstance(threading.current_thread(), threading._DummyThread)


def _on_fatal(message: bytes | None) -> None:
    """llama.cpp is about to abort the process. A worker's broken connection (on llama.cpp's own
    connection thread) is survived: the handler hears of it and this thread never returns to
    ``abort()``. Anything else: say why, then llama.cpp ends the process as before."""
    try:
        text = (message or b"").decode(errors="replace").strip()
        workers = _loading or _in_use or tuple(_registered)
        handler = _lost_handler
        if _BROKEN in text and _on_llama_thread() and handler is not None:
            log.error("the connection to an RPC worker broke (%s): %s", ", ".join(workers), text)
            try:
                handler(workers, text)
            except Exception:
                log.exception("the lost-worker handler failed")
            threading.Event().wait()  # park for good (releases the GIL); abort() never runs
        if "RPC" in text:
            text = (
                f"the connection to an RPC worker broke ({', '.join(workers) or 'none'}); llama.cpp cannot "
                "continue without it and ends LlamaDesk. Start the worker again, or remove it "
                f"(Preferences → Model & hardware → Workers), and reload the model. llama.cpp said: {text}"
            )
        log.critical("llama.cpp fatal error: %s", text)
        sys.stderr.write(f"llamadesk: fatal: {text}\n")
        sys.stderr.flush()
    except BaseException:  # never raise into C
        pass


def find_lost(workers: Sequence[str], timeout: float = 2.0) -> tuple[str, ...]:
    """After a broken connection: which of ``workers`` it was (all, when that can't be told); marked lost.

    A worker still serving us leaves a new handshake unanswered (it serves one client at a time); the
    lost one refuses or drops the connection, or answers (it is free: our connection to it is gone)."""

    def gone(address: str) -> bool:
        host, _, port = address.rpartition(":")
        try:
            with socket.create_connection((host, int(port)), timeout=timeout) as sock:
                sock.settimeout(timeout)
                _call(sock, _CMD_HELLO, bytes(_CAPS_SIZE), 4 + _CAPS_SIZE, time.monotonic() + timeout)
        except TimeoutError:
            return False  # busy serving us: its connection is alive
        except (OSError, ValueError) as exc:
            log.info("worker %s is gone: %s", address, exc)
        return True

    with ThreadPoolExecutor(max(1, len(workers))) as pool:  # at most one timeout in all
        answers = list(pool.map(gone, workers))
    lost = tuple(a for a, is_gone in zip(workers, answers, strict=True) if is_gone) or tuple(workers)
    with _lock:
        _lost.update(lost)
        _held.update(a for a in workers if a not in _lost)
    return lost


def abandon_model(llm: Any) -> None:
    """Make sure a ``llama_cpp.Llama`` whose worker was lost is never freed: freeing it would wait
    forever on the dead connection. Its memory (here and on the workers) goes when LlamaDesk ends."""
    if llm is None:
        return
    _abandoned.append(llm)
    for owner in (llm, getattr(llm, "_model", None), getattr(llm, "_ctx", None)):
        for name in ("_stack", "_exit_stack"):
            if owner is not None and hasattr(owner, name):
                setattr(owner, name, contextlib.ExitStack())


def _install_fatal_message(libs: _Libs) -> None:
    """Replace llama.cpp's last words (a gdb backtrace where gdb is installed) by a message naming workers."""
    global _abort_ref
    if _abort_ref is not None:
        return
    setter = libs.ggml.ggml_set_abort_callback
    setter.argtypes, setter.restype = [_ABORT_CALLBACK], ctypes.c_void_p
    _abort_ref = _ABORT_CALLBACK(_on_fatal)
    setter(_abort_ref)


def register_workers(endpoints: Sequence[str]) -> list[int]:
    """Make each worker's devices known to llama.cpp (once per process; probed first); their handles."""
    addresses = parse_workers(endpoints)
    missing = [a for a in addresses if a not in _registered]
    for address in missing:
        probe_worker(address)
    libs = _libs()
    with _lock:
        if missing:
            _install_fatal_message(libs)
        for address in missing:
            if address in _registered:
                continue
            reg = libs.rpc.ggml_backend_rpc_add_server(address.encode())
            if not reg:
                raise EngineError(f"Worker {address} offers no device.")
            libs.ggml.ggml_backend_register(reg)
            count = libs.ggml.ggml_backend_reg_dev_count(reg)
            _registered[address] = [libs.ggml.ggml_backend_reg_dev_get(reg, i) for i in range(count)]
        return [dev for address in addresses for dev in _registered[address]]


def registered_workers() -> tuple[str, ...]:
    """Every worker registered in this process (they stay until it exits)."""
    return tuple(_registered)


def workers_in_use() -> tuple[str, ...]:
    """The workers the last successful load spread its model over."""
    return _in_use


def _is_rpc(libs: _Libs, dev: int) -> bool:
    reg = libs.ggml.ggml_backend_dev_backend_reg(dev)
    return bool(reg) and libs.ggml.ggml_backend_reg_name(reg) == b"RPC"


def _offload_devices(libs: _Libs, worker_devices: list[int]) -> list[int]:
    """llama.cpp's default device choice (workers first, then local GPUs, else integrated ones),
    limited to the workers asked for: workers registered earlier in the process are left out."""
    g = libs.ggml
    gpus, igpus = [], []
    for index in range(g.ggml_backend_dev_count()):
        dev = g.ggml_backend_dev_get(index)
        kind = g.ggml_backend_dev_type(dev)
        if kind == _DEVICE_GPU and not _is_rpc(libs, dev):
            gpus.append(dev)
        elif kind == _DEVICE_IGPU:
            igpus.append(dev)
    return worker_devices + (gpus or igpus[:1])


_this_load = threading.local()  # .devices: the device array of the load this thread is making


def _install_device_choice(module: ModuleType) -> None:
    """Once: make llama_cpp's model defaults carry the devices of the load the calling thread makes
    (a load on another thread, embeddings say, keeps its own choice)."""
    low: Any = module.llama_cpp
    if getattr(low.llama_model_default_params, "_llamadesk", False):
        return
    original = low.llama_model_default_params

    def params_with_devices() -> Any:
        params = original()
        devices = getattr(_this_load, "devices", None)
        if devices is not None:
            params.devices = ctypes.cast(devices, ctypes.c_void_p)
        return params

    params_with_devices._llamadesk = True  # type: ignore[attr-defined]
    low.llama_model_default_params = params_with_devices


@contextlib.contextmanager
def use_workers(module: ModuleType, endpoints: Sequence[str], *, track: bool = True) -> Iterator[None]:
    """Around ``Llama(...)``: probe and register ``endpoints``, and make the load use exactly them.

    With no endpoints and none registered in this process, llama.cpp's defaults are left alone.
    ``track=False``: a side load (embeddings) that leaves :func:`workers_in_use` as it was.
    """
    global _in_use, _loading
    addresses = parse_workers(endpoints)
    before = _in_use
    if not addresses and not _registered:
        _in_use = () if track else before
        yield
        return
    for address in addresses:  # every load: llama.cpp would abort on a worker that went away since
        probe_worker(address)
    worker_devices = register_workers(addresses)
    chosen = _offload_devices(_libs(), worker_devices)
    _install_device_choice(module)
    _this_load.devices = (ctypes.c_void_p * (len(chosen) + 1))(*chosen, None)
    _in_use = () if track else before
    if track:
        _loading = tuple(addresses)
    try:
        yield
    finally:
        _this_load.devices = None
        if track:
            _loading = ()
    _in_use = tuple(addresses) if track else before


from .rpc_worker import start_worker, worker_device_names  # noqa: E402  (the worker side)
