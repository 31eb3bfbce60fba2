"""One model across two llama.cpp RPC workers on 127.0.0.1, each a `python -m llamadesk worker` process.

The client side runs in subprocesses too: registration lasts for a process, and llama.cpp's RPC
client ends its process when a worker goes away, so each scenario gets a fresh one.
"""

from __future__ import annotations

import http.server
import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from llamadesk.engine import rpc
from llamadesk.engine.engine import Engine
from llamadesk.engine.errors import EngineError
from llamadesk.settings import RuntimeSettings

pytestmark = pytest.mark.skipif(not rpc.rpc_available(), reason="llama-cpp-python built without RPC")

READY_S = 60.0
END = "<|im_end|>"

# Loads the starter model locally, then across the workers twice (a model switch), then locally again,
# and prints the greedy replies and what was registered.
CLIENT = r"""
import json, sys
import logging
from llamadesk.engine import rpc
from llamadesk.engine.engine import Engine
from llamadesk.engine.planner import split_layers
from llamadesk.settings import GenerationSettings, RuntimeSettings

model, workers = sys.argv[1], sys.argv[2].split(",")
prompt = "<|im_start|>user\nName three colours.<|im_end|>\n<|im_start|>assistant\n"
greedy = GenerationSettings(temperature=0.0, seed=7, max_tokens=24)
engine = Engine()
out = {}

devices = []  # per load: the device llama.cpp put each layer on (the output layer last)

class Assigned(logging.Handler):
    def emit(self, record):
        message = record.getMessage()
        if "assigned to device" in message:
            devices[-1].append(message.split("assigned to device ")[1].split(",")[0])

llama_log = logging.getLogger("llama.cpp")
llama_log.setLevel(logging.DEBUG)
llama_log.addHandler(Assigned())

def reply(runtime):
    devices.append([])
    engine.load(model, runtime)
    text = "".join(engine.generate(prompt, greedy, extra_stop=["<|im_end|>"]))
    engine.unload()
    return text

out["local"] = reply(RuntimeSettings(n_ctx=512, n_threads=1))
out["workers"] = reply(RuntimeSettings(n_ctx=512, n_threads=1, workers=workers))
out["in_use"] = list(rpc.workers_in_use())
dev_count = rpc._libs().ggml.ggml_backend_dev_count()
out["again"] = reply(RuntimeSettings(n_ctx=512, n_threads=1, workers=workers))
out["devices_added_by_switch"] = rpc._libs().ggml.ggml_backend_dev_count() - dev_count
out["registered"] = list(rpc.registered_workers())
out["local_after"] = reply(RuntimeSettings(n_ctx=512, n_threads=1))
out["in_use_after"] = list(rpc.workers_in_use())
out["devices"] = devices
# What the planner said before loading, as llama.cpp names the workers' devices (RPC0, RPC1, ...).
owners = split_layers(30, [w.free for w in rpc.probe_workers(workers)])
out["planned"] = [f"RPC{owner}" for owner in owners]
print(json.dumps(out))
"""


# Loads across one worker, then kills it (by its process id) after the first piece of the reply.
LOSE_WORKER = r"""
import os, signal, sys
from llamadesk.engine.engine import Engine
from llamadesk.settings import GenerationSettings, RuntimeSettings

model, worker, pid = sys.argv[1], sys.argv[2], int(sys.argv[3])
engine = Engine()
engine.load(model, RuntimeSettings(n_ctx=512, n_threads=1, workers=[worker]))
prompt = "<|im_start|>user\nTell a long story.<|im_end|>\n<|im_start|>assistant\n"
for number, piece in enumerate(engine.generate(prompt, GenerationSettings(temperature=0.0, max_tokens=200))):
    if number == 0:
        os.kill(pid, signal.SIGKILL)
print("survived")
"""


class _QuietHandler(http.server.BaseHTTPRequestHandler):
    """A plain HTTP server's handler that keeps its request log off the test output."""

    def log_message(self, format: str, *args: object) -> None:
        pass


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _env(home: Path) -> dict[str, str]:
    return dict(os.environ, LLAMADESK_HOME=str(home))


