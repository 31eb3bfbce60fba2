"""Worker addresses, the pre-load probe against real sockets on 127.0.0.1, and the layer split plan."""

from __future__ import annotations

import contextlib
import http.server
import socket
import struct
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from llamadesk.engine import rpc
from llamadesk.engine.errors import EngineError
from llamadesk.engine.gguf_info import GGUFInfo
from llamadesk.engine.hardware import GPUInfo, Hardware
from llamadesk.engine.load_policy import check_worker_load, worker_plan
from llamadesk.engine.planner import plan_workers, split_layers
from llamadesk.settings import RuntimeSettings, SettingsError, validated_update
from llamadesk.settings_sections import parse_worker_address

GB = 10**9


# --- addresses -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [("127.0.0.1:50052", "127.0.0.1:50052"), (" Gpu-Box.lan:8 ", "gpu-box.lan:8"), ("h:050052", "h:50052")],
)
def test_worker_address_is_normalised(text: str, expected: str) -> None:
    assert parse_worker_address(text) == expected


@pytest.mark.parametrize("text", ["", "host", "host:", ":50052", "host:0", "host:65536", "a b:1", "[::1]:5"])
def test_worker_address_refused(text: str) -> None:
    with pytest.raises(ValueError, match="HOST:PORT"):
        parse_worker_address(text)


def test_workers_setting_validated_and_deduplicated() -> None:
    runtime = validated_update(RuntimeSettings(), workers=["a:1", "A:1", "b:2"])
    assert runtime.workers == ["a:1", "b:2"]
    with pytest.raises(SettingsError, match="workers"):
        validated_update(RuntimeSettings(), workers=["a:1", "nope"])


def test_parse_workers_from_command_line() -> None:
    assert rpc.parse_workers("a:1, b:2,,a:1") == ["a:1", "b:2"]
    with pytest.raises(EngineError, match="'b' is not a worker address"):
        rpc.parse_workers("a:1,b")


# --- the probe, against sockets that answer like a worker, like another program, or not at all --------


@contextlib.contextmanager
def _serve_once(handler: Callable[[socket.socket], None]) -> Iterator[str]:
    """A server on 127.0.0.1 that hands its first connection to ``handler``; yields its address."""
    server = socket.create_server(("127.0.0.1", 0))
    done = threading.Event()

    def run() -> None:
        conn, _ = server.accept()
        with conn:
            handler(conn)
            done.wait(10)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    yield f"127.0.0.1:{server.getsockname()[1]}"
    done.set()
    thread.join(10)
    server.close()


