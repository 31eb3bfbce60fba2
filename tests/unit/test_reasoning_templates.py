"""Reasoning templates rendered with the Think switch on and off, and earlier replies' thinking.

Qwen3 and DeepSeek-R1 are the real templates (tests/data/templates). SmolLM3 and gpt-oss are
shortened versions written for these tests: they keep those templates' switching logic exactly
(SmolLM3's ``enable_thinking`` default, ``/think``/``/no_think`` in the system message and the empty
think block in the generation prompt; gpt-oss's ``reasoning_effort`` line and its channels) and drop
the tool and metadata sections.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from llamadesk.chat.reasoning import split_reasoning, starts_in_thinking
from llamadesk.chat.templates import apply_thinking, chat_format_for

TEMPLATES = Path(__file__).resolve().parents[1] / "data" / "templates"
QWEN3 = (TEMPLATES / "qwen3.jinja").read_text(encoding="utf-8")
DEEPSEEK_R1 = (TEMPLATES / "deepseek_r1.jinja").read_text(encoding="utf-8")

SMOLLM3 = """{%- if enable_thinking is not defined -%}{%- set enable_thinking = true -%}{%- endif -%}
{%- if enable_thinking -%}{%- set reasoning_mode = "/think" -%}
{%- else -%}{%- set reasoning_mode = "/no_think" -%}{%- endif -%}
{%- if messages[0].role == "system" -%}
  {%- set system_message = messages[0].content -%}
  {%- if "/no_think" in system_message -%}{%- set reasoning_mode = "/no_think" -%}
  {%- elif "/think" in system_message -%}{%- set reasoning_mode = "/think" -%}{%- endif -%}
  {%- set custom_instructions = system_message.replace("/no_think", "").replace("/think", "").rstrip() -%}
{%- endif -%}
{{- "<|im_start|>system\\n" -}}
{{- "Reasoning Mode: " + reasoning_mode + "\\n\\n" -}}
{%- if custom_instructions -%}{{- custom_instructions + "\\n\\n" -}}{%- endif -%}
{{- "<|im_end|>\\n" -}}
{%- for message in messages -%}
  {%- if message.role == "user" -%}
    {{ "<|im_start|>user\\n" + message.content + "<|im_end|>\\n" }}
  {%- elif message.role == "assistant" -%}
    {%- if reasoning_mode == "/think" -%}
      {{ "<|im_start|>assistant\\n" + message.content.lstrip("\\n") + "<|im_end|>\\n" }}
    {%- else -%}
      {{ "<|im_start|>assistant\\n" + "<think>\\n\\n</think>\\n"
         + message.content.lstrip("\\n") + "<|im_end|>\\n" }}
    {%- endif -%}
  {%- endif -%}
{%- endfor -%}
{%- if add_generation_prompt -%}
  {%- if reasoning_mode == "/think" -%}{{ "<|im_start|>assistant\\n" }}
  {%- else -%}{{ "<|im_start|>assistant\\n" + "<think>\\n\\n</think>\\n" }}{%- endif -%}
{%- endif -%}
"""

GPT_OSS = """{%- if not reasoning_effort is defined %}{%- set reasoning_effort = "medium" %}{%- endif %}
{{- "<|start|>system<|message|>You are ChatGPT, a large language model trained by OpenAI.\\n" }}
{{- "Reasoning: " + reasoning_effort + "\\n\\n" }}
{{- "# Valid channels: analysis, commentary, final. Channel must be included for every message.<|end|>" }}
{%- for message in messages -%}
  {%- if message.role == "user" -%}
    {{- "<|start|>user<|message|>" + message.content + "<|end|>" }}
  {%- elif message.role == "assistant" -%}
    {%- if message.thinking and loop.last -%}
      {{- "<|start|>assistant<|channel|>analysis<|message|>" + message.thinking + "<|end|>" }}
    {%- endif -%}
    {{- "<|start|>assistant<|channel|>final<|message|>" + message.content + "<|end|>" }}
  {%- endif -%}
{%- endfor -%}
{%- if add_generation_prompt -%}<|start|>assistant{%- endif -%}
"""

CHAT = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "2+2?"},
    {"role": "assistant", "content": "4", "thinking": "Adding two and two."},
    {"role": "user", "content": "And 3+3?"},
]


def _render(template: str, choice: str, messages: list[dict[str, str]] | None = None) -> str:
    fmt = chat_format_for(template, "<s>", "</s>")
    prepared, variables = apply_thinking(template, messages or CHAT, choice)
    return fmt.render(prepared, **variables)


def test_qwen3_switches_with_enable_thinking() -> None:
    assert chat_format_for(QWEN3, "", "").thinking_control == "enable_thinking"
    on, off, default = _render(QWEN3, "on"), _render(QWEN3, "off"), _render(QWEN3, "")
    assert on.endswith("<|im_start|>assistant\n") and on == default
    assert off.endswith("<|im_start|>assistant\n<think>\n\n</think>\n\n")
    assert not starts_in_thinking(off) and not starts_in_thinking(on)
    # The earlier answer goes back without its thinking: Qwen3 shows reasoning only after the last question.
    assert "<|im_start|>assistant\n4<|im_end|>" in on and "Adding two and two" not in on


def test_qwen3_reads_thinking_of_replies_after_the_last_question() -> None:
    # A tool-calling turn: the reply after the last user message keeps its reasoning, as Qwen3 asks.
    messages = [
        {"role": "user", "content": "Weather?"},
        {"role": "assistant", "content": "Let me check.", "thinking": "Need the tool."},
    ]
    prompt = _render(QWEN3, "on", messages)
    assert "<think>\nNeed the tool.\n</think>\n\nLet me check." in prompt


def test_deepseek_r1_opens_think_and_cannot_switch() -> None:
    fmt = chat_format_for(DEEPSEEK_R1, "<｜begin▁of▁sentence｜>", "<｜end▁of▁sentence｜>")
    assert fmt.thinking_control == ""
    prompt = _render(DEEPSEEK_R1, "off")
    assert prompt == _render(DEEPSEEK_R1, "on")  # no switch: the choice changes nothing
    assert prompt.endswith("<｜Assistant｜><think>\n") and starts_in_thinking(prompt)
    assert "<｜Assistant｜>4<｜end▁of▁sentence｜>" in prompt and "Adding two" not in prompt
    reply = "The user adds 3 and 3.\n</think>\n\n6"
    assert split_reasoning(reply, start_in_thinking=starts_in_thinking(prompt)).answer == "6"


@pytest.mark.parametrize(("choice", "mode"), [("on", "/think"), ("off", "/no_think"), ("", "/think")])
def test_smollm3_switches_with_a_system_flag(choice: str, mode: str) -> None:
    assert chat_format_for(SMOLLM3, "", "").thinking_control == "flag"
    prompt = _render(SMOLLM3, choice)
    assert f"Reasoning Mode: {mode}\n" in prompt
    assert "Be brief.\n" in prompt and "/think\n\n<|im_end|>" not in prompt  # the flag is taken out again
    assert prompt.endswith("<think>\n\n</think>\n") is (mode == "/no_think")


def test_smollm3_flag_without_a_system_prompt() -> None:
    prompt = _render(SMOLLM3, "off", [{"role": "user", "content": "Hi"}])
    assert "Reasoning Mode: /no_think" in prompt and prompt.endswith("<think>\n\n</think>\n")


@pytest.mark.parametrize(
    ("choice", "effort"), [("low", "low"), ("high", "high"), ("off", "low"), ("", "medium")]
)
def test_gpt_oss_reasoning_effort(choice: str, effort: str) -> None:
    fmt = chat_format_for(GPT_OSS, "", "")
    assert fmt.thinking_control == "effort"
    assert "<|end|>" not in fmt.stop_strings  # it ends the thinking, not the reply
    prompt = _render(GPT_OSS, choice)
    assert f"Reasoning: {effort}\n" in prompt and prompt.endswith("<|start|>assistant")


def test_gpt_oss_reads_the_last_replys_thinking_from_its_field() -> None:
    prompt = _render(GPT_OSS, "", CHAT[:3])
    assert "<|channel|>analysis<|message|>Adding two and two.<|end|>" in prompt
    assert "<|channel|>final<|message|>4<|end|>" in prompt


def test_a_template_that_reads_no_thinking_never_gets_it() -> None:
    prepared, variables = apply_thinking("{{ messages }}", CHAT, "on")
    assert variables == {} and all("thinking" not in m for m in prepared)
    assert prepared[2] == {"role": "assistant", "content": "4"}


def test_preset_thinking_default_is_checked() -> None:
    from pydantic import ValidationError

    from llamadesk.settings import ModelPreset, Settings

    saved = Settings(presets={"qwen3": ModelPreset(thinking="off")}).model_dump_json()
    assert Settings.model_validate_json(saved).presets["qwen3"].thinking == "off"
    assert ModelPreset().thinking == ""  # the template's own default
    with pytest.raises(ValidationError):
        ModelPreset(thinking="maybe")  # type: ignore[arg-type]
