"""The one rule for which stored messages go to the model (window, CLI and API share it)."""

from __future__ import annotations

from dataclasses import dataclass

from llamadesk.chat.prompt import build_messages, reply_reserve


@dataclass
class M:
    id: int
    role: str
    content: str
    status: str = "complete"


def test_system_prompt_first_and_blank_system_prompt_left_out() -> None:
    path = [M(1, "user", "hi"), M(2, "assistant", "hello")]
    assert build_messages("Be brief.", path).messages == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "hello"},
    ]
    assert build_messages("  \n", path).messages[0] == {"role": "user", "content": "hi"}
    assert build_messages(None, path).sources == [(1,), (2,)]


def test_replies_with_text_are_sent_whatever_way_they_ended() -> None:
    path = [
        M(1, "user", "a"),
        M(2, "assistant", "stopped half", "stopped"),
        M(3, "user", "b"),
        M(4, "assistant", "cut by a crash", "interrupted"),
        M(5, "user", "c"),
        M(6, "assistant", "failed partway", "failed"),
        M(7, "user", "d"),
    ]
    sent = build_messages(None, path)
    assert [m["content"] for m in sent.messages] == [
        "a",
        "stopped half",
        "b",
        "cut by a crash",
        "c",
        "failed partway",
        "d",
    ]


def test_empty_replies_are_left_out_and_the_turns_around_them_merged() -> None:
    path = [
        M(1, "user", "first"),
        M(2, "assistant", "", "failed"),
        M(3, "user", "second"),
        M(4, "assistant", "", "streaming"),
    ]
    sent = build_messages("sys", path)
    # Strict templates (Gemma, Mistral) refuse two user turns in a row: they become one.
    assert sent.messages == [
        {"role": "system", "content": "sys"},
        {"role": "user", "content": "first\n\nsecond"},
    ]
    assert sent.sources == [(), (1, 3)]
    assert sent.ids_of([1]) == {1, 3}
    assert sent.ids_of([0, 99]) == set()


def test_a_new_unsaved_question_is_appended() -> None:
    path = [M(1, "user", "a"), M(2, "assistant", "b")]
    sent = build_messages(None, path, new_user_message="c")
    assert sent.messages[-1] == {"role": "user", "content": "c"}
    assert sent.sources[-1] == ()


def test_a_streaming_reply_with_text_is_not_sent_back() -> None:
    path = [M(1, "user", "a"), M(2, "assistant", "partial", "streaming")]
    assert [m["role"] for m in build_messages(None, path).messages] == ["user"]


def test_reply_reserve_is_max_tokens_but_never_more_than_half_the_context() -> None:
    assert reply_reserve(4096, 512) == 512
    assert reply_reserve(1024, 4000) == 512
    assert reply_reserve(0, 100) == 0


def test_only_what_may_start_a_stop_string_is_held_back() -> None:
    from llamadesk.engine.engine import _partial_stop

    stops = ["<|im_end|>", "\nUser:"]
    assert _partial_stop("Hello there", stops) == 0  # released at once: nothing like a stop string
    assert _partial_stop("Hello <|im_e", stops) == len("<|im_e")
    assert _partial_stop("Hello\nUs", stops) == len("\nUs")
    assert _partial_stop("Hello <", stops) == 1
    assert _partial_stop("", stops) == 0