def _read(conn: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = conn.recv(size - len(data))
        if not chunk:
            raise ConnectionError
        data += chunk
    return data


def _fake_worker(
    version: tuple[int, int, int], memories: list[tuple[int, int]]
) -> Callable[[socket.socket], None]:
    """Answers HELLO, DEVICE_COUNT and GET_DEVICE_MEMORY as llama.cpp's rpc server does."""

    def handle(conn: socket.socket) -> None:
        while True:
            try:
                cmd, size = struct.unpack("<BQ", _read(conn, 9))
            except ConnectionError:
                return
            payload = _read(conn, size)
            if cmd == 14:
                assert size == 24
                reply = bytes([*version, 0]) + bytes(24)
            elif cmd == 15:
                reply = struct.pack("<I", len(memories))
            elif cmd == 11:
                (device,) = struct.unpack("<I", payload)
                reply = struct.pack("<QQ", *memories[device])
            else:
                return
            conn.sendall(struct.pack("<Q", len(reply)) + reply)

    return handle


def test_probe_reads_version_and_memory_of_each_device() -> None:
    memories = [(3 * GB, 8 * GB), (1 * GB, 2 * GB)]
    with _serve_once(_fake_worker(rpc.protocol_version(), memories)) as address:
        info = rpc.probe_worker(address)
        assert info.endpoint == address
        assert info.version == rpc.protocol_version()
        assert info.devices == tuple(memories)
        assert (info.free, info.total) == (4 * GB, 10 * GB)


def test_probe_refuses_other_protocol_version() -> None:
    major, minor, patch = rpc.protocol_version()
    worker = _fake_worker((major + 1, minor, patch), [(GB, GB)])
    with _serve_once(worker) as address, pytest.raises(EngineError, match=rf"{address} speaks RPC protocol"):
        rpc.probe_worker(address)


def _hang_up(conn: socket.socket) -> None:
    """What a worker of another protocol generation does: it reads HELLO, dislikes its size, closes."""
    _read(conn, 9)
    conn.close()


def test_probe_refuses_worker_that_hangs_up_on_hello() -> None:
    with _serve_once(_hang_up) as address, pytest.raises(EngineError, match=rf"Worker {address} refused the"):
        rpc.probe_worker(address)


def test_probe_names_busy_worker() -> None:
    # It accepts and never answers, as a worker serving another client does.
    with (
        _serve_once(lambda conn: None) as address,
        pytest.raises(EngineError, match=rf"Worker {address} acc"),
    ):
        rpc.probe_worker(address, timeout=0.5)


class _QuietHandler(http.server.BaseHTTPRequestHandler):
    """A plain HTTP server's handler that keeps its request log off the test output."""

    def log_message(self, format: str, *args: object) -> None:
        pass


def test_probe_of_http_server_is_a_handshake_refusal() -> None:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _QuietHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    address = f"127.0.0.1:{server.server_address[1]}"
    try:
        # The server waits for the rest of a request line that never comes: no answer is a refusal too.
        with pytest.raises(
            EngineError, match=rf"Worker {address} .* did not answer the llama.cpp RPC handshake"
        ):
            rpc.probe_worker(address, timeout=1)
    finally:
        server.shutdown()
        server.server_close()


def test_probe_of_closed_port_names_the_worker() -> None:
    with socket.socket() as sock:  # a port nobody listens on: bound, never listening
        sock.bind(("127.0.0.1", 0))
        address = f"127.0.0.1:{sock.getsockname()[1]}"
        with pytest.raises(EngineError, match=rf"Can't reach worker {address} .*llamadesk worker"):
            rpc.probe_worker(address)


# --- the split plan --------------------------------------------------------------------------------


def test_split_follows_free_memory_like_llama_cpp() -> None:
    # 30 layers + output over two equal devices: cut at 0.5 of 31 -> layers 0..15 and 16..30 (output).
    owners = split_layers(30, [4 * GB, 4 * GB])
    assert owners[:16] == [0] * 16
    assert owners[16:] == [1] * 15
    owners = split_layers(30, [1 * GB, 3 * GB])
    assert owners.count(0) == 8  # cut at 0.25: layers 0..7 (7/31 < 0.25 <= 8/31)
    assert owners[-1] == 1


def _info(tmp_path: Path) -> GGUFInfo:
    path = tmp_path / "m.gguf"
    path.write_bytes(b"")
    return GGUFInfo(
        path=path,
        file_size=310 * 10**6,
        version=3,
        architecture="llama",
        name="m",
        parameter_count=None,
        file_type="Q8_0",
        context_length=8192,
        block_count=30,
        embedding_length=576,
        head_count=9,
        head_count_kv=3,
        chat_template=None,
        bos_token=None,
        eos_token=None,
    )


def test_worker_plan_names_each_worker_and_checks_its_share(tmp_path: Path) -> None:
    info = _info(tmp_path)
    plan = plan_workers(info, [("a:1", 8 * GB), ("b:2", 8 * GB)], n_ctx=2048)
    assert [(s.name, s.first_layer, s.layers, s.has_output) for s in plan.shares] == [
        ("a:1", 0, 16, False),
        ("b:2", 16, 14, True),
    ]
    assert plan.fits
    assert "layers 0–15 on a:1" in plan.summary and "layers 16–29 + output on b:2" in plan.summary
    small = plan_workers(info, [("a:1", 8 * GB), ("b:2", 10**6)], n_ctx=2048)
    assert [s.layers for s in small.shares] == [30, 0]  # a device with almost no memory gets nothing
    tight = plan_workers(info, [("a:1", 600 * 10**6), ("b:2", 600 * 10**6)], n_ctx=2048)
    assert not tight.fits and "too little free" in tight.summary


def test_worker_plan_puts_local_gpus_after_workers(tmp_path: Path) -> None:
    hw = Hardware(
        total_ram=16 * GB,
        available_ram=8 * GB,
        cpu_count=8,
        backend="CUDA",
        gpu_offload=True,
        gpus=[GPUInfo("RTX", 8 * GB, 4 * GB)],
    )
    plan = worker_plan(_info(tmp_path), hw, [("w:1", [(4 * GB, 8 * GB), (2 * GB, 2 * GB)])], n_ctx=1024)
    assert [s.name for s in plan.shares] == ["w:1", "w:1#1", "RTX"]
    assert sum(s.layers for s in plan.shares) == 30


def test_worker_load_warns_only_when_a_share_does_not_fit(tmp_path: Path) -> None:
    hw = Hardware(total_ram=16 * GB, available_ram=8 * GB, cpu_count=8, backend="CPU", gpu_offload=False)
    plan, warning = check_worker_load(_info(tmp_path), hw, [("a:1", [(8 * GB, 8 * GB)])], n_ctx=2048)
    assert warning is None and [s.layers for s in plan.shares] == [30]
    plan, warning = check_worker_load(_info(tmp_path), hw, [("a:1", [(100 * 10**6, GB)])], n_ctx=2048)
    assert warning is not None and warning.smaller_ctx is None
    assert "too little free" in warning.informative and "a:1" in warning.informative
