"""`llamadesk serve` as a user runs it: it serves, logs one line per request and stops cleanly on signals."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
from pathlib import Path

import openai
import pytest


def _start(*args: str) -> tuple[subprocess.Popen[str], str]:
    process = subprocess.Popen(
        [sys.executable, "-m", "llamadesk", "serve", "--port", "0", *args],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stderr is not None
    for line in process.stderr:
        found = re.search(r"at (http://127\.0\.0\.1:\d+/v1)", line)
        if found:
            return process, found.group(1)
    process.wait(30)
    pytest.fail(f"llamadesk serve did not start (exit status {process.returncode})")


def _stop(process: subprocess.Popen[str], how: signal.Signals) -> str:
    process.send_signal(how)
    _, rest = process.communicate(timeout=60)
    return rest


@pytest.mark.model
def test_serve_answers_logs_each_request_and_stops_on_sigterm(starter_model: Path) -> None:
    process, url = _start("-m", str(starter_model), "--ctx", "1024")
    try:
        with openai.OpenAI(base_url=url, api_key="unused", max_retries=0, timeout=120) as client:
            reply = client.chat.completions.create(
                model=starter_model.stem, messages=[{"role": "user", "content": "Hi"}], max_tokens=2
            )
        assert reply.choices[0].message.content is not None
    finally:
        rest = _stop(process, signal.SIGTERM)
    assert process.returncode == 0, rest
    assert re.search(r'"POST /v1/chat/completions" 200 [\d.]+ ms', rest), rest
    assert "stopping" in rest and "Traceback" not in rest


def test_serve_stops_on_ctrl_c_and_refuses_an_exposed_address_without_a_key() -> None:
    process, url = _start()
    with openai.OpenAI(base_url=url, api_key="unused", max_retries=0) as client:
        models = client.models.list()
    assert all(not m.model_extra or not m.model_extra.get("loaded") for m in models.data)
    rest = _stop(process, signal.SIGINT)
    assert process.returncode == 0 and "Traceback" not in rest, rest
    exposed = subprocess.run(
        [sys.executable, "-m", "llamadesk", "serve", "--host", "0.0.0.0", "--port", "0"],
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )
    assert exposed.returncode == 2
    assert "requires an API key" in exposed.stderr and "Traceback" not in exposed.stderr
