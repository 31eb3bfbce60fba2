"""ChatView benchmark: GUI-thread stalls while a reply streams, and opening a 2,000-message conversation.

Run: QT_QPA_PLATFORM=offscreen .venv/bin/python benchmarks/bench_chat_view.py [--rate TOK_PER_S] [--tokens N]
The stream is fed from a QTimer at --rate tokens/s (default 70, about 20 s for 1,500 tokens) while a 5 ms
heartbeat timer records how late the GUI thread runs it; a late heartbeat is a stall the user would feel.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from dataclasses import dataclass
from typing import Any

from PySide6.QtCore import QElapsedTimer, QTimer
from PySide6.QtWidgets import QApplication

from llamadesk.ui import markdown as markdown_module
from llamadesk.ui.chat_view import ChatView


@dataclass
class Msg:
    id: int
    role: str
    content: str
    status: str = "complete"
    model: str | None = "bench-model.gguf"
    stats: dict[str, Any] | None = None
    conversation_id: int = 1
    parent_id: int | None = None
    created_at: float = 0.0
    sibling_index: int = 1
    sibling_count: int = 1


SECTION = """## Step {n}: parsing the input

Here is how the **parser** handles `token` streams, with a short list:

- read the next line and strip it
- split on whitespace, keep *quoted* strings together
- report errors with the line number

```python
def parse_line(line: str, number: int) -> list[str]:
    \"\"\"Split one line into fields; raise ValueError with the line number.\"\"\"
    fields = []
    for part in line.strip().split():
        if part.startswith('"') and not part.endswith('"'):
            raise ValueError(f"line {{number}}: unterminated quote")
        fields.append(part.strip('"'))
    return fields
```

| field | meaning |
|-------|---------|
| name  | the key |
| value | its data |

"""


def reply_pieces(tokens: int) -> list[str]:
    """A Markdown reply with code blocks, cut into pieces of about one token (4 characters)."""
    text = ""
    n = 1
    while len(text) < tokens * 4:
        text += SECTION.format(n=n)
        n += 1
    text = text[: tokens * 4]
    return [text[i : i + 4] for i in range(0, len(text), 4)]


def conversation(count: int) -> list[Msg]:
    body = "Some **Markdown** with `code` and a list:\n\n- one\n- two\n\n```python\nprint('hello')\n```"
    return [Msg(i, "user" if i % 2 else "assistant", f"Message {i}. {body}") for i in range(1, count + 1)]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rate", type=float, default=70.0, help="tokens per second fed to the view")
    parser.add_argument("--tokens", type=int, default=1500)
    args = parser.parse_args()
    app = QApplication.instance() or QApplication(sys.argv)
    view = ChatView()
    view.resize(900, 800)
    view.show()
    app.processEvents()

    # (2) open a 2,000-message conversation and paint it (first open pays one-time imports/caches)
    for label, conversation_id in (("first open", 1), ("second open", 2)):
        messages = conversation(2000)
        for m in messages:
            m.conversation_id = conversation_id
            m.id += 10_000 * conversation_id
        start = time.perf_counter()
        view.set_messages(messages)
        built = time.perf_counter()
        for _ in range(5):
            app.processEvents()
        view.repaint()
        painted = time.perf_counter()
        print(
            f"{label} of 2,000 messages: set_messages {1000 * (built - start):.0f} ms, painted after "
            f"{1000 * (painted - start):.0f} ms ({view.rendered_message_count()} message widgets built)"
        )

    # (1) stream a reply into that conversation while a 5 ms heartbeat watches the GUI thread
    rendered_chars: list[int] = []
    real_render = markdown_module.render_markdown

    def counting_render(text: str, **kwargs: Any) -> markdown_module.RenderedMarkdown:
        rendered_chars.append(len(text))
        return real_render(text, **kwargs)

    markdown_module.render_markdown = counting_render
    pieces = reply_pieces(args.tokens)
    view.begin_stream(Msg(5000, "assistant", "", status="streaming"))
    clock = QElapsedTimer()
    clock.start()
    gaps: list[float] = []
    last = [clock.nsecsElapsed()]

    def beat() -> None:
        now = clock.nsecsElapsed()
        gaps.append((now - last[0]) / 1e6)
        last[0] = now

    heartbeat = QTimer()
    heartbeat.setInterval(5)
    heartbeat.timeout.connect(beat)
    heartbeat.start()
    fed = [0]
    renders_while_streaming = [0]
    end_ms = [0.0]
    interval_ns = 1e9 / args.rate

    def feed() -> None:
        # feed as many pieces as are due, so the rate holds even when the timer fires late
        due = min(len(pieces), int(clock.nsecsElapsed() / interval_ns) + 1)
        while fed[0] < due:
            view.append_stream(pieces[fed[0]])
            fed[0] += 1
        if fed[0] >= len(pieces):
            feeder.stop()
            heartbeat.stop()
            renders_while_streaming[0] = len(rendered_chars)
            started = time.perf_counter()
            view.end_stream(Msg(5000, "assistant", "".join(pieces), status="complete"))
            end_ms[0] = 1000 * (time.perf_counter() - started)
            QTimer.singleShot(200, app.quit)

    feeder = QTimer()
    feeder.setInterval(max(1, int(1000 / args.rate)))
    feeder.timeout.connect(feed)
    feeder.start()
    app.exec()
    elapsed = clock.elapsed() / 1000
    stalls = [max(0.0, g - 5.0) for g in gaps]
    text_len = len("".join(pieces))
    print(
        f"stream {len(pieces)} tokens ({text_len} chars) at {args.rate:.0f} tok/s over {elapsed:.1f} s: "
        f"{renders_while_streaming[0]} partial renders covering {sum(rendered_chars[:-1])} chars; "
        f"heartbeat gap max {max(gaps):.1f} ms, p99 {percentile(gaps, 0.99):.1f} ms, "
        f"median {statistics.median(gaps):.1f} ms (stall beyond the 5 ms period: max {max(stalls):.1f} ms, "
        f"p99 {percentile(stalls, 0.99):.1f} ms)"
    )
    print(f"end_stream (one exact whole-message render): {end_ms[0]:.0f} ms")
    assert view.last_reply_text() == "".join(pieces)
    markdown_module.render_markdown = real_render
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
