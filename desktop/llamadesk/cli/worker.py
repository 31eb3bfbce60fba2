"""`llamadesk worker`: lend this machine's GPU (or CPU) to LlamaDesk on other machines (llama.cpp RPC).

Binds 127.0.0.1 unless ``--host`` says otherwise, and then warns that the protocol has neither
authentication nor encryption. Ctrl+C or SIGTERM stops it (exit status 0).
"""

from __future__ import annotations

import argparse
import signal
import socket
import sys
import threading
from pathlib import Path

from ..errors import LlamaDeskError
from ..settings import RuntimeSettings
from .common import CliError, note, warn

__all__ = ["DEFAULT_PORT", "announce_workers", "cmd_worker"]

DEFAULT_PORT = 50052  # llama.cpp's rpc-server default
SECURITY_WARNING = (
    "WARNING: the llama.cpp RPC protocol has no authentication and no encryption. Anyone who can "
    "reach {endpoint} can use this machine's device and read what it computes. Use it only on a "
    "trusted network or a VPN, never on a network others share."
)


def _check_port(host: str, port: int) -> None:
    """Fail with a clear message when the address can't be bound (llama.cpp only says "failed")."""
    try:
        infos = socket.getaddrinfo(host, port, socket.AF_INET, socket.SOCK_STREAM)
    except OSError as exc:
        raise CliError(f"can't use the address {host!r}: {exc.strerror or exc}") from exc
    except (UnicodeError, ValueError) as exc:  # not a host name at all: "a\x00b", "…"*100, "-"
        raise CliError(f"{host!r} is not a host name or address to listen on") from exc
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(infos[0][4])
        except OSError as exc:
            raise CliError(f"can't listen on {host}:{port}: {exc.strerror or exc}") from exc


def cmd_worker(args: argparse.Namespace) -> int:
    from ..engine import rpc
    from ..paths import get_paths

    host = args.host or "127.0.0.1"
    port = int(args.port)
    endpoint = f"{host}:{port}"
    _check_port(host, port)
    cache_dir = None
    if args.cache:
        cache_dir = get_paths().data_dir / "rpc-cache"  # tensors a client sent before, by hash
        cache_dir.mkdir(parents=True, exist_ok=True)
    try:
        devices = rpc.worker_device_names(args.device)
    except LlamaDeskError as exc:
        raise CliError(str(exc)) from exc
    if host not in ("127.0.0.1", "localhost"):
        warn(SECURITY_WARNING.format(endpoint=endpoint))
    note(f"worker on {endpoint}, serving {', '.join(devices)}; Ctrl+C stops it")
    if host in ("127.0.0.1", "localhost"):
        note("only this machine can connect; --host 0.0.0.0 (or this machine's address) opens it to others")

    stopped = threading.Event()
    failed: list[str] = []

    def serve() -> None:
        try:
            rpc.start_worker(host, port, device=args.device, threads=args.threads, cache_dir=cache_dir)
            failed.append(f"the worker on {endpoint} stopped: llama.cpp could not serve there (see above)")
        except LlamaDeskError as exc:
            failed.append(str(exc))
        stopped.set()

    def on_signal(*_: object) -> None:
        stopped.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    # llama.cpp's server loop never returns and holds no Python lock: it runs in a daemon thread,
    # and this thread waits for a signal (Python runs handlers only between bytecodes here).
    threading.Thread(target=serve, name="rpc-worker", daemon=True).start()
    while not stopped.wait(0.2):
        pass
    sys.stdout.flush()
    if failed:
        raise CliError(failed[0])
    note("worker stopped")
    return 0


def announce_workers(model_path: str | Path, runtime: RuntimeSettings, *, quiet: bool = False) -> None:
    """Before a load with workers: probe each (a clear error naming one that is down or refuses the
    handshake) and say how the layers would split over them."""
    from ..engine import rpc
    from ..engine.gguf_info import inspect_gguf
    from ..engine.hardware import detect_hardware
    from ..engine.load_policy import worker_plan

    workers = rpc.probe_workers(runtime.workers)
    if quiet:
        return
    info = inspect_gguf(model_path)
    plan = worker_plan(
        info,
        detect_hardware(),
        [(w.endpoint, w.devices) for w in workers],
        n_ctx=runtime.n_ctx,
        kv_cache_type=runtime.kv_cache_type,
    )
    note(f"workers: {plan.summary}")
    if not plan.fits:
        warn("some workers have less free memory than their share needs: loading may fail")
