"""`llamadesk chat` with a reasoning template: the real starter model, a real process, a real store.

The starter model does not reason, so the template override opens ``<think>`` in the generation
prompt the way DeepSeek-R1's does: everything the model writes is then thinking (it never writes
``</think>``; the reply ends at --max-tokens), which is what a reasoning model stopped mid-thought gives.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

OPEN_THINK = (
    "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n<think>\n{% endif %}"
)
CLOSED_THINK = OPEN_THINK.replace("<think>\n", "<think>\nNo need to think.\n</think>\n\n")


def run(*args: str, home: Path) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, LLAMADESK_HOME=str(home))
    return subprocess.run(
        [sys.executable, "-m", "llamadesk", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=180,
        stdin=subprocess.DEVNULL,
    )


@pytest.mark.model
def test_reply_inside_think_is_reasoning_stored_apart(llamadesk_home: Path, tmp_path: Path) -> None:
    template = tmp_path / "think.jinja"
    template.write_text(OPEN_THINK, encoding="utf-8")
    common = ("chat", "--template", str(template), "--seed", "7", "--max-tokens", "8")
    result = run(*common, "--json", "--new", "Name a fruit.", home=llamadesk_home)
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["reasoning"].strip() and data["text"] == ""
    assert data["stop_reason"] == "max_tokens"
    shown = run("conversations", "show", str(data["conversation_id"]), "--json", home=llamadesk_home)
    reply = json.loads(shown.stdout)["tree"][-1]
    assert reply["thinking"] == data["reasoning"] and reply["content"] == ""
    assert reply["stats"]["thinking_s"] >= 0

    printed = run(*common, "--show-thinking", "Name a fruit.", home=llamadesk_home)
    assert printed.returncode == 0, printed.stderr
    assert data["reasoning"] in printed.stdout and "\x1b[" not in printed.stdout  # a pipe: not dimmed
    hidden = run(*common, "Name a fruit.", home=llamadesk_home)
    assert data["reasoning"] not in hidden.stdout


@pytest.mark.model
def test_closed_think_in_the_prompt_leaves_the_reply_an_answer(llamadesk_home: Path, tmp_path: Path) -> None:
    template = tmp_path / "closed.jinja"
    template.write_text(CLOSED_THINK, encoding="utf-8")
    result = run(
        "chat", "--template", str(template), "--seed", "7", "--max-tokens", "8", "--json", "Name a fruit.",
        home=llamadesk_home,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["reasoning"] == "" and data["text"].strip()
