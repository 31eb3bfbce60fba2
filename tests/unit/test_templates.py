"""Chat templates of real model families render exactly as their authors document.

The templates under tests/data/templates/ are the real ones the models ship; expected.json holds,
for each, the prompt the model's authors or llama.cpp's reference tests document for one fixed
conversation (sources are cited per family in that file). None of the expected strings were
produced by LlamaDesk's renderer.
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from llamadesk.chat import (
    CHATML_TEMPLATE,
    ChatFormat,
    TemplateError,
    chat_format_for,
    render_prompt,
)
from llamadesk.chat.templates import supports_system_role
from llamadesk.errors import LlamaDeskError

DATA = Path(__file__).resolve().parents[1] / "data" / "templates"
DOC: dict[str, Any] = json.loads((DATA / "expected.json").read_text(encoding="utf-8"))
CONVERSATION: list[dict[str, str]] = DOC["conversation"]
FAMILIES: dict[str, dict[str, Any]] = DOC["families"]


def template(family: str) -> str:
    return (DATA / FAMILIES[family]["template"]).read_text(encoding="utf-8")


def fmt(family: str) -> ChatFormat:
    case = FAMILIES[family]
    return chat_format_for(template(family), case["bos_token"], case["eos_token"])


def test_at_least_twelve_families_are_covered() -> None:
    documented = [name for name, case in FAMILIES.items() if case["expected"] is not None]
    assert len(documented) >= 12
    for name in FAMILIES:
        assert (DATA / f"{name}.jinja").is_file()


@pytest.mark.parametrize("family", [f for f, case in FAMILIES.items() if case["expected"] is not None])
def test_real_template_renders_the_documented_prompt(family: str) -> None:
    case = FAMILIES[family]
    prompt = render_prompt(
        template(family), CONVERSATION, bos_token=case["bos_token"], eos_token=case["eos_token"]
    )
    assert prompt == case["expected"]


@pytest.mark.parametrize("path", sorted(DATA.glob("*.jinja")), ids=lambda path: path.stem)
def test_every_real_template_renders_within_the_compile_limits(path: Path) -> None:
    case = FAMILIES[path.stem]
    prompt = render_prompt(
        path.read_text(encoding="utf-8"),
        CONVERSATION,
        bos_token=case["bos_token"],
        eos_token=case["eos_token"],
    )
    assert CONVERSATION[-1]["content"] in prompt


def test_llama_3_2_writes_todays_date_through_strftime_now() -> None:
    before = datetime.now()
    prompt = fmt("llama3_2").render(CONVERSATION)
    after = datetime.now()
    dates = {before.strftime("%d %b %Y"), after.strftime("%d %b %Y")}
    expected = {
        FAMILIES["llama3_1"]["expected"].replace("Today Date: 26 Jul 2024", f"Today Date: {date}")
        for date in dates
    }
    assert prompt in expected


def test_llama_3_1_uses_a_date_passed_as_a_variable() -> None:
    prompt = fmt("llama3_1").render(CONVERSATION[:2], date_string="01 Jan 2025")
    assert "Today Date: 01 Jan 2025\n\n" in prompt


def test_llama_3_1_tools_are_written_as_indented_json() -> None:
    tools = [{"type": "function", "function": {"name": "météo", "description": "Weather <now>"}}]
    prompt = fmt("llama3_1").render(CONVERSATION[:2], tools=tools)
    assert "Environment: ipython\n" in prompt
    # tojson(indent=4) as Hugging Face defines it: keys in order, non-ASCII kept, no HTML escaping.
    assert '{\n    "type": "function",\n    "function": {\n        "name": "météo"' in prompt
    assert '"description": "Weather <now>"' in prompt


@pytest.mark.parametrize("family", ["gemma2", "mistral_v1", "phi3"])
def test_templates_that_refuse_or_drop_system_get_it_merged(family: str) -> None:
    assert not supports_system_role(template(family))
    prompt = fmt(family).render(CONVERSATION)
    assert "You are a helpful assistant\nHello" in prompt
    assert prompt.count("You are a helpful assistant") == 1


@pytest.mark.parametrize(
    "family", ["chatml", "llama3_1", "gemma3", "qwen3", "mistral_v3_tekken", "mistral_v7"]
)
def test_templates_with_a_system_role_render_it_themselves(family: str) -> None:
    assert supports_system_role(template(family))


def test_gemma_renders_a_conversation_without_system_untouched() -> None:
    prompt = fmt("gemma2").render([*CONVERSATION[1:3], {"role": "user", "content": "Next"}])
    assert prompt == (
        "<bos><start_of_turn>user\nHello<end_of_turn>\n<start_of_turn>model\nHi there<end_of_turn>\n"
        "<start_of_turn>user\nNext<end_of_turn>\n<start_of_turn>model\n"
    )


def test_strict_alternation_templates_get_back_to_back_turns_joined() -> None:
    messages = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "First try"},
        {"role": "user", "content": "Second try"},
    ]
    prompt = fmt("gemma2").render(messages)
    assert prompt == (
        "<bos><start_of_turn>user\nBe brief.\nFirst try\n\nSecond try<end_of_turn>\n<start_of_turn>model\n"
    )


def test_qwen3_enable_thinking_reaches_the_template() -> None:
    qwen3 = fmt("qwen3")
    thinking_off = qwen3.render(CONVERSATION, enable_thinking=False)
    assert thinking_off == FAMILIES["qwen3"]["expected"] + "<think>\n\n</think>\n\n"
    assert qwen3.render(CONVERSATION, enable_thinking=True) == FAMILIES["qwen3"]["expected"]


def test_default_system_prompts_appear_when_the_user_sets_none() -> None:
    smol = fmt("smollm2").render([{"role": "user", "content": "Hi"}])
    assert smol == (
        "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n"
        "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
    )
    qwen = fmt("qwen2_5").render([{"role": "user", "content": "Hi"}])
    assert qwen.startswith("<|im_start|>system\nYou are Qwen, created by Alibaba Cloud.")


def test_add_generation_prompt_false_leaves_the_assistant_header_out() -> None:
    prompt = render_prompt(CHATML_TEMPLATE, CONVERSATION[:2], add_generation_prompt=False)
    assert prompt.endswith("<|im_start|>user\nHello<|im_end|>\n")


# Templates that render each turn on its own: a shorter conversation's prompt (without the
# generation prompt) is a prefix of a longer one's, so llama.cpp can reuse its KV cache.
# Not so for Qwen3 (the last assistant turn gets a <think> block until a newer user turn
# arrives), Mistral v3 (the system prompt moves to the last user turn) or Phi-3.5 (EOS at the end
# when add_generation_prompt is false).
PREFIX_STABLE = [
    "chatml", "smollm2", "llama3_1", "qwen2_5", "gemma2", "gemma3", "phi4", "command_r",
    "granite3", "mistral_v1", "mistral_v7", "deepseek_r1",
]  # fmt: skip


@pytest.mark.parametrize("family", PREFIX_STABLE)
def test_prompt_of_a_shorter_conversation_is_a_prefix(family: str) -> None:
    chat = fmt(family)
    full = chat.render(CONVERSATION)
    for k in range(2, len(CONVERSATION) + 1):
        shorter = chat.render(CONVERSATION[:k], add_generation_prompt=False)
        assert full.startswith(shorter), f"{family}: messages[:{k}] is not a prefix"


# ---------------------------------------------------------------------------------------- errors


def test_template_error_is_a_llamadesk_error() -> None:
    assert issubclass(TemplateError, LlamaDeskError)


def test_syntax_error_names_the_line() -> None:
    with pytest.raises(TemplateError, match=r"syntax error on line 3"):
        render_prompt("{{ bos_token }}\n{% for m in messages %}\n{{ m.content }\n{% endfor %}", CONVERSATION)


def test_raise_exception_text_reaches_the_user() -> None:
    with pytest.raises(TemplateError, match="rejected the conversation: Tools are not supported"):
        render_prompt("{{ raise_exception('Tools are not supported') }}", CONVERSATION)


def test_undefined_value_is_named() -> None:
    with pytest.raises(TemplateError, match="not defined: 'settings' is undefined"):
        render_prompt("{{ settings.language }}", CONVERSATION)


def test_undefined_variables_are_lenient_like_hugging_face() -> None:
    # Real templates test `{% if tools %}` without `is defined`; that must not fail.
    assert render_prompt("{% if tools %}T{% endif %}[{{ missing }}]", CONVERSATION) == "[]"


def test_other_failures_are_wrapped() -> None:
    with pytest.raises(TemplateError, match="The chat template failed"):
        render_prompt("{{ messages[0].content + 1 }}", CONVERSATION)
    with pytest.raises(TemplateError, match="The chat template failed"):
        render_prompt("{{ 1 / 0 }}", CONVERSATION)


# --------------------------------------------------------------------------- Hugging Face semantics


def test_trim_blocks_and_lstrip_blocks_are_on() -> None:
    source = "A\n    {% if true %}\nB\n    {% endif %}\nC"
    assert render_prompt(source, []) == "A\nB\nC"


def test_loop_controls_are_enabled() -> None:
    source = (
        "{% for i in range(9) %}{% if i == 1 %}{% continue %}{% endif %}"
        "{% if i == 4 %}{% break %}{% endif %}{{ i }}{% endfor %}"
    )
    assert render_prompt(source, []) == "023"


def test_tojson_matches_hugging_face() -> None:
    value = {"b": 1, "a": ["é", "<tag>"]}
    assert render_prompt("{{ v | tojson }}", [], v=value) == '{"b": 1, "a": ["é", "<tag>"]}'
    assert render_prompt("{{ v | tojson(indent=2) }}", [], v={"k": 1}) == '{\n  "k": 1\n}'
    assert render_prompt("{{ v | tojson(sort_keys=true) }}", [], v=value).startswith('{"a"')


def test_special_tokens_and_flags_are_variables() -> None:
    source = "{{ bos_token }}|{{ eos_token }}|{{ add_generation_prompt }}|{{ extra }}"
    assert render_prompt(source, [], bos_token="<s>", eos_token="</s>", extra="x") == "<s>|</s>|True|x"


def test_strftime_now_formats_the_current_time() -> None:
    year = datetime.now().year
    assert render_prompt("{{ strftime_now('%Y') }}", []) in {str(year), str(year + 1)}


def test_messages_are_not_modified() -> None:
    messages = [dict(m) for m in CONVERSATION]
    fmt("gemma2").render(messages)
    assert messages == CONVERSATION


# ------------------------------------------------------------------------------------- ChatFormat


def test_no_template_falls_back_to_chatml() -> None:
    for missing in (None, "", "   "):
        chat = chat_format_for(missing, None, None)
        assert chat.is_fallback
        assert chat.template == CHATML_TEMPLATE
        assert chat.bos_token == "" and chat.eos_token == ""
        assert "<|im_end|>" in chat.stop_strings
    assert chat_format_for(None, None, None).render(CONVERSATION) == FAMILIES["chatml"]["expected"]
    # Prompts are tokenized without an added BOS, so the fallback writes the model's BOS itself.
    assert chat_format_for(None, "<s>", "</s>").render(CONVERSATION) == "<s>" + FAMILIES["chatml"]["expected"]
    assert (
        chat_format_for(None, "<|im_start|>", "<|im_end|>")
        .render(CONVERSATION)
        .startswith("<|im_start|>system\n")
    )


def test_override_wins_over_the_model_template() -> None:
    chat = chat_format_for(
        template("llama3_1"), "<|begin_of_text|>", "<|eot_id|>", override=template("gemma2")
    )
    assert not chat.is_fallback
    assert chat.template == template("gemma2")
    assert chat.render(CONVERSATION[1:2]).startswith("<|begin_of_text|><start_of_turn>user\nHello")
    override_only = chat_format_for(None, None, None, override=template("phi4"))
    assert not override_only.is_fallback
    assert override_only.template == template("phi4")


def test_model_template_is_used_when_present() -> None:
    chat = fmt("deepseek_r1")
    assert not chat.is_fallback
    assert chat.render(CONVERSATION) == FAMILIES["deepseek_r1"]["expected"]


@pytest.mark.parametrize(
    ("family", "markers"),
    [
        ("chatml", ["<|im_end|>"]),
        ("smollm2", ["<|im_end|>"]),
        ("qwen3", ["<|im_end|>"]),
        ("phi4", ["<|im_end|>"]),
        ("llama3_1", ["<|eot_id|>", "<|eom_id|>"]),
        ("gemma2", ["<end_of_turn>", "<eos>"]),
        ("gemma3", ["<end_of_turn>", "<eos>"]),
        ("phi3_5", ["<|end|>", "<|endoftext|>"]),
        ("command_r", ["<|END_OF_TURN_TOKEN|>"]),
        ("granite3", ["<|end_of_text|>"]),
        ("deepseek_r1", ["<｜end▁of▁sentence｜>"]),
        ("mistral_v1", ["</s>"]),
        ("mistral_v7", ["</s>"]),
    ],
)
def test_stop_strings_hold_the_end_of_turn_markers(family: str, markers: list[str]) -> None:
    stops = fmt(family).stop_strings
    for marker in markers:
        assert marker in stops
    eos = FAMILIES[family]["eos_token"]
    assert eos in stops if eos else "" not in stops
    assert len(stops) == len(set(stops))
    assert "<|im_start|>" not in stops  # only the ChatML fallback guards against a runaway next turn


@pytest.mark.parametrize(
    ("source", "reason"),
    [
        ("{% if %}", "syntax"),
        ("{{ ''.__class__ }}", "security"),
        ("{{ raise_exception('no') }}", "rejected"),
        ("{{ nothing.here }}", "undefined"),
        ("{{ 1 / 0 }}", "error"),
    ],
)
def test_template_errors_carry_a_reason(source: str, reason: str) -> None:
    with pytest.raises(TemplateError) as caught:
        render_prompt(source, CONVERSATION[1:2])
    assert caught.value.reason == reason
