"""Before a load with RPC workers the window probes them off the GUI thread: a worker that is down is
named and nothing loads; a worker too small for its share of the layers makes the window ask first.

Nothing here loads across a worker (llama.cpp's client would stay registered in the test process):
the small worker is a stand-in that answers the probe's handshake and memory questions only.
"""

from __future__ import annotations

import socket
import socketserver
import struct
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from pytestqt.qtbot import QtBot
from test_app_flows import LOAD_TIMEOUT, MakeWindow, write_settings

from llamadesk.engine import rpc

pytestmark = [pytest.mark.qt_log_ignore("does not support propagateSizeHints")]

TINY = 1 << 20  # the stand-in worker's free memory: far less than a share of the starter model


class _ProbeAnswers(socketserver.BaseRequestHandler):
    """Answers HELLO, the device count and each device's memory as a llama.cpp worker does."""

    def handle(self) -> None:
        sock = self.request
        while True:
            head = _recv(sock, 9)
            if head is None:
                return
            cmd, size = struct.unpack("<BQ", head)
            _recv(sock, size)
            if cmd == 14:  # HELLO: our protocol version, then the transport capabilities (none)
                reply = bytes([*rpc.protocol_version(), 0]) + bytes(24)
            elif cmd == 15:  # device count
                reply = struct.pack("<I", 1)
            else:  # a device's free and total memory
                reply = struct.pack("<QQ", TINY, TINY)
            sock.sendall(struct.pack("<Q", len(reply)) + reply)


def _recv(sock: socket.socket, size: int) -> bytes | None:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            return None
        data += chunk
    return data


@pytest.fixture
def tiny_worker() -> Iterator[str]:
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _ProbeAnswers)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def _closed_port() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{sock.getsockname()[1]}"


def test_a_worker_that_is_down_is_named_and_nothing_loads(
    qtbot: QtBot, make_window: MakeWindow, llamadesk_home: Path, starter_model: Path
) -> None:
    write_settings(llamadesk_home)
    window = make_window()
    down = _closed_port()
    window.settings.runtime.workers = [down]
    loads: list[str] = []
    window.controller.modelLoading.connect(loads.append)
    assert window.models.load_model(starter_model)
    qtbot.waitUntil(lambda: down in window.banner.text(), timeout=LOAD_TIMEOUT)
    assert window.banner.kind == "error" and "Can't reach worker" in window.banner.text()
    assert "Preferences → Model & hardware → Workers" in window.banner.text()
    qtbot.waitUntil(lambda: not window.models.loading, timeout=LOAD_TIMEOUT)
    assert loads == [] and window.controller.loaded is None


def test_a_worker_too_small_for_its_share_asks_first_with_the_split(
    qtbot: QtBot, make_window: MakeWindow, llamadesk_home: Path, starter_model: Path, tiny_worker: str
) -> None:
    write_settings(llamadesk_home)
    window = make_window()
    window.settings.runtime.workers = [tiny_worker]
    loads: list[str] = []
    window.controller.modelLoading.connect(loads.append)
    assert window.models.load_model(starter_model)
    qtbot.waitUntil(lambda: window.models.fit_warning is not None, timeout=LOAD_TIMEOUT)
    box = window.models.fit_warning
    assert box is not None
    assert "Spread over the workers" in box.text() and tiny_worker in box.informativeText()
    box.reject()  # Cancel: nothing loads
    qtbot.waitUntil(lambda: window.models.fit_warning is None, timeout=LOAD_TIMEOUT)
    assert loads == [] and window.controller.loaded is None
