"""Splitting a streamed reply into thinking and answer (llamadesk.chat.reasoning)."""

from __future__ import annotations

import itertools

import pytest

from llamadesk.chat.reasoning import (
    ReasoningSplitter,
    history_field,
    split_reasoning,
    starts_in_thinking,
    thinking_control,
    uses_channels,
)

# (reply as the model writes it, start_in_thinking, channels, thinking, answer)
CASES = [
    ("<think>\nLet me add.\n</think>\n\n2 + 2 = 4", False, False, "Let me add.", "2 + 2 = 4"),
    ("Let me add.\n</think>\n\n4", True, False, "Let me add.", "4"),
    ("<think>\n\n</think>\n\nNo thinking here.", False, False, "", "No thinking here."),
    ("\n<think>x < y</think>x<y", False, False, "x < y", "x<y"),
    ("Just an answer with <b>html</b>.", False, False, "", "Just an answer with <b>html</b>."),
    (
        "Code:\n```html\n<think>not thinking</think>\n```\n</think> stray",
        False,
        False,
        "",
        "Code:\n```html\n<think>not thinking</think>\n```\n</think> stray",
    ),
    (
        "<think>Try:\n```\nprint('</think>')\n```\nand `</think>` inline.\n</think>Done",
        False,
        False,
        "Try:\n```\nprint('</think>')\n```\nand `</think>` inline.",
        "Done",
    ),
    (
        "<think>\nstill thinking when the tokens ran out",
        False,
        False,
        "still thinking when the tokens ran out",
        "",
    ),
    ("out of tokens <thi", True, False, "out of tokens <thi", ""),
    (
        "<|channel|>analysis<|message|>User asks 2+2.<|end|>"
        "<|start|>assistant<|channel|>final<|message|>4<|return|>",
        False,
        True,
        "User asks 2+2.",
        "4",
    ),
    (
        "<|channel|>analysis<|message|>Need a tool.<|end|>"
        "<|start|>assistant<|channel|>commentary to=functions.f <|constrain|>json<|message|>{}<|call|>",
        False,
        True,
        "Need a tool.",
        "{}",
    ),
    ("<|channel|>analysis<|message|>cut short", False, True, "cut short", ""),
    ("  indented code stays\n", False, False, "", "  indented code stays\n"),
]


def _split(pieces: list[str], start: bool, channels: bool) -> tuple[str, str, str, str]:
    splitter = ReasoningSplitter(start_in_thinking=start, channels=channels)
    events = []
    for piece in pieces:
        events += splitter.feed(piece)
    events += splitter.finish()
    streamed_thinking = "".join(text for kind, text in events if kind == "thinking")
    streamed_answer = "".join(text for kind, text in events if kind == "answer")
    return splitter.thinking, splitter.answer, streamed_thinking, streamed_answer


@pytest.mark.parametrize(("reply", "start", "channels", "thinking", "answer"), CASES)
def test_every_split_into_three_pieces_gives_the_same_result(
    reply: str, start: bool, channels: bool, thinking: str, answer: str
) -> None:
    for i, j in itertools.combinations_with_replacement(range(len(reply) + 1), 2):
        pieces = [reply[:i], reply[i:j], reply[j:]]
        got_thinking, got_answer, streamed_thinking, streamed_answer = _split(pieces, start, channels)
        assert (got_thinking, got_answer) == (thinking, answer), pieces
        assert streamed_thinking.strip() == thinking and streamed_answer == answer, pieces


@pytest.mark.parametrize(("reply", "start", "channels", "thinking", "answer"), CASES)
def test_one_character_at_a_time(reply: str, start: bool, channels: bool, thinking: str, answer: str) -> None:
    assert _split(list(reply), start, channels)[:2] == (thinking, answer)
    assert split_reasoning(list(reply), start_in_thinking=start) == split_reasoning(
        reply, start_in_thinking=start
    )


def test_markers_never_show_while_streaming() -> None:
    splitter = ReasoningSplitter()
    shown = []
    for piece in ["<th", "ink>", "abc</", "th", "ink>", "\n\nHi"]:
        shown += splitter.feed(piece)
    shown += splitter.finish()
    assert all("<" not in text for _, text in shown)
    assert [kind for kind, _ in shown] == ["thinking", "answer"]


def test_thinking_now_follows_the_stream() -> None:
    splitter = ReasoningSplitter(start_in_thinking=True)
    assert splitter.thinking_now and splitter.has_thinking
    splitter.feed("pondering")
    assert splitter.thinking_now
    splitter.feed("</think>answer")
    assert not splitter.thinking_now
    plain = ReasoningSplitter()
    plain.feed("hello")
    assert not plain.has_thinking


def test_split_reasoning_detects_channels() -> None:
    reply = "<|channel|>analysis<|message|>hmm<|end|><|start|>assistant<|channel|>final<|message|>ok"
    assert split_reasoning(reply).thinking == "hmm"
    assert split_reasoning("a <|end|> b").answer == "a <|end|> b"


def test_feeding_after_finish_is_refused() -> None:
    splitter = ReasoningSplitter()
    splitter.finish()
    with pytest.raises(ValueError):
        splitter.feed("more")


@pytest.mark.parametrize(
    ("prompt", "inside"),
    [
        ("<|im_start|>assistant\n<think>\n", True),
        ("<｜Assistant｜><think>\n", True),
        ("<|im_start|>assistant\n<think>\n\n</think>\n\n", False),
        ("<|im_start|>assistant\n", False),
        ("<think>old</think> user said <think> then more", False),
    ],
)
def test_starts_in_thinking(prompt: str, inside: bool) -> None:
    assert starts_in_thinking(prompt) is inside


def test_template_detection_from_the_source() -> None:
    assert (
        thinking_control("{% if enable_thinking is false %}<think>\n\n</think>{% endif %}")
        == "enable_thinking"
    )
    assert thinking_control("{% if '/no_think' in system %}{% endif %}{{ enable_thinking }}") == "flag"
    assert thinking_control("Reasoning: {{ reasoning_effort }}") == "effort"
    assert thinking_control("{{ messages }}") == ""
    assert uses_channels("<|channel|>final<|message|>") and not uses_channels("<think>")
    assert history_field("{% if message.reasoning_content is defined %}") == "reasoning_content"
    assert history_field("{% if message.thinking %}{{ message['thinking'] }}") == "thinking"
    assert history_field("{{ message.content.split('</think>')[-1] }}") == ""
