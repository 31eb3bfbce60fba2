"""The pre-load probe against workers that lie or stall (real sockets on 127.0.0.1): always an
EngineError naming the worker within the probe's time, never a worker handed on to llama.cpp."""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
from collections.abc import Callable, Iterator

import pytest

from llamadesk.cli import main
from llamadesk.engine import rpc
from llamadesk.engine.errors import EngineError

Handler = Callable[[socket.socket, threading.Event], None]
GB = 10**9


@contextlib.contextmanager
def _worker(handler: Handler) -> Iterator[str]:
    """A fake worker that hands its first connection to ``handler(conn, done)``; yields its address."""
    server = socket.create_server(("127.0.0.1", 0))
    done = threading.Event()

    def run() -> None:
        conn, _ = server.accept()
        with conn, contextlib.suppress(OSError):
            handler(conn, done)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{server.getsockname()[1]}"
    finally:
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


def _request(conn: socket.socket) -> tuple[int, bytes]:
    cmd, size = struct.unpack("<BQ", _read(conn, 9))
    return cmd, _read(conn, size)


def _hello() -> bytes:
    return bytes([*rpc.protocol_version(), 0]) + bytes(24)


def _answer(conn: socket.socket, reply: bytes, size: int | None = None) -> None:
    conn.sendall(struct.pack("<Q", len(reply) if size is None else size) + reply)


def _lying(count: int, memories: list[tuple[int, int]]) -> Handler:
    """A worker whose handshake is right but whose device count or memory is not."""

    def handle(conn: socket.socket, done: threading.Event) -> None:
        while not done.is_set():
            cmd, payload = _request(conn)
            if cmd == 14:
                _answer(conn, _hello())
            elif cmd == 15:
                _answer(conn, struct.pack("<I", count))
            else:
                (device,) = struct.unpack("<I", payload)
                _answer(conn, struct.pack("<QQ", *memories[device]))

    return handle


def _probe_fails(handler: Handler, match: str) -> str:
    with _worker(handler) as address:
        with pytest.raises(EngineError, match=match) as caught:
            rpc.probe_worker(address, timeout=1.0)
        assert address in str(caught.value)
        return str(caught.value)


@pytest.mark.parametrize(
    ("count", "memories"),
    [
        (2**32 - 1, [(GB, GB)]),
        (0, []),
        (1, [(2**64 - 1, 2**64 - 1)]),  # 16 EiB: no device has that
        (1, [(8 * GB, 4 * GB)]),  # more free than in all
        (2, [(GB, 2 * GB), (2**63, 2**63)]),
    ],
)
def test_impossible_devices_are_refused(count: int, memories: list[tuple[int, int]]) -> None:
    _probe_fails(_lying(count, memories), "refused the llama.cpp RPC handshake")


def test_a_worker_with_a_plausible_large_device_is_accepted() -> None:
    with _worker(_lying(1, [(100 * GB, 141 * GB)])) as address:
        assert rpc.probe_worker(address, timeout=1.0).devices == ((100 * GB, 141 * GB),)


@pytest.mark.parametrize("size", [0, 27, 29, 2**64 - 1])
def test_a_hello_of_the_wrong_size_is_refused(size: int) -> None:
    def handle(conn: socket.socket, done: threading.Event) -> None:
        _request(conn)
        _answer(conn, _hello(), size)
        done.wait()

    _probe_fails(handle, "expected")


def test_a_worker_closing_mid_reply_is_refused() -> None:
    def handle(conn: socket.socket, done: threading.Event) -> None:
        _request(conn)
        conn.sendall(struct.pack("<Q", 28) + _hello()[:10])
        conn.shutdown(socket.SHUT_RDWR)

    message = _probe_fails(handle, "closed the connection")
    assert "Traceback" not in message


def test_a_worker_trickling_its_answer_times_out_within_the_probe_time() -> None:
    """A byte every 0.2 s keeps each read within the 1 s timeout; the whole answer must not be waited for."""

    def handle(conn: socket.socket, done: threading.Event) -> None:
        while not done.is_set():
            cmd, _payload = _request(conn)
            reply = {14: _hello(), 15: struct.pack("<I", 1)}.get(cmd, struct.pack("<QQ", GB, GB))
            for byte in struct.pack("<Q", len(reply)) + reply:
                if done.wait(0.2):
                    return
                conn.sendall(bytes([byte]))

    _probe_fails(handle, "did not answer the llama.cpp RPC handshake within 1 s")


def test_a_worker_that_never_answers_times_out() -> None:
    def handle(conn: socket.socket, done: threading.Event) -> None:
        done.wait()

    _probe_fails(handle, "within 1 s")


# --- `llamadesk worker` with values no worker can use -----------------------------------------------------


@pytest.mark.parametrize(
    "argv",
    [
        ["--port", "-1"],
        ["--port", "0"],
        ["--port", "1000000000"],
        ["--port", "1e9"],
        ["--threads", "0"],
        ["--threads", "-4"],
        ["--threads", "1000000000"],
        ["--threads", "many"],
    ],
)
def test_worker_refuses_numbers_out_of_range(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as caught:
        main(["worker", *argv])
    assert caught.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and argv[0] in err


@pytest.mark.parametrize("host", ["höst.invalid\u202e", "a\x00b", "x" * 300, "-", "..", "ünïcode"])
def test_worker_refuses_a_host_it_cannot_listen_on(host: str, capsys: pytest.CaptureFixture[str]) -> None:
    status = main(["worker", "--host", host])
    err = capsys.readouterr().err
    assert status != 0 and "Traceback" not in err
    assert "listen" in err or "address" in err
