"""The CLI as a user runs it: a real process, real model, one-line errors with exit status 2."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from llamadesk.engine import detect_hardware, inspect_gguf, plan_fit


def run(
    *args: str, home: Path, timeout: float = 180, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, LLAMADESK_HOME=str(home))
    return subprocess.run(
        [sys.executable, "-m", "llamadesk", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
        input=stdin,
        stdin=None if stdin is not None else subprocess.DEVNULL,
    )


def test_inspect_json(starter_model: Path, llamadesk_home: Path) -> None:
    result = run("inspect", str(starter_model), "--json", home=llamadesk_home)
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["architecture"] == "llama" and data["quantization"] == "Q4_1"
    assert data["context_length"] == 8192 and data["chat_template"] is True
    assert data["fit"]["verdict"] in {"cpu", "gpu", "hybrid"}
    hardware = detect_hardware()  # this build's backend: CPU here, CUDA or Metal on those builds
    assert data["hardware"]["backend"] == hardware.backend
    assert data["hardware"]["gpu_offload"] is hardware.gpu_offload


def test_inspect_text(starter_model: Path, llamadesk_home: Path) -> None:
    result = run("inspect", str(starter_model), home=llamadesk_home)
    assert result.returncode == 0
    assert "Quantization" in result.stdout and "Q4_1" in result.stdout
    label = plan_fit(inspect_gguf(starter_model), detect_hardware()).label  # "Fits in RAM" on a CPU build
    assert re.search(rf"^Fit +{re.escape(label)}: ", result.stdout, re.MULTILINE)


@pytest.mark.model
def test_chat_json_is_repeatable(llamadesk_home: Path) -> None:
    args = ("chat", "-m", "starter", "--seed", "42", "--max-tokens", "12", "--json", "Name a fruit.")
    first = run(*args, home=llamadesk_home)
    second = run(*args, home=llamadesk_home)
    assert first.returncode == 0, first.stderr
    data = json.loads(first.stdout)
    assert set(data) >= {
        "text",
        "prompt_tokens",
        "cached_tokens",
        "completion_tokens",
        "ttft_s",
        "tokens_per_s",
        "stop_reason",
        "model",
    }
    assert data["text"] and 0 < data["completion_tokens"] <= 12
    assert data["stop_reason"] in {"eos", "max_tokens"}
    assert json.loads(second.stdout)["text"] == data["text"]
    assert "Traceback" not in first.stderr


@pytest.mark.model
def test_chat_streams_text(llamadesk_home: Path) -> None:
    result = run(
        "chat",
        "-m",
        "starter",
        "--max-tokens",
        "8",
        "--system",
        "Answer briefly.",
        "Hello!",
        home=llamadesk_home,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip()
    assert "<|im_end|>" not in result.stdout


@pytest.mark.model
def test_chat_reads_the_message_from_a_pipe(llamadesk_home: Path) -> None:
    args = ("chat", "--seed", "7", "--max-tokens", "8", "--json")
    given = run(*args, "Name a fruit.", home=llamadesk_home)
    piped = run(*args, home=llamadesk_home, stdin="Name a fruit.\n")  # echo "Name a fruit." | llamadesk chat
    dashed = run(*args, "-", home=llamadesk_home, stdin="Name a fruit.\n")
    assert given.returncode == piped.returncode == dashed.returncode == 0, piped.stderr + dashed.stderr
    expected = json.loads(given.stdout)
    for result in (piped, dashed):
        data = json.loads(result.stdout)
        # the same prompt as typing it, not the literal "-" nor an extra trailing newline
        assert (data["prompt_tokens"], data["text"]) == (expected["prompt_tokens"], expected["text"])


@pytest.mark.parametrize("stdin", ["", "  \n\n"])
def test_chat_refuses_an_empty_message(stdin: str, llamadesk_home: Path) -> None:
    for result in (run("chat", home=llamadesk_home, stdin=stdin), run("chat", "  ", home=llamadesk_home)):
        assert result.returncode == 2
        assert "llamadesk: error: the message is empty" in result.stderr
        assert result.stdout == ""


@pytest.mark.model
@pytest.mark.parametrize("problem", ["broken model", "message too long"])
def test_chat_new_that_cannot_start_stores_no_conversation(
    problem: str, llamadesk_home: Path, tmp_path: Path
) -> None:
    if problem == "broken model":
        bad = tmp_path / "broken.gguf"
        bad.write_text("these are my notes, not a model")
        args: tuple[str, ...] = ("-m", str(bad), "hi")
    else:
        args = ("--ctx", "256", "word " * 600)
    result = run("chat", "--new", *args, home=llamadesk_home)
    assert result.returncode == 2 and "llamadesk: error:" in result.stderr
    listed = run("conversations", "list", "--json", home=llamadesk_home)
    assert json.loads(listed.stdout) == []  # no empty "New chat" left in the history


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("chat", "-m", "/no/such/model.gguf", "hi"), "model file not found"),
        (("chat", "-m", "unknown-model", "hi"), "no model named 'unknown-model'"),
        (("chat", "-m", "starter", "--temperature", "7", "hi"), "temperature"),
        (("chat", "--max-tokens", "many", "hi"), "must be a whole number"),
        (("inspect", "{bad}"), "not a GGUF model file"),
        (("bogus-command",), "invalid choice"),
    ],
)
def test_errors_are_one_line(
    args: tuple[str, ...], message: str, llamadesk_home: Path, tmp_path: Path
) -> None:
    bad = tmp_path / "notes.gguf"
    bad.write_text("these are my notes, not a model")
    result = run(*(a.replace("{bad}", str(bad)) for a in args), home=llamadesk_home)
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().count("\n") <= 2


def test_version(llamadesk_home: Path) -> None:
    result = run("--version", home=llamadesk_home)
    assert result.returncode == 0
    assert result.stdout.startswith("LlamaDesk ") and "llama-cpp-python 0.3." in result.stdout
    assert "GPU backends:" in result.stdout


@pytest.mark.model
def test_self_test_passes_and_fails_clearly(llamadesk_home: Path, tmp_path: Path) -> None:
    ok = run("--self-test", home=llamadesk_home)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "[ok] model loads and generates" in ok.stdout and "self-test passed" in ok.stdout
    log_line = next(line for line in ok.stdout.splitlines() if line.startswith("Log file: "))
    log_path = Path(log_line.removeprefix("Log file: ").split(" (")[0])
    assert log_path.is_file() and log_path.is_relative_to(llamadesk_home)  # a bug report can carry it
    bad = tmp_path / "broken.gguf"
    bad.write_bytes(b"GGUF" + b"\0" * 64)
    failed = run("--self-test", str(bad), home=llamadesk_home)
    assert failed.returncode == 1
    assert (
        "[FAIL] model loads and generates" in failed.stdout
        and "Traceback" not in failed.stdout + failed.stderr
    )


@pytest.mark.model
def test_template_override_is_used_and_sandboxed(llamadesk_home: Path, tmp_path: Path) -> None:
    plain = tmp_path / "plain.jinja"
    plain.write_text("{% for m in messages %}{{ m.role }}: {{ m.content }}\n{% endfor %}assistant:")
    result = run("chat", "--template", str(plain), "--max-tokens", "4", "--json", "Hi", home=llamadesk_home)
    assert result.returncode == 0, result.stderr
    # "user: Hi\nassistant:" tokenizes to far fewer tokens than SmolLM2's own template with its system turn
    assert json.loads(result.stdout)["prompt_tokens"] < 12
    evil = tmp_path / "evil.jinja"
    evil.write_text("{{ cycler.__init__.__globals__.os.system('touch pwned') }}")
    result = run("chat", "--template", str(evil), "Hi", home=llamadesk_home)
    assert result.returncode == 2
    assert "refused for security reasons" in result.stderr
    assert not (Path.cwd() / "pwned").exists()


@pytest.mark.model
def test_chat_into_a_closed_pipe_keeps_the_reply_as_stopped(llamadesk_home: Path) -> None:
    # `llamadesk chat --new ... | head -c 10`: the reader goes away while the reply is being written.
    env = dict(os.environ, LLAMADESK_HOME=str(llamadesk_home))
    args = ["chat", "--new", "--seed", "1", "--max-tokens", "300", "Write a long story about a dragon."]
    with subprocess.Popen(
        [sys.executable, "-m", "llamadesk", *args],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    ) as process:
        assert process.stdout is not None and process.stderr is not None
        seen = process.stdout.read1(10)
        process.stdout.close()
        errors = process.stderr.read().decode()
        assert process.wait(timeout=180) == 0, errors
    assert seen and "Traceback" not in errors and "Exception ignored" not in errors
    shown = run("conversations", "show", "1", "--json", home=llamadesk_home)
    user, reply = json.loads(shown.stdout)["tree"]
    assert user["content"] == "Write a long story about a dragon."
    # finished as "stopped" with what was written, not left "streaming" (shown as interrupted later)
    assert reply["status"] == "stopped"
    assert reply["content"].encode().startswith(seen)


def test_chat_without_a_message_on_a_terminal_says_what_to_do(llamadesk_home: Path) -> None:
    pty = pytest.importorskip("pty")  # Unix terminals
    controller, terminal = pty.openpty()
    try:
        env = dict(os.environ, LLAMADESK_HOME=str(llamadesk_home))
        result = subprocess.run(
            [sys.executable, "-m", "llamadesk", "chat"],
            stdin=terminal,
            capture_output=True,
            text=True,
            env=env,
            timeout=60,  # it must not sit waiting for the terminal to type a message
        )
    finally:
        os.close(terminal)
        os.close(controller)
    assert result.returncode == 2
    assert "llamadesk: error: give a message" in result.stderr and "pipe one in" in result.stderr