def _start_worker(home: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = _free_port()
    log = home / f"worker-{port}.log"
    with log.open("w") as out:  # a file, not a pipe nobody reads: llama.cpp may log a lot
        proc = subprocess.Popen(
            [sys.executable, "-m", "llamadesk", "worker", "--port", str(port), "--threads", "1"],
            env=_env(home),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    address = f"127.0.0.1:{port}"
    _wait_ready(proc, address, log)
    return proc, address


def _wait_ready(
    proc: subprocess.Popen[bytes] | subprocess.Popen[str], address: str, log: Path | None = None
) -> None:
    """Until the worker answers the handshake: its port opens inside llama.cpp, which says nothing then."""
    deadline = time.monotonic() + READY_S
    while True:
        try:
            rpc.probe_worker(address, timeout=5)
            return
        except EngineError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                output = log.read_text()[-2000:] if log else ""
                raise AssertionError(f"worker {address} did not start: {output}") from None
            time.sleep(0.1)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        proc.wait(30)


@pytest.fixture(scope="module")
def workers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[str]]:
    home = tmp_path_factory.mktemp("workers")
    started = [_start_worker(home) for _ in range(2)]
    yield [address for _proc, address in started]
    for proc, _address in started:
        _stop(proc)


def test_split_model_gives_the_local_greedy_text(starter_model: Path, workers: list[str]) -> None:
    result = subprocess.run(
        [sys.executable, "-c", CLIENT, str(starter_model), ",".join(workers)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert out["local"].strip()
    assert out["workers"] == out["local"]
    assert out["again"] == out["local"]
    assert out["in_use"] == workers
    assert out["devices_added_by_switch"] == 0  # a model switch registers nothing twice
    assert out["registered"] == workers
    assert out["local_after"] == out["local"] and out["in_use_after"] == []
    local, spread, again, local_after = out["devices"]
    assert local == local_after == ["CPU"] * 31  # 30 layers and the output; later loads leave the workers out
    assert spread == again == out["planned"]  # the split the planner announced
    assert {"RPC0", "RPC1"} <= set(spread)


def test_cli_chat_plans_the_split_then_answers(
    starter_model: Path, workers: list[str], tmp_path: Path
) -> None:
    args = [
        "--ctx",
        "512",
        "--temperature",
        "0",
        "--seed",
        "7",
        "--max-tokens",
        "8",
        "-m",
        str(starter_model),
    ]
    result = subprocess.run(
        [sys.executable, "-m", "llamadesk", "chat", "--workers", ",".join(workers), *args, "Hi"],
        env=_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip()
    assert f"on {workers[0]}" in result.stderr and f"+ output on {workers[1]}" in result.stderr


def test_killed_worker_is_named_before_loading(starter_model: Path, tmp_path: Path) -> None:
    proc, address = _start_worker(tmp_path)
    proc.kill()
    proc.wait(30)
    engine = Engine()
    with pytest.raises(EngineError, match=rf"Can't reach worker {address} .*llamadesk worker"):
        engine.load(starter_model, RuntimeSettings(n_ctx=512, workers=[address]))
    assert not engine.is_loaded
    assert address not in rpc.registered_workers()  # llama.cpp never saw it


def test_cli_names_the_dead_worker_and_loads_nothing(
    starter_model: Path, workers: list[str], tmp_path: Path
) -> None:
    dead = f"127.0.0.1:{_free_port()}"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "llamadesk",
            "chat",
            "--workers",
            f"{workers[0]},{dead}",
            "-m",
            str(starter_model),
        ],
        env=_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=120,
        input="Hi",
    )
    assert result.returncode == 2
    assert f"Can't reach worker {dead}" in result.stderr and "Traceback" not in result.stderr
    assert result.stdout == ""


def test_wrong_addresses_fail_fast(starter_model: Path) -> None:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _QuietHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    http_address = f"127.0.0.1:{server.server_address[1]}"
    engine = Engine()
    try:
        with pytest.raises(EngineError, match=r"Can't reach worker 127\.0\.0\.1:1 "):
            engine.load(starter_model, RuntimeSettings(n_ctx=512, workers=["127.0.0.1:1"]))
        with pytest.raises(EngineError, match=rf"Worker {http_address} .*did not answer the llama.cpp RPC"):
            engine.load(starter_model, RuntimeSettings(n_ctx=512, workers=[http_address]))
    finally:
        server.shutdown()
        server.server_close()
    assert not engine.is_loaded


def test_a_bare_engine_losing_a_worker_ends_the_process_with_a_message(
    starter_model: Path, tmp_path: Path
) -> None:
    # llama.cpp's RPC client aborts the process when a connection breaks (GGML_ABORT). Without the
    # inference service's lost-worker handler (a bare Engine, as here) that still ends the process;
    # LlamaDesk's last words then name the workers instead of a backtrace. test_rpc_lost.py covers the
    # service, which survives.
    proc, address = _start_worker(tmp_path)
    try:
        result = subprocess.run(
            [sys.executable, "-c", LOSE_WORKER, str(starter_model), address, str(proc.pid)],
            capture_output=True,
            text=True,
            timeout=300,
        )
    finally:
        _stop(proc)
    assert result.returncode != 0 and "survived" not in result.stdout
    assert f"llamadesk: fatal: the connection to an RPC worker broke ({address})" in result.stderr
    assert "Remote RPC server crashed" in result.stderr
    assert "Preferences → Model & hardware → Workers" in result.stderr


def test_worker_on_another_address_warns_and_stops_on_sigterm(tmp_path: Path) -> None:
    port = _free_port()
    command = [sys.executable, "-m", "llamadesk", "worker", "--host", "127.0.0.2", "--port", str(port)]
    with subprocess.Popen(
        [*command, "--threads", "1"],
        env=_env(tmp_path),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    ) as proc:
        assert proc.stderr is not None
        lines = []
        for line in proc.stderr:  # the warning comes first, then what is served
            lines.append(line)
            if "note: worker on" in line:
                break
        text = "".join(lines)
        assert "no authentication and no encryption" in text and "trusted network or a VPN" in text
        assert f"worker on 127.0.0.2:{port}, serving CPU" in text
        _wait_ready(proc, f"127.0.0.2:{port}")  # it serves while the warning stands
        proc.terminate()
        rest = proc.stderr.read()
        assert proc.wait(30) == 0 and "worker stopped" in rest


def test_worker_refuses_a_busy_port_and_an_unknown_device(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        taken = subprocess.run(
            [sys.executable, "-m", "llamadesk", "worker", "--port", str(port)],
            env=_env(tmp_path),
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert taken.returncode == 2 and f"can't listen on 127.0.0.1:{port}" in taken.stderr
    unknown = subprocess.run(
        [sys.executable, "-m", "llamadesk", "worker", "--port", str(_free_port()), "--device", "NOPE0"],
        env=_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert unknown.returncode == 2 and "No device named 'NOPE0' here. Devices: CPU" in unknown.stderr
    assert "Traceback" not in taken.stderr + unknown.stderr


def test_worker_memory_through_llama_cpp_matches_the_probe(workers: list[str]) -> None:
    free, total = rpc.worker_memory(workers[0])
    probed = rpc.probe_worker(workers[0])
    assert total == probed.total > 0 and 0 < free <= total
