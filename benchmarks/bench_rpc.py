"""One model on this machine vs spread over two llama.cpp RPC workers on 127.0.0.1, side by side.

Starts two ``python -m llamadesk worker`` processes, then alternates loads of the same model in
this process: local (CPU or GPU as the build allows) and across both workers, ROUNDS times each,
same prompt, greedy, same context. Reports decode tokens/s and time to first token (a prompt of
about 300 tokens) with the ratios workers / local. Expect the workers to be slower: RPC adds
memory, not speed; every token's activations cross the network (here: loopback) between layers.

    python benchmarks/bench_rpc.py [MODEL.gguf] [--rounds N] [--tokens N]
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "desktop"))

from llamadesk.engine import Engine, rpc
from llamadesk.engine.errors import EngineError
from llamadesk.paths import starter_model_path
from llamadesk.settings import GenerationSettings, RuntimeSettings

PROMPT = "<|im_start|>user\n" + "Here is a list of facts about llamas. " * 40 + "Summarise them.<|im_end|>\n"
PROMPT += "<|im_start|>assistant\n"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _start_worker(home: str, threads: int) -> tuple[subprocess.Popen[bytes], str]:
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "llamadesk", "worker", "--port", str(port), "--threads", str(threads)],
        env=dict(os.environ, LLAMADESK_HOME=home),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    address = f"127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:  # the port opens inside llama.cpp, which says nothing when it does
        try:
            rpc.probe_worker(address, timeout=5)
            return proc, address
        except EngineError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                raise SystemExit(f"worker {address} did not start") from None
            time.sleep(0.1)


def _run(engine: Engine, model: Path, runtime: RuntimeSettings, tokens: int) -> tuple[float, float, str]:
    engine.load(model, runtime)
    try:
        gen = engine.generate(PROMPT, GenerationSettings(temperature=0.0, seed=1, max_tokens=tokens))
        text = "".join(gen)
        assert gen.stats is not None
        return gen.stats.ttft_s, gen.stats.tokens_per_s, text
    finally:
        engine.unload()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", nargs="?", help="a GGUF file (default: the starter model)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--threads", type=int, help="CPU threads, locally and in each worker (default: half)")
    args = parser.parse_args()
    if not rpc.rpc_available():
        print("skipped: this llama-cpp-python was built without RPC (make setup builds it with RPC)")
        return 0
    model = Path(args.model) if args.model else starter_model_path()
    if model is None:
        print("the starter model is missing: run make setup")
        return 1
    # The same threads locally and in each worker: layers run one device after another, so only one
    # worker computes at a time and both sides get the same compute.
    threads = args.threads or max(1, (os.cpu_count() or 2) // 2)
    with tempfile.TemporaryDirectory() as home:
        started = [_start_worker(home, threads) for _ in range(2)]
        workers = [address for _proc, address in started]
        try:
            engine = Engine()
            local_rt = RuntimeSettings(n_ctx=1024, n_threads=threads)
            worker_rt = RuntimeSettings(n_ctx=1024, n_threads=threads, workers=workers)
            local: list[tuple[float, float]] = []
            remote: list[tuple[float, float]] = []
            texts = set()
            for _ in range(args.rounds):  # alternate, so drift in the machine's load hits both alike
                ttft, tps, text = _run(engine, model, local_rt, args.tokens)
                local.append((ttft, tps))
                texts.add(("local", text))
                ttft, tps, text = _run(engine, model, worker_rt, args.tokens)
                remote.append((ttft, tps))
                texts.add(("workers", text))
        finally:
            for proc, _address in started:
                proc.terminate()
                proc.wait(30)
    l_ttft = statistics.median(t for t, _ in local)
    l_tps = statistics.median(s for _, s in local)
    r_ttft = statistics.median(t for t, _ in remote)
    r_tps = statistics.median(s for _, s in remote)
    same = len({text for _where, text in texts}) == 1
    print(f"model: {model.name}; {args.rounds} rounds, {args.tokens} tokens, greedy; {threads} CPU thread(s)")
    print(f"locally, and in each of two workers on 127.0.0.1 ({os.cpu_count()} logical cores, shared)")
    print(f"{'':24}{'local':>12}{'2 workers':>12}{'workers/local':>16}")
    print(f"{'decode tokens/s':24}{l_tps:12.1f}{r_tps:12.1f}{r_tps / l_tps:16.2f}")
    print(f"{'time to first token s':24}{l_ttft:12.3f}{r_ttft:12.3f}{r_ttft / l_ttft:16.2f}")
    print(f"same greedy text local and across workers: {'yes' if same else 'NO'}")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
