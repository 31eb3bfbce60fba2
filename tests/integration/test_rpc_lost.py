"""A worker killed mid-reply: the reply fails as "worker_lost" naming it, what was streamed stands, the
process lives on, and a reload without that worker answers as a local run does.

The client runs in a subprocess: worker registration lasts for a process, and the abandoned model
(with a parked llama.cpp thread) stays in it until it ends.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from test_rpc import _start_worker, _stop

from llamadesk.engine import rpc

pytestmark = pytest.mark.skipif(not rpc.rpc_available(), reason="llama-cpp-python built without RPC")

CLIENT = r"""
import json, os, signal, sys, threading
from llamadesk.engine import rpc
from llamadesk.engine.service import InferenceService
from llamadesk.engine.states import ConversationStates
from llamadesk.settings import GenerationSettings, RuntimeSettings

model, workers, victim_pid = sys.argv[1], sys.argv[2].split(","), int(sys.argv[3])
service = InferenceService(states=ConversationStates())
out = {}

def load(workers):
    job = service.load(model, RuntimeSettings(n_ctx=512, n_threads=1, workers=workers))
    job.wait()
    return job.error

out["load_error"] = str(load(workers) or "")

story = [{"role": "user", "content": "Tell a long story about a dragon and a lighthouse."}]
streamed, first, killed = [], threading.Event(), threading.Event()

def on_text(piece):
    streamed.append(piece)
    if not first.is_set():
        first.set()
        killed.wait()  # the next decode meets the dead worker

job = service.chat(story, GenerationSettings(temperature=0.0, max_tokens=200), on_text=on_text)
first.wait()
os.kill(victim_pid, signal.SIGKILL)
killed.set()
job.wait()
out["kind"] = job.error.kind if job.error else None
out["message"] = str(job.error or "")
out["streamed"] = "".join(streamed)
out["loaded_after"] = service.loaded is not None
out["lost"] = list(rpc.lost_workers())

greedy = GenerationSettings(temperature=0.0, max_tokens=24)
question = [{"role": "user", "content": "Name three colours."}]

def reply():
    job = service.chat(question, greedy)
    job.wait()
    return job.result.text if job.result else f"error: {job.error}"

survivors = [w for w in workers if w not in out["lost"]]
out["reload_error"] = str(load(survivors) or "")
out["in_use"] = list(rpc.workers_in_use())
out["split"] = reply()
# An embedding context never goes near the workers (the lost one would stall it for good).
from llamadesk.server.embeddings import EmbeddingService
embeddings = EmbeddingService()
try:
    out["embedding"] = len(embeddings.embed(model, ["a lighthouse"]).result(timeout=120).vectors[0])
except Exception as exc:
    print(json.dumps({"embedding": repr(exc)}), flush=True)
    os._exit(3)
embeddings.close()
out["in_use_after_embedding"] = list(rpc.workers_in_use())
out["reload_lost_error"] = str(load(workers) or "")
out["local_error"] = str(load([]) or "")
out["local"] = reply()
out["closed"] = service.close(timeout=30)
print(json.dumps(out), flush=True)
"""


def test_a_worker_killed_mid_reply_is_survived(starter_model: Path, tmp_path: Path) -> None:
    started = [_start_worker(tmp_path) for _ in range(2)]
    try:
        (victim, victim_address), (_other, other_address) = started
        result = subprocess.run(
            [
                sys.executable,
                "-c",
                CLIENT,
                str(starter_model),
                f"{victim_address},{other_address}",
                str(victim.pid),
            ],
            capture_output=True,
            text=True,
            timeout=600,
        )
    finally:
        for proc, _address in started:
            _stop(proc)
    assert result.returncode == 0, result.stderr[-3000:]  # no SIGABRT: the process lived and ended
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert out["load_error"] == ""
    assert out["kind"] == "worker_lost", out["message"]
    assert victim_address in out["message"] and other_address not in out["message"]
    assert "kept" in out["message"]
    assert out["streamed"]  # the first piece was streamed before the worker went
    assert out["loaded_after"] is False
    assert out["lost"] == [victim_address]
    assert out["reload_error"] == ""
    assert out["in_use"] == [other_address]
    assert out["embedding"] > 0 and out["in_use_after_embedding"] == [other_address]
    assert victim_address in out["reload_lost_error"]  # a lost worker is refused until restart
    assert out["local_error"] == ""
    assert out["local"].strip() and not out["local"].startswith("error:")
    assert out["split"] == out["local"]
    assert out["closed"] is True
