"""Reasoning models: telling a reply's thinking from its answer, as it streams, and the "Think" switch.

Models such as Qwen3, DeepSeek-R1 and SmolLM3 write their thinking between ``<think>`` and
``</think>`` (the chat template may already have opened ``<think>`` in the generation prompt, so the
reply starts inside it); gpt-oss writes it in an ``analysis`` channel
(``<|channel|>analysis<|message|>…<|end|><|start|>assistant<|channel|>final<|message|>…``).
:class:`ReasoningSplitter` takes the reply piece by piece, whatever the pieces' boundaries, and hands
back thinking and answer text with the markers removed. Markers inside the answer (a code block that
shows ``<think>``) stay text: thinking can only start before the answer does, and a ``</think>``
inside a code fence or backticks of the thinking does not end it.

:func:`split_reasoning` splits a finished reply in one call; front ends that stream (the API server's
``reasoning_content``) feed a :class:`ReasoningSplitter` the same way the window does.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable
from dataclasses import dataclass

__all__ = [
    "CHANNEL_MARKERS",
    "EFFORTS",
    "THINKING_CHOICES",
    "THINK_CLOSE",
    "THINK_OPEN",
    "ReasoningSplitter",
    "SplitReply",
    "history_field",
    "split_reasoning",
    "starts_in_thinking",
    "thinking_control",
    "uses_channels",
]

THINK_OPEN = "<think>"
THINK_CLOSE = "</think>"
_CHANNEL = "<|channel|>"
_MESSAGE = "<|message|>"
_END = "<|end|>"
_START = "<|start|>"
_RETURN = "<|return|>"
_CALL = "<|call|>"
CHANNEL_MARKERS = (_CHANNEL, _MESSAGE, _END, _START, _RETURN, _CALL)

EFFORTS = ("low", "medium", "high")
THINKING_CHOICES = ("", "on", "off", *EFFORTS)
"""A thinking choice: "" (the template's own default), "on", "off", or a gpt-oss reasoning effort."""

THINKING = "thinking"
ANSWER = "answer"
_HEADER = "header"  # a channel header (between <|channel|> and <|message|>): not shown
_DROP = "drop"  # between a channel message's end and the next header: not shown

_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")


@dataclass(frozen=True)
class SplitReply:
    """A reply split in two: what the model thought and what it answered (markers removed)."""

    thinking: str
    answer: str


class _Section:
    """The text of one part (thinking or answer) and whether its end lies inside code."""

    def __init__(self) -> None:
        self.parts: list[str] = []
        self.fence = ""  # the open code fence ("```"), "" outside one
        self.line = ""  # the unfinished last line

    def add(self, text: str) -> None:
        self.parts.append(text)
        lines = (self.line + text).split("\n")
        for line in lines[:-1]:
            match = _FENCE.match(line)
            if self.fence:
                marker = match.group(1) if match else ""
                if marker.startswith(self.fence) and not line.strip()[len(marker) :]:
                    self.fence = ""
            elif match:
                self.fence = match.group(1)
        self.line = lines[-1][-200:] if len(lines[-1]) > 200 else lines[-1]

    def in_code(self) -> bool:
        """True when the next character would be inside a code fence or an inline code span."""
        return bool(self.fence) or bool(_FENCE.match(self.line)) or self.line.count("`") % 2 == 1

    def text(self) -> str:
        if len(self.parts) > 1:
            self.parts[:] = ["".join(self.parts)]
        return self.parts[0] if self.parts else ""


class ReasoningSplitter:
    """Splits a reply into thinking and answer as its pieces arrive.

    ``start_in_thinking``: the prompt ended inside ``<think>`` (see :func:`starts_in_thinking`).
    ``channels``: the template writes gpt-oss channel markers (see :func:`uses_channels`).
    :meth:`feed` returns ``(kind, text)`` events, kind "thinking" or "answer"; text that could be
    the start of a marker is held back until the next piece (or :meth:`finish`) tells.
    """

    def __init__(self, *, start_in_thinking: bool = False, channels: bool = False) -> None:
        self._markers = (THINK_OPEN, THINK_CLOSE, *(CHANNEL_MARKERS if channels else ()))
        self._state = THINKING if start_in_thinking else ANSWER
        self._pending = ""
        self._lead = ""  # whitespace at the start of a part, kept until it is known to matter
        self._header: list[str] = []
        self._sections = {THINKING: _Section(), ANSWER: _Section()}
        self._seen_thinking = start_in_thinking
        self._finished = False

    # -- what has been split so far

    @property
    def thinking(self) -> str:
        """The thinking so far, markers removed, without its surrounding blank lines."""
        return self._sections[THINKING].text().strip()

    @property
    def answer(self) -> str:
        """The answer so far, markers removed."""
        return self._sections[ANSWER].text()

    @property
    def thinking_now(self) -> bool:
        """True while the model is thinking (the last text read was thinking)."""
        return self._state == THINKING and not self._finished

    @property
    def has_thinking(self) -> bool:
        """True once the reply has a thinking part (even an empty one)."""
        return self._seen_thinking

    # -- feeding

    def feed(self, text: str) -> list[tuple[str, str]]:
        """Read the next piece of the reply; returns the thinking and answer text it completes."""
        if self._finished:
            raise ValueError("this reply has already been finished")
        events: list[tuple[str, str]] = []
        buffer = self._pending + text
        self._pending = ""
        start = 0
        while True:
            at = buffer.find("<", start)
            if at < 0:
                self._emit(buffer[start:], events)
                break
            self._emit(buffer[start:at], events)
            rest = buffer[at : at + max(len(m) for m in self._markers)]
            marker = next((m for m in self._markers if rest.startswith(m)), None)
            if marker is not None:
                self._on_marker(marker, events)
                start = at + len(marker)
                continue
            if any(m.startswith(rest) for m in self._markers) and at + len(rest) == len(buffer):
                self._pending = buffer[at:]  # maybe a marker cut by the piece's end
                break
            self._emit("<", events)
            start = at + 1
        return events

    def finish(self) -> list[tuple[str, str]]:
        """The reply ended: text held back is plain text. Thinking never closed (stopped, out of
        tokens) stays thinking."""
        events: list[tuple[str, str]] = []
        if not self._finished:
            pending, self._pending = self._pending, ""
            self._emit(pending, events)
            if self._lead and self._state == ANSWER and not self._seen_thinking:
                self._write(ANSWER, self._lead, events)
            self._lead = ""
            self._finished = True
        return events

    # -- internals

    def _emit(self, text: str, events: list[tuple[str, str]]) -> None:
        if not text:
            return
        state = self._state
        if state == _HEADER:
            self._header.append(text)
            return
        if state == _DROP:
            return
        section = self._sections[state]
        if not section.parts:
            # Whitespace before a part's first word waits: a <think> may follow it, or it is the
            # blank line a template puts after </think>.
            stripped = text.lstrip()
            if not stripped:
                self._lead += text
                return
            # After thinking, the answer's leading blank lines are the template's, not the model's.
            keep = state == ANSWER and not self._seen_thinking
            text, self._lead = (self._lead + text if keep else stripped), ""
        self._write(state, text, events)

    def _write(self, kind: str, text: str, events: list[tuple[str, str]]) -> None:
        self._sections[kind].add(text)
        if events and events[-1][0] == kind:
            events[-1] = (kind, events[-1][1] + text)
        else:
            events.append((kind, text))

    def _on_marker(self, marker: str, events: list[tuple[str, str]]) -> None:
        state = self._state
        if marker == THINK_OPEN:
            if state == ANSWER and not self._sections[ANSWER].parts:
                self._state, self._lead, self._seen_thinking = THINKING, "", True
            elif state == THINKING and not self._sections[THINKING].parts:
                self._lead = ""  # the template opened <think> and the model wrote it again
            else:
                self._emit(marker, events)
        elif marker == THINK_CLOSE:
            if state == THINKING and not self._sections[THINKING].in_code():
                self._state, self._lead = ANSWER, ""
            else:
                self._emit(marker, events)
        elif marker == _CHANNEL:
            self._state, self._header = _HEADER, []
        elif marker == _MESSAGE:
            if state == _HEADER:
                channel = "".join(self._header).split()
                name = channel[0] if channel else ""
                if name == "analysis":
                    self._state, self._seen_thinking = THINKING, True
                else:
                    self._state = ANSWER
                self._lead = ""
            elif state == _DROP:
                self._state = ANSWER  # <|start|>assistant<|message|>: a message with no channel
        elif marker == _START:
            self._state, self._header = _DROP, []
        elif marker in (_END, _RETURN, _CALL):
            self._state = _DROP
            self._lead = ""


def split_reasoning(
    text: str | Iterable[str], *, start_in_thinking: bool = False, channels: bool | None = None
) -> SplitReply:
    """Split a reply (its text, or its pieces in order) into thinking and answer.

    ``channels`` None: gpt-oss channel markers are recognised when the text holds ``<|channel|>``.
    This is the function the API server uses for ``reasoning_content``.
    """
    pieces = [text] if isinstance(text, str) else list(text)
    if channels is None:
        channels = any(_CHANNEL in piece for piece in pieces) or _CHANNEL in "".join(pieces)
    splitter = ReasoningSplitter(start_in_thinking=start_in_thinking, channels=channels)
    for piece in pieces:
        splitter.feed(piece)
    splitter.finish()
    return SplitReply(splitter.thinking, splitter.answer)


def starts_in_thinking(prompt: str) -> bool:
    """True when the rendered prompt ends inside an open ``<think>`` (DeepSeek-R1, Qwen3 thinking
    templates): the reply then begins with thinking and only writes ``</think>``."""
    opened = prompt.rfind(THINK_OPEN)
    return (
        opened >= 0 and opened > prompt.rfind(THINK_CLOSE) and not prompt[opened + len(THINK_OPEN) :].strip()
    )


@functools.lru_cache(maxsize=64)
def uses_channels(template: str) -> bool:
    """True for templates in the gpt-oss (harmony) format, whose replies carry channel markers."""
    return _CHANNEL in template and _MESSAGE in template


@functools.lru_cache(maxsize=64)
def thinking_control(template: str) -> str:
    """How a template lets the user switch thinking: "effort" (gpt-oss ``reasoning_effort``),
    "flag" (SmolLM3's ``/think`` and ``/no_think`` in the system prompt), "enable_thinking"
    (Qwen3-style variable), or "" when it cannot be switched."""
    if "reasoning_effort" in template:
        return "effort"
    if "/no_think" in template:
        return "flag"
    if "enable_thinking" in template:
        return "enable_thinking"
    return ""


_HISTORY_FIELDS = (
    ("reasoning_content", re.compile(r"\breasoning_content\b")),
    ("thinking", re.compile(r"message\s*(?:\.\s*thinking\b|\[\s*['\"]thinking['\"]\s*\])")),
)


@functools.lru_cache(maxsize=64)
def history_field(template: str) -> str:
    """The message field through which a template reads earlier replies' thinking
    ("reasoning_content" for Qwen3, "thinking" for gpt-oss); "" when it never reads it."""
    return next((name for name, pattern in _HISTORY_FIELDS if pattern.search(template)), "")
